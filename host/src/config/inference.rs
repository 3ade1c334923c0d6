//! What runs on every event: the plugin and model, the pipeline's rules
//! around it, and the sandbox's budgets.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::Limits;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Plugin component (.wasm); the embedded default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Serve the newest `*.wasm` of this directory (worker); overrides `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Model bundle directory; the embedded default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// Compiled components and the unpacked default model; the user cache dir when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Cache compiled components on disk (off: compile on every start).
    pub compile_cache: bool,
    /// Disk the compiled components and snapshots may take, MiB.
    pub cache_budget_mb: u64,
    /// How often the plugin directory is polled.
    pub poll_ms: u64,
    /// How long the previous version stays loaded for `plugin rollback`.
    pub rollback_grace_secs: u64,
    /// Nice steps below the serving threads at which an activation compiles,
    /// snapshots and self-tests a new version (0: at their priority).
    pub activation_nice: u8,
    /// Worker: `use-existing` starts instances from a snapshot `plugin prepare`
    /// made, `create` makes one at start and activation (minutes per plugin and
    /// model on small machines, before serving), `off` never uses one.
    pub snapshots: crate::engine::SnapshotPolicy,
    /// Public key files; when set, a plugin from a file must be signed by
    /// one of them (see `signature`).
    pub trusted_keys: Vec<PathBuf>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            path: None,
            dir: None,
            model_dir: None,
            cache_dir: None,
            compile_cache: true,
            cache_budget_mb: crate::engine::DEFAULT_CACHE_BUDGET_BYTES >> 20,
            poll_ms: 1000,
            rollback_grace_secs: 600,
            activation_nice: crate::engine::background::DEFAULT_NICE_INCREMENT,
            snapshots: crate::engine::SnapshotPolicy::default(),
            trusted_keys: Vec::new(),
        }
    }
}

impl PluginConfig {
    /// Where plugin and model come from; fails when a trusted key file
    /// cannot be read.
    pub fn source(&self) -> Result<crate::source::PluginSource, crate::signature::KeyError> {
        Ok(crate::source::PluginSource {
            plugin: self.path.clone(),
            model_dir: self.model_dir.clone(),
            cache_dir: self.cache_dir.clone(),
            no_compile_cache: !self.compile_cache,
            cache_budget_bytes: Some(self.cache_budget_mb.saturating_mul(1 << 20)),
            trusted_keys: self.trusted_keys()?,
        })
    }

    /// The trusted keys, read from their files; `None` when unset (every
    /// plugin file is accepted).
    pub fn trusted_keys(&self) -> Result<Option<std::sync::Arc<crate::signature::TrustedKeys>>, crate::signature::KeyError> {
        if self.trusted_keys.is_empty() {
            return Ok(None);
        }
        crate::signature::TrustedKeys::load(&self.trusted_keys).map(|k| Some(std::sync::Arc::new(k)))
    }

    pub fn rollback_grace(&self) -> Duration {
        Duration::from_secs(self.rollback_grace_secs)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(50))
    }
}

/// How a text longer than `pipeline.max_chars` is cut (the plugin cuts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TruncationMode {
    /// The last `max_chars` characters (the seed).
    #[default]
    Tail,
    /// The first `head_chars`, "\n...\n", the last `max_chars - head_chars - 5` (PostHog 2026).
    HeadTail,
}

/// How per-message results make a generation's (the plugin applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AggregationMode {
    /// The worst label wins (the seed).
    #[default]
    Worst,
    /// The mean of the messages' scores (PostHog 2026).
    Mean,
}

