//! `swap-stream`: the whole stream as a worker with two task slots runs it
//! (the registry, the instance pool and one result cache shared by the
//! tasks, as in the worker), with another build of the plugin activated a
//! fifth of the way in. What it shows: tasks that fail (none may), how long
//! tasks took before, during and after the activation (a task that waited
//! for the new version's compile or snapshot would take as long as they
//! do), the first task on the new version, and the texts two tasks had in
//! flight at once and classified once (single-flight).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use llma_sentiment::cache::ResultCache;
use llma_sentiment::engine::{EngineOptions, Limits, PluginEngine, SnapshotPolicy};
use llma_sentiment::pipeline::{self, PipelineOptions};
use llma_sentiment::pool::InstancePool;
use llma_sentiment::registry::Registry;
use serde_json::{json, Value};
use wasm_encoder::{ComponentSection, CustomSection};

use crate::measure::{log, pct, read_events, readiness};
use crate::BundleArgs;

#[derive(Debug, clap::Args, Clone)]
pub(crate) struct SwapArgs {
    #[arg(long)]
    plugin: PathBuf,
    // The first version's artifact and snapshot are taken from its cache
    // when there; the second build's are made during the run.
    #[command(flatten)]
    bundle: BundleArgs,
    /// Tasks running at once (and instances in the pool).
    #[arg(long, default_value_t = 2)]
    tasks: usize,
    /// Tasks the new version must serve before the run ends (the stream is
    /// gone through again, on the new version's empty cache scope, if
    /// needed).
    #[arg(long, default_value_t = 100)]
    after: usize,
    /// Longest the run may take.
    #[arg(long, default_value_t = 1800)]
    max_seconds: u64,
}

/// The plugin with a custom section appended: the same code, another build
/// (another SHA-256, so another version, compiled and snapshotted anew).
fn another_build(wasm: &[u8]) -> Vec<u8> {
    let mut bytes = wasm.to_vec();
    let tag = format!("swap-stream {}", std::process::id());
    CustomSection { name: "llma-bench-build".into(), data: tag.as_bytes().into() }.append_to_component(&mut bytes);
    bytes
}

struct Task {
    started: Instant,
    wall: f64,
    version: u64,
    error: Option<String>,
}

fn phase(tasks: &[&Task]) -> Value {
    let walls: Vec<f64> = tasks.iter().map(|t| t.wall).collect();
    // NaN (no task in the phase) is written as null.
    let at = |q: f64| Some(pct(&walls, q)).filter(|v| v.is_finite());
    json!({"tasks": walls.len(), "wall_p50": at(0.5), "wall_p99": at(0.99), "wall_max": at(1.0)})
}

pub fn swap_stream(a: &SwapArgs) -> anyhow::Result<Value> {
    let wasm = std::fs::read(&a.plugin).with_context(|| format!("reading {}", a.plugin.display()))?;
    let events = read_events(&a.bundle.inputs.join("stream.jsonl"))?;
    anyhow::ensure!(!events.is_empty(), "stream.jsonl is empty");
    let options = EngineOptions { snapshots: SnapshotPolicy::Create, ..EngineOptions::default() };
    let engine = Arc::new(PluginEngine::with_options(Limits::default(), Some(a.bundle.cache_dir.clone()), options)?);
    let first = Arc::new(engine.load_plugin(&wasm, &a.bundle.model)?);
    let registry = Arc::new(Registry::new(engine, first, Some(a.plugin.clone()), Duration::from_secs(3600))?);
    let pool = Arc::new(InstancePool::for_registry(a.tasks, &registry));
    pool.warm(&registry.current(), a.tasks)?;
    let v1 = registry.current().seq;
    let second = another_build(&wasm);
    let cache = ResultCache::default();
    let pipeline_options = PipelineOptions::default();
    let swap_at = events.len() / 5;
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);

    let next = AtomicUsize::new(0);
    let on_new = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let swapped = AtomicBool::new(false);
    let tasks: Mutex<Vec<Task>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let mut activation = Value::Null;
    let mut window = (started, started);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..a.tasks)
            .map(|_| {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        // Once through the stream; then, after the switch,
                        // again until the new version has served enough.
                        if i >= events.len() {
                            while !swapped.load(Ordering::Relaxed) && Instant::now() < deadline {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            if on_new.load(Ordering::Relaxed) >= a.after || done.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                        if Instant::now() > deadline {
                            break;
                        }
                        let version = registry.current();
                        let t = Instant::now();
                        let result = match pool.try_checkout(&version) {
                            Some(mut slot) => pipeline::analyze_cached(&mut slot, &events[i % events.len()], &pipeline_options, Some(&cache), |_| ControlFlow::Continue(()))
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                            None => Err("no free instance in the pool".to_string()),
                        };
                        if version.seq != v1 {
                            on_new.fetch_add(1, Ordering::Relaxed);
                        }
                        let task = Task { started: t, wall: t.elapsed().as_secs_f64(), version: version.seq, error: result.err() };
                        tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
                    }
                })
            })
            .collect();
        while next.load(Ordering::Relaxed) < swap_at && !workers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
        let result = registry.activate_bytes(&second, None, None);
        window = (t, Instant::now());
        let took = (window.1 - window.0).as_secs_f64();
        if result.is_err() {
            done.store(true, Ordering::Relaxed);
        }
        swapped.store(true, Ordering::Relaxed);
        activation = match &result {
            Ok(v) => json!({
                "seconds": took,
                "compile_seconds": v.plugin.compile_time.as_secs_f64(),
                "snapshot": readiness(&v.plugin.instance_start),
                "version": v.label(),
            }),
            Err(e) => json!({"seconds": took, "error": e.to_string()}),
        };
        log(format!("swap: activation took {took:.1}s: {activation}"));
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("a task thread panicked"))?;
        }
        Ok(())
    })?;

    let tasks = tasks.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed: Vec<&Task> = tasks.iter().filter(|t| t.error.is_some()).collect();
    let before: Vec<&Task> = tasks.iter().filter(|t| t.started < window.0).collect();
    // A task overlapping the activation at all, on either version.
    let during: Vec<&Task> = tasks.iter().filter(|t| t.started >= window.0 && t.started < window.1).collect();
    let after: Vec<&Task> = tasks.iter().filter(|t| t.started >= window.1).collect();
    let on_new: Vec<&Task> = tasks.iter().filter(|t| t.version != v1).collect();
    let first_new = on_new.iter().min_by_key(|t| t.started);
    log(format!(
        "swap: {} tasks, {} failed, {} on the new version; longest task before {:?}, during {:?} the activation",
        tasks.len(),
        failed.len(),
        on_new.len(),
        before.iter().map(|t| t.wall).reduce(f64::max),
        during.iter().map(|t| t.wall).reduce(f64::max),
    ));
    Ok(json!({
        "tasks": tasks.len(),
        "failed": failed.len(),
        "first_error": failed.first().and_then(|t| t.error.clone()),
        "on_new_version": on_new.len(),
        "activation": activation,
        "before": phase(&before),
        "during": phase(&during),
        "after": phase(&after),
        "first_on_new_version_wall": first_new.map(|t| t.wall),
        "deduplicated_in_flight": cache.deduplicated_in_flight(),
        "cache_hit_rate": cache.stats().hit_rate(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
