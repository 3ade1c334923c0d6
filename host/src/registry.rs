//! Plugin versions: validation, atomic activation, rollback.
//!
//! `activate` is the one mechanism; the directory watcher, SIGHUP and the
//! admin endpoint only call it. A new version is compiled (and its artifact
//! cached), instantiated against the WIT world, its model loaded and a
//! self-test run on canary texts before it serves anything. The switch is a
//! pointer swap: a task pins the version it started with, so it finishes on
//! it, and tasks that start later get the new one. The versions it replaced
//! stay loaded for `rollback` until their grace period ends, the last
//! [`HISTORY_LEN`] of them: a rollback goes back along that history (a
//! second rollback goes further back, never to the build just rolled away
//! from), or to a named version of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::engine::{EngineError, InstanceSlot, Plugin, PluginEngine, PluginOptions};

mod canary;
mod history;
mod version;

pub use version::{validate, PluginVersion, VersionStatus, CANARY_TEXTS};

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("self-test failed: {0}")]
    SelfTest(String),
    #[error("plugin interface {found} is not compatible with the host's {expected}")]
    IncompatibleInterface { found: String, expected: String },
    #[error("plugin {plugin} cannot serve the configured pipeline options: {reason}")]
    UnsupportedOptions { plugin: String, reason: String },
    #[error("no previous version to roll back to (none loaded, or its grace period ended)")]
    NoPrevious,
    #[error("no version {0:?} to roll back to (see `plugin status`: its history)")]
    NotInHistory(String),
    /// `plugin.trusted_keys` is set and the file is not signed by one of them.
    #[error("plugin refused: {0}")]
    Refused(#[from] crate::signature::Refusal),
    #[error("canary texts labelled otherwise (activate with --force to override): {}", .0.join("; "))]
    Canaries(Vec<String>),
}

/// What an activation asks of the worker's instance pool: room for its
/// validation instance, so a swap never runs more instances than the pool's
/// bound, and a home for that instance once the version serves.
pub trait InstanceGate: Send + Sync {
    /// Waits until the pool has room for one more instance, and holds it.
    fn reserve(self: Arc<Self>) -> Box<dyn Reserved>;
}

/// Room held in the pool for one instance; dropping it gives the room back.
pub trait Reserved: Send {
    /// Hands the instance to the pool as an idle one of `version`.
    fn keep(self: Box<Self>, version: &Arc<PluginVersion>, slot: InstanceSlot);
}

pub use history::HISTORY_LEN;

pub struct Registry {
    engine: Arc<PluginEngine>,
    /// What every version must serve (checked at activation).
    options: PluginOptions,
    current: RwLock<Arc<PluginVersion>>,
    /// The versions `current` replaced, for rollback.
    history: Mutex<history::History>,
    /// Serialises activations (held while one compiles and validates, for
    /// seconds): two activations never interleave.
    activating: Mutex<u64>,
    /// Serialises switches (held for a pointer swap only), so a rollback
    /// never waits for an activation still validating.
    switching: Mutex<()>,
    grace: Duration,
    /// Nice steps below the serving threads an activation prepares at.
    activation_nice: u8,
    /// Where every switch records the active version (see `active_version`).
    record: Option<PathBuf>,
    /// The pool the validation instances of activations count against.
    gate: std::sync::OnceLock<std::sync::Weak<dyn InstanceGate>>,
    /// `plugin.trusted_keys`: every activated component must be signed by
    /// one of them (`None`: any component).
    trusted_keys: Option<Arc<crate::signature::TrustedKeys>>,
}

impl Registry {
    /// Validates `plugin` as the first version, for the seed's options.
    pub fn new(engine: Arc<PluginEngine>, plugin: Arc<Plugin>, source: Option<PathBuf>, grace: Duration) -> Result<Self, SwapError> {
        Registry::with_options(engine, plugin, source, grace, PluginOptions::default())
    }

    /// Validates `plugin` as the first version; every version activated
    /// later must serve `options` too.
    pub fn with_options(
        engine: Arc<PluginEngine>,
        plugin: Arc<Plugin>,
        source: Option<PathBuf>,
        grace: Duration,
        options: PluginOptions,
    ) -> Result<Self, SwapError> {
        Registry::starting(engine, plugin, source, grace, options, false)
    }

