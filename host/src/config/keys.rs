//! Every key of the typed [`Config`](super::Config), once: its path, the
//! older environment names it also answers to, its command-line flag, the
//! range it must stay in, and its help text. The model gives each key its
//! type and default; from this table come the environment layer, the flags
//! (`clap` arguments built from it) and the range checks, and tests hold
//! it, the model and the key reference (docs/configuration.md) to each other.

/// Every environment variable starts with this; a key `section.name` is
/// read from `LLMA_SENTIMENT_SECTION_NAME`.
pub const ENV_PREFIX: &str = "LLMA_SENTIMENT_";

/// Which subcommands take a key's flag (see `cli`); `Global` ones work with
/// every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Global,
    Temporal,
    ClickHouse,
    Worker,
    /// `analyze --output clickhouse`.
    Backfill,
    /// `analyze` and `submit`.
    Progress,
    /// The admin client (`plugin activate|rollback|status`).
    Admin,
    /// The shared result cache: `analyze` and the worker.
    Cache,
    /// `schedule`: the Kafka consumer that starts workflows.
    Schedule,
    /// `serve`: the Sentiment pages.
    Serve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--flag VALUE`.
    Value,
    /// `--flag` alone sets the key to `false` (`--no-compile-cache`).
    SetsFalse,
    /// `--flag` alone sets the key to `true` (`--emit-empty`).
    SetsTrue,
}

#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub group: Group,
    pub long: &'static str,
    pub kind: FlagKind,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `section.name`, as in the TOML file.
    pub path: &'static str,
    /// Older environment names, tried after the canonical one, in order.
    pub aliases: &'static [&'static str],
    pub flag: Option<Flag>,
    /// Inclusive bounds of a numeric key, checked after loading: durations
    /// are bounded so that no deadline arithmetic can overflow.
    pub range: Option<(u64, u64)>,
    pub help: &'static str,
    /// Only in builds with the `fault-injection` feature (tests); not in the
    /// key reference (docs/configuration.md).
    pub test_only: bool,
    /// A list of paths; in the environment separated by `:` like `$PATH`.
    pub paths: bool,
}

impl Key {
    const fn new(path: &'static str, help: &'static str) -> Key {
        Key { path, aliases: &[], flag: None, range: None, help, test_only: false, paths: false }
    }

    const fn alias(self, aliases: &'static [&'static str]) -> Key {
        Key { aliases, ..self }
    }

    const fn flag(self, group: Group, long: &'static str) -> Key {
        Key { flag: Some(Flag { group, long, kind: FlagKind::Value }), ..self }
    }

    const fn switch_off(self, group: Group, long: &'static str) -> Key {
        Key { flag: Some(Flag { group, long, kind: FlagKind::SetsFalse }), ..self }
    }

    const fn path_list(self) -> Key {
        Key { paths: true, ..self }
    }

    const fn switch_on(self, group: Group, long: &'static str) -> Key {
        Key { flag: Some(Flag { group, long, kind: FlagKind::SetsTrue }), ..self }
    }

    const fn range(self, min: u64, max: u64) -> Key {
        Key { range: Some((min, max)), ..self }
    }

    /// `LLMA_SENTIMENT_` + the path in upper case, dots as underscores.
    pub fn env(&self) -> String {
        format!("{ENV_PREFIX}{}", self.path.replace('.', "_").to_ascii_uppercase())
    }

    /// The section and the field.
    pub fn split(&self) -> (&'static str, &'static str) {
        self.path.split_once('.').expect("key paths are section.name")
    }
}

const YEAR_SECS: u64 = 365 * 24 * 3600;
const YEAR_MS: u64 = YEAR_SECS * 1000;
const ANY: u64 = u64::MAX;

use Group::*;

/// Every key of [`Config`](super::Config) (a test checks the two agree).
pub const KEYS: &[Key] = &[
    Key::new("log.filter", "Log filter (tracing `EnvFilter` syntax); logs go to stderr.").alias(&["LLMA_SENTIMENT_LOG"]).flag(Global, "log"),
    Key::new("log.format", "Log format: auto (json unless stderr is a terminal), json or pretty.").flag(Global, "log-format"),
    Key::new("temporal.address", "Temporal frontend, host:port.").alias(&["TEMPORAL_ADDRESS"]).flag(Temporal, "temporal-address"),
    Key::new("temporal.namespace", "Temporal namespace.").alias(&["TEMPORAL_NAMESPACE"]).flag(Temporal, "temporal-namespace"),
    Key::new("temporal.task_queue", "Task queue (production: llm-analytics-task-queue).")
        .alias(&["LLMA_SENTIMENT_TASK_QUEUE"])
        .flag(Temporal, "task-queue"),
    Key::new("temporal.tls", "Connect over TLS; when unset, on as soon as a temporal.tls_* key or temporal.api_key is set (or the address is https://).")
        .alias(&["TEMPORAL_TLS"])
        .switch_on(Temporal, "temporal-tls"),
    Key::new("temporal.tls_ca", "CA certificate file (PEM) the frontend's certificate must chain to; the system roots when unset.")
        .alias(&["TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_CA"])
        .flag(Temporal, "temporal-tls-ca"),
    Key::new("temporal.tls_cert", "Client certificate file (PEM) for mutual TLS, with temporal.tls_key.")
        .alias(&["TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CERT"])
        .flag(Temporal, "temporal-tls-cert"),
    Key::new("temporal.tls_key", "Private key file (PEM) of temporal.tls_cert.")
        .alias(&["TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_KEY"])
        .flag(Temporal, "temporal-tls-key"),
    Key::new("temporal.tls_server_name", "The name the frontend's certificate is checked against (and the :authority), when not the address's host.")
        .alias(&["TEMPORAL_TLS_SERVER_NAME"])
        .flag(Temporal, "temporal-tls-server-name"),
    Key::new("temporal.api_key", "API key (Temporal Cloud), sent as a bearer token over TLS; never logged nor printed; no flag (flags show in `ps`).")
        .alias(&["TEMPORAL_API_KEY"]),
    Key::new("workflow.execution_timeout_secs", "Execution timeout `submit` sets.").range(1, YEAR_SECS),
    Key::new("workflow.start_to_close_secs", "One activity attempt.").range(1, YEAR_SECS),
    Key::new("workflow.schedule_to_close_secs", "All activity attempts.").range(1, YEAR_SECS),
    Key::new("workflow.heartbeat_timeout_secs", "Activity heartbeat timeout.").range(1, YEAR_SECS),
    Key::new("workflow.max_attempts", "Activity attempts.").range(1, u32::MAX as u64),
    Key::new("workflow.retry_initial_interval_secs", "First retry backoff.").range(1, YEAR_SECS),
    Key::new("workflow.retry_max_interval_secs", "Longest retry backoff.").range(1, YEAR_SECS),
    Key::new("clickhouse.url", "ClickHouse HTTP interface (no credentials in it).").alias(&["CLICKHOUSE_URL"]).flag(ClickHouse, "clickhouse-url"),
    Key::new("clickhouse.user", "ClickHouse user.").alias(&["CLICKHOUSE_USER"]).flag(ClickHouse, "clickhouse-user"),
    Key::new("clickhouse.password", "Never logged nor printed (prefer the environment: flags show in `ps`).")
        .alias(&["CLICKHOUSE_PASSWORD"])
        .flag(ClickHouse, "clickhouse-password"),
    Key::new("clickhouse.database", "ClickHouse database.").alias(&["CLICKHOUSE_DATABASE"]).flag(ClickHouse, "clickhouse-database"),
    Key::new("clickhouse.table", "Events table.").alias(&["LLMA_SENTIMENT_TABLE"]).flag(ClickHouse, "clickhouse-table"),
    Key::new("clickhouse.validation", "The client's schema validation of reads: auto (off for servers too old to support it), on or off. Inserts are always checked against the table's column types.")
        .flag(ClickHouse, "clickhouse-validation"),
    Key::new("clickhouse.tls_ca", "With an https:// URL: CA certificate file (PEM) the server's certificate must chain to; the system roots when unset.")
        .flag(ClickHouse, "clickhouse-tls-ca"),
    Key::new("clickhouse.tls_cert", "With an https:// URL: client certificate file (PEM), with clickhouse.tls_key.").flag(ClickHouse, "clickhouse-tls-cert"),
    Key::new("clickhouse.tls_key", "Private key file (PEM) of clickhouse.tls_cert.").flag(ClickHouse, "clickhouse-tls-key"),
    Key::new("plugin.path", "Plugin component (.wasm); the embedded default when unset.").alias(&["LLMA_SENTIMENT_PLUGIN"]).flag(Global, "plugin"),
    Key::new("plugin.dir", "Serve the newest `*.wasm` of this directory and switch when a newer one appears (or on SIGHUP). Overrides --plugin.")
        .flag(Worker, "plugin-dir"),
    Key::new("plugin.model_dir", "Model bundle directory (model.onnx, tokenizer.json, config.json); the embedded default when unset.")
        .alias(&["LLMA_SENTIMENT_MODEL_DIR", "POSTHOG_SENTIMENT_MODEL_CACHE"])
        .flag(Global, "model"),
    Key::new("plugin.cache_dir", "Where compiled components and the unpacked default model are cached; the user cache dir when unset.")
        .alias(&["LLMA_SENTIMENT_CACHE_DIR"])
        .flag(Global, "cache-dir"),
    Key::new("plugin.compile_cache", "Cache compiled components on disk; --no-compile-cache compiles on every start.")
        .switch_off(Global, "no-compile-cache"),
    Key::new(
        "plugin.cache_budget_mb",
        "Disk the compiled components and snapshots may take, MiB; the least recently used go first (a RoBERTa-base snapshot takes ~570).",
    )
    .flag(Global, "cache-budget-mb")
    .range(0, 1 << 30),
    Key::new("plugin.poll_ms", "How often the plugin directory is polled, ms.").flag(Worker, "plugin-poll-ms").range(0, YEAR_MS),
    Key::new("plugin.rollback_grace_secs", "How long the previous plugin version stays loaded for `plugin rollback`.")
        .alias(&["LLMA_SENTIMENT_ROLLBACK_GRACE_SECS"])
        .flag(Worker, "rollback-grace-secs")
        .range(0, YEAR_SECS),
    Key::new(
        "plugin.activation_nice",
        "Worker: nice steps below the serving threads at which an activation compiles, snapshots and self-tests a new version, so tasks in flight keep the cores (0: at their priority).",
    )
    .range(0, 19),
    Key::new(
        "plugin.snapshots",
        "Worker: use-existing (instances start from a snapshot `plugin prepare` made, else load the model), create (make one at start and activation: minutes per plugin and model on small machines) or off.",
    ),
    Key::new(
        "plugin.trusted_keys",
        "Public key files (`plugin keygen`); when set, every plugin activated from a file (start, plugin.dir, the admin endpoint) must carry a valid signature by one of them (`:`-separated in the environment). The embedded default is trusted as built in.",
    )
    .path_list(),
    Key::new(
        "plugin.force_canaries",
        "Start even when the plugin labels its bundle's canary texts (canary.json) otherwise: the start-time form of `plugin activate --force`; the disagreeing texts are logged as a warning.",
    )
    .switch_on(Worker, "force-canaries"),
    Key::new("pipeline.max_messages", "Keep the last N user messages of a generation.")
        .alias(&["LLMA_SENTIMENT_MAX_MESSAGES"])
        .flag(Global, "max-messages")
        .range(1, u32::MAX as u64),
    Key::new("pipeline.max_chars", "Keep the last N characters of each message.")
        .alias(&["LLMA_SENTIMENT_MAX_CHARS"])
        .flag(Global, "max-chars")
        .range(1, u32::MAX as u64),
    Key::new("pipeline.truncation", "How a message longer than max_chars is cut: tail (the seed: its last max_chars characters) or head-tail (PostHog 2026: head_chars + \"\\n...\\n\" + the rest from its end).")
        .flag(Global, "truncation"),
    Key::new("pipeline.head_chars", "head-tail: characters kept from the start (0: tail only).").flag(Global, "head-chars").range(0, u32::MAX as u64),
    Key::new("pipeline.neutral_margin", "A positive or negative label within this margin of neutral becomes neutral (PostHog: 0.15); 0 is off.")
        .flag(Global, "neutral-margin"),
    Key::new("pipeline.aggregation", "How message results make a generation's: worst (the seed) or mean (PostHog 2026).").flag(Global, "aggregation"),
    Key::new("pipeline.event_schema", "Which event a generation becomes: sentiment ($ai_sentiment, the seed) or evaluation ($ai_evaluation, PostHog 2026).")
        .flag(Global, "event-schema"),
    Key::new("pipeline.evaluation_id", "$ai_evaluation_id of evaluation events."),
    Key::new("pipeline.evaluation_name", "$ai_evaluation_name of evaluation events."),
    Key::new("pipeline.emit_empty", "Write a neutral event (score 0, no messages) for a generation without user messages instead of skipping it.")
        .switch_on(Global, "emit-empty"),
    Key::new("pipeline.store_text", "Keep each classified text (as cut) in its message entry; off: events hold no user text.")
        .switch_on(Global, "store-text"),
    Key::new("pipeline.batch_size", "Texts per classify call (capped by the plugin's own limit).")
        .alias(&["LLMA_SENTIMENT_BATCH_SIZE"])
        .flag(Global, "batch-size")
        .range(1, ANY),
    Key::new("pipeline.result_cache_mb", "Per-message result cache shared by all tasks, MiB; 0 disables it.")
        .alias(&["LLMA_SENTIMENT_RESULT_CACHE_MB"])
        .flag(Global, "result-cache-mb")
        .range(0, 1 << 30),
    Key::new("cache.redis_url", "Shared result cache (L2 behind the in-process one), redis://[user:password@]host:port[/db]; off when unset; never logged with its credentials (prefer $REDIS_URL when it holds a password: flags show in `ps`).")
        .alias(&["REDIS_URL"])
        .flag(Cache, "redis-url"),
    Key::new("cache.redis_ttl_secs", "How long Redis keeps a result.").range(1, YEAR_SECS),
    Key::new("cache.redis_timeout_ms", "Per Redis call; a slower answer counts as an error and the lookup goes on without it, ms.").range(1, YEAR_MS),
    Key::new("cache.redis_tls_ca", "With a rediss:// URL: CA certificate file (PEM) the server's certificate must chain to; the system roots when unset.")
        .flag(Cache, "redis-tls-ca"),
    Key::new("cache.redis_tls_cert", "With a rediss:// URL: client certificate file (PEM), with cache.redis_tls_key.").flag(Cache, "redis-tls-cert"),
    Key::new("cache.redis_tls_key", "Private key file (PEM) of cache.redis_tls_cert.").flag(Cache, "redis-tls-key"),
    Key::new("limits.call_deadline_base_ms", "Wall-clock allowance of every plugin call, ms.").range(1, YEAR_MS),
    Key::new("limits.call_deadline_per_text_ms", "Extra allowance per text of a classify batch, ms.").range(0, YEAR_MS),
    Key::new("limits.load_deadline_ms", "Wall-clock allowance of the model load, ms.").range(1, YEAR_MS),
    Key::new("limits.fuel_base", "Fuel of every plugin call (fuel metering).").range(1, ANY),
    Key::new("limits.fuel_per_token", "Extra fuel per token of the model's longest text, per text (fuel metering).").range(0, ANY),
    Key::new("limits.load_fuel", "Fuel of the model load (fuel metering).").range(1, ANY),
    Key::new(
        "limits.metering",
        "What the compiled plugin checks to stop a call: epoch (the deadline and cancellation every 10 ms), fuel (the same at each fuel yield, plus a deterministic fuel budget: costs more) or fuel-and-epoch.",
    ),
    Key::new("limits.memory_bytes", "Linear memory cap per plugin instance, bytes (all its memories together).").range(1, ANY),
    Key::new("worker.max_concurrent_activities", "Activities run at once; they wait for a plugin instance when all are busy (4 per instance when unset).")
        .alias(&["LLMA_SENTIMENT_MAX_CONCURRENT_ACTIVITIES"])
        .flag(Worker, "max-concurrent-activities")
        .range(1, ANY),
    Key::new("worker.instances", "Warm plugin instances, each with its model loaded (when unset: one per core, but no more than fit in the memory budget).")
        .alias(&["LLMA_SENTIMENT_INSTANCES"])
        .flag(Worker, "instances")
        .range(1, ANY),
    Key::new("worker.memory_budget_mb", "Memory the worker may take, MiB: unless worker.instances is set, no more plugin instances run than fit, at what one measured at start costs (the cgroup's memory.max when unset; no budget without either).")
        .range(1, ANY),
    Key::new("worker.grace_period_secs", "After SIGTERM/SIGINT, how long in-flight activities may run before they are cancelled.")
        .alias(&["LLMA_SENTIMENT_GRACE_PERIOD_SECS"])
        .flag(Worker, "grace-period-secs")
        .range(0, YEAR_SECS),
    Key::new("worker.admin_addr", "Admin endpoint (plugin status/activate/rollback, /healthz), e.g. 127.0.0.1:9464; off when unset; loopback only unless worker.admin_allow_remote (and then with TLS); needs worker.admin_token or worker.admin_token_file.")
        .alias(&["LLMA_SENTIMENT_ADMIN_ADDR"])
        .flag(Worker, "admin-addr"),
    Key::new("worker.admin_allow_remote", "Let the admin endpoint bind a non-loopback address; it then also needs worker.admin_tls_cert and worker.admin_tls_key."),
    Key::new("worker.admin_tls_cert", "Certificate file (PEM, chain) the admin endpoint serves https with, with worker.admin_tls_key; required on a non-loopback address.")
        .flag(Worker, "admin-tls-cert"),
    Key::new("worker.admin_tls_key", "Private key file (PEM) of worker.admin_tls_cert.").flag(Worker, "admin-tls-key"),
    Key::new("worker.admin_token", "The admin endpoint's bearer token (16+ characters); never logged nor printed; the CLI's `plugin` commands send it.")
        .alias(&["LLMA_SENTIMENT_ADMIN_TOKEN"]),
    Key::new("worker.admin_token_file", "A file holding the admin token, used when worker.admin_token is unset.")
        .alias(&["LLMA_SENTIMENT_ADMIN_TOKEN_FILE"]),
    Key::new("worker.admin_allowed_dirs", "Directories, besides plugin.dir, the admin endpoint activates plugins and models from (`:`-separated in the environment).")
        .path_list(),
    Key::new("worker.metrics_addr", "Metrics and health endpoint (/metrics, /healthz, /readyz), e.g. 127.0.0.1:9465; off when unset.")
        .alias(&["LLMA_SENTIMENT_METRICS_ADDR"])
        .flag(Worker, "metrics-addr"),
    Key::new("worker.identity", "The identity Temporal shows for this worker (llma-sentiment@HOST:PID when unset).").flag(Worker, "identity"),
    Key::new("worker.exit_when_stuck", "Exit (status 70) when the watchdog finds the worker stuck, so that a supervisor restarts it; false: only /readyz and /metrics say so."),
    Key::new("backfill.insert_batch_size", "`analyze --output clickhouse`: rows per INSERT.")
        .alias(&["LLMA_SENTIMENT_INSERT_BATCH_SIZE"])
        .flag(Backfill, "insert-batch-size")
        .range(1, ANY),
    Key::new("backfill.flush_interval_secs", "`analyze --output clickhouse`: write a partial batch once it is this old.")
        .alias(&["LLMA_SENTIMENT_FLUSH_INTERVAL_SECS"])
        .flag(Backfill, "flush-interval-secs")
        .range(0, YEAR_SECS),
    Key::new("progress.mode", "Progress on stderr: auto (a bar on a terminal, plain lines otherwise), bar, plain or off.")
        .alias(&["LLMA_SENTIMENT_PROGRESS"])
        .flag(Progress, "progress"),
    Key::new("progress.every", "Plain progress: a line every N items (0: only by time).").flag(Progress, "progress-every"),
    Key::new("progress.secs", "Plain progress: a line at least every N seconds.").flag(Progress, "progress-secs").range(0, YEAR_SECS),
    Key::new("admin.url", "The worker's admin endpoint, for `plugin activate|rollback|status` (https:// when it serves TLS).").flag(Admin, "admin-url"),
    Key::new("admin.tls_ca", "With an https:// admin.url: CA certificate file (PEM) the endpoint's certificate must chain to; the system roots when unset.")
        .flag(Admin, "admin-tls-ca"),
    Key::new("schedule.brokers", "`schedule`: Kafka bootstrap brokers, host:port[,host:port...].")
        .alias(&["KAFKA_HOSTS"])
        .flag(Schedule, "brokers"),
    Key::new("schedule.topic", "`schedule`: the events JSON topic (PostHog's ClickHouse events format).").flag(Schedule, "topic"),
    Key::new("schedule.group", "`schedule`: the consumer group; schedulers of one group share the topic's partitions.").flag(Schedule, "group"),
    Key::new("schedule.teams", "`schedule`: team ids whose events start workflows, comma-separated; empty: every team.").flag(Schedule, "teams"),
    Key::new("schedule.rollout_percent", "`schedule`: start workflows only for generations in this rollout (PostHog's rule: md5 of the uuid, first 8 hex digits, % 10000 / 100 < P), 0..=100.")
        .flag(Schedule, "rollout-percent"),
    Key::new("schedule.batch_events", "`schedule`: events per workflow; 1 starts one workflow per event (`event_data`), more start `{\"events\": [...]}` batches of one partition.")
        .flag(Schedule, "batch-events")
        .range(1, 10_000),
    Key::new("schedule.batch_age_ms", "`schedule`: a batch that is not full starts once its first event waited this long, ms.")
        .flag(Schedule, "batch-age-ms")
        .range(1, YEAR_MS),
    Key::new("schedule.batch_max_bytes", "`schedule`: a batch's workflow input stays within this many bytes (an event larger than that goes alone).")
        .range(1024, 2 * 1024 * 1024),
    Key::new("schedule.max_in_flight", "`schedule`: workflow starts not yet acknowledged by Temporal; at the bound the consumer pauses its partitions.")
        .flag(Schedule, "max-in-flight")
        .range(1, 100_000),
    Key::new("schedule.id_prefix", "`schedule`: workflow ids are PREFIX-<uuid>-ingestion (one event) or PREFIX-<topic>-<partition>-<first>-<last>-ingestion (a batch)."),
    Key::new("schedule.metrics_addr", "`schedule`: metrics and health endpoint (/metrics, /healthz, /readyz) of the scheduler; off when unset.")
        .flag(Schedule, "schedule-metrics-addr"),
    Key::new("schedule.shutdown_secs", "`schedule`: after SIGTERM/SIGINT, how long open batches, in-flight starts and the last commit may take; the rest is re-read by the next owner.")
        .range(1, 3600),
    Key::new("schedule.commit_interval_ms", "`schedule`: how often acknowledged offsets are committed, ms.").range(10, 3_600_000),
    Key::new("schedule.session_timeout_ms", "`schedule`: librdkafka `session.timeout.ms`: how long a scheduler that died unannounced keeps its partitions before the group hands them over, ms.")
        .range(1000, 3_600_000),
    Key::new("kafka.security_protocol", "librdkafka `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl (TLS through the system's OpenSSL; the brokers' host names are always checked).").alias(&["KAFKA_SECURITY_PROTOCOL"]),
    Key::new("kafka.sasl_mechanism", "librdkafka `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with sasl_*.").alias(&["KAFKA_SASL_MECHANISM"]),
    Key::new("kafka.sasl_username", "librdkafka `sasl.username`.").alias(&["KAFKA_SASL_USER"]),
    Key::new("kafka.sasl_password", "librdkafka `sasl.password`; never logged nor printed (prefer the environment).").alias(&["KAFKA_SASL_PASSWORD"]),
    Key::new("kafka.tls_ca", "With ssl or sasl_ssl: CA certificate file (PEM) the brokers' certificates must chain to; the system's CA store when unset."),
    Key::new("kafka.tls_cert", "With ssl or sasl_ssl: client certificate file (PEM) for mutual TLS, with kafka.tls_key."),
    Key::new("kafka.tls_key", "Private key file (PEM, unencrypted) of kafka.tls_cert."),
    Key::new("serve.addr", "`serve`: where the Sentiment pages listen; loopback only unless serve.allow_remote (and then with TLS and a token).")
        .flag(Serve, "addr"),
    Key::new("serve.allow_remote", "`serve`: let the pages bind a non-loopback address; they then also need serve.tls_cert, serve.tls_key and a token."),
    Key::new("serve.tls_cert", "`serve`: certificate file (PEM, chain) the pages are served over https with, with serve.tls_key; required on a non-loopback address.")
        .flag(Serve, "tls-cert"),
    Key::new("serve.tls_key", "`serve`: private key file (PEM) of serve.tls_cert.").flag(Serve, "tls-key"),
    Key::new("serve.token", "`serve`: bearer token (16+ characters) every request must carry (or the cookie /login sets); optional on loopback, required otherwise; never logged nor printed; no flag (flags show in `ps`)."),
    Key::new("serve.token_file", "`serve`: a file holding the token, used when serve.token is unset.").flag(Serve, "token-file"),
    Key::new("serve.classify", "`serve`: answer POST /api/traces/{id}/classify and /api/classify, and show the trace page's Classify now button (classify the trace's generations without a sentiment event now, and write their events); loads the plugin and needs a ClickHouse user that may insert.")
        .switch_on(Serve, "classify"),
    Key::new("serve.classify_per_minute", "`serve.classify`: classifications a client may ask for per minute (PostHog: 60).").range(1, 1_000_000),
    Key::new("serve.classify_per_hour", "`serve.classify`: classifications a client may ask for per hour (PostHog: 600).").range(1, 1_000_000),
    Key::new("serve.window_days", "`serve`: the pages' default time window, days (a request's `days` overrides it).")
        .flag(Serve, "window-days")
        .range(1, 3650),
    #[cfg(feature = "fault-injection")]
    Key { test_only: true, ..Key::new("faults.fail_first_attempt_after_insert", "Fail every first activity attempt after its insert.") }
        .alias(&["LLMA_SENTIMENT_FAULT_FAIL_FIRST_ATTEMPT"]),
];

/// The key at `path`.
pub fn key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}
