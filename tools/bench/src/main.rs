//! `make bench`: the sentiment pipeline measured side by side with the
//! seed's (ONNX Runtime from Python, one message at a time), in one run on
//! one machine. Prints one markdown table per model bundle; speed targets
//! live here, never in timed tests.
//!
//! For each bundle it
//! 1. generates the inputs (`models/gen_stream.py`, fixed seed): texts of
//!    exactly 16/64/128/512 tokens, and a realistic `$ai_generation` stream
//!    (traces of 1-30 turns re-sending every earlier message) with a timed
//!    sample of it;
//! 2. runs, one after the other, each in its own process so that resident
//!    memory is per instance: ONNX Runtime 1 thread and all threads
//!    (`models/ort_bench.py`), native tract (`native-bench`, the plugin's own
//!    `Classifier`), and tract inside the component under wasmtime with the
//!    worker's limits (this binary's `wasm-worker` mode: `PluginEngine`,
//!    `InstanceSlot`, `pipeline::analyze`);
//! 3. prints latency per sequence, stream throughput per core, the cache hit
//!    rate and padding the stream would have, cold start, resident memory,
//!    and ours/seed ratios (on thread CPU time where both sides have it: the
//!    build machines are shared, and CPU time is far less disturbed by other
//!    load than wall time).
//!
//! The component is compiled once per run into a fresh cache (the cold
//! compile) and its pre-initialised snapshot made there (timed); each wasm
//! worker then starts from that cached artifact and snapshot, as a warm
//! worker start does. Modules: `run` (the orchestrator), `worker` (the
//! `wasm-worker` mode), `overhead` (the limits' cost), `measure` (timing,
//! memory, inputs), `table` (the report). `--quick` (or `LLMA_BENCH_QUICK=1`)
//! uses the small bundles, fewer repetitions and a persistent compile cache:
//! a smoke run.

mod compare;
mod posthog;
mod measure;
mod overhead;
mod run;
mod swap;
mod table;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Benchmark the sentiment pipeline against the seed's ONNX Runtime pipeline")]
struct Args {
    #[command(subcommand)]
    worker: Option<Worker>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Smoke run: small bundles, few repetitions, persistent compile cache.
    #[arg(long, env = "LLMA_BENCH_QUICK", action = clap::ArgAction::SetTrue, value_parser = clap::builder::FalseyValueParser::new())]
    quick: bool,
    /// Plugin component (release wasm32-wasip2 build).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Bundles to measure [default: roberta-base-shape; quick: default and roberta-tiny].
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Where the default bundles live.
    #[arg(long, default_value = "build/models")]
    models_dir: PathBuf,
    /// Python of the venv (onnxruntime, tokenizers).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Directory of gen_stream.py and ort_bench.py.
    #[arg(long, default_value = "models")]
    scripts: PathBuf,
    /// The plugin crate's native-bench example binary.
    #[arg(long)]
    native_bench: Option<PathBuf>,
    /// Generated inputs, JSON results, persistent compile cache.
    #[arg(long, default_value = "build/bench")]
    work_dir: PathBuf,
    /// PostHog's 2026 profile, for its row.
    #[arg(long, default_value = "profiles/posthog-2026.toml")]
    posthog_profile: PathBuf,
    /// The llma-sentiment binary [default: beside this one].
    #[arg(long)]
    sentiment_bin: Option<PathBuf>,
    /// Stream seed.
    #[arg(long, default_value_t = 20250314)]
    seed: u64,
    /// Traces in the stream [default: 60].
    #[arg(long)]
    traces: Option<usize>,
    /// User messages in the timed sample [default: 150; quick: 100].
    #[arg(long)]
    sample_messages: Option<usize>,
    /// Most timed calls per latency cell [default: 10; quick: 5].
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds per latency cell: calls stop when it is spent (at least 2; 1 if one call takes 4 budgets) [default: 8; quick: 1].
    #[arg(long)]
    budget: Option<f64>,
    /// Skip the limits-cost measurement (it compiles three more engine variants once and loads four instances).
    #[arg(long)]
    no_overhead: bool,
}

