//! The orchestrator: inputs, the cold compile and snapshot, one process per
//! runtime, the tables.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use llma_sentiment::engine::{cpu, EngineOptions, PluginEngine, InstanceStart, SnapshotPolicy};
use serde_json::{json, Value};

use crate::measure::{log, readiness, run_json};
use crate::table::{table, TableCtx};
use crate::RunArgs;

struct Mode {
    quick: bool,
    traces: usize,
    sample_messages: usize,
    reps: usize,
    min_reps: usize,
    budget: f64,
    warm_cutoff: f64,
}

pub fn run(a: &RunArgs) -> anyhow::Result<()> {
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
    // The worker's engine with snapshots made (`plugin.snapshots = "create"`,
    // or `plugin prepare`): compiles, then makes the snapshot of the first
    // bundle (timed: what a machine pays once per plugin and model).
    let options = EngineOptions { snapshots: SnapshotPolicy::Create, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(llma_sentiment::engine::Limits::default(), Some(cache_dir.clone()), options)?;
    let compiled = engine.load_plugin(&wasm, &models[0])?;
    let cold_compile = (!compiled.from_cache).then(|| compiled.compile_time.as_secs_f64());
    let mut snapshots = vec![snapshot_made(&compiled.instance_start)];
    drop(compiled);
    for model in &models[1..] {
        snapshots.push(snapshot_made(&engine.load_plugin(&wasm, model)?.instance_start));
    }
    drop(engine);

    let mut reports = Vec::new();
    for (model, snapshot) in models.iter().zip(snapshots) {
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
        // Two more fresh starts: from disk (the file evicted from the page cache), then from the page cache.
        let probe = |evict: bool| -> anyhow::Result<Value> {
            let mut c = Command::new("/proc/self/exe");
            c.arg("ready-probe")
                .args(["--plugin", &plugin.display().to_string(), "--model", &model.display().to_string()])
                .args(["--cache-dir", &cache_dir.display().to_string()]);
            if evict {
                c.arg("--evict");
            }
            run_json(&mut c, "ready-probe")
        };
        let ready = json!({"cold": probe(true)?, "warm": probe(false)?});
        log(format!("{name}: the stream on two task slots, another plugin build activated during it"));
        let mut c = Command::new("/proc/self/exe");
        c.arg("swap-stream")
            .args(["--plugin", &plugin.display().to_string(), "--model", &model.display().to_string()])
            .args(["--inputs", &inputs.display().to_string(), "--cache-dir", &cache_dir.display().to_string()]);
        let swap = run_json(&mut c, "swap-stream")?;
        // The int8 form of the bundle, when made (`make bench-model`).
        let int8 = model.with_file_name(format!("{name}-int8"));
        let sentiment = a.sentiment_bin.clone().unwrap_or_else(crate::posthog::sentiment_binary);
        let setup = crate::posthog::Setup {
            python: &a.python,
            scripts: &a.scripts,
            sentiment: &sentiment,
            profile: &a.posthog_profile,
            plugin: &plugin,
            cache_dir: &variant_cache_dir,
            inputs: &inputs,
            rounds: if mode.quick { 3 } else { 8 },
        };
        let posthog = crate::posthog::measure(&setup, &model, int8.is_dir().then_some(int8.as_path()), &ort1)?;
        let all = json!({"meta": meta, "ort1": ort1, "ort_all": ort_all, "native": native_out, "wasm": wasm_out, "snapshot_made": snapshot, "ready": ready, "swap": swap, "posthog": posthog});
        std::fs::write(inputs.join("results.json"), serde_json::to_vec_pretty(&all)?)?;
        reports.push((model, all));
    }
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let mut out = std::io::stdout().lock();
    for (model, all) in &reports {
        let ctx = TableCtx {
            cores,
            quick: mode.quick,
            cold_compile,
            plugin_bytes: wasm.len(),
            load_start: &load_start,
            load_end: &load_end,
            cpu_features: cpu::features(),
            vectors: cpu::widest_vectors(),
        };
        writeln!(out, "{}", table(model, all, &ctx)?)?;
        writeln!(out, "{}", crate::posthog::table(&all["posthog"]))?;
    }
    Ok(())
}

/// How the orchestrator's engine got the bundle's snapshot: made (and how
/// long that took) or why not.
fn snapshot_made(r: &InstanceStart) -> Value {
    match r {
        InstanceStart::Snapshot { created, took, file_bytes, .. } => {
            log(format!("snapshot {} in {:.1}s ({} MB)", if *created { "made" } else { "found" }, took.as_secs_f64(), file_bytes >> 20))
        }
        InstanceStart::Load(why) => log(format!("no snapshot: {why}")),
    }
    readiness(r)
}
