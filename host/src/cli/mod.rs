//! The `llma-sentiment` command line.

mod backfill;
mod local;
mod overall;
mod service;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use serde_json::Value;

use crate::config::{ClickHouseArgs, Config, Flags, LogFormat, Sources, TemporalArgs, WorkerArgs};

#[derive(Debug, Parser)]
#[command(name = "llma-sentiment", version, about = "Sentiment of LLM user messages, in a wasm sandbox")]
pub struct Cli {
    /// TOML config file (see `llma-sentiment config`); env vars and flags override it.
    #[arg(long, env = "LLMA_SENTIMENT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub plugin: PluginArgs,
    /// Log filter (tracing `EnvFilter` syntax); logs go to stderr [default: warn].
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// Log format [default: auto: json unless stderr is a terminal].
    #[arg(long, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct PluginArgs {
    /// Plugin component (.wasm); the embedded default when absent.
    #[arg(long, global = true)]
    pub plugin: Option<PathBuf>,
    /// Model bundle directory (model.onnx, tokenizer.json, config.json); the embedded default when absent.
    #[arg(long = "model", global = true)]
    pub model_dir: Option<PathBuf>,
    /// Where compiled components and the unpacked default model are cached.
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Compile the component on every start instead of using the cache.
    #[arg(long, global = true)]
    pub no_compile_cache: bool,
    /// Texts per classify call [default: 8].
    #[arg(long, global = true)]
    pub batch_size: Option<usize>,
    /// Keep the last N user messages of a generation [default: 50].
    #[arg(long, global = true)]
    pub max_messages: Option<u32>,
    /// Keep N characters of each message [default: 2000].
    #[arg(long, global = true)]
    pub max_chars: Option<u32>,
    /// How a longer message is cut [default: tail].
    #[arg(long, global = true, value_enum)]
    pub truncation: Option<crate::config::TruncationMode>,
    /// `head-tail`: characters kept from the start [default: 300].
    #[arg(long, global = true)]
    pub head_chars: Option<u32>,
    /// A polar label within this margin of neutral becomes neutral [default: 0, off].
    #[arg(long, global = true)]
    pub neutral_margin: Option<f64>,
    /// How message results make a generation's [default: worst].
    #[arg(long, global = true, value_enum)]
    pub aggregation: Option<crate::config::AggregationMode>,
    /// Which event a generation becomes [default: sentiment].
    #[arg(long, global = true, value_enum)]
    pub event_schema: Option<crate::config::EventSchema>,
    /// Write a neutral event for a generation without user messages.
    #[arg(long, global = true)]
    pub emit_empty: bool,
    /// Keep each classified text (as cut) in its message entry.
    #[arg(long, global = true)]
    pub store_text: bool,
    /// Per-message result cache shared by all tasks, MiB; 0 disables it [default: 64].
    #[arg(long, global = true)]
    pub result_cache_mb: Option<u64>,
}

impl PluginArgs {
    fn apply(&self, flags: &mut Flags) {
        let v = |x: &Option<PathBuf>| x.as_ref().map(|p| Value::from(p.display().to_string()));
        flags.set("plugin.path", v(&self.plugin));
        flags.set("plugin.model_dir", v(&self.model_dir));
        flags.set("plugin.cache_dir", v(&self.cache_dir));
        flags.set("plugin.compile_cache", self.no_compile_cache.then_some(Value::Bool(false)));
        flags.set("pipeline.batch_size", self.batch_size.map(Value::from));
        flags.set("pipeline.max_messages", self.max_messages.map(Value::from));
        flags.set("pipeline.max_chars", self.max_chars.map(Value::from));
        flags.set("pipeline.truncation", self.truncation.and_then(|v| serde_json::to_value(v).ok()));
        flags.set("pipeline.head_chars", self.head_chars.map(Value::from));
        flags.set("pipeline.neutral_margin", self.neutral_margin.map(Value::from));
        flags.set("pipeline.aggregation", self.aggregation.and_then(|v| serde_json::to_value(v).ok()));
        flags.set("pipeline.event_schema", self.event_schema.and_then(|v| serde_json::to_value(v).ok()));
        flags.set("pipeline.emit_empty", self.emit_empty.then_some(Value::Bool(true)));
        flags.set("pipeline.store_text", self.store_text.then_some(Value::Bool(true)));
        flags.set("pipeline.result_cache_mb", self.result_cache_mb.map(Value::from));
    }
}

