//! `compare`: several builds of the plugin on one bundle (or one build on
//! several bundles of the same inputs: f32 against int8), calls interleaved
//! round by round so that machine noise hits every build alike; per-sequence
//! thread CPU time of each, and its ratio to the first. For deciding between
//! kernels or compiler flags without a full `make bench` (a fresh load per
//! build, no snapshot: the calls are what is compared).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use llma_sentiment::engine::{EngineOptions, InstanceSlot, Limits, Metering, PluginEngine, SnapshotPolicy};
use serde_json::{json, Value};

use crate::measure::{grid_texts, log, median, thread_cpu};
use crate::BundleArgs;

#[derive(Debug, clap::Args, Clone)]
pub(crate) struct CompareArgs {
    /// Plugin builds to compare (the first is the reference).
    #[arg(long = "plugin", required = true)]
    plugins: Vec<PathBuf>,
    #[command(flatten)]
    bundle: BundleArgs,
    /// Further bundles each build also runs (after `--model`), e.g. the
    /// int8 form of the same model.
    #[arg(long = "also-model")]
    also_models: Vec<PathBuf>,
    /// Cells, TOKENSxBATCH.
    #[arg(long, value_delimiter = ',', default_value = "16x1,128x1")]
    cells: Vec<String>,
    /// Rounds per cell (one call of every build per round).
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// Limits each build runs under, named as in the limits table
    /// (fuel+epoch, epoch, fuel, none): every build under every one.
    #[arg(long, value_delimiter = ',', default_value = "epoch")]
    limits: Vec<String>,
    /// Name the guest's compiled functions for `perf` (`/tmp/perf-PID.map`):
    /// run under `perf record` to see where each build's time goes.
    #[arg(long)]
    perf_map: bool,
}

pub fn compare(a: &CompareArgs) -> anyhow::Result<Value> {
    let (mut runs, mut slots, mut engines) = (Vec::new(), Vec::new(), Vec::new());
    for name in &a.limits {
        let &(_, metering) = Metering::ALL.iter().find(|v| v.0 == name).with_context(|| format!("no limits named {name}"))?;
        let options = EngineOptions { snapshots: SnapshotPolicy::Off, perf_map: a.perf_map, ..EngineOptions::default() };
        let engine = PluginEngine::with_options(Limits { metering, ..Limits::default() }, Some(a.bundle.cache_dir.clone()), options)?;
        for path in &a.plugins {
            let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            for model in std::iter::once(&a.bundle.model).chain(&a.also_models) {
                let mut slot = InstanceSlot::new(Arc::new(engine.load_plugin(&wasm, model)?));
                slot.get()?;
                slots.push(slot);
                runs.push(format!("{} on {} ({name})", path.display(), model.display()));
            }
        }
        // Kept while its instances run: it owns their epoch ticker.
        engines.push(engine);
    }
    let grid = grid_texts(&a.bundle.inputs)?;
    let mut cells = Vec::new();
    for cell in &a.cells {
        let (len, batch) = cell.split_once('x').context("a cell is TOKENSxBATCH")?;
        let (len, batch): (usize, usize) = (len.parse()?, batch.parse()?);
        let (_, texts) = grid.iter().find(|(l, _)| *l == len).with_context(|| format!("grid.json has no {len}-token texts"))?;
        let texts = &texts[..batch.min(texts.len())];
        let medians = interleaved(&mut slots, texts, a.rounds)?;
        for (run, m) in runs.iter().zip(&medians) {
            log(format!("{len} tokens x {batch}: {:.4} s per sequence ({:.3}x the first), {run}", m, m / medians[0]));
        }
        cells.push(json!({"tokens": len, "batch": batch, "per_sequence_cpu": medians}));
    }
    Ok(json!({"runs": runs, "cells": cells}))
}

/// Median thread CPU per sequence of each slot on `texts`: one warm-up call
/// each, then `rounds` rounds of one call per slot, interleaved so that
/// machine noise hits every slot alike.
pub(crate) fn interleaved(slots: &mut [InstanceSlot], texts: &[String], rounds: usize) -> anyhow::Result<Vec<f64>> {
    for slot in slots.iter_mut() {
        slot.get()?.classify(texts)?;
    }
    let mut series = vec![Vec::new(); slots.len()];
    for _ in 0..rounds {
        for (slot, s) in slots.iter_mut().zip(&mut series) {
            let c = thread_cpu();
            slot.get()?.classify(texts)?;
            s.push((thread_cpu() - c) / texts.len() as f64);
        }
    }
    Ok(series.iter().map(|s| median(s)).collect())
}
