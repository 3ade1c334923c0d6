//! The typed configuration: every knob of the CLI and the worker, its
//! default (one that runs locally), and the conversions into what the
//! modules take (`SinkConfig`, `Limits`, `PipelineOptions`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::worker::TemporalConfig;

use super::inference::{LimitsConfig, PipelineConfig, PluginConfig};
use super::ingest::{KafkaConfig, ScheduleConfig};
use super::stores::{CacheConfig, ClickHouseConfig};

/// The effective configuration of one `llma-sentiment` process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub temporal: TemporalConfig,
    pub workflow: WorkflowConfig,
    pub clickhouse: ClickHouseConfig,
    pub plugin: PluginConfig,
    pub pipeline: PipelineConfig,
    pub cache: CacheConfig,
    pub limits: LimitsConfig,
    pub worker: WorkerConfig,
    pub backfill: BackfillConfig,
    pub progress: ProgressOptions,
    pub admin: AdminConfig,
    pub schedule: ScheduleConfig,
    pub kafka: KafkaConfig,
    pub serve: ServeConfig,
    /// Test-only fault switches: compiled only with the `fault-injection`
    /// feature, which the tests enable and no shipped binary has.
    #[cfg(feature = "fault-injection")]
    pub faults: FaultsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, pretty when it is.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing `EnvFilter` syntax; logs go to stderr.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "warn".into(), format: LogFormat::Auto }
    }
}

/// Options of the workflow's one activity (the seed's), and the execution
/// timeout `submit` sets. Read once at worker start, so every workflow task
/// of a process schedules the activity the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowConfig {
    pub execution_timeout_secs: u64,
    pub start_to_close_secs: u64,
    pub schedule_to_close_secs: u64,
    pub heartbeat_timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_initial_interval_secs: u64,
    pub retry_max_interval_secs: u64,
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        use crate::worker as w;
        WorkflowConfig {
            execution_timeout_secs: w::EXECUTION_TIMEOUT.as_secs(),
            start_to_close_secs: w::START_TO_CLOSE.as_secs(),
            schedule_to_close_secs: w::SCHEDULE_TO_CLOSE.as_secs(),
            heartbeat_timeout_secs: w::HEARTBEAT_TIMEOUT.as_secs(),
            max_attempts: w::MAX_ATTEMPTS,
            retry_initial_interval_secs: w::RETRY_INITIAL_INTERVAL.as_secs(),
            retry_max_interval_secs: w::RETRY_MAX_INTERVAL.as_secs(),
        }
    }
}

impl WorkflowConfig {
    pub fn timeouts(&self) -> crate::worker::ActivityTimeouts {
        crate::worker::ActivityTimeouts {
            start_to_close: Duration::from_secs(self.start_to_close_secs),
            schedule_to_close: Duration::from_secs(self.schedule_to_close_secs),
            heartbeat: Duration::from_secs(self.heartbeat_timeout_secs),
            max_attempts: self.max_attempts,
            retry_initial_interval: Duration::from_secs(self.retry_initial_interval_secs),
            retry_max_interval: Duration::from_secs(self.retry_max_interval_secs),
        }
    }

    pub fn execution_timeout(&self) -> Duration {
        Duration::from_secs(self.execution_timeout_secs)
    }
}


/// How long the start-up TLS check of a `rediss://` tier may take.
const REDIS_TLS_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Config {
    /// Both tiers of the result cache as configured (the Redis tier starts
    /// connecting in the background).
    pub fn result_cache(&self) -> Result<crate::cache::ResultCache, crate::cache::redis::RedisTierError> {
        let memory = crate::cache::MemoryTier::with_megabytes(self.pipeline.result_cache_mb);
        let shared = self.cache.redis_settings().map(|s| crate::cache::RedisTier::new(&s)).transpose()?;
        if let Some(tier) = shared.as_ref().filter(|t| t.uses_tls()) {
            // A TLS setting that cannot work is no outage: say so now, by
            // name, rather than run on without the shared tier. An outage
            // (refused, timed out) stays the tier's to ride out.
            match tier.check(REDIS_TLS_CHECK_TIMEOUT) {
                Err(e) if e.is_tls() => return Err(e.into()),
                Err(e) => tracing::warn!(error = %e, "Redis result cache not answering at start: in-process cache only until it does"),
                Ok(()) => {}
            }
        }
        Ok(crate::cache::ResultCache::from_tiers(memory, shared))
    }
}