impl Cli {
    /// The effective configuration: defaults < TOML file < environment < flags.
    pub fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut flags = Flags::default();
        self.plugin.apply(&mut flags);
        flags.set("log.filter", self.log.clone().map(Value::from));
        flags.set("log.format", self.log_format.and_then(|f| serde_json::to_value(f).ok()));
        match &self.command {
            Command::Migrate { clickhouse }
            | Command::Analyze { clickhouse, .. }
            | Command::Trace { clickhouse, .. }
            | Command::Session { clickhouse, .. } => clickhouse.apply(&mut flags),
            Command::Worker { temporal, clickhouse, worker, .. } | Command::Config { temporal, clickhouse, worker } => {
                temporal.apply(&mut flags);
                clickhouse.apply(&mut flags);
                worker.apply(&mut flags);
            }
            Command::Submit { temporal, .. } => temporal.apply(&mut flags),
            _ => {}
        }
        // `--config` already fell back to $LLMA_SENTIMENT_CONFIG through clap.
        crate::config::load(&Sources::from_process(self.config.clone(), flags.into_map()))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read an `$ai_input` JSON value on stdin; print the user messages kept.
    Extract,
    /// Classify each TEXT; print one JSON line per text.
    Classify {
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Read `$ai_generation` events (JSON lines) from FILE or stdin; print one
    /// `$ai_sentiment` event, skip record or error record per line.
    Analyze {
        /// Input file; `-` or absent for stdin.
        file: Option<PathBuf>,
        /// Where the `$ai_sentiment` events go: JSON lines on stdout, or
        /// straight into the ClickHouse events table (a summary is printed).
        #[arg(long, value_enum, default_value = "json")]
        output: AnalyzeOutput,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        /// `--output clickhouse`: rows per INSERT.
        #[arg(long, env = "LLMA_SENTIMENT_INSERT_BATCH_SIZE", default_value_t = 1000)]
        insert_batch_size: usize,
        /// `--output clickhouse`: write a partial batch once it is this old.
        #[arg(long, env = "LLMA_SENTIMENT_FLUSH_INTERVAL_SECS", default_value_t = 5)]
        flush_interval_secs: u64,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Read per-message scores (`[{"negative":..,"neutral":..,"positive":..}, ...]`) on
    /// stdin; print the overall result of the plugin's own aggregation.
    Aggregate {
        /// The aggregation rule [default: pipeline.aggregation]; the margin is `--neutral-margin`.
        #[arg(long, value_enum)]
        rule: Option<crate::config::AggregationMode>,
    },
    /// Sentiment of a trace: its stored events (either schema), the latest per
    /// generation, every message through the `mean` rule with the configured margin.
    Trace {
        trace_id: String,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Sentiment of a session (`$ai_session_id` / `$session_id`), computed like `trace`.
    Session {
        session_id: String,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Print the plugin's and model's info.
    Info,
    /// Create the ClickHouse events table if it is missing (idempotent).
    Migrate {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Run the Temporal worker: classify `$ai_generation` events, write `$ai_sentiment` events.
    Worker {
        #[command(flatten)]
        temporal: TemporalArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        /// Fault injection for tests: fail every first attempt after its insert.
        #[arg(long, hide = true, env = "LLMA_SENTIMENT_FAULT_FAIL_FIRST_ATTEMPT")]
        fault_fail_first_attempt: bool,
    },
    /// Print the effective configuration as TOML (the ClickHouse password redacted).
    Config {
        #[command(flatten)]
        temporal: TemporalArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Plugin versions: offline checks, and activation/rollback on a running worker.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Start one workflow per event (JSON lines from FILE or stdin), or one batch workflow.
    Submit {
        /// Input file; `-` or absent for stdin.
        file: Option<PathBuf>,
        #[command(flatten)]
        temporal: TemporalArgs,
        /// Start one workflow with all events (`{"events": [...]}`).
        #[arg(long)]
        batch: bool,
        /// Wait for the workflows and print their results.
        #[arg(long)]
        wait: bool,
        /// Workflow ids are PREFIX-<generation uuid>.
        #[arg(long, default_value = "llma-sentiment")]
        id_prefix: String,
        /// Workflows started (and awaited) at once.
        #[arg(long, default_value_t = 16)]
        parallelism: usize,
        /// Start workflows only for generations whose uuid is in this rollout
        /// (PostHog's rule: md5 of the uuid, first 8 hex digits, % 10000 / 100 < P).
        #[arg(long, default_value_t = 100.0, value_parser = percent)]
        rollout_percent: f64,
        /// Print `{"uuid":...,"start":true|false}` per event without contacting Temporal.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        progress: ProgressArgs,
    },
}

fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage in 0..=100")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    #[arg(long, value_enum, default_value = "json")]
    pub format: overall::ReadFormat,
    /// Only this team's events.
    #[arg(long)]
    pub team_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnalyzeOutput {
    Json,
    Clickhouse,
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
#[derive(Debug, Clone, Args)]
pub struct ProgressArgs {
    #[arg(long = "progress", value_enum, env = "LLMA_SENTIMENT_PROGRESS", default_value = "auto")]
    pub mode: crate::progress::ProgressMode,
    /// Plain progress: a line every N items.
    #[arg(long = "progress-every", default_value_t = 1000)]
    pub every: u64,
    /// Plain progress: a line at least every N seconds.
    #[arg(long = "progress-secs", default_value_t = 10)]
    pub secs: u64,
}

impl ProgressArgs {
    pub fn config(&self) -> crate::progress::ProgressConfig {
        crate::progress::ProgressConfig {
            mode: self.mode,
            every: self.every,
            interval: std::time::Duration::from_secs(self.secs),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Validate a plugin offline (compile, world, model load, self-test) and print its info.
    Check { file: PathBuf },
    /// Ask a running worker to validate and switch to FILE (a path on the worker's machine).
    Activate {
        file: PathBuf,
        /// Model bundle for the new version; the worker's current one when absent.
        #[arg(long = "with-model")]
        with_model: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Ask a running worker to switch back to its previous version.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a running worker's active and previous versions.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The worker's admin endpoint.
    #[arg(long = "admin-url", env = "LLMA_SENTIMENT_ADMIN_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
}

pub fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match &cli.command {
        Command::Extract => local::extract(&config),
        Command::Classify { texts } => local::classify(&config, texts),
        Command::Analyze { file, output, insert_batch_size, flush_interval_secs, progress, .. } => {
            let output = match output {
                AnalyzeOutput::Json => local::Output::Json,
                AnalyzeOutput::Clickhouse => local::Output::ClickHouse {
                    clickhouse: config.clickhouse.clone(),
                    batch_size: *insert_batch_size,
                    flush_interval: std::time::Duration::from_secs(*flush_interval_secs),
                },
            };
            local::analyze(&config, file.as_deref(), output, &progress.config())
        }
        Command::Info => local::info(&config),
        Command::Aggregate { rule } => overall::aggregate(&config, *rule),
        Command::Trace { trace_id, read, .. } => {
            overall::read(&config, crate::query::Scope::Trace(trace_id.clone()), read.team_id, read.format)
        }
        Command::Session { session_id, read, .. } => {
            overall::read(&config, crate::query::Scope::Session(session_id.clone()), read.team_id, read.format)
        }
        Command::Config { .. } => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Migrate { .. } => service::migrate(&config.clickhouse),
        Command::Plugin { action } => match action {
            PluginAction::Check { file } => service::plugin_check(&config, file),
            PluginAction::Activate { file, with_model, admin } => {
                let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
                let body = serde_json::json!({
                    "path": abs(file),
                    "model_dir": with_model.as_ref().map(abs),
                });
                service::plugin_admin(&admin.url, hyper::Method::POST, "/plugin/activate", Some(body))
            }
            PluginAction::Rollback { admin } => service::plugin_admin(&admin.url, hyper::Method::POST, "/plugin/rollback", None),
            PluginAction::Status { admin } => service::plugin_admin(&admin.url, hyper::Method::GET, "/plugin", None),
        },
        Command::Worker { fault_fail_first_attempt, .. } => service::worker(&config, *fault_fail_first_attempt),
        Command::Submit { file, batch, wait, id_prefix, parallelism, rollout_percent, dry_run, progress, .. } => {
            let options = crate::worker::SubmitOptions {
                task_queue: config.temporal.task_queue.clone(),
                batch: *batch,
                wait: *wait,
                id_prefix: id_prefix.clone(),
                parallelism: *parallelism,
                execution_timeout: config.workflow.execution_timeout(),
                rollout_percent: *rollout_percent,
            };
            if *dry_run {
                return service::submit_dry_run(file.as_deref(), &options);
            }
            service::submit(&config.temporal, file.as_deref(), options, &progress.config())
        }
    }
}
