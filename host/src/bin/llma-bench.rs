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
//! compile); each wasm worker then loads that cached artifact, as a warm
//! worker start does. `--quick` (or `LLMA_BENCH_QUICK=1`) uses the small
//! bundles, fewer repetitions and a persistent compile cache: a smoke run.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use llma_sentiment::engine::{CompileCache, InstanceSlot, Limits, PluginEngine, GUEST_MODEL_DIR};
use llma_sentiment::event::GenerationEvent;
use llma_sentiment::pipeline::{self, Analysis, PipelineOptions};
use llma_sentiment::result_cache::ResultCache;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Benchmark the sentiment pipeline against the seed's ONNX Runtime pipeline")]
struct Args {
    #[command(subcommand)]
    worker: Option<Worker>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
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
    /// Skip the fuel/epoch overhead measurement (it compiles two more engine variants once).
    #[arg(long)]
    no_overhead: bool,
}

#[derive(Debug, Subcommand)]
enum Worker {
    /// (internal) One plugin instance in this process: warm start, latency grid,
    /// sample stream, whole-stream extraction, fuel/epoch overhead. Prints JSON.
    #[command(hide = true)]
    WasmWorker(WorkerArgs),
}

#[derive(Debug, clap::Args, Clone)]
struct WorkerArgs {
    #[arg(long)]
    plugin: PathBuf,
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    inputs: PathBuf,
    /// Compile cache holding the production engine's artifact.
    #[arg(long)]
    cache_dir: PathBuf,
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
            let out = wasm_worker(&w)?;
            println!("{out}");
            Ok(())
        }
        None => run(&args.run),
    }
}

// ------------------------------------------------------------------ shared

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

/// VmRSS and VmHWM of this process, bytes.
fn rss() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out = serde_json::Map::new();
    for line in status.lines() {
        for key in ["VmRSS", "VmHWM"] {
            if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                let kb: u64 = rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
                out.insert(key.into(), json!(kb * 1024));
            }
        }
    }
    Value::Object(out)
}

/// CPU time of the calling thread, seconds (CLOCK_THREAD_CPUTIME_ID: exact,
/// unlike /proc's schedstat, which lags by up to a scheduler tick).
fn thread_cpu() -> f64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: libc's clock_gettime writes one timespec (64-bit fields on the
    // 64-bit Linux targets this bench runs on) into the pointer it is given.
    if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Wall and thread CPU times of calls to `f`: the first is a warm-up unless
/// it is slow (then it counts); as many calls as fit in `budget` (wall),
/// within [min_reps, reps]. ort_bench.py and native-bench use the same rule.
fn timed_calls(mut f: impl FnMut() -> anyhow::Result<()>, w: &WorkerArgs) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (c, t) = (thread_cpu(), Instant::now());
    f()?;
    let (first, first_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
    let (mut times, mut cpus) = if first < w.warm_cutoff { (Vec::new(), Vec::new()) } else { (vec![first], vec![first_cpu]) };
    // A call slower than 4 budgets is measured once.
    let n = if first >= 4.0 * w.budget { 1 } else { w.min_reps.max(w.reps.min((w.budget / first.max(1e-6)).ceil() as usize)) };
    while times.len() < n {
        let (c, t) = (thread_cpu(), Instant::now());
        f()?;
        times.push(t.elapsed().as_secs_f64());
        cpus.push(thread_cpu() - c);
    }
    Ok((times, cpus))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The grid texts: tokens -> texts (all of exactly that many tokens).
fn grid_texts(inputs: &Path) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
    let grid = read_json(&inputs.join("grid.json"))?;
    let lengths = grid["lengths"].as_object().context("grid.json has no lengths")?;
    let mut out = Vec::new();
    for (len, entry) in lengths {
        let texts = entry["texts"].as_array().context("grid.json texts")?;
        out.push((len.parse()?, texts.iter().map(|t| t.as_str().unwrap_or_default().to_string()).collect()));
    }
    out.sort_by_key(|(l, _)| *l);
    Ok(out)
}

fn read_events(path: &Path) -> anyhow::Result<Vec<GenerationEvent>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))?;
            GenerationEvent::parse(&v).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

// ------------------------------------------------------------------ wasm worker