#[derive(Debug, Subcommand)]
enum Worker {
    /// (internal) One plugin instance in this process: warm start, latency grid,
    /// sample stream, whole-stream extraction, limits cost. Prints JSON.
    #[command(hide = true)]
    WasmWorker(WorkerArgs),
    /// (internal) A fresh process getting one instance ready from the cached
    /// snapshot, then one call. Prints JSON.
    #[command(hide = true)]
    ReadyProbe(ProbeArgs),
    /// Per-sequence CPU of several plugin builds, calls interleaved (kernel
    /// and compiler-flag work). Prints JSON.
    Compare(compare::CompareArgs),
    /// The whole stream on two task slots with another build of the plugin
    /// activated a fifth of the way in: failed tasks, task times around the
    /// activation, texts deduplicated in flight. Prints JSON.
    SwapStream(swap::SwapArgs),
    /// PostHog's 2026 mode and the int8 bundle beside ONNX Runtime (the
    /// second table of `make bench`) on its own: runs ort_bench.py's grid
    /// first. Prints the table.
    Posthog(PosthogArgs),
}

#[derive(Debug, clap::Args, Clone)]
pub(crate) struct PosthogArgs {
    #[arg(long)]
    plugin: PathBuf,
    #[command(flatten)]
    bundle: BundleArgs,
    /// The int8 form of `--model`.
    #[arg(long)]
    int8_model: Option<PathBuf>,
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    #[arg(long, default_value = "models")]
    scripts: PathBuf,
    #[arg(long, default_value = "profiles/posthog-2026.toml")]
    profile: PathBuf,
    #[arg(long)]
    sentiment_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    rounds: usize,
}

#[derive(Debug, clap::Args, Clone)]
pub(crate) struct ProbeArgs {
    #[arg(long)]
    plugin: PathBuf,
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    cache_dir: PathBuf,
    /// Drop the snapshot files from the page cache first.
    #[arg(long)]
    evict: bool,
}

/// The bundle a bench mode runs on: its model, the inputs `make bench`
/// generated for it, and the compile cache.
#[derive(Debug, clap::Args, Clone)]
pub(crate) struct BundleArgs {
    #[arg(long)]
    model: PathBuf,
    /// Directory holding grid.json, sample.jsonl and stream.jsonl.
    #[arg(long)]
    inputs: PathBuf,
    /// Compile cache (artifacts and snapshots).
    #[arg(long)]
    cache_dir: PathBuf,
}

#[derive(Debug, clap::Args, Clone)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    plugin: PathBuf,
    #[command(flatten)]
    bundle: BundleArgs,
    /// Compile cache for the engine variants of the overhead measurement.
    #[arg(long)]
    variant_cache_dir: PathBuf,
    #[arg(long, default_value_t = 10)]
    reps: usize,
    #[arg(long, default_value_t = 2)]
    min_reps: usize,
    #[arg(long, default_value_t = 8.0)]
    budget: f64,
    #[arg(long, default_value_t = 2.0)]
    warm_cutoff: f64,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batches: Vec<usize>,
    /// Least rounds of the interleaved overhead measurement (0 = skip).
    #[arg(long, default_value_t = 8)]
    overhead_reps: usize,
    /// Grid cells (tokens x batch) of the overhead measurement.
    #[arg(long, value_delimiter = ',', default_value = "128x1,16x8")]
    overhead_cells: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.worker {
        Some(Worker::WasmWorker(w)) => {
            let out = worker::wasm_worker(&w)?;
            println!("{out}");
            Ok(())
        }
        Some(Worker::ReadyProbe(p)) => {
            let out = worker::ready_probe(&p)?;
            println!("{out}");
            Ok(())
        }
        Some(Worker::Posthog(p)) => {
            let ort1 = posthog::ort_grid(&p.python, &p.scripts, &p.bundle.model, &p.bundle.inputs)?;
            let sentiment = p.sentiment_bin.clone().unwrap_or_else(posthog::sentiment_binary);
            let setup = posthog::Setup {
                python: &p.python,
                scripts: &p.scripts,
                sentiment: &sentiment,
                profile: &p.profile,
                plugin: &p.plugin,
                cache_dir: &p.bundle.cache_dir,
                inputs: &p.bundle.inputs,
                rounds: p.rounds,
            };
            let v = posthog::measure(&setup, &p.bundle.model, p.int8_model.as_deref(), &ort1)?;
            println!("{}", posthog::table(&v));
            Ok(())
        }
        Some(Worker::Compare(c)) => {
            println!("{}", compare::compare(&c)?);
            Ok(())
        }
        Some(Worker::SwapStream(s)) => {
            println!("{}", swap::swap_stream(&s)?);
            Ok(())
        }
        None => run::run(&args.run),
    }
}

