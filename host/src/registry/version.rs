//! One plugin version: its validation (the self-test on the canary texts,
//! the interface and options checks) and what `plugin status` shows of it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::{canary, SwapError};
use crate::engine::{EngineError, InstanceSlot, Label, Plugin, PluginInfo, PluginOptions};

/// Texts every new version must classify before it serves traffic.
pub const CANARY_TEXTS: [&str; 4] =
    ["I love this, thank you!", "this is broken and I hate it", "what time is the meeting", ""];

/// An `$ai_input` every new version must extract from with the configured
/// options: two user messages, one longer than any cut.
fn canary_input() -> String {
    let long = format!("{} {}", "tell me more about the weather".repeat(100), CANARY_TEXTS[1]);
    serde_json::json!([{"role": "user", "content": CANARY_TEXTS[0]}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": long}])
        .to_string()
}

/// One validated plugin + model, ready to serve.
pub struct PluginVersion {
    /// Increases with every activation in this process.
    pub seq: u64,
    pub plugin: Arc<Plugin>,
    pub info: PluginInfo,
    /// Where the component came from (`None` for the embedded default).
    pub source: Option<PathBuf>,
    pub validated_in: Duration,
    /// Its labels of [`CANARY_TEXTS`], to compare the next version's with.
    pub(super) self_test_labels: Vec<Label>,
    /// The bundle's canaries (`canary.json`) it labelled otherwise.
    pub(super) canary_disagreements: Vec<String>,
    /// The instance the self-test ran on, handed to the first task.
    warm: Mutex<Option<InstanceSlot>>,
}

impl PluginVersion {
    pub(super) fn new(seq: u64, plugin: Arc<Plugin>, source: Option<PathBuf>, options: &PluginOptions) -> Result<Self, SwapError> {
        let started = Instant::now();
        let (info, mut slot, self_test_labels) = validate(&plugin, options)?;
        let canary_disagreements = canary::disagreements(&plugin, &mut slot)?;
        Ok(PluginVersion {
            seq,
            plugin,
            info,
            source,
            validated_in: started.elapsed(),
            self_test_labels,
            canary_disagreements,
            warm: Mutex::new(Some(slot)),
        })
    }

    pub(crate) fn take_warm_slot(&self) -> Option<InstanceSlot> {
        self.warm.lock().take()
    }

    /// What events and logs call this version: plugin version, build hash, model.
    pub fn label(&self) -> String {
        crate::engine::version_label(&self.info, &self.plugin.wasm_sha256)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    pub seq: u64,
    pub version: String,
    pub name: String,
    pub model: String,
    pub plugin_sha256: String,
    pub source: Option<String>,
    pub model_dir: String,
    pub validated_ms: u64,
    /// How its instances come ready: `snapshot FILE`, or `load (REASON)`.
    pub snapshot: String,
}

impl From<&PluginVersion> for VersionStatus {
    fn from(v: &PluginVersion) -> Self {
        VersionStatus {
            seq: v.seq,
            version: v.label(),
            name: v.info.name.clone(),
            model: v.info.model_name.clone(),
            plugin_sha256: v.plugin.wasm_sha256.clone(),
            source: v.source.as_ref().map(|p| p.display().to_string()),
            model_dir: v.plugin.model_dir().display().to_string(),
            validated_ms: v.validated_in.as_millis() as u64,
            snapshot: match &v.plugin.instance_start {
                crate::engine::InstanceStart::Snapshot { path, .. } => format!("snapshot {}", path.display()),
                crate::engine::InstanceStart::Load(why) => format!("load ({why})"),
            },
        }
    }
}

/// Checks a freshly loaded version end to end, with the pipeline options it
/// will serve (an option its interface version lacks, or one the plugin
/// refuses, fails here, before it serves anything); returns its info and the
/// instance the self-test ran on.
pub fn validate(plugin: &Arc<Plugin>, options: &PluginOptions) -> Result<(PluginInfo, InstanceSlot, Vec<Label>), SwapError> {
    let mut slot = InstanceSlot::new(plugin.clone());
    let instance = slot.get()?;
    let info = instance.info().clone();
    if let Some(reason) = options.unsupported_by(plugin.contract) {
        return Err(SwapError::UnsupportedOptions { plugin: format!("{} {}", info.name, info.version), reason });
    }
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    if major(&info.interface_version) != major(crate::engine::INTERFACE_VERSION) {
        return Err(SwapError::IncompatibleInterface {
            found: info.interface_version.clone(),
            expected: crate::engine::INTERFACE_VERSION.to_string(),
        });
    }
    let texts: Vec<String> = CANARY_TEXTS.iter().map(|t| t.to_string()).collect();
    let results = instance.classify(&texts)?;
    for (text, r) in texts.iter().zip(&results) {
        let s = &r.scores;
        let sum = s.negative + s.neutral + s.positive;
        if !(sum - 1.0).abs().lt(&1e-3) {
            return Err(SwapError::SelfTest(format!("scores of {text:?} sum to {sum}")));
        }
        if !info.labels.contains(&r.label) {
            return Err(SwapError::SelfTest(format!("label {:?} of {text:?} is not in the model's labels", r.label)));
        }
        let top = [s.negative, s.neutral, s.positive].into_iter().fold(f32::MIN, f32::max);
        if (r.score - top).abs() > 1e-6 {
            return Err(SwapError::SelfTest(format!("score {} of {text:?} is not its top class", r.score)));
        }
    }
    let refused = |e: EngineError| SwapError::UnsupportedOptions { plugin: format!("{} {}", info.name, info.version), reason: e.to_string() };
    instance.extract(&canary_input(), options.extraction).map_err(refused)?;
    instance.aggregate(&results, options.labelling).map_err(refused)?;
    let labels = results.iter().map(|r| r.label).collect();
    Ok((info, slot, labels))
}