fn wasm_worker(w: &WorkerArgs) -> anyhow::Result<Value> {
    let started = Instant::now();
    let rss_start = rss();
    let wasm = std::fs::read(&w.plugin).with_context(|| format!("reading {}", w.plugin.display()))?;
    let engine = PluginEngine::new(Limits::default(), Some(w.cache_dir.clone()))?;
    let plugin = engine.load_plugin(&wasm, &w.model)?;
    let from_cache = plugin.from_cache;
    let artifact_load = plugin.compile_time.as_secs_f64();
    let rss_before_instance = rss();
    let (c, t) = (thread_cpu(), Instant::now());
    let mut slot = InstanceSlot::new(Arc::new(plugin));
    let info = slot.get()?.info().clone();
    let (model_load, model_load_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
    let warm_start = started.elapsed().as_secs_f64();
    let rss_loaded = rss();
    log(format!("wasm: {} loaded in {model_load:.2}s (artifact {artifact_load:.3}s, cached: {from_cache})", info.model_name));

    let mut cells = Vec::new();
    for (len, texts) in grid_texts(&w.inputs)? {
        for &batch in &w.batches {
            let texts = &texts[..batch.min(texts.len())];
            let t = Instant::now();
            let mut fuel = 0u64;
            let (times, cpus) = timed_calls(
                || {
                    let instance = slot.get()?;
                    instance.classify(texts)?;
                    fuel = instance.last_fuel;
                    Ok(())
                },
                w,
            )?;
            log(format!("wasm: {len} tokens x {batch}: {} calls in {:.1}s", times.len(), t.elapsed().as_secs_f64()));
            cells.push(json!({"tokens": len, "batch": batch, "times": times, "cpu": cpus, "fuel": fuel}));
        }
    }

    // The timed sample through the pipeline with length bucketing and no
    // result cache (the sample holds one generation in K, so a cache would
    // hit far less than on the stream): the per-message cost, next to the
    // seed's on the very same messages.
    let sample = read_events(&w.inputs.join("sample.jsonl"))?;
    let options = PipelineOptions::default();
    let (mut generations, mut messages) = (0usize, 0usize);
    let (c0, t0) = (thread_cpu(), Instant::now());
    for generation in &sample {
        if let Analysis::Sentiment(event) = pipeline::analyze_cached(&mut slot, generation, &options, None, |_| ControlFlow::Continue(()))? {
            generations += 1;
            messages += event.properties["$ai_sentiment_messages"].as_array().map_or(0, Vec::len);
        }
    }
    let stream = json!({"generations": generations, "messages": messages, "wall": t0.elapsed().as_secs_f64(), "cpu": thread_cpu() - c0});
    log(format!("wasm: stream sample, {messages} messages in {:.1}s", t0.elapsed().as_secs_f64()));

    // The whole stream as the worker runs it: result cache (default size,
    // empty at the start) + length bucketing, every generation in order.
    let whole = read_events(&w.inputs.join("stream.jsonl"))?;
    let cache = ResultCache::default();
    let (mut generations, mut messages) = (0usize, 0usize);
    let (c0, t0) = (thread_cpu(), Instant::now());
    for generation in &whole {
        if let Analysis::Sentiment(event) = pipeline::analyze_cached(&mut slot, generation, &options, Some(&cache), |_| ControlFlow::Continue(()))? {
            generations += 1;
            messages += event.properties["$ai_sentiment_messages"].as_array().map_or(0, Vec::len);
        }
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), thread_cpu() - c0);
    let st = cache.stats();
    log(format!("wasm: whole stream with cache + bucketing, {messages} messages in {wall:.1}s, hit rate {:.1}%", st.hit_rate() * 100.0));
    let whole_stream = json!({
        "generations": generations, "messages": messages, "wall": wall, "cpu": cpu,
        "cache_hits": st.hits, "cache_misses": st.misses, "cache_insertions": st.insertions,
        "cache_evictions": st.evictions, "cache_bytes": st.bytes, "cache_capacity": st.capacity_bytes,
    });
    let cache = json!({"generations": whole.len(), "messages": st.hits + st.misses, "unique": st.insertions});
    let rss_end = rss();

    let overhead = if w.overhead_reps > 0 { overhead(w, &wasm, &mut slot)? } else { Value::Null };

    Ok(json!({
        "runtime": "tract-wasm",
        "model_name": info.model_name,
        "plugin_version": info.version,
        "max_tokens": info.limits.max_tokens,
        "from_cache": from_cache,
        "artifact_load_seconds": artifact_load,
        "load_seconds": model_load,
        "load_cpu": model_load_cpu,
        "warm_start_seconds": warm_start,
        "rss_start": rss_start,
        "rss_before_instance": rss_before_instance,
        "rss_loaded": rss_loaded,
        "rss_end": rss_end,
        "grid": cells,
        "stream": stream,
        "whole_stream": whole_stream,
        "cache": cache,
        "overhead": overhead,
    }))
}

// ------------------------------------------------------------------ fuel/epoch overhead

/// Host bindings of the same contract, for engines configured differently
/// from the production one (which always has fuel and epochs on).
mod variant {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
    });
}

/// wasmtime's own error type into anyhow.
trait W<T> {
    fn w(self) -> anyhow::Result<T>;
}

impl<T> W<T> for wasmtime::Result<T> {
    fn w(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{e:#}"))
    }
}

struct VariantState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    deadline: Instant,
}

impl wasmtime_wasi::WasiView for VariantState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

struct VariantInstance {
    store: wasmtime::Store<VariantState>,
    bindings: variant::Plugin,
    epoch: bool,
}

