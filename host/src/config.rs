//! Connection settings shared by `worker`, `submit` and `migrate`, read from
//! each tool's own environment variables (flags override them).

use std::time::Duration;

use clap::Args;

use crate::sink::SinkConfig;

#[derive(Debug, Clone, Args)]
pub struct TemporalArgs {
    /// Temporal frontend, host:port.
    #[arg(long = "temporal-address", env = "TEMPORAL_ADDRESS", default_value = "127.0.0.1:7233")]
    pub address: String,
    #[arg(long = "temporal-namespace", env = "TEMPORAL_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Task queue (`llm-analytics-task-queue` in production).
    #[arg(long, env = "LLMA_SENTIMENT_TASK_QUEUE", default_value = "development-task-queue")]
    pub task_queue: String,
}

impl TemporalArgs {
    pub fn url(&self) -> Result<url::Url, url::ParseError> {
        if self.address.contains("://") {
            url::Url::parse(&self.address)
        } else {
            url::Url::parse(&format!("http://{}", self.address))
        }
    }
}

#[derive(Clone, Args)]
pub struct ClickHouseArgs {
    #[arg(long = "clickhouse-url", env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub url: String,
    #[arg(long = "clickhouse-user", env = "CLICKHOUSE_USER", default_value = "default")]
    pub user: String,
    /// Never logged nor printed.
    #[arg(long = "clickhouse-password", env = "CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long = "clickhouse-database", env = "CLICKHOUSE_DATABASE", default_value = "default")]
    pub database: String,
    #[arg(long = "clickhouse-table", env = "LLMA_SENTIMENT_TABLE", default_value = "events")]
    pub table: String,
    /// Schema validation of inserts: `auto` turns it off for servers too old to support it.
    #[arg(long = "clickhouse-validation", env = "LLMA_SENTIMENT_CLICKHOUSE_VALIDATION", default_value = "auto")]
    pub validation: Validation,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Validation {
    Auto,
    On,
    Off,
}

impl ClickHouseArgs {
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

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Activities run at once; default: 4 per plugin instance (activities
    /// mostly wait on Temporal and ClickHouse; one needing the model while
    /// all instances are busy waits for one).
    #[arg(long, env = "LLMA_SENTIMENT_MAX_CONCURRENT_ACTIVITIES")]
    pub max_concurrent_activities: Option<usize>,
    /// Warm plugin instances (each holds a loaded model); default: one per core.
    #[arg(long, env = "LLMA_SENTIMENT_INSTANCES")]
    pub instances: Option<usize>,
    /// After SIGTERM/SIGINT, how long in-flight activities may run before they are cancelled.
    #[arg(long, env = "LLMA_SENTIMENT_GRACE_PERIOD_SECS", default_value_t = 30)]
    pub grace_period_secs: u64,
    /// How long the previous plugin version stays loaded for `plugin rollback`.
    #[arg(long, env = "LLMA_SENTIMENT_ROLLBACK_GRACE_SECS", default_value_t = 600)]
    pub rollback_grace_secs: u64,
    /// Serve the newest `*.wasm` of this directory and switch when a newer one
    /// appears (or on SIGHUP). Overrides --plugin.
    #[arg(long, env = "LLMA_SENTIMENT_PLUGIN_DIR")]
    pub plugin_dir: Option<std::path::PathBuf>,
    /// How often the plugin directory is polled.
    #[arg(long, env = "LLMA_SENTIMENT_PLUGIN_POLL_MS", default_value_t = 1000)]
    pub plugin_poll_ms: u64,
    /// Admin endpoint (plugin status/activate/rollback, /healthz), e.g.
    /// 127.0.0.1:9464. Off unless set.
    #[arg(long, env = "LLMA_SENTIMENT_ADMIN_ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,
}

/// Default activity slots per plugin instance.
pub const ACTIVITIES_PER_INSTANCE: usize = 4;

impl WorkerArgs {
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

    pub fn rollback_grace(&self) -> Duration {
        Duration::from_secs(self.rollback_grace_secs)
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
    }

    #[test]
    fn sink_retries_fit_in_one_activity_attempt() {
        let args = Wrapper::parse_from(["llma-sentiment"]);
        let worst = args.clickhouse.sink_config().max_request_duration();
        assert!(worst < crate::worker::START_TO_CLOSE, "{worst:?}");
    }

    #[derive(Parser)]
    struct WorkerWrapper {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn activity_slots_default_to_a_multiple_of_the_instances() {
        let args = WorkerWrapper::parse_from(["llma-sentiment", "--instances", "3"]);
        assert_eq!((args.worker.instances(), args.worker.concurrency()), (3, 3 * ACTIVITIES_PER_INSTANCE));
        let args = WorkerWrapper::parse_from(["llma-sentiment", "--instances", "2", "--max-concurrent-activities", "5"]);
        assert_eq!((args.worker.instances(), args.worker.concurrency()), (2, 5));
    }

    #[test]
    fn password_is_redacted_in_debug_output() {
        let args = Wrapper::parse_from(["llma-sentiment", "--clickhouse-password", "hunter2"]);
        let shown = format!("{:?} {:?}", args.clickhouse, args.clickhouse.sink_config());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(args.clickhouse.password.as_deref(), Some("hunter2"));
    }
}