    /// [`Registry::with_options`]; with `force_canaries`, a first version
    /// that labels its bundle's canaries otherwise serves anyway (warned),
    /// as `activate --force` lets a later one.
    pub fn starting(
        engine: Arc<PluginEngine>,
        plugin: Arc<Plugin>,
        source: Option<PathBuf>,
        grace: Duration,
        options: PluginOptions,
        force_canaries: bool,
    ) -> Result<Self, SwapError> {
        let first = Arc::new(PluginVersion::new(1, plugin, source, &options)?);
        if !first.canary_disagreements.is_empty() {
            if !force_canaries {
                return Err(SwapError::Canaries(first.canary_disagreements.clone()));
            }
            tracing::warn!(
                version = %first.label(),
                canaries = %first.canary_disagreements.join("; "),
                "serving a plugin that labels its bundle's canary texts otherwise (plugin.force_canaries)"
            );
        }
        crate::metrics::record_plugin_active(&first.label(), &first.info.model_name, false);
        Ok(Registry {
            engine,
            options,
            current: RwLock::new(first),
            history: Mutex::new(history::History::default()),
            activating: Mutex::new(1),
            switching: Mutex::new(()),
            grace,
            activation_nice: crate::engine::background::DEFAULT_NICE_INCREMENT,
            record: None,
            gate: std::sync::OnceLock::new(),
            trusted_keys: None,
        })
    }

    /// Activations prepare `nice` steps below the serving threads (0: at their priority).
    pub fn with_activation_nice(mut self, nice: u8) -> Self {
        self.activation_nice = nice;
        self
    }

    /// Makes every later activation refuse a component not signed by one of
    /// `keys`. The first version is checked by whoever loaded it (`source`);
    /// a rollback only goes back to versions activated here, so checked.
    pub fn with_trusted_keys(mut self, keys: Option<Arc<crate::signature::TrustedKeys>>) -> Self {
        self.trusted_keys = keys;
        self
    }

    /// Records the active version in `file` at every switch (and now), so a
    /// restart serves it again.
    pub fn with_record(mut self, file: PathBuf) -> Self {
        self.record = Some(file);
        self.save_record(&self.current());
        self
    }

    /// Makes every later activation hold room in `gate` (the worker's pool)
    /// for its validation instance; the first call counts.
    pub fn set_instance_gate(&self, gate: std::sync::Weak<dyn InstanceGate>) {
        let _ = self.gate.set(gate);
    }

    fn save_record(&self, version: &PluginVersion) {
        if let Some(file) = &self.record {
            let record = crate::active_version::ActiveRecord {
                plugin: version.source.clone(),
                model_dir: version.plugin.model_dir().to_path_buf(),
                plugin_sha256: version.plugin.wasm_sha256.clone(),
            };
            record.save(file);
        }
    }

    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// The version new tasks must use.
    pub fn current(&self) -> Arc<PluginVersion> {
        self.current.read().clone()
    }

    /// The rollback target: the version `current` replaced, while its grace
    /// period lasts.
    pub fn previous(&self) -> Option<Arc<PluginVersion>> {
        self.history().into_iter().next()
    }

    /// The versions a rollback can go back to, newest first (those whose
    /// grace period ended are unloaded).
    pub fn history(&self) -> Vec<Arc<PluginVersion>> {
        self.history.lock().live()
    }

    /// Loads, validates and (only if all of that passed) switches to the
    /// component at `wasm` with the model at `model_dir` (the current model
    /// when `None`). The current version keeps serving throughout, and the
    /// preparation runs below its priority (`plugin.activation_nice`).
    pub fn activate_file(&self, wasm: &Path, model_dir: Option<&Path>) -> Result<Arc<PluginVersion>, SwapError> {
        self.activate_file_with(wasm, model_dir, false)
    }

    /// `activate_file`; with `force`, a version whose canaries disagree is
    /// activated anyway (said in the log). The file is read once: the bytes
    /// whose signature is verified are the bytes compiled.
    pub fn activate_file_with(&self, wasm: &Path, model_dir: Option<&Path>, force: bool) -> Result<Arc<PluginVersion>, SwapError> {
        let bytes = std::fs::read(wasm)
            .map_err(|source| EngineError::ReadPlugin { path: wasm.display().to_string(), source })?;
        self.activate_bytes_with(&bytes, Some(wasm.to_path_buf()), model_dir, force)
    }

    pub fn activate_bytes(&self, wasm: &[u8], source: Option<PathBuf>, model_dir: Option<&Path>) -> Result<Arc<PluginVersion>, SwapError> {
        self.activate_bytes_with(wasm, source, model_dir, false)
    }