impl VariantInstance {
    /// An instance on an engine with `epoch` interruption on or off and fuel
    /// off; otherwise configured and sandboxed like the production engine.
    fn new(wasm: &[u8], model: &Path, cache_dir: &Path, epoch: bool) -> anyhow::Result<(VariantInstance, Option<Ticker>)> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(false);
        config.epoch_interruption(epoch);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = wasmtime::Engine::new(&config).w()?;
        let t = Instant::now();
        let (component, cached) = CompileCache::new(Some(cache_dir.to_path_buf())).load_or_compile(&engine, wasm)?;
        if !cached {
            log(format!("compiled the {} variant in {:.1}s (cached for later runs)", if epoch { "epoch-only" } else { "no-limits" }, t.elapsed().as_secs_f64()));
        }
        let mut linker = wasmtime::component::Linker::<VariantState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).w()?;
        let mut b = wasmtime_wasi::WasiCtxBuilder::new();
        b.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        b.socket_addr_check(|_, _| Box::pin(async { false }));
        b.preopened_dir(model, GUEST_MODEL_DIR, wasmtime_wasi::FsPerms::ReadOnly).w()?;
        let state = VariantState { wasi: b.build(), table: wasmtime::component::ResourceTable::new(), deadline: Instant::now() + Duration::from_secs(3600) };
        let mut store = wasmtime::Store::new(&engine, state);
        let ticker = if epoch {
            // Same per-tick work as the production callback: a flag and a clock check.
            let stop = Arc::new(AtomicBool::new(false));
            store.epoch_deadline_callback(move |ctx| {
                if Instant::now() >= ctx.data().deadline {
                    return Err(wasmtime::Trap::Interrupt.into());
                }
                Ok(wasmtime::UpdateDeadline::Continue(1))
            });
            store.set_epoch_deadline(1);
            Some(Ticker::start(engine.clone(), stop))
        } else {
            None
        };
        let bindings = variant::Plugin::instantiate(&mut store, &component, &linker).w()?;
        bindings
            .llma_sentiment_sentiment()
            .call_load(&mut store, GUEST_MODEL_DIR)
            .w()?
            .map_err(|e| anyhow::anyhow!("load: {e:?}"))?;
        Ok((VariantInstance { store, bindings, epoch }, ticker))
    }

    fn classify(&mut self, texts: &[String]) -> anyhow::Result<()> {
        if self.epoch {
            self.store.data_mut().deadline = Instant::now() + Duration::from_secs(3600);
            self.store.set_epoch_deadline(1);
        }
        self.bindings
            .llma_sentiment_sentiment()
            .call_classify(&mut self.store, texts)
            .w()?
            .map_err(|e| anyhow::anyhow!("classify: {e:?}"))?;
        Ok(())
    }
}

/// Increments an engine's epoch every 10 ms (the production tick) until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine, stop: Arc<AtomicBool>) -> Ticker {
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Limits::default().epoch_tick);
                engine.increment_epoch();
            }
        });
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The production instance (fuel + epoch) against the same component on an
/// engine with epochs only and one with neither, calls interleaved so that
/// machine noise hits all three alike.
fn overhead(w: &WorkerArgs, wasm: &[u8], slot: &mut InstanceSlot) -> anyhow::Result<Value> {
    let (mut epoch_only, _ticker) = VariantInstance::new(wasm, &w.model, &w.variant_cache_dir, true)?;
    let (mut none, _) = VariantInstance::new(wasm, &w.model, &w.variant_cache_dir, false)?;
    let grid = grid_texts(&w.inputs)?;
    let mut cells = Vec::new();
    for cell in &w.overhead_cells {
        let (len, batch) = cell.split_once('x').context("overhead cell is TOKENSxBATCH")?;
        let (len, batch): (usize, usize) = (len.parse()?, batch.parse()?);
        let Some((_, texts)) = grid.iter().find(|(l, _)| *l == len) else { continue };
        let texts = &texts[..batch.min(texts.len())];
        // A warm-up call of each; short calls get more rounds (up to 50), within the cell budget.
        let t = Instant::now();
        slot.get()?.classify(texts)?;
        let first = t.elapsed().as_secs_f64();
        epoch_only.classify(texts)?;
        none.classify(texts)?;
        let rounds = w.overhead_reps.max(50.min((w.budget / (3.0 * first.max(1e-6))).ceil() as usize));
        // Thread CPU time: what other processes on the machine disturb least.
        let (mut prod, mut ep, mut no) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let c = thread_cpu();
            slot.get()?.classify(texts)?;
            prod.push(thread_cpu() - c);
            let c = thread_cpu();
            epoch_only.classify(texts)?;
            ep.push(thread_cpu() - c);
            let c = thread_cpu();
            none.classify(texts)?;
            no.push(thread_cpu() - c);
        }
        log(format!("wasm: overhead at {len} tokens x {batch} measured"));
        cells.push(json!({"tokens": len, "batch": batch, "fuel_epoch": prod, "epoch": ep, "none": no}));
    }
    Ok(Value::Array(cells))
}

// ------------------------------------------------------------------ orchestrator

struct Mode {
    quick: bool,
    traces: usize,
    sample_messages: usize,
    reps: usize,
    min_reps: usize,
    budget: f64,
    warm_cutoff: f64,
}

