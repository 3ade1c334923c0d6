//! What the sandbox's limits cost: the same component on engines that differ
//! only in their limits, built by the engine's own constructor
//! (`PluginEngine::with_options`), calls interleaved so that machine noise
//! hits every variant alike.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use llma_sentiment::engine::{EngineOptions, InstanceSlot, Limits, Metering, PluginEngine, SnapshotPolicy};
use serde_json::{json, Value};

use crate::measure::{grid_texts, log, thread_cpu};
use crate::WorkerArgs;

fn variant_slot(w: &WorkerArgs, wasm: &[u8], metering: Metering) -> anyhow::Result<(PluginEngine, InstanceSlot)> {
    // Loaded, not snapshotted: each variant's config would need a snapshot
    // of its own, and what is measured is the calls, not the start.
    let options = EngineOptions { snapshots: SnapshotPolicy::Off, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(Limits { metering, ..Limits::default() }, Some(w.variant_cache_dir.clone()), options)?;
    let t = Instant::now();
    let plugin = engine.load_plugin(wasm, &w.bundle.model)?;
    if !plugin.from_cache {
        log(format!("compiled the {metering:?} variant in {:.1}s (cached for later runs)", t.elapsed().as_secs_f64()));
    }
    let mut slot = InstanceSlot::new(Arc::new(plugin));
    slot.get()?;
    Ok((engine, slot))
}

/// CPU time per call of each variant, interleaved, per grid cell.
pub fn overhead(w: &WorkerArgs, wasm: &[u8]) -> anyhow::Result<Value> {
    let mut slots = Vec::new();
    for (name, metering) in Metering::ALL {
        slots.push((name, metering, variant_slot(w, wasm, metering).with_context(|| format!("the {name} variant"))?));
    }
    let grid = grid_texts(&w.bundle.inputs)?;
    let mut cells = Vec::new();
    for cell in &w.overhead_cells {
        let (len, batch) = cell.split_once('x').context("overhead cell is TOKENSxBATCH")?;
        let (len, batch): (usize, usize) = (len.parse()?, batch.parse()?);
        let Some((_, texts)) = grid.iter().find(|(l, _)| *l == len) else { continue };
        let texts = &texts[..batch.min(texts.len())];
        // A warm-up call of each; short calls get more rounds (up to 50), within the cell budget.
        let t = Instant::now();
        for (_, _, (_, slot)) in &mut slots {
            slot.get()?.classify(texts)?;
        }
        let first = t.elapsed().as_secs_f64() / slots.len() as f64;
        let rounds = w.overhead_reps.max(50.min((w.budget / (slots.len() as f64 * first.max(1e-6))).ceil() as usize));
        // Thread CPU time: what other processes on the machine disturb least.
        let mut series: Vec<Vec<f64>> = vec![Vec::new(); slots.len()];
        for _ in 0..rounds {
            for (i, (_, _, (_, slot))) in slots.iter_mut().enumerate() {
                let c = thread_cpu();
                slot.get()?.classify(texts)?;
                series[i].push(thread_cpu() - c);
            }
        }
        log(format!("wasm: limits cost at {len} tokens x {batch} measured ({rounds} rounds)"));
        let mut out = json!({"tokens": len, "batch": batch});
        for ((name, metering, (_, slot)), s) in slots.iter_mut().zip(series) {
            out[*name] = json!(s);
            if *metering == Metering::Fuel {
                // What the budgets (`limits.fuel_*`) are derived from.
                out["fuel_per_call"] = json!(slot.get()?.last_fuel);
            }
        }
        cells.push(out);
    }
    Ok(Value::Array(cells))
}