pub use crate::event::EventSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Keep the last N user messages of a generation.
    pub max_messages: u32,
    /// Keep N characters of each message.
    pub max_chars: u32,
    /// How a longer text is cut: `tail` or `head-tail`.
    pub truncation: TruncationMode,
    /// `head-tail`: characters kept from the start (0 cuts the tail only).
    pub head_chars: u32,
    /// A polar label within this margin of neutral becomes neutral; 0 is off.
    pub neutral_margin: f64,
    /// `worst` or `mean`.
    pub aggregation: AggregationMode,
    /// `sentiment` (`$ai_sentiment`) or `evaluation` (`$ai_evaluation`).
    pub event_schema: EventSchema,
    /// `$ai_evaluation_id` of evaluation events.
    pub evaluation_id: String,
    /// `$ai_evaluation_name` of evaluation events.
    pub evaluation_name: String,
    /// Write a neutral event (score 0, no messages) for a generation without
    /// user messages instead of skipping it.
    pub emit_empty: bool,
    /// Keep each classified text (as cut) in its message entry. Off: events
    /// hold no user text (privacy).
    pub store_text: bool,
    /// Texts per classify call (capped by the plugin's own limit).
    pub batch_size: usize,
    /// Per-message result cache shared by all tasks of a process, MiB; 0 disables it.
    pub result_cache_mb: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let d = crate::pipeline::PipelineOptions::default();
        PipelineConfig {
            max_messages: d.plugin.extraction.max_messages,
            max_chars: d.plugin.extraction.max_chars,
            truncation: TruncationMode::Tail,
            head_chars: 300,
            neutral_margin: 0.0,
            aggregation: AggregationMode::Worst,
            event_schema: d.events.schema,
            evaluation_id: d.events.evaluation_id,
            evaluation_name: d.events.evaluation_name,
            emit_empty: d.events.emit_empty,
            store_text: d.events.store_text,
            batch_size: d.batch_size,
            result_cache_mb: 64,
        }
    }
}

impl PipelineConfig {
    pub fn options(&self) -> crate::pipeline::PipelineOptions {
        crate::pipeline::PipelineOptions {
            plugin: self.plugin_options(),
            events: crate::event::EventOptions {
                schema: self.event_schema,
                evaluation_id: self.evaluation_id.clone(),
                evaluation_name: self.evaluation_name.clone(),
                emit_empty: self.emit_empty,
                store_text: self.store_text,
            },
            batch_size: self.batch_size,
            ..Default::default()
        }
    }

    /// What the plugin is asked to apply (passed through as it is).
    pub fn plugin_options(&self) -> crate::engine::PluginOptions {
        use crate::engine::{AggregationRule, Extraction, Labelling, PluginOptions, Truncation};
        PluginOptions {
            extraction: Extraction {
                max_messages: self.max_messages,
                max_chars: self.max_chars,
                truncation: match self.truncation {
                    TruncationMode::Tail => Truncation::Tail,
                    TruncationMode::HeadTail => Truncation::HeadTail(self.head_chars),
                },
            },
            labelling: Labelling {
                neutral_margin: self.neutral_margin,
                rule: match self.aggregation {
                    AggregationMode::Worst => AggregationRule::Worst,
                    AggregationMode::Mean => AggregationRule::Mean,
                },
            },
        }
    }
}

/// Sandbox budgets (see `engine::Limits` for how they were derived).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub call_deadline_base_ms: u64,
    pub call_deadline_per_text_ms: u64,
    pub load_deadline_ms: u64,
    pub fuel_base: u64,
    pub fuel_per_token: u64,
    pub load_fuel: u64,
    pub memory_bytes: u64,
    pub metering: crate::engine::Metering,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = Limits::default();
        LimitsConfig {
            call_deadline_base_ms: d.call_deadline_base.as_millis() as u64,
            call_deadline_per_text_ms: d.call_deadline_per_text.as_millis() as u64,
            load_deadline_ms: d.load_deadline.as_millis() as u64,
            fuel_base: d.fuel_base,
            fuel_per_token: d.fuel_per_token,
            load_fuel: d.load_fuel,
            memory_bytes: d.memory_bytes as u64,
            metering: d.metering,
        }
    }
}

impl LimitsConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            call_deadline_base: Duration::from_millis(self.call_deadline_base_ms),
            call_deadline_per_text: Duration::from_millis(self.call_deadline_per_text_ms),
            load_deadline: Duration::from_millis(self.load_deadline_ms),
            fuel_base: self.fuel_base,
            fuel_per_token: self.fuel_per_token,
            load_fuel: self.load_fuel,
            memory_bytes: usize::try_from(self.memory_bytes).unwrap_or(usize::MAX),
            metering: self.metering,
            ..Limits::default()
        }
    }
}
