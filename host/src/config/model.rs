//! The typed configuration: every knob of the CLI and the worker, its
//! default (one that runs locally), and the conversions into what the
//! modules take (`SinkConfig`, `Limits`, `PipelineOptions`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::Limits;
use crate::sink::SinkConfig;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    /// Temporal frontend, host:port (or a URL).
    pub address: String,
    pub namespace: String,
    /// `llm-analytics-task-queue` in production.
    pub task_queue: String,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            address: "127.0.0.1:7233".into(),
            namespace: "default".into(),
            task_queue: "development-task-queue".into(),
        }
    }
}

impl TemporalConfig {
    pub fn url(&self) -> Result<url::Url, url::ParseError> {
        if self.address.contains("://") {
            url::Url::parse(&self.address)
        } else {
            url::Url::parse(&format!("http://{}", self.address))
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    pub url: String,
    pub user: String,
    /// Never logged nor printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub database: String,
    pub table: String,
    /// Schema validation of inserts: `auto` turns it off for servers too old to support it.
    pub validation: Validation,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: crate::sink::DEFAULT_URL.into(),
            user: crate::sink::DEFAULT_USER.into(),
            password: None,
            database: crate::sink::DEFAULT_DATABASE.into(),
            table: crate::sink::DEFAULT_TABLE.into(),
            validation: Validation::Auto,
        }
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &crate::sink::redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("table", &self.table)
            .field("validation", &self.validation)
            .finish()
    }
}

impl ClickHouseConfig {
    pub fn sink_config(&self) -> SinkConfig {
        SinkConfig {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            database: self.database.clone(),
            table: self.table.clone(),
            validation: match self.validation {
                Validation::Auto => None,
                Validation::On => Some(true),
                Validation::Off => Some(false),
            },
            // Ride out a ClickHouse outage of ~25 s inside one activity
            // attempt (backoff 0.2 s doubling to 10 s over 8 attempts), while
            // all attempts (8 x (3 s + 8 s) + backoff) still fit in its
            // 2-minute start-to-close timeout.
            insert_attempts: 8,
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(8),
            ..SinkConfig::default()
        }
    }
}

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
        }
    }
}

impl PluginConfig {
    pub fn source(&self) -> crate::source::PluginSource {
        crate::source::PluginSource {
            plugin: self.path.clone(),
            model_dir: self.model_dir.clone(),
            cache_dir: self.cache_dir.clone(),
            no_compile_cache: !self.compile_cache,
            cache_budget_bytes: Some(self.cache_budget_mb.saturating_mul(1 << 20)),
        }
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

/// The shared (Redis) tier of the result cache; the in-process tier's size
/// is `pipeline.result_cache_mb`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `redis://[user:password@]host:port[/db]`; no shared tier when unset.
    /// Never logged with its credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// How long Redis keeps a result.
    pub redis_ttl_secs: u64,
    /// Per Redis call; a slower answer counts as an error and the lookup goes on without it.
    pub redis_timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        // 24 h, as PostHog's on-demand sentiment cache.
        CacheConfig { redis_url: None, redis_ttl_secs: 24 * 3600, redis_timeout_ms: 50 }
    }
}

impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("redis_url", &self.redis_url.as_deref().map(crate::sink::redact_url))
            .field("redis_ttl_secs", &self.redis_ttl_secs)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .finish()
    }
}

impl CacheConfig {
    pub fn redis_settings(&self) -> Option<crate::cache::RedisSettings> {
        let url = self.redis_url.as_ref().filter(|u| !u.trim().is_empty())?;
        Some(crate::cache::RedisSettings {
            url: url.clone(),
            ttl: Duration::from_secs(self.redis_ttl_secs),
            timeout: Duration::from_millis(self.redis_timeout_ms),
        })
    }
}

impl Config {
    /// Both tiers of the result cache as configured (the Redis tier starts
    /// connecting in the background).
    pub fn result_cache(&self) -> Result<crate::cache::ResultCache, crate::cache::redis::RedisTierError> {
        let memory = crate::cache::MemoryTier::with_megabytes(self.pipeline.result_cache_mb);
        let shared = self.cache.redis_settings().map(|s| crate::cache::RedisTier::new(&s)).transpose()?;
        Ok(crate::cache::ResultCache::from_tiers(memory, shared))
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
    /// After SIGTERM/SIGINT, how long in-flight activities may run before they are cancelled.
    pub grace_period_secs: u64,
    /// Admin endpoint (plugin status/activate/rollback); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<SocketAddr>,
    /// Let the admin endpoint bind an address other than loopback.
    pub admin_allow_remote: bool,
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
            grace_period_secs: 30,
            admin_addr: None,
            admin_allow_remote: false,
            admin_token: None,
            admin_token_file: None,
            admin_allowed_dirs: Vec::new(),
            metrics_addr: None,
            identity: None,
            exit_when_stuck: true,
        }
    }
}

/// A credential: serialised as itself (the config file holds it), shown as
/// `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Default activity slots per plugin instance: activities spend most of
/// their time on Temporal and ClickHouse round trips, not in the model.
pub const ACTIVITIES_PER_INSTANCE: usize = 4;

impl WorkerConfig {
    /// Activity slots.
    pub fn concurrency(&self) -> usize {
        self.max_concurrent_activities.unwrap_or_else(|| self.instances() * ACTIVITIES_PER_INSTANCE).max(1)
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
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { url: "http://127.0.0.1:9464".into() }
    }
}

#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Fail every first activity attempt after its insert succeeded.
    pub fail_first_attempt_after_insert: bool,
}
