//! The `llma-sentiment` command line.

mod local;
mod service;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ClickHouseArgs, TemporalArgs, WorkerArgs};
use crate::source::PluginSource;

#[derive(Debug, Parser)]
#[command(name = "llma-sentiment", version, about = "Sentiment of LLM user messages, in a wasm sandbox")]
pub struct Cli {
    #[command(flatten)]
    pub plugin: PluginArgs,
    /// Log filter (tracing `EnvFilter` syntax); logs go to stderr.
    #[arg(long, env = "LLMA_SENTIMENT_LOG", default_value = "warn", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct PluginArgs {
    /// Plugin component (.wasm); the embedded default when absent.
    #[arg(long, env = "LLMA_SENTIMENT_PLUGIN", global = true)]
    pub plugin: Option<PathBuf>,
    /// Model bundle directory (model.onnx, tokenizer.json, config.json); the embedded default when absent.
    #[arg(long = "model", env = "LLMA_SENTIMENT_MODEL_DIR", global = true)]
    pub model_dir: Option<PathBuf>,
    /// Where compiled components and the unpacked default model are cached.
    #[arg(long, env = "LLMA_SENTIMENT_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Compile the component on every start instead of using the cache.
    #[arg(long, global = true)]
    pub no_compile_cache: bool,
    /// Texts per classify call.
    #[arg(long, env = "LLMA_SENTIMENT_BATCH_SIZE", default_value_t = 8, global = true)]
    pub batch_size: usize,
    /// Keep the last N user messages of a generation.
    #[arg(long, env = "LLMA_SENTIMENT_MAX_MESSAGES", default_value_t = 50, global = true)]
    pub max_messages: u32,
    /// Keep the last N characters of each message.
    #[arg(long, env = "LLMA_SENTIMENT_MAX_CHARS", default_value_t = 2000, global = true)]
    pub max_chars: u32,
    /// Per-message result cache shared by all tasks, MiB (0 disables it).
    #[arg(long, env = "LLMA_SENTIMENT_RESULT_CACHE_MB", default_value_t = 64, global = true)]
    pub result_cache_mb: u64,
}

impl PluginArgs {
    pub fn source(&self) -> PluginSource {
        PluginSource {
            plugin: self.plugin.clone(),
            model_dir: self.model_dir.clone(),
            cache_dir: self.cache_dir.clone(),
            no_compile_cache: self.no_compile_cache,
        }
    }

    pub fn pipeline(&self) -> crate::pipeline::PipelineOptions {
        crate::pipeline::PipelineOptions {
            max_messages: self.max_messages,
            max_chars: self.max_chars,
            batch_size: self.batch_size,
            ..Default::default()
        }
    }

    pub fn result_cache(&self) -> crate::result_cache::ResultCache {
        crate::result_cache::ResultCache::with_megabytes(self.result_cache_mb)
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
    },
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

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Extract => local::extract(&cli.plugin),
        Command::Classify { texts } => local::classify(&cli.plugin, texts),
        Command::Analyze { file } => local::analyze(&cli.plugin, file.as_deref()),
        Command::Info => local::info(&cli.plugin),
        Command::Migrate { clickhouse } => service::migrate(clickhouse),
        Command::Plugin { action } => match action {
            PluginAction::Check { file } => service::plugin_check(&cli.plugin, file),
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
        Command::Worker { temporal, clickhouse, worker, fault_fail_first_attempt } => {
            service::worker(&cli.plugin, temporal, clickhouse, worker, *fault_fail_first_attempt)
        }
        Command::Submit { file, temporal, batch, wait, id_prefix, parallelism } => {
            let options = crate::worker::SubmitOptions {
                task_queue: temporal.task_queue.clone(),
                batch: *batch,
                wait: *wait,
                id_prefix: id_prefix.clone(),
                parallelism: *parallelism,
            };
            service::submit(temporal, file.as_deref(), options)
        }
    }
}
