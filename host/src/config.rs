//! Configuration: one typed [`Config`] merged from defaults < a TOML file
//! (`--config FILE` / `$LLMA_SENTIMENT_CONFIG`) < environment variables
//! (`LLMA_SENTIMENT_<SECTION>_<KEY>`, plus the older names each key had) <
//! command-line flags. The flag structs below only carry what was given on
//! the command line; defaults and environment live in the layers.

mod load;
mod model;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Map, Value};

pub use load::{load, ConfigError, Key, Kind, Sources, CONFIG_FILE_ENV, ENV_PREFIX, KEYS};
pub use model::{
    AggregationMode, ClickHouseConfig, Config, EventSchema, LimitsConfig, LogConfig, LogFormat, PipelineConfig, PluginConfig,
    TemporalConfig, TruncationMode, ACTIVITIES_PER_INSTANCE,
    Validation, WorkerConfig, WorkflowConfig,
};

/// Flag values by section, as the flag layer of [`load`] takes them.
#[derive(Debug, Default)]
pub struct Flags(Map<String, Value>);

impl Flags {
    pub fn set(&mut self, path: &str, value: Option<Value>) {
        let Some(value) = value else { return };
        let (section, key) = path.split_once('.').expect("flag paths are section.key");
        if let Value::Object(map) = self.0.entry(section.to_string()).or_insert_with(|| json!({})) {
            map.insert(key.to_string(), value);
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

fn some<T: serde::Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(|v| serde_json::to_value(v).ok())
}

#[derive(Debug, Clone, Default, Args)]
pub struct TemporalArgs {
    /// Temporal frontend, host:port [default: 127.0.0.1:7233].
    #[arg(long = "temporal-address")]
    pub address: Option<String>,
    /// [default: default]
    #[arg(long = "temporal-namespace")]
    pub namespace: Option<String>,
    /// Task queue [default: development-task-queue; production: llm-analytics-task-queue].
    #[arg(long)]
    pub task_queue: Option<String>,
}

impl TemporalArgs {
    pub fn apply(&self, flags: &mut Flags) {
        flags.set("temporal.address", some(&self.address));
        flags.set("temporal.namespace", some(&self.namespace));
        flags.set("temporal.task_queue", some(&self.task_queue));
    }
}

#[derive(Clone, Default, Args)]
pub struct ClickHouseArgs {
    /// [default: http://127.0.0.1:8123]
    #[arg(long = "clickhouse-url")]
    pub url: Option<String>,
    /// [default: default]
    #[arg(long = "clickhouse-user")]
    pub user: Option<String>,
    /// Never logged nor printed (prefer the environment: flags show in `ps`).
    #[arg(long = "clickhouse-password")]
    pub password: Option<String>,
    /// [default: default]
    #[arg(long = "clickhouse-database")]
    pub database: Option<String>,
    /// [default: events]
    #[arg(long = "clickhouse-table")]
    pub table: Option<String>,
    /// Schema validation of inserts: `auto` turns it off for servers too old to support it [default: auto].
    #[arg(long = "clickhouse-validation")]
    pub validation: Option<Validation>,
}

impl std::fmt::Debug for ClickHouseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseArgs")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("table", &self.table)
            .field("validation", &self.validation)
            .finish()
    }
}

impl ClickHouseArgs {
    pub fn apply(&self, flags: &mut Flags) {
        flags.set("clickhouse.url", some(&self.url));
        flags.set("clickhouse.user", some(&self.user));
        flags.set("clickhouse.password", some(&self.password));
        flags.set("clickhouse.database", some(&self.database));
        flags.set("clickhouse.table", some(&self.table));
        flags.set("clickhouse.validation", some(&self.validation));
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct WorkerArgs {
    /// Activities run at once; they wait for a plugin instance when all are busy [default: 4 per instance].
    #[arg(long)]
    pub max_concurrent_activities: Option<usize>,
    /// Warm plugin instances (each holds a loaded model) [default: one per core].
    #[arg(long)]
    pub instances: Option<usize>,
    /// After SIGTERM/SIGINT, how long in-flight activities may run before they are cancelled [default: 30].
    #[arg(long)]
    pub grace_period_secs: Option<u64>,
    /// How long the previous plugin version stays loaded for `plugin rollback` [default: 600].
    #[arg(long)]
    pub rollback_grace_secs: Option<u64>,
    /// Serve the newest `*.wasm` of this directory and switch when a newer one
    /// appears (or on SIGHUP). Overrides --plugin.
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
    /// How often the plugin directory is polled [default: 1000].
    #[arg(long)]
    pub plugin_poll_ms: Option<u64>,
    /// Admin endpoint (plugin status/activate/rollback, /healthz), e.g.
    /// 127.0.0.1:9464. Off unless set.
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// Metrics and health endpoint (/metrics, /healthz, /readyz), e.g.
    /// 127.0.0.1:9465. Off unless set.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

impl WorkerArgs {
    pub fn apply(&self, flags: &mut Flags) {
        flags.set("worker.max_concurrent_activities", some(&self.max_concurrent_activities));
        flags.set("worker.instances", some(&self.instances));
        flags.set("worker.grace_period_secs", some(&self.grace_period_secs));
        flags.set("plugin.rollback_grace_secs", some(&self.rollback_grace_secs));
        flags.set("plugin.dir", some(&self.plugin_dir));
        flags.set("plugin.poll_ms", some(&self.plugin_poll_ms));
        flags.set("worker.admin_addr", some(&self.admin_addr));
        flags.set("worker.metrics_addr", some(&self.metrics_addr));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    }

    fn with_flags(args: &[&str]) -> Config {
        let w = Wrapper::parse_from(args);
        let mut flags = Flags::default();
        w.clickhouse.apply(&mut flags);
        w.worker.apply(&mut flags);
        load(&Sources { flags: flags.into_map(), ..Default::default() }).unwrap()
    }

    #[test]
    fn sink_retries_fit_in_one_activity_attempt() {
        let config = with_flags(&["llma-sentiment"]);
        let worst = config.clickhouse.sink_config().max_request_duration();
        assert!(worst < crate::worker::START_TO_CLOSE, "{worst:?}");
    }

    #[test]
    fn activity_slots_default_to_a_multiple_of_the_instances() {
        let c = with_flags(&["llma-sentiment", "--instances", "3"]);
        assert_eq!((c.worker.instances(), c.worker.concurrency()), (3, 3 * crate::config::ACTIVITIES_PER_INSTANCE));
        let c = with_flags(&["llma-sentiment", "--instances", "2", "--max-concurrent-activities", "5"]);
        assert_eq!((c.worker.instances(), c.worker.concurrency()), (2, 5));
    }

    #[test]
    fn password_is_redacted_in_debug_output() {
        let args = Wrapper::parse_from(["llma-sentiment", "--clickhouse-password", "hunter2"]);
        let config = with_flags(&["llma-sentiment", "--clickhouse-password", "hunter2"]);
        let shown = format!("{:?} {:?} {:?}", args.clickhouse, config, config.clickhouse.sink_config());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.clickhouse.password.as_deref(), Some("hunter2"));
    }
}
