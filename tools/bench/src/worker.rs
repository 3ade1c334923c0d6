//! `wasm-worker`: one process measuring tract inside the component as the
//! worker runs it (the engine's own constructors, snapshot instances): ready
//! time from the cached snapshot, memory of 1/2/4 ready instances, the
//! latency grid, the sample and whole stream, and the limits' cost.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use llma_sentiment::engine::{EngineOptions, InstanceSlot, Limits, PluginEngine, SnapshotPolicy};
use llma_sentiment::pipeline::{self, Analysis, PipelineOptions};
use llma_sentiment::cache::ResultCache;
use serde_json::{json, Value};

use crate::measure::{grid_texts, log, pss, read_events, readiness, rss, thread_cpu, timed_calls};
use crate::{ProbeArgs, WorkerArgs};

/// PSS of this process with 1, 2 and 4 ready instances (each has run one
/// classify, so its activations are in), above the process before the first.
fn instances_pss(plugin: &Arc<llma_sentiment::engine::Plugin>) -> anyhow::Result<Value> {
    let texts = vec!["a short message to warm the instance up".to_string()];
    let before = pss();
    let mut live = Vec::new();
    let mut out = serde_json::Map::new();
    for n in 1..=4 {
        let mut slot = InstanceSlot::new(plugin.clone());
        slot.get()?.classify(&texts)?;
        live.push(slot);
        if [1, 2, 4].contains(&n) {
            out.insert(n.to_string(), pss());
        }
    }
    Ok(json!({"before": before, "with": out}))
}

pub fn wasm_worker(w: &WorkerArgs) -> anyhow::Result<Value> {
    let started = Instant::now();
    let rss_start = rss();
    let wasm = std::fs::read(&w.plugin).with_context(|| format!("reading {}", w.plugin.display()))?;
    // The worker's engine: makes the snapshot if the cache has none (the
    // orchestrator made it, so here it is mapped from the cache).
    let options = EngineOptions { snapshots: SnapshotPolicy::Create, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(Limits::default(), Some(w.bundle.cache_dir.clone()), options)?;
    let plugin = Arc::new(engine.load_plugin(&wasm, &w.bundle.model)?);
    let from_cache = plugin.from_cache;
    let artifact_load = plugin.compile_time.as_secs_f64();
    let snapshot = readiness(&plugin.instance_start);
    let rss_before_instance = rss();
    let (c, t) = (thread_cpu(), Instant::now());
    let mut slot = InstanceSlot::new(plugin.clone());
    let info = slot.get()?.info().clone();
    let (model_load, model_load_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
    let warm_start = started.elapsed().as_secs_f64();
    let rss_loaded = rss();
    log(format!(
        "wasm: {} ready in {model_load:.3}s, {warm_start:.3}s after process start (artifact {artifact_load:.3}s, cached: {from_cache}; snapshot {snapshot})",
        info.model_name
    ));

    let mut cells = Vec::new();
    for (len, texts) in grid_texts(&w.bundle.inputs)? {
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
    let sample = read_events(&w.bundle.inputs.join("sample.jsonl"))?;
    let options = PipelineOptions::default();
    let (mut generations, mut messages) = (0usize, 0usize);
    let (c0, t0) = (thread_cpu(), Instant::now());
    for generation in &sample {
        if let Analysis::Sentiment(event) = pipeline::analyze_cached(&mut slot, generation, &options, None, |_| ControlFlow::Continue(()))? {
            generations += 1;
            messages += event.properties.messages.len();
        }
    }
    let stream = json!({"generations": generations, "messages": messages, "wall": t0.elapsed().as_secs_f64(), "cpu": thread_cpu() - c0});
    log(format!("wasm: stream sample, {messages} messages in {:.1}s", t0.elapsed().as_secs_f64()));

    // The whole stream as the worker runs it: result cache (default size,
    // empty at the start) + length bucketing, every generation in order.
    let whole = read_events(&w.bundle.inputs.join("stream.jsonl"))?;
    let cache = ResultCache::default();
    let (mut generations, mut messages) = (0usize, 0usize);
    let (c0, t0) = (thread_cpu(), Instant::now());
    for generation in &whole {
        if let Analysis::Sentiment(event) = pipeline::analyze_cached(&mut slot, generation, &options, Some(&cache), |_| ControlFlow::Continue(()))? {
            generations += 1;
            messages += event.properties.messages.len();
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

    // After the peak RSS above (VmRSS would count the shared image once per instance).
    drop(slot);
    let memory = instances_pss(&plugin)?;
    let overhead = if w.overhead_reps > 0 { crate::overhead::overhead(w, &wasm)? } else { Value::Null };

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
        "snapshot": snapshot,
        "instances_memory": memory,
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


/// `ready-probe`: a fresh process that only gets one instance ready from the
/// cached snapshot, the way a worker starts. With `evict`, the snapshot files
/// are dropped from the page cache first (`POSIX_FADV_DONTNEED`), so the
/// figure is a start from disk; without, from the page cache.
pub fn ready_probe(p: &ProbeArgs) -> anyhow::Result<Value> {
    let started = Instant::now();
    if p.evict {
        for entry in std::fs::read_dir(&p.cache_dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".snapshot.cwasm") {
                let file = std::fs::File::open(entry.path())?;
                rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
            }
        }
    }
    let evicted = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let wasm = std::fs::read(&p.plugin).with_context(|| format!("reading {}", p.plugin.display()))?;
    let options = EngineOptions { snapshots: SnapshotPolicy::UseExisting, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(Limits::default(), Some(p.cache_dir.clone()), options)?;
    let plugin = Arc::new(engine.load_plugin(&wasm, &p.model)?);
    let snapshot = readiness(&plugin.instance_start);
    let t = Instant::now();
    let mut slot = InstanceSlot::new(plugin.clone());
    slot.get()?;
    let instance = t.elapsed().as_secs_f64();
    let ready = started.elapsed().as_secs_f64();
    let texts = vec!["a short message to time the first call".to_string()];
    let t = Instant::now();
    slot.get()?.classify(&texts)?;
    let first_call = t.elapsed().as_secs_f64();
    log(format!("wasm: ready probe (evicted first: {}): ready {ready:.3}s after start, first call {first_call:.3}s", p.evict));
    Ok(json!({"evicted": p.evict, "evict_seconds": evicted, "snapshot": snapshot, "instance_seconds": instance, "ready_seconds": ready, "first_call_seconds": first_call}))
}