    pub fn activate_bytes_with(
        &self,
        wasm: &[u8],
        source: Option<PathBuf>,
        model_dir: Option<&Path>,
        force: bool,
    ) -> Result<Arc<PluginVersion>, SwapError> {
        // Before anything else touches the bytes (a compile of untrusted
        // code is work an attacker could make the worker do).
        if let Err(refusal) = crate::signature::enforce(self.trusted_keys.as_deref(), wasm) {
            crate::metrics::record_plugin_rejected();
            return Err(refusal.into());
        }
        let mut seq = self.activating.lock();
        let model_dir = model_dir.map(Path::to_path_buf).unwrap_or_else(|| self.current().plugin.model_dir().to_path_buf());
        let (engine, options, next) = (&self.engine, &self.options, *seq + 1);
        // Room for the validation instance first: with the pool full, the
        // activation waits for a task to give an instance back.
        let reserved = self.gate.get().and_then(std::sync::Weak::upgrade).map(InstanceGate::reserve);
        let version = crate::engine::background::below_serving(self.activation_nice, || {
            let plugin = engine.load_plugin(wasm, &model_dir)?;
            PluginVersion::new(next, Arc::new(plugin), source, options)
        })
        .inspect_err(|_| crate::metrics::record_plugin_rejected())?;
        let mut problems = version.canary_disagreements.clone();
        // A new build on the same model must label as the serving one does
        // (a new model moves labels by design: its own canaries vouch for it).
        let current = self.current();
        if version.plugin.model_content_digest() == current.plugin.model_content_digest() {
            problems.extend(canary::against_current(&version.self_test_labels, &current.self_test_labels));
        }
        if !problems.is_empty() {
            if !force {
                crate::metrics::record_plugin_rejected();
                return Err(SwapError::Canaries(problems));
            }
            tracing::warn!(problems = %problems.join("; "), "activating despite canary texts labelled otherwise (forced)");
        }
        let version = Arc::new(version);
        *seq += 1;
        self.switch_to(version.clone());
        // The validation instance serves on as an idle instance of the pool.
        if let (Some(reserved), Some(slot)) = (reserved, version.take_warm_slot()) {
            reserved.keep(&version, slot);
        }
        Ok(version)
    }

    /// Whether an activation is compiling or validating a version now.
    pub fn is_activating(&self) -> bool {
        self.activating.try_lock().is_none()
    }

    /// Whether instances of `version` are worth keeping: it is the current
    /// version or the rollback target.
    pub fn is_live(&self, version: &PluginVersion) -> bool {
        Arc::ptr_eq(&self.current().plugin, &version.plugin)
            || self.history().iter().any(|p| Arc::ptr_eq(&p.plugin, &version.plugin))
    }

    fn switch_to(&self, version: Arc<PluginVersion>) {
        let _serial = self.switching.lock();
        let old = self.replace_current(version);
        self.history.lock().push(old, self.grace);
    }

    /// Makes `version` current; returns the one it replaced.
    fn replace_current(&self, version: Arc<PluginVersion>) -> Arc<PluginVersion> {
        let old = std::mem::replace(&mut *self.current.write(), version.clone());
        tracing::info!(from = %old.label(), to = %version.label(), model = %version.info.model_name, "plugin version switched");
        crate::metrics::record_plugin_active(&version.label(), &version.info.model_name, true);
        self.save_record(&version);
        old
    }

    /// Switches back to the version the current one replaced. The current
    /// one is dropped, not kept: a second rollback goes further back. Does
    /// not wait for an activation in progress: if that one passes
    /// validation later, it switches as asked.
    pub fn rollback(&self) -> Result<Arc<PluginVersion>, SwapError> {
        self.rollback_where(|_| true).ok_or(SwapError::NoPrevious)
    }

    /// Switches back to the version of the history named `name` (its
    /// `plugin status` label, its plugin version, or its activation number);
    /// it and the versions between are dropped from the history.
    pub fn rollback_to(&self, name: &str) -> Result<Arc<PluginVersion>, SwapError> {
        let named = |v: &PluginVersion| v.label() == name || v.info.version == name || v.seq.to_string() == name;
        self.rollback_where(named).ok_or_else(|| SwapError::NotInHistory(name.to_string()))
    }

    /// Rolls back to the newest version of the history that `wanted` picks.
    fn rollback_where(&self, wanted: impl Fn(&PluginVersion) -> bool) -> Option<Arc<PluginVersion>> {
        let _serial = self.switching.lock();
        let target = self.history.lock().take_back(wanted)?;
        self.replace_current(target.clone());
        Some(target)
    }
}
