//! Pre-initialised plugin snapshots, stored beside the compiled artifacts.
//!
//! An instance that loads its model itself spends seconds in tract (parse and
//! optimise the whole graph) and keeps the load's peak resident. A plugin
//! built for the `preinit-plugin` world exports `wizer-initialize` instead:
//! it is run once per (plugin, model files, wasmtime build, engine config,
//! CPU features) with the model directory preopened, its memory is
//! snapshotted by wasmtime-wizer into a new component, that is compiled and
//! written to the cache dir. Instances are made from the file mapped
//! copy-on-write (`Component::deserialize_file` + `memory_init_cow`), so they
//! start with the model loaded and share its pages.
//!
//! A snapshot file comes with a sidecar digest (length and SHA-256, see
//! `integrity`) written after it: a file without one, or that does not match it, is deleted and
//! rebuilt, never loaded. Whatever fails here, the caller falls back to the
//! ordinary load path and says why (`Fallback`).

use std::path::{Path, PathBuf};
use parking_lot::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;
use wasmtime::component::Component;
use wasmtime::Engine;
use wasmtime_wizer::Wizer;

use super::contract::{Contract, ContractBindings};
use super::cache::{digest_path, discard, engine_fingerprint, mark_used, write_atomically, CompileCache};
use super::instance::{new_store, trapped};
use super::{EngineError, Limits};

/// The export `wizer-initialize` (see the `preinit-plugin` world).
const INIT_EXPORT: &str = "wizer-initialize";
/// Changes whenever what a snapshot holds or how it is made changes.
const FORMAT: &str = "llma-snapshot/3";

/// Whether the engine makes snapshots, only uses those already made, or
/// neither. The default is the worker's (`plugin.snapshots`): making a
/// snapshot blocks start for minutes on small machines, so only on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotPolicy {
    /// Make one when none is cached (at start and activation when configured,
    /// `plugin prepare`, `plugin check --snapshot`).
    Create,
    /// Use a cached one, never spend the time to make one.
    #[default]
    UseExisting,
    /// Always load the model in every instance.
    Off,
}

/// Why a plugin's instances load their model themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Snapshots are off, or there is no cache dir to keep one in.
    Disabled,
    /// `UseExisting` and none is cached.
    NotCached,
    /// The plugin was built without the `wizer-initialize` export.
    NoInitExport,
    /// `wizer-initialize` ran but could not load the model (its error).
    InitFailed(String),
    /// Instrumenting, running or snapshotting the component failed.
    Wizer(String),
    /// The snapshot could not be compiled, stored or mapped.
    Store(String),
}

impl Fallback {
    /// A label for `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Fallback::Disabled => "disabled",
            Fallback::NotCached => "not_cached",
            Fallback::NoInitExport => "no_init_export",
            Fallback::InitFailed(_) => "init_failed",
            Fallback::Wizer(_) => "wizer",
            Fallback::Store(_) => "store",
        }
    }

    /// Whether this is worth a warning (a plugin that could have a snapshot
    /// and does not), rather than a choice.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Fallback::Disabled | Fallback::NotCached)
    }
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Disabled => f.write_str("snapshots are disabled or there is no cache dir"),
            Fallback::NotCached => f.write_str("no snapshot is cached and this command does not make one"),
            Fallback::NoInitExport => write!(f, "the plugin does not export `{INIT_EXPORT}`"),
            Fallback::InitFailed(e) => write!(f, "`{INIT_EXPORT}` could not load the model: {e}"),
            Fallback::Wizer(e) => write!(f, "pre-initialisation failed: {e}"),
            Fallback::Store(e) => write!(f, "the snapshot could not be stored or mapped: {e}"),
        }
    }
}

/// A snapshot ready to instantiate.
pub struct Snapshot {
    pub component: Component,
    pub path: PathBuf,
    /// Whether this load made it (else it was in the cache).
    pub created: bool,
    /// Time to make it, or to check and map the cached file.
    pub took: Duration,
    /// Size of the compiled snapshot file.
    pub file_bytes: u64,
}

/// The cache key of a snapshot: everything its memory or code depends on.
pub fn key(engine: &Engine, wasm_sha256: &str, model_identity: &str) -> String {
    let mut h = engine_fingerprint(engine);
    for part in [FORMAT, wasm_sha256, model_identity, &engine.get_memory_guaranteed_dense_image_size().to_string()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let file = dir.join(format!("{key}.snapshot.cwasm"));
    let sidecar = digest_path(&file);
    (file, sidecar)
}

/// `len sha256` of a snapshot file (see `integrity`).
#[cfg(test)]
fn digest_of(path: &Path) -> std::io::Result<String> {
    super::integrity::digest_file(path)
}

/// Checks a cached snapshot against its SHA-256 recorded when it was written
/// and maps it. `Ok(None)` when there is none; a damaged one is deleted,
/// counted and reported as `Err`.
fn open_cached(engine: &Engine, file: &Path) -> Result<Option<(Component, u64)>, String> {
    if !file.is_file() {
        return Ok(None);
    }
    let (reason, verdict) = match super::integrity::check_file(file, &digest_path(file)) {
        Ok(actual) => {
            // SAFETY: the file is a snapshot this module compiled with
            // `precompile_component` for an engine of the same fingerprint
            // (part of the key), and its SHA-256 is the one recorded when it
            // was written, in a dir only this user can write (so nobody
            // changes it between the check and the mapping); wasmtime also
            // checks its header.
            match unsafe { Component::deserialize_file(engine, file) } {
                Ok(c) => {
                    // An entry's use is its newest file's time: the sidecar need not be touched.
                    mark_used(file);
                    return Ok(Some((c, actual.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0))));
                }
                Err(e) => ("refused", format!("wasmtime refused it: {e:#}")),
            }
        }
        Err(m) => (m.reason(), m.to_string()),
    };
    discard(file, "snapshot", reason);
    Err(verdict)
}