fn run(a: &RunArgs) -> anyhow::Result<()> {
    let mode = Mode {
        quick: a.quick,
        traces: a.traces.unwrap_or(60),
        sample_messages: a.sample_messages.unwrap_or(if a.quick { 100 } else { 150 }),
        reps: a.reps.unwrap_or(if a.quick { 5 } else { 10 }),
        min_reps: 2,
        budget: a.budget.unwrap_or(if a.quick { 1.0 } else { 8.0 }),
        warm_cutoff: 2.0,
    };
    let plugin = a.plugin.clone().context("--plugin is required")?;
    let native = a.native_bench.clone().context("--native-bench is required")?;
    let models: Vec<PathBuf> = if a.models.is_empty() {
        let names: &[&str] = if a.quick { &["default", "roberta-tiny"] } else { &["roberta-base-shape"] };
        names.iter().map(|n| a.models_dir.join(n)).collect()
    } else {
        a.models.clone()
    };
    std::fs::create_dir_all(&a.work_dir)?;
    let work_dir = a.work_dir.canonicalize()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Cold compile: a fresh cache, unless quick (then a persistent one, so
    // a smoke run does not pay ~15 s of Cranelift every time).
    let wasm = std::fs::read(&plugin).with_context(|| format!("reading {}", plugin.display()))?;
    let cold_dir = tempfile::tempdir()?;
    let cache_dir = if a.quick { work_dir.join("cache") } else { cold_dir.path().to_path_buf() };
    let variant_cache_dir = work_dir.join("cache");
    log(format!("compiling the component ({:.1} MB)", wasm.len() as f64 / 1e6));
    let engine = PluginEngine::new(Limits::default(), Some(cache_dir.clone()))?;
    let compiled = engine.load_plugin(&wasm, &models[0])?;
    let cold_compile = (!compiled.from_cache).then(|| compiled.compile_time.as_secs_f64());
    drop(compiled);
    drop(engine);

    let mut reports = Vec::new();
    for model in &models {
        let model = model.canonicalize().with_context(|| format!("model bundle {}", model.display()))?;
        let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string();
        let inputs = work_dir.join(&name);
        log(format!("{name}: generating inputs"));
        let meta = run_json(
            Command::new(&a.python).arg(a.scripts.join("gen_stream.py")).args([
                "--tokenizer",
                &model.join("tokenizer.json").display().to_string(),
                "--out",
                &inputs.display().to_string(),
                "--seed",
                &a.seed.to_string(),
                "--traces",
                &mode.traces.to_string(),
                "--sample-messages",
                &mode.sample_messages.to_string(),
            ]),
            "gen_stream.py",
        )?;
        let timing = |c: &mut Command| {
            c.args(["--reps", &mode.reps.to_string(), "--min-reps", &mode.min_reps.to_string()])
                .args(["--budget", &mode.budget.to_string(), "--warm-cutoff", &mode.warm_cutoff.to_string()]);
        };
        let ort = |threads: usize, stats: bool| -> anyhow::Result<Value> {
            log(format!("{name}: ONNX Runtime, {} thread(s)", if threads == 0 { "all".to_string() } else { threads.to_string() }));
            let mut c = Command::new(&a.python);
            c.arg(a.scripts.join("ort_bench.py"))
                .args(["--model", &model.display().to_string(), "--inputs", &inputs.display().to_string()])
                .args(["--threads", &threads.to_string()]);
            timing(&mut c);
            if stats {
                c.arg("--stats");
            }
            run_json(&mut c, "ort_bench.py")
        };
        let ort1 = ort(1, true)?;
        let ort_all = ort(0, false)?;
        log(format!("{name}: native tract"));
        let mut c = Command::new(&native);
        c.args(["--model", &model.display().to_string(), "--inputs", &inputs.display().to_string()]);
        timing(&mut c);
        let native_out = run_json(&mut c, "native-bench")?;
        log(format!("{name}: tract in wasm"));
        // /proc/self/exe: this very binary, even if a rebuild replaced the file since.
        let mut c = Command::new("/proc/self/exe");
        c.arg("wasm-worker")
            .args(["--plugin", &plugin.display().to_string(), "--model", &model.display().to_string()])
            .args(["--inputs", &inputs.display().to_string(), "--cache-dir", &cache_dir.display().to_string()])
            .args(["--variant-cache-dir", &variant_cache_dir.display().to_string()]);
        timing(&mut c);
        if a.no_overhead {
            c.args(["--overhead-reps", "0"]);
        }
        let wasm_out = run_json(&mut c, "wasm-worker")?;
        let all = json!({"meta": meta, "ort1": ort1, "ort_all": ort_all, "native": native_out, "wasm": wasm_out});
        std::fs::write(inputs.join("results.json"), serde_json::to_vec_pretty(&all)?)?;
        reports.push((model, all));
    }
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let mut out = std::io::stdout().lock();
    for (model, all) in &reports {
        let ctx = TableCtx { cores, quick: mode.quick, cold_compile, plugin_bytes: wasm.len(), load_start: &load_start, load_end: &load_end };
        writeln!(out, "{}", table(model, all, &ctx)?)?;
    }
    Ok(())
}

/// Runs a child that prints one JSON object on stdout; its stderr passes through.
fn run_json(c: &mut Command, what: &str) -> anyhow::Result<Value> {
    let output = c.stderr(Stdio::inherit()).output().with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).with_context(|| format!("{what} printed no JSON"))?;
    serde_json::from_str(last).with_context(|| format!("{what} printed bad JSON"))
}

