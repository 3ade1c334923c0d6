//! The `llma-sentiment` command line.

mod backfill;
mod local;
mod overall;
mod serve;
mod service;
mod signing;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    AdminFlags, AnalyzeFlags, Config, ConfigFlags, FlagArgs, Flags, GlobalFlags, MigrateFlags, ScheduleFlags, ServeFlags, Sources,
    SubmitFlags, WorkerFlags,
};

#[derive(Debug, Parser)]
#[command(name = "llma-sentiment", version, about = "Sentiment of LLM user messages, in a wasm sandbox")]
pub struct Cli {
    /// TOML config file (see `llma-sentiment config`), else $LLMA_SENTIMENT_CONFIG; env vars and flags override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Plugin, model, pipeline and log flags (every subcommand).
    #[command(flatten)]
    pub global: FlagArgs<GlobalFlags>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The effective configuration: defaults < TOML file < environment < flags.
    pub fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        // `--config`, else $LLMA_SENTIMENT_CONFIG (read with the environment layer's env).
        crate::config::load(&Sources::from_process(self.config.clone(), self.flags().into_map()))
    }

    /// The flag layer: the flags given, of the groups this subcommand takes.
    pub fn flags(&self) -> Flags {
        let mut flags = Flags::default();
        self.global.apply(&mut flags);
        match &self.command {
            Command::Migrate { flags: f } | Command::Trace { flags: f, .. } | Command::Session { flags: f, .. } => f.apply(&mut flags),
            Command::Analyze { flags: f, .. } => f.apply(&mut flags),
            Command::Worker { flags: f } => f.apply(&mut flags),
            Command::Serve { flags: f } => f.apply(&mut flags),
            Command::Config { flags: f, .. } => f.apply(&mut flags),
            Command::Submit { flags: f, .. } => f.apply(&mut flags),
            Command::Schedule { flags: f } => f.apply(&mut flags),
            Command::Plugin { action } => match action {
                PluginAction::Activate { flags: f, .. } | PluginAction::Rollback { flags: f, .. } | PluginAction::Status { flags: f } => {
                    f.apply(&mut flags)
                }
                PluginAction::Check { .. }
                | PluginAction::Prepare { .. }
                | PluginAction::Keygen { .. }
                | PluginAction::Sign { .. }
                | PluginAction::Verify { .. } => {}
            },
            Command::Extract | Command::Classify { .. } | Command::Info | Command::Aggregate { .. } => {}
        }
        flags
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
        flags: FlagArgs<AnalyzeFlags>,
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
        flags: FlagArgs<MigrateFlags>,
    },
    /// Sentiment of a session (`$ai_session_id` / `$session_id`), computed like `trace`.
    Session {
        session_id: String,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        flags: FlagArgs<MigrateFlags>,
    },
    /// Print the plugin's and model's info.
    Info,
    /// Create the ClickHouse events table if it is missing (idempotent).
    Migrate {
        #[command(flatten)]
        flags: FlagArgs<MigrateFlags>,
    },
    /// Run the Temporal worker: classify `$ai_generation` events, write `$ai_sentiment` events.
    Worker {
        #[command(flatten)]
        flags: FlagArgs<WorkerFlags>,
    },
    /// Consume `$ai_generation` events from Kafka (PostHog's events JSON topic) in a consumer
    /// group and start a workflow per event or per batch, until SIGTERM/SIGINT.
    Schedule {
        #[command(flatten)]
        flags: FlagArgs<ScheduleFlags>,
    },
    /// Serve the Sentiment pages (traces ranked by intensity, a trace's
    /// generations, the trend) and their JSON API, read-only over the stored
    /// events, until SIGTERM/SIGINT; prints the address to open.
    Serve {
        #[command(flatten)]
        flags: FlagArgs<ServeFlags>,
    },
    /// Print the effective configuration as TOML (the ClickHouse password redacted).
    Config {
        /// Print the reference of every key instead (markdown: docs/configuration.md).
        #[arg(long)]
        reference: bool,
        #[command(flatten)]
        flags: FlagArgs<ConfigFlags>,
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
        flags: FlagArgs<SubmitFlags>,
        /// Start batch workflows (`{"events": [...]}`) instead of one per event.
        #[arg(long)]
        batch: bool,
        /// `--batch`: a workflow's input stays within this many bytes (Temporal
        /// refuses payloads over 2 MiB); more events start more workflows.
        #[arg(long, default_value_t = crate::worker::DEFAULT_BATCH_MAX_BYTES)]
        batch_max_bytes: usize,
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

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Validate a plugin offline (compile, world, model load, self-test) and print its info.
    Check {
        file: PathBuf,
        /// Also make the pre-initialised snapshot (as `plugin prepare`), self-tested.
        #[arg(long)]
        snapshot: bool,
    },
    /// Make the pre-initialised snapshot of a plugin (`--plugin`/FILE, else the
    /// embedded default) with its model ahead of time, so a worker on this
    /// machine starts from it; validates it like `check`.
    Prepare { file: Option<PathBuf> },
    /// Ask a running worker to validate and switch to FILE (a path on the worker's machine).
    Activate {
        file: PathBuf,
        /// Model bundle for the new version; the worker's current one when absent.
        /// Activate even when the version labels its canary texts otherwise.
        #[arg(long)]
        force: bool,
        #[arg(long = "with-model")]
        with_model: Option<PathBuf>,
        #[command(flatten)]
        flags: FlagArgs<AdminFlags>,
    },
    /// Ask a running worker to switch back to its previous version (a second
    /// rollback goes further back), or with --to to a version of its history.
    Rollback {
        /// A version of `plugin status`'s history: its label, plugin version or activation number.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        flags: FlagArgs<AdminFlags>,
    },
    /// Print a running worker's active and previous versions.
    Status {
        #[command(flatten)]
        flags: FlagArgs<AdminFlags>,
    },
    /// Make an Ed25519 key pair for signing plugins: the secret key (mode
    /// 0600) and the public key to list in plugin.trusted_keys. Never
    /// overwrites a file.
    Keygen {
        /// Where the secret key goes.
        #[arg(long = "secret", short = 's')]
        secret: PathBuf,
        /// Where the public key goes.
        #[arg(long = "public", short = 'p')]
        public: PathBuf,
    },
    /// Embed a signature by KEY in the component FILE, written to OUT
    /// (signatures already there stay: sign with the old and the new key
    /// while rotating keys).
    Sign {
        /// The secret key (`plugin keygen`).
        #[arg(long, short = 'k')]
        key: PathBuf,
        file: PathBuf,
        /// The signed component (may be FILE itself).
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Check that FILE is a component signed by one of the public keys
    /// (each --key; plugin.trusted_keys when none is given); exits non-zero
    /// with the reason otherwise.
    Verify {
        /// A trusted public key; repeat for several.
        #[arg(long, short = 'k')]
        key: Vec<PathBuf>,
        file: PathBuf,
    },
}

pub fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match &cli.command {
        Command::Extract => local::extract(&config),
        Command::Classify { texts } => local::classify(&config, texts),
        Command::Analyze { file, output, .. } => {
            let output = match output {
                AnalyzeOutput::Json => local::Output::Json,
                AnalyzeOutput::Clickhouse => local::Output::ClickHouse {
                    clickhouse: config.clickhouse.clone(),
                    batch_size: config.backfill.insert_batch_size,
                    flush_interval: config.backfill.flush_interval(),
                },
            };
            local::analyze(&config, file.as_deref(), output, &config.progress.config())
        }
        Command::Info => local::info(&config),
        Command::Aggregate { rule } => overall::aggregate(&config, *rule),
        Command::Trace { trace_id, read, .. } => {
            overall::read(&config, crate::query::Scope::Trace(trace_id.clone()), read.team_id, read.format)
        }
        Command::Session { session_id, read, .. } => {
            overall::read(&config, crate::query::Scope::Session(session_id.clone()), read.team_id, read.format)
        }
        Command::Config { reference: true, .. } => {
            print!("{}", crate::config::reference());
            Ok(())
        }
        Command::Config { .. } => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Migrate { .. } => service::migrate(&config.clickhouse),
        Command::Plugin { action } => match action {
            PluginAction::Check { file, snapshot } => service::plugin_check(&config, Some(file.as_path()), *snapshot),
            PluginAction::Prepare { file } => service::plugin_check(&config, file.as_deref(), true),
            PluginAction::Activate { file, with_model, force, .. } => {
                let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
                let body = serde_json::json!({
                    "path": abs(file),
                    "model_dir": with_model.as_ref().map(abs),
                    "force": force,
                });
                service::plugin_admin(&config, &config.admin.url, hyper::Method::POST, "/plugin/activate", Some(body))
            }
            PluginAction::Rollback { to, .. } => {
                let body = to.as_ref().map(|to| serde_json::json!({ "to": to }));
                service::plugin_admin(&config, &config.admin.url, hyper::Method::POST, "/plugin/rollback", body)
            }
            PluginAction::Status { .. } => service::plugin_admin(&config, &config.admin.url, hyper::Method::GET, "/plugin", None),
            PluginAction::Keygen { secret, public } => signing::keygen(secret, public),
            PluginAction::Sign { key, file, output } => signing::sign(key, file, output),
            PluginAction::Verify { key, file } => signing::verify(&config, key, file),
        },
        Command::Worker { .. } => service::worker(&config),
        Command::Schedule { .. } => service::schedule(&config),
        Command::Serve { .. } => serve::serve(&config),
        Command::Submit { file, batch, batch_max_bytes, wait, id_prefix, parallelism, rollout_percent, dry_run, .. } => {
            let options = crate::worker::SubmitOptions {
                task_queue: config.temporal.task_queue.clone(),
                batch: *batch,
                batch_max_bytes: *batch_max_bytes,
                wait: *wait,
                id_prefix: id_prefix.clone(),
                parallelism: *parallelism,
                execution_timeout: config.workflow.execution_timeout(),
                rollout_percent: *rollout_percent,
            };
            if *dry_run {
                return service::submit_dry_run(file.as_deref(), &options);
            }
            service::submit(&config.temporal, file.as_deref(), options, &config.progress.config())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogFormat, Validation, KEYS};

    fn config(args: &[&str]) -> Result<Config, crate::config::ConfigError> {
        let cli = Cli::try_parse_from(args).unwrap();
        crate::config::load(&Sources { flags: cli.flags().into_map(), ..Default::default() })
    }

    #[test]
    fn every_flag_is_built_from_the_keys_table_and_sets_its_key() {
        let mut longs: Vec<&str> = KEYS.iter().filter_map(|k| k.flag.map(|f| f.long)).collect();
        let n = longs.len();
        longs.sort();
        longs.dedup();
        assert_eq!(longs.len(), n, "a flag names two keys");
        let c = config(&[
            "llma-sentiment", "--no-compile-cache", "--max-chars", "77", "--log-format", "json", "config", "--task-queue", "q",
            "--clickhouse-validation", "off", "--plugin-poll-ms", "60", "--insert-batch-size", "9", "--progress", "plain",
            "--admin-url", "http://h:1",
        ])
        .unwrap();
        assert!(!c.plugin.compile_cache);
        assert_eq!(c.pipeline.max_chars, 77);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.temporal.task_queue, "q");
        assert_eq!(c.clickhouse.validation, Validation::Off);
        assert_eq!(c.plugin.poll_ms, 60);
        assert_eq!(c.backfill.insert_batch_size, 9);
        assert_eq!(c.progress.mode, crate::progress::ProgressMode::Plain);
        assert_eq!(c.admin.url, "http://h:1");
        // Global flags work after the subcommand too; a flag of another
        // subcommand is refused by clap.
        assert_eq!(config(&["llma-sentiment", "info", "--max-chars", "5"]).unwrap().pipeline.max_chars, 5);
        assert!(Cli::try_parse_from(["llma-sentiment", "info", "--task-queue", "q"]).is_err());
        // A bad value is the config's error, naming the key and the flag layer.
        let e = config(&["llma-sentiment", "--max-chars", "many", "info"]).unwrap_err().to_string();
        assert!(e.contains("pipeline.max_chars") && e.contains("flag"), "{e}");
    }
}