/// What a snapshot is made of.
pub struct Request<'a> {
    pub engine: &'a Engine,
    pub policy: SnapshotPolicy,
    /// The cache dir; no snapshots without one.
    pub dir: Option<&'a Path>,
    /// Compiles the instrumented component (cached like any component).
    pub compile_cache: &'a CompileCache,
    pub wasm: &'a [u8],
    /// The plugin as it is, compiled: tells whether it has the init export.
    pub plain: &'a Component,
    pub model_dir: &'a Path,
    pub key: &'a str,
    pub limits: &'a Limits,
}

/// The snapshot of `wasm` with the model at `model_dir`, from `dir` or made now.
pub fn load_or_create(req: Request<'_>) -> Result<Snapshot, Fallback> {
    let Request { engine, policy, dir, compile_cache, wasm, plain, model_dir, key, limits } = req;
    let dir = match (policy, dir) {
        (SnapshotPolicy::Off, _) | (_, None) => return Err(Fallback::Disabled),
        (_, Some(dir)) => dir,
    };
    if plain.get_export_index(None, INIT_EXPORT).is_none() {
        return Err(Fallback::NoInitExport);
    }
    let started = Instant::now();
    let (file, sidecar) = paths(dir, key);
    // One snapshot at a time per process: a second load of the same plugin
    // and model waits and then maps the first one's file, and two creations
    // never hold their load peaks at once.
    static CREATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATING.lock();
    match open_cached(engine, &file) {
        Ok(Some((component, file_bytes))) => {
            return Ok(Snapshot { component, path: file, created: false, took: started.elapsed(), file_bytes })
        }
        Ok(None) => {}
        Err(why) => {
            crate::metrics::record_snapshot_discarded();
            tracing::warn!(path = %file.display(), reason = %why, "discarded a damaged plugin snapshot; making a new one");
        }
    }
    if policy == SnapshotPolicy::UseExisting {
        return Err(Fallback::NotCached);
    }
    tracing::info!(model_dir = %model_dir.display(), "making a pre-initialised plugin snapshot");
    // wasmtime-wizer asserts on what it cannot rewrite (seen: a
    // RoBERTa-base-sized heap fails its own validation); that is a reason to
    // fall back, never to take the worker down.
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| preinitialise(engine, compile_cache, wasm, model_dir, limits)));
    let snapshot_wasm = match attempt {
        Ok(made) => made?,
        Err(panic) => {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            return Err(Fallback::Wizer(format!("wasmtime-wizer panicked: {}", why.unwrap_or_else(|| "(no message)".into()))));
        }
    };
    let compiled = engine.precompile_component(&snapshot_wasm).map_err(|e| Fallback::Store(format!("compile: {e:#}")))?;
    drop(snapshot_wasm);
    let file_bytes = compiled.len() as u64;
    let digest = super::integrity::digest_bytes(&compiled);
    // The digest goes last: a crash in between leaves a file without one,
    // which the next load deletes. Mapping the file below checks what
    // reached the disk against it.
    let _ = std::fs::remove_file(&sidecar);
    write_atomically(&file, &compiled).map_err(|e| Fallback::Store(format!("write {}: {e}", file.display())))?;
    drop(compiled);
    write_atomically(&sidecar, digest.as_bytes()).map_err(|e| Fallback::Store(format!("write {}: {e}", sidecar.display())))?;
    compile_cache.prune(&[key, &CompileCache::key(engine, wasm)]);
    // Mapped from the file, so instances share its pages.
    match open_cached(engine, &file) {
        Ok(Some((component, _))) => Ok(Snapshot { component, path: file, created: true, took: started.elapsed(), file_bytes }),
        Ok(None) => Err(Fallback::Store(format!("{} vanished after writing it", file.display()))),
        Err(why) => Err(Fallback::Store(why)),
    }
}