// ------------------------------------------------------------------ table

struct TableCtx<'a> {
    cores: usize,
    quick: bool,
    cold_compile: Option<f64>,
    plugin_bytes: usize,
    load_start: &'a str,
    load_end: &'a str,
}

fn pct(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn median(values: &[f64]) -> f64 {
    pct(values, 0.5)
}

/// Wall times of the calls of a grid cell, or empty.
fn cell_times(run: &Value, tokens: usize, batch: usize) -> Vec<f64> {
    cell_series(run, tokens, batch, "times")
}

/// CPU times of the calls of a grid cell, or empty.
fn cell_cpu(run: &Value, tokens: usize, batch: usize) -> Vec<f64> {
    cell_series(run, tokens, batch, "cpu")
}

fn cell_series(run: &Value, tokens: usize, batch: usize, key: &str) -> Vec<f64> {
    run["grid"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["tokens"].as_u64() == Some(tokens as u64) && c["batch"].as_u64() == Some(batch as u64))
        .and_then(|c| c[key].as_array())
        .map(|t| t.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn fmt_ms(s: f64) -> String {
    if !s.is_finite() {
        return "–".into();
    }
    let ms = s * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn fmt_s(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2} s")
    } else {
        "–".into()
    }
}

fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

fn mb(bytes: f64) -> String {
    if bytes.is_finite() {
        format!("{:.0} MB", bytes / 1e6)
    } else {
        "–".into()
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Forward-pass FLOPs of a RoBERTa/BERT-shaped bundle for `batch` sequences
/// of `tokens` (matmuls only: projections, FFN, attention scores and mix).
fn flops(config: &Value, tokens: usize, batch: usize) -> Option<f64> {
    let layers = config["num_hidden_layers"].as_f64()?;
    let h = config["hidden_size"].as_f64()?;
    let inter = config["intermediate_size"].as_f64()?;
    let l = tokens as f64;
    let per_layer = 2.0 * (4.0 * h * h + 2.0 * h * inter) * l + 2.0 * 2.0 * l * l * h;
    Some(batch as f64 * layers * per_layer)
}

/// Per-sequence cost model of one runtime, from its grid: seconds per
/// sequence at `tokens` (clamped to the grid, linear in between) in a call
/// of `n` sequences (interpolated between the batch-1 and batch-8 cells).
struct CostModel {
    points: Vec<(f64, f64, f64)>, // tokens, s/seq at batch 1, s/seq at batch 8
}

impl CostModel {
    fn of(run: &Value, lengths: &[usize]) -> Option<CostModel> {
        let mut points = Vec::new();
        for &l in lengths {
            let b1 = median(&cell_cpu(run, l, 1));
            let b8 = median(&cell_cpu(run, l, 8)) / 8.0;
            if !b1.is_finite() || !b8.is_finite() {
                return None;
            }
            points.push((l as f64, b1, b8));
        }
        (!points.is_empty()).then_some(CostModel { points })
    }

    fn per_seq(&self, tokens: f64, n: f64) -> f64 {
        let p = &self.points;
        let t = tokens.clamp(p[0].0, p[p.len() - 1].0);
        let i = p.iter().position(|q| q.0 >= t).unwrap_or(p.len() - 1);
        let (lo, hi) = if i == 0 { (p[0], p[0]) } else { (p[i - 1], p[i]) };
        let f = if hi.0 > lo.0 { (t - lo.0) / (hi.0 - lo.0) } else { 0.0 };
        let b1 = lo.1 + (hi.1 - lo.1) * f;
        let b8 = lo.2 + (hi.2 - lo.2) * f;
        let w = ((n - 1.0) / 7.0).clamp(0.0, 1.0);
        b1 + (b8 - b1) * w
    }

    /// Seconds to run the calls of a shape histogram {"n,len": count}.
    fn seconds(&self, shapes: &Value) -> f64 {
        shapes
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, count)| {
                let (n, l) = k.split_once(',').unwrap_or(("1", "1"));
                let (n, l): (f64, f64) = (n.parse().unwrap_or(1.0), l.parse().unwrap_or(1.0));
                n * self.per_seq(l, n) * count.as_f64().unwrap_or(0.0)
            })
            .sum()
    }
}

fn table(model: &Path, all: &Value, ctx: &TableCtx) -> anyhow::Result<String> {
    let (wasm, native, ort1, ort_all) = (&all["wasm"], &all["native"], &all["ort1"], &all["ort_all"]);
    let config = read_json(&model.join("config.json")).unwrap_or(Value::Null);
    let weights = std::fs::metadata(model.join("model.onnx")).map(|m| m.len() as f64).unwrap_or(f64::NAN);
    let stats = &ort1["stats"];
    let lengths: Vec<usize> = {
        let mut l: Vec<usize> = wasm["grid"].as_array().into_iter().flatten().filter_map(|c| c["tokens"].as_u64()).map(|t| t as usize).collect();
        l.sort();
        l.dedup();
        l
    };
    let cols = [wasm, native, ort1, ort_all];
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut row = |name: String, cells: [String; 4], ratio: String| {
        let [a, b, c, d] = cells;
        rows.push([name, a, b, c, d, ratio]);
    };

    // Latency per sequence.
    for &l in &lengths {
        for batch in [1usize, 8] {
            let v: Vec<(f64, f64, f64, usize)> = cols
                .iter()
                .map(|r| {
                    let (t, c) = (cell_times(r, l, batch), cell_cpu(r, l, batch));
                    let b = batch as f64;
                    (median(&t) / b, pct(&t, 0.99) / b, median(&c) / b, t.len())
                })
                .collect();
            if v[0].3 == 0 && v[2].3 == 0 {
                continue;
            }
            let cell = |(p50, p99, cpu, n): (f64, f64, f64, usize)| {
                if n == 0 {
                    "–".into()
                } else {
                    format!("{} / {}; cpu {} (n={n})", fmt_ms(p50), fmt_ms(p99), fmt_ms(cpu))
                }
            };
            row(
                format!("latency {l} tok, batch {batch}: ms/seq wall p50 / p99; CPU p50"),
                [cell(v[0]), cell(v[1]), cell(v[2]), cell(v[3])],
                format!("{} (wall {})", fmt_ratio(v[0].2 / v[2].2), fmt_ratio(v[0].0 / v[2].0)),
            );
        }
    }
    // Throughput of the arithmetic.
    if let Some(f) = flops(&config, 128, 8) {
        let g: Vec<f64> = cols.iter().map(|r| f / median(&cell_cpu(r, 128, 8)) / 1e9).collect();
        row(
            "GFLOP/s at 128 tok x 8 (matmul FLOPs / CPU p50; ORT all: per CPU-second)".into(),
            [fmt_rate(g[0]), fmt_rate(g[1]), fmt_rate(g[2]), fmt_rate(g[3])],
            fmt_ratio(g[0] / g[2]),
        );
    }
    let fuel_cell = wasm["grid"].as_array().into_iter().flatten().find(|c| c["tokens"] == 128 && c["batch"] == 8);
    if let Some(c) = fuel_cell {
        row("fuel per token at 128 tok x 8".into(), [format!("{:.2e}", num(&c["fuel"]) / 1024.0), "–".into(), "–".into(), "–".into()], "".into());
    }
    for c in wasm["overhead"].as_array().into_iter().flatten() {
        // The fastest of n interleaved calls: the least disturbed by other load.
        let f = |k: &str| pct(&c[k].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>()).unwrap_or_default(), 0.0);
        let (fe, ep, no) = (f("fuel_epoch"), f("epoch"), f("none"));
        let n = c["none"].as_array().map_or(0, Vec::len);
        row(
            format!("fuel+epoch / epoch-only / neither, {} tok x {} (CPU ms/call, best of {n} interleaved)", c["tokens"], c["batch"]),
            [format!("{} / {} / {}", fmt_ms(fe), fmt_ms(ep), fmt_ms(no)), "–".into(), "–".into(), "–".into()],
            format!("overhead: fuel+epoch {:+.1}%, epoch {:+.1}%", (fe / no - 1.0) * 100.0, (ep / no - 1.0) * 100.0),
        );
    }

    // The stream.
    let per_core = |r: &Value, threads: f64| num(&r["stream"]["messages"]) / num(&r["stream"]["wall"]) / threads;
    let rates = [per_core(wasm, 1.0), per_core(native, 1.0), per_core(ort1, 1.0), per_core(ort_all, ctx.cores as f64)];
    row(
        "stream sample: messages/s per core (wall; ORT all threads ÷ cores)".into(),
        rates.map(fmt_rate),
        fmt_ratio(rates[0] / rates[2]),
    );
    let per_cpu = |r: &Value| num(&r["stream"]["messages"]) / num(&r["stream"]["cpu"]);
    let cpu_rates = [per_cpu(wasm), per_cpu(native), per_cpu(ort1), per_cpu(ort_all)];
    row("stream sample: messages per CPU-second".into(), cpu_rates.map(fmt_rate), fmt_ratio(cpu_rates[0] / cpu_rates[2]));
    let how = ["analyze(), length-bucketed batches of 8, no result cache", "batches of 8 in order", "1 message at a time", "1 message at a time"];
    row(
        "stream sample: generations / messages classified".into(),
        std::array::from_fn(|i| format!("{} / {} ({})", cols[i]["stream"]["generations"], cols[i]["stream"]["messages"], how[i])),
        "".into(),
    );
    let ws = &stats["stream"];
    let whole = &wasm["whole_stream"];
    if whole.is_object() {
        // The seed's cost per message does not depend on repeats: its rate on
        // the sample (1 generation in K of this stream) is its rate here.
        let ours_wall = num(&whole["messages"]) / num(&whole["wall"]);
        let ours_cpu = num(&whole["messages"]) / num(&whole["cpu"]);
        let seed_wall = per_core(ort1, 1.0);
        let seed_cpu = per_cpu(ort1);
        row(
            "WHOLE stream, ours = result cache + length bucketing (as the worker runs; cache empty at start): messages/s per core (wall); per CPU-second".into(),
            [
                format!("{} ; {} ({} messages, {} generations)", fmt_rate(ours_wall), fmt_rate(ours_cpu), whole["messages"], whole["generations"]),
                "–".into(),
                format!("{} ; {} (sample rate, 1 at a time)", fmt_rate(seed_wall), fmt_rate(seed_cpu)),
                "–".into(),
            ],
            format!("{} (wall {})", fmt_ratio(ours_cpu / seed_cpu), fmt_ratio(ours_wall / seed_wall)),
        );
        let lookups = num(&whole["cache_hits"]) + num(&whole["cache_misses"]);
        row(
            "WHOLE stream: result cache hits / lookups (hit rate); evictions; bytes used / capacity".into(),
            [
                format!(
                    "{} / {} ({:.1}%); {}; {} / {}",
                    whole["cache_hits"],
                    lookups,
                    num(&whole["cache_hits"]) / lookups * 100.0,
                    whole["cache_evictions"],
                    mb(num(&whole["cache_bytes"])),
                    mb(num(&whole["cache_capacity"]))
                ),
                "–".into(),
                "no cache".into(),
                "–".into(),
            ],
            "".into(),
        );
    }
    let cache = &wasm["cache"];
    let hit = 1.0 - num(&cache["unique"]) / num(&cache["messages"]);
    row(
        "whole stream: generations / user messages / distinct texts".into(),
        [
            format!("{} / {} / {} (plugin extract)", cache["generations"], cache["messages"], cache["unique"]),
            "–".into(),
            format!("{} / {} / {} (Python extract)", ws["generations"], ws["messages"], ws["unique_messages"]),
            "–".into(),
        ],
        "".into(),
    );
    row(
        "whole stream: exact-text cache hit rate, messages / tokens".into(),
        [format!("{:.1}%", hit * 100.0), "–".into(), format!("{:.1}% / {:.1}%", num(&ws["hit_rate"]) * 100.0, num(&ws["token_hit_rate"]) * 100.0), "–".into()],
        "".into(),
    );
    row(
        "whole stream: tokens/message p50 / p90 / p99 / max; share < 40".into(),
        [
            "–".into(),
            "–".into(),
            format!(
                "{} / {} / {} / {}; {:.0}%",
                ws["tokens_p50"],
                ws["tokens_p90"],
                ws["tokens_p99"],
                ws["tokens_max"],
                num(&ws["under_40"]) * 100.0
            ),
            "–".into(),
        ],
        "".into(),
    );
    let padded = &ws["padded_tokens"];
    let real = num(&padded["seed"]);
    let waste = |k: &str, base: &str| (num(&padded[k]) / num(&padded[base]) - 1.0) * 100.0;
    row(
        "whole stream: padding waste, tokens run / real tokens run - 1 (no cache; with cache: of the misses)".into(),
        [
            format!(
                "no cache: in order {:.0}%, sorted by tokens in 8s {:.0}%, bucketed by chars (ours) {:.1}%, same rule on tokens {:.1}%; cache: in order {:.1}%, by chars (ours) {:.1}%, by tokens {:.1}%",
                waste("asis", "seed"),
                waste("bucket", "seed"),
                waste("char_bucket", "distinct"),
                waste("token_bucket", "distinct"),
                waste("cache", "cache_real"),
                waste("cache_char_bucket", "cache_real"),
                waste("cache_bucket", "cache_real"),
            ),
            "–".into(),
            "0% (1 at a time)".into(),
            "–".into(),
        ],
        "".into(),
    );
    row(
        "whole stream: tokens run / all real tokens".into(),
        [
            format!(
                "as is {:.2}; bucketed {:.2}; cache {:.3}; cache+bucketed (ours) {:.3}",
                num(&padded["asis"]) / real,
                num(&padded["char_bucket"]) / real,
                num(&padded["cache"]) / real,
                num(&padded["cache_char_bucket"]) / real
            ),
            "–".into(),
            "1.00 (no cache, no padding)".into(),
            "–".into(),
        ],
        "".into(),
    );
    // Estimates from the measured grids (calibrated on the measured sample).
    if let (Some(ours), Some(seed)) = (CostModel::of(wasm, &lengths), CostModel::of(ort1, &lengths)) {
        let sample_shapes = &stats["sample"]["shapes"];
        let k_ours = num(&wasm["stream"]["cpu"]) / ours.seconds(&sample_shapes["char_bucket"]);
        let k_seed = num(&ort1["stream"]["cpu"]) / seed.seconds(&sample_shapes["seed"]);
        let msgs = num(&ws["messages"]);
        let seed_rate = msgs / (k_seed * seed.seconds(&ws["shapes"]["seed"]));
        for (label, key) in [
            ("as it stands", "asis"),
            ("+ sorting by tokens, batches of 8", "bucket"),
            ("+ length bucketing (the pipeline, no cache)", "char_bucket"),
            ("+ exact-text cache", "cache"),
            ("+ cache + bucketing by tokens", "cache_bucket"),
            ("+ cache + bucketing by chars (the pipeline)", "cache_char_bucket"),
        ] {
            let rate = msgs / (k_ours * ours.seconds(&ws["shapes"][key]));
            row(
                format!("estimate, whole stream, ours {label}: messages per CPU-second"),
                [fmt_rate(rate), "–".into(), fmt_rate(seed_rate), "–".into()],
                fmt_ratio(rate / seed_rate),
            );
        }
        row(
            "estimate calibration (measured sample / cost model)".into(),
            [format!("{k_ours:.2}"), "–".into(), format!("{k_seed:.2}"), "–".into()],
            "".into(),
        );
    }

    // Cold start.
    row(
        "component compile (Cranelift, cold cache)".into(),
        [ctx.cold_compile.map(fmt_s).unwrap_or_else(|| "cached (quick)".into()), "–".into(), "–".into(), "–".into()],
        "".into(),
    );
    row(
        "cached artifact load (fresh process)".into(),
        [
            format!("{}{}", fmt_s(num(&wasm["artifact_load_seconds"])), if wasm["from_cache"] == true { "" } else { " (NOT cached)" }),
            "–".into(),
            "–".into(),
            "–".into(),
        ],
        "".into(),
    );
    let loads = cols.map(|r| (num(&r["load_seconds"]), num(&r["load_cpu"])));
    row(
        "instantiate + model load + optimise (ORT: session): wall; CPU".into(),
        loads.map(|(w, c)| format!("{}; cpu {}", fmt_s(w), fmt_s(c))),
        format!("{} (wall {})", fmt_ratio(loads[0].1 / loads[2].1), fmt_ratio(loads[0].0 / loads[2].0)),
    );
    row(
        "warm start: process start to instance ready".into(),
        [fmt_s(num(&wasm["warm_start_seconds"])), "–".into(), "–".into(), "–".into()],
        "".into(),
    );
    // Memory.
    let base = |r: &Value| if r["rss_before_instance"].is_object() { num(&r["rss_before_instance"]["VmRSS"]) } else { num(&r["rss_start"]["VmRSS"]) };
    let loaded = cols.map(|r| num(&r["rss_loaded"]["VmRSS"]) - base(r));
    let end = cols.map(|r| num(&r["rss_end"]["VmRSS"]) - base(r));
    let peak = cols.map(|r| num(&r["rss_end"]["VmHWM"]) - base(r));
    row("RSS per instance after load (above process baseline)".into(), loaded.map(mb), fmt_ratio(loaded[0] / loaded[2]));
    row("RSS per instance at the end (after grid + stream; wasm memory never shrinks)".into(), end.map(mb), fmt_ratio(end[0] / end[2]));
    row("peak RSS per instance (load, grid up to 512 x 8, stream)".into(), peak.map(mb), fmt_ratio(peak[0] / peak[2]));
    row(
        format!("peak RSS per instance / weights ({})", mb(weights)),
        peak.map(|p| fmt_ratio(p / weights)),
        "".into(),
    );

    let mut s = String::new();
    use std::fmt::Write as _;
    writeln!(s, "### {} ({})", wasm["model_name"].as_str().unwrap_or("?"), model.display())?;
    writeln!(
        s,
        "cores: {}; plugin {} ({:.1} MB, {}); ONNX Runtime {}; {}; load average before {} / after {}",
        ctx.cores,
        wasm["plugin_version"].as_str().unwrap_or("?"),
        ctx.plugin_bytes as f64 / 1e6,
        "wasm32-wasip2 +simd128",
        ort1["version"].as_str().unwrap_or("?"),
        if ctx.quick { "QUICK run (few reps)" } else { "full run" },
        ctx.load_start.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        ctx.load_end.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )?;
    let meta = &all["meta"];
    writeln!(
        s,
        "stream: seed {}, {} traces, {} generations, {} user messages; timed sample: 1 generation in {} ({} generations)",
        meta["seed"], meta["traces"], meta["generations"], meta["user_messages"], meta["sample_stride"], meta["sample_generations"]
    )?;
    writeln!(s)?;
    writeln!(s, "| measure | ours: tract in wasm (fuel+epoch) | native tract | seed: ORT 1 thread | ORT all threads | ours / seed |")?;
    writeln!(s, "|---|---|---|---|---|---|")?;
    for r in &rows {
        writeln!(s, "| {} |", r.join(" | "))?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "ours / seed: tract in wasm over ORT 1 thread (times and memory: lower is better; rates: higher is better). \
         Latency includes tokenization; batch 8 is the call time / 8; p99 of n calls is close to their maximum; \
         the ratio is on CPU time (single-threaded runtimes: the calling thread's), which other load on a shared machine \
         disturbs far less than wall time. Estimates apply each runtime's measured CPU cost per sequence (grid, interpolated) \
         to the whole stream's batch shapes, scaled by the calibration factor measured on the sample (sample CPU time / model). \
         The machine is shared: compare ratios, not absolute times."
    )?;
    Ok(s)
}