#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Activities run at once; they wait for a plugin instance when all are
    /// busy. `ACTIVITIES_PER_INSTANCE` per instance when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_activities: Option<usize>,
    /// Warm plugin instances (each holds a loaded model); one per core when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// Memory the worker may take, MiB (see `memory_budget`); the cgroup's limit when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget_mb: Option<u64>,
    /// After SIGTERM/SIGINT, how long in-flight activities may run before they are cancelled.
    pub grace_period_secs: u64,
    /// Admin endpoint (plugin status/activate/rollback); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<SocketAddr>,
    /// Let the admin endpoint bind an address other than loopback (with TLS only).
    pub admin_allow_remote: bool,
    /// The admin endpoint's TLS certificate (chain) and key: it serves https with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tls_key: Option<PathBuf>,
    /// The admin endpoint's bearer token; never logged nor printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// A file holding the admin token (used when `admin_token` is unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Directories, besides `plugin.dir`, the admin endpoint may activate
    /// plugins and models from.
    pub admin_allowed_dirs: Vec<PathBuf>,
    /// `/metrics`, `/healthz`, `/readyz`; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// The identity Temporal shows for this worker; `llma-sentiment@<host>:<pid>` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Exit (status 70) when the watchdog finds the worker stuck, so that a
    /// supervisor restarts it; off: only `/readyz` and `/metrics` say so.
    pub exit_when_stuck: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_concurrent_activities: None,
            instances: None,
            memory_budget_mb: None,
            grace_period_secs: 30,
            admin_addr: None,
            admin_allow_remote: false,
            admin_tls_cert: None,
            admin_tls_key: None,
            admin_token: None,
            admin_token_file: None,
            admin_allowed_dirs: Vec::new(),
            metrics_addr: None,
            identity: None,
            exit_when_stuck: true,
        }
    }
}

/// Default activity slots per plugin instance: activities spend most of
/// their time on Temporal and ClickHouse round trips, not in the model.
pub const ACTIVITIES_PER_INSTANCE: usize = 4;

impl WorkerConfig {
    /// Activity slots.
    pub fn concurrency(&self) -> usize {
        self.concurrency_for(self.instances())
    }

    /// Activity slots for a pool of `instances`.
    pub fn concurrency_for(&self, instances: usize) -> usize {
        self.max_concurrent_activities.unwrap_or(instances * ACTIVITIES_PER_INSTANCE).max(1)
    }

    /// Plugin instances the pool may hold.
    pub fn instances(&self) -> usize {
        self.instances
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
            .max(1)
    }

    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }

    pub fn identity(&self) -> String {
        self.identity.clone().filter(|i| !i.trim().is_empty()).unwrap_or_else(crate::worker::default_identity)
    }
}

/// `analyze --output clickhouse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// Rows per INSERT.
    pub insert_batch_size: usize,
    /// Write a partial batch once it is this old.
    pub flush_interval_secs: u64,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig { insert_batch_size: 1000, flush_interval_secs: 5 }
    }
}

impl BackfillConfig {
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}

/// Progress of `analyze` and `submit` on stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressOptions {
    pub mode: crate::progress::ProgressMode,
    /// Plain mode: a line every this many items (0: only by time).
    pub every: u64,
    /// Plain mode: a line at least this often (seconds) while items complete.
    pub secs: u64,
}

impl Default for ProgressOptions {
    fn default() -> Self {
        let d = crate::progress::ProgressConfig::default();
        ProgressOptions { mode: d.mode, every: d.every, secs: d.interval.as_secs() }
    }
}

impl ProgressOptions {
    pub fn config(&self) -> crate::progress::ProgressConfig {
        crate::progress::ProgressConfig { mode: self.mode, every: self.every, interval: Duration::from_secs(self.secs) }
    }
}

/// The admin client (`plugin activate|rollback|status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The worker's admin endpoint.
    pub url: String,
    /// With an `https://` URL: the CA file the endpoint's certificate must
    /// chain to (the system roots when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { url: "http://127.0.0.1:9464".into(), tls_ca: None }
    }
}

/// `serve`: the Sentiment pages (read-only over ClickHouse).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub allow_remote: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    pub window_days: u32,
    pub classify: bool,
    pub classify_per_minute: u32,
    pub classify_per_hour: u32,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9467)),
            allow_remote: false,
            tls_cert: None,
            tls_key: None,
            token: None,
            token_file: None,
            window_days: 30,
            classify: false,
            classify_per_minute: 60,
            classify_per_hour: 600,
        }
    }
}

#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Fail every first activity attempt after its insert succeeded.
    pub fail_first_attempt_after_insert: bool,
}