/// Runs `wizer-initialize` in an instance that sees `model_dir` and returns
/// the component snapshotted from its memory. The instance runs under the
/// load budget (fuel, deadline, memory cap) like any load.
fn preinitialise(engine: &Engine, cache: &CompileCache, wasm: &[u8], model_dir: &Path, limits: &Limits) -> Result<Vec<u8>, Fallback> {
    let wizer_err = |what: &str, e: &dyn std::fmt::Display| Fallback::Wizer(format!("{what}: {e:#}"));
    let mut wizer = Wizer::new();
    // Without it wasmtime-wizer 48 fails its own rewrite (core instance N
    // has no export named `wizer-initialize`).
    wizer.init_func(INIT_EXPORT).keep_init_func(true);
    let (cx, instrumented) = wizer.instrument_component(wasm).map_err(|e| wizer_err("instrument", &e))?;
    // Instrumenting is deterministic: the compiled form is cached like the
    // plugin's, so another model for the same plugin skips this compile.
    let (component, _) = cache.load_or_compile(engine, &instrumented).map_err(|e| wizer_err("compile the instrumented component", &e))?;
    drop(instrumented);
    let linker = llma_wasi_host::linker(engine).map_err(|e| wizer_err("link WASI", &e))?;
    let mut store = new_store(engine, limits, Some(model_dir)).map_err(|e| Fallback::Wizer(e.to_string()))?;
    // The snapshot reads the whole heap through the guest-to-host channel,
    // far past its default 128 MiB allowance.
    store.set_hostcall_fuel(usize::MAX);
    let instance = linker.instantiate(&mut store, &component).map_err(|e| wizer_err("instantiate", &e))?;
    let init = instance
        .get_typed_func::<(), ()>(&mut store, INIT_EXPORT)
        .map_err(|e| wizer_err(INIT_EXPORT, &e))?;
    super::interrupt::run_under_limits(&mut store, async |store| init.call_async(store, ()).await)
        .map_err(|e| Fallback::Wizer(trapped("wizer-initialize", &e).to_string()))?;
    // What the snapshot instances will answer: a model that did not load
    // makes no snapshot.
    let contract = Contract::of(&component, engine).map_err(|e| Fallback::Wizer(e.to_string()))?;
    let api = ContractBindings::of_instance(contract, &mut store, &instance).map_err(|e| wizer_err("bindings", &e))?;
    match super::interrupt::run_under_limits(&mut store, async |store| api.info(store).await) {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(Fallback::InitFailed(EngineError::Plugin { call: "info", error }.to_string())),
        Err(e) => return Err(Fallback::Wizer(trapped("info", &e).to_string())),
    }
    // Refuel: the snapshot step calls the instrumented accessors.
    if store.get_fuel().is_ok() {
        store.set_fuel(limits.load_fuel).map_err(|e| wizer_err("fuel", &e))?;
    }
    let snapshot = llma_wasi_host::snapshot(&wizer, &cx, &mut store, instance).map_err(|e| wizer_err("snapshot", &e))?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damaged(write: impl FnOnce(&Path, &Path)) -> (Result<Option<(Component, u64)>, String>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let (file, sidecar) = paths(dir.path(), "k");
        std::fs::write(&file, vec![7u8; 100_000]).unwrap();
        std::fs::write(&sidecar, digest_of(&file).unwrap()).unwrap();
        write(&file, &sidecar);
        let out = open_cached(&Engine::default(), &file);
        (out, file.exists() || sidecar.exists())
    }

    fn reason(r: Result<Option<(Component, u64)>, String>) -> String {
        match r {
            Err(why) => why,
            Ok(_) => panic!("a damaged snapshot was accepted"),
        }
    }

    #[test]
    fn no_file_is_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = paths(dir.path(), "k");
        assert!(matches!(open_cached(&Engine::default(), &file), Ok(None)));
    }

    #[test]
    fn a_truncated_file_is_refused_and_deleted() {
        let (out, left) = damaged(|f, _| std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(50_000).unwrap());
        assert!(reason(out).contains("does not match"));
        assert!(!left, "both files are deleted");
    }

    #[test]
    fn a_flipped_byte_is_refused_and_deleted() {
        let (out, left) = damaged(|f, _| {
            let mut b = std::fs::read(f).unwrap();
            b[4242] ^= 1;
            std::fs::write(f, b).unwrap();
        });
        assert!(reason(out).contains("does not match"));
        assert!(!left);
    }

    #[test]
    fn a_file_without_its_digest_is_refused() {
        let (out, left) = damaged(|_, s| std::fs::remove_file(s).unwrap());
        assert!(reason(out).contains("no digest"));
        assert!(!left);
    }

    #[test]
    fn a_file_matching_its_digest_but_not_a_compiled_component_is_refused() {
        let (out, left) = damaged(|_, _| {});
        assert!(reason(out).contains("wasmtime refused"));
        assert!(!left);
    }

    #[test]
    fn the_key_covers_plugin_and_model() {
        let e = Engine::default();
        let k = key(&e, "plugin-a", "model-a");
        assert_eq!(k, key(&e, "plugin-a", "model-a"));
        assert_ne!(k, key(&e, "plugin-b", "model-a"));
        assert_ne!(k, key(&e, "plugin-a", "model-b"));
        // Parts are length-prefixed: moving a boundary changes the key.
        assert_ne!(key(&e, "ab", "c"), key(&e, "a", "bc"));
    }
}
