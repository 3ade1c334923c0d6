//! PostHog's 2026 mode and the int8 bundle beside ONNX Runtime: one table.
//!
//! - **PostHog's 2026 mode**: the last user message of every generation,
//!   cut at 1000 characters (head 300 + tail 695). ONNX Runtime runs it on
//!   one thread in batches of 32, the way PostHog's pipeline does
//!   (`models/posthog_bench.py`). Ours is `llma-sentiment --config
//!   profiles/posthog-2026.toml analyze` over the same stream, with the
//!   result cache off so every message is run. Both are measured in
//!   messages per CPU-second: ours is the whole process (start, snapshot,
//!   reading, writing), ONNX Runtime only its classification loop.
//! - **Per sequence**: the f32 and int8 bundles in the component under the
//!   worker's limits, calls interleaved, against ONNX Runtime's f32 from
//!   the main table's run.
//! - **Labels**: per generation, int8 against f32 and both against ONNX
//!   Runtime, with the disagreements listed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context};
use llma_proc_stats::children_cpu_seconds;
use llma_sentiment::engine::{EngineOptions, InstanceSlot, Limits, PluginEngine, SnapshotPolicy};
use serde_json::{json, Value};

use crate::measure::{grid_texts, log, median, run_json};

pub(crate) struct Setup<'a> {
    pub python: &'a Path,
    pub scripts: &'a Path,
    /// The `llma-sentiment` binary.
    pub sentiment: &'a Path,
    pub profile: &'a Path,
    pub plugin: &'a Path,
    pub cache_dir: &'a Path,
    /// The directory gen_stream.py wrote.
    pub inputs: &'a Path,
    pub rounds: usize,
}

/// A generation's label and its three scores, keyed by generation uuid.
type Labels = BTreeMap<String, (String, Value)>;

pub(crate) fn measure(s: &Setup, f32_model: &Path, int8_model: Option<&Path>, ort1: &Value) -> anyhow::Result<Value> {
    let models: Vec<&Path> = std::iter::once(f32_model).chain(int8_model).collect();
    let per_sequence = per_sequence(s, &models, ort1)?;
    let stream = s.inputs.join("stream.jsonl");
    // PostHog's batches of 32, each padded to its longest text; and one at a
    // time, ONNX Runtime's best case on a stream of mixed lengths.
    let (ort, ort_labels) = ort_posthog(s, f32_model, &stream, 32)?;
    let (ort1_rate, _) = ort_posthog(s, f32_model, &stream, 1)?;
    let mut ours = Vec::new();
    for model in &models {
        ours.push(analyze(s, model, &stream)?);
    }
    let agreement = |a: &Labels, b: &Labels| -> Value {
        let mut same = 0;
        let mut differ = Vec::new();
        let mut worst = 0f64;
        for (uuid, (la, sa)) in a {
            let Some((lb, sb)) = b.get(uuid) else { continue };
            for class in ["negative", "neutral", "positive"] {
                worst = worst.max((sa[class].as_f64().unwrap_or(f64::NAN) - sb[class].as_f64().unwrap_or(f64::NAN)).abs());
            }
            if la == lb {
                same += 1;
            } else {
                differ.push(json!({"generation": uuid, "labels": [la, lb], "scores": [sa, sb]}));
            }
        }
        json!({"compared": same + differ.len(), "same": same, "differ": differ, "worst_score_diff": worst})
    };
    let f32_labels = &ours[0].1;
    let mut labels = json!({"f32_vs_ort": agreement(f32_labels, &ort_labels)});
    if let Some((_, int8_labels)) = ours.get(1) {
        labels["int8_vs_f32"] = agreement(int8_labels, f32_labels);
        labels["int8_vs_ort"] = agreement(int8_labels, &ort_labels);
    }
    let mut spread = BTreeMap::<String, usize>::new();
    for (label, _) in f32_labels.values() {
        *spread.entry(label.clone()).or_default() += 1;
    }
    labels["f32_spread"] = json!(spread);
    Ok(json!({
        "per_sequence": per_sequence,
        "ort": ort,
        "ort_one_at_a_time": ort1_rate,
        "ours": ours.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
        "labels": labels,
    }))
}

/// `posthog_bench.py` on the stream in batches of `batch`: its counts and
/// CPU, and its labels.
fn ort_posthog(s: &Setup, model: &Path, stream: &Path, batch: usize) -> anyhow::Result<(Value, Labels)> {
    log(format!("PostHog's 2026 mode: ONNX Runtime, 1 thread, batches of {batch}"));
    let v = run_json(
        Command::new(s.python)
            .arg(s.scripts.join("posthog_bench.py"))
            .args(["--model", &model.display().to_string(), "--stream", &stream.display().to_string()])
            .args(["--batch", &batch.to_string()]),
        "posthog_bench.py",
    )?;
    let labels: Labels = v["labels"]
        .as_object()
        .context("posthog_bench.py printed no labels")?
        .iter()
        .map(|(k, v)| (k.clone(), (v["label"].as_str().unwrap_or("").to_string(), v["scores"].clone())))
        .collect();
    let counts = json!({"generations": v["generations"], "messages": v["messages"], "distinct": v["distinct"], "batch": batch,
                        "classify_cpu": v["classify_cpu"]});
    Ok((counts, labels))
}

/// `analyze` over the stream on one bundle: a small warm-up run first (the
/// compile and snapshot are the cache's, not the mode's), then the timed one.
fn analyze(s: &Setup, model: &Path, stream: &Path) -> anyhow::Result<(Value, Labels)> {
    let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string();
    log(format!("PostHog's 2026 mode: ours, {name}"));
    let head: String = std::fs::read_to_string(stream)?.lines().take(4).map(|l| format!("{l}\n")).collect();
    let mut warm = tempfile::NamedTempFile::new()?;
    warm.write_all(head.as_bytes())?;
    run_analyze(s, model, warm.path())?;
    let before = children_cpu_seconds();
    let stdout = run_analyze(s, model, stream)?;
    let cpu = children_cpu_seconds() - before;
    let mut labels = Labels::new();
    let mut messages = 0;
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let event: Value = serde_json::from_str(line).context("analyze printed bad JSON")?;
        let props = &event["properties"];
        let (Some(target), Some(per_message)) = (props["$ai_target_event_id"].as_str(), props["$ai_sentiment_messages"].as_object()) else {
            continue;
        };
        // One message per generation in this mode; its argmax is the model's label.
        let Some(scores) = per_message.values().next().map(|m| m["scores"].clone()) else { continue };
        messages += per_message.len();
        let label = ["negative", "neutral", "positive"]
            .into_iter()
            .max_by(|a, b| scores[a].as_f64().unwrap_or(0.0).total_cmp(&scores[b].as_f64().unwrap_or(0.0)))
            .unwrap_or("neutral");
        labels.insert(target.to_string(), (label.to_string(), scores));
    }
    Ok((json!({"model": name, "generations": labels.len(), "messages": messages, "process_cpu": cpu}), labels))
}

fn run_analyze(s: &Setup, model: &Path, input: &Path) -> anyhow::Result<String> {
    let out = Command::new(s.sentiment)
        .arg("--config")
        .arg(s.profile)
        .arg("analyze")
        .arg("--plugin")
        .arg(s.plugin)
        .arg("--model")
        .arg(model)
        .arg("--cache-dir")
        .arg(s.cache_dir)
        .arg(input)
        // Every message run: the per-sequence cost is the mode's whole cost.
        .env("LLMA_SENTIMENT_PIPELINE_RESULT_CACHE_MB", "0")
        .stderr(Stdio::null())
        .output()
        .context("starting llma-sentiment analyze")?;
    if !out.status.success() {
        bail!("llma-sentiment analyze on {} failed ({})", model.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// CPU per sequence of each bundle at 16 and 128 tokens, batch 1 and 8, in
/// the component under the worker's limits, calls interleaved; and ONNX
/// Runtime's (one thread) from `ort1`'s grid.
fn per_sequence(s: &Setup, models: &[&Path], ort1: &Value) -> anyhow::Result<Value> {
    log("per sequence: the bundles interleaved");
    let options = EngineOptions { snapshots: SnapshotPolicy::Off, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(Limits::default(), Some(s.cache_dir.to_path_buf()), options)?;
    let wasm = std::fs::read(s.plugin).with_context(|| format!("reading {}", s.plugin.display()))?;
    let mut slots = Vec::new();
    for model in models {
        let mut slot = InstanceSlot::new(Arc::new(engine.load_plugin(&wasm, &model.to_path_buf())?));
        slot.get()?;
        slots.push(slot);
    }
    let grid = grid_texts(s.inputs)?;
    let mut cells = Vec::new();
    for (len, batch) in [(16, 1), (16, 8), (128, 1), (128, 8)] {
        let Some((_, texts)) = grid.iter().find(|(l, _)| *l == len) else { continue };
        let texts = &texts[..batch.min(texts.len())];
        let ours = crate::compare::interleaved(&mut slots, texts, s.rounds)?;
        let ort = ort1["grid"].as_array().and_then(|g| {
            g.iter().find(|c| c["tokens"].as_u64() == Some(len as u64) && c["batch"].as_u64() == Some(batch as u64))
        });
        let ort = ort.and_then(|c| c["cpu"].as_array()).map(|v| median(&v.iter().filter_map(Value::as_f64).collect::<Vec<_>>()) / batch as f64);
        cells.push(json!({"tokens": len, "batch": batch, "ours": ours, "ort": ort}));
    }
    Ok(json!({"models": models.iter().map(|m| m.display().to_string()).collect::<Vec<_>>(), "cells": cells}))
}

/// The table of `measure`'s result.
pub(crate) fn table(v: &Value) -> String {
    let mut t = String::from("| measure | ours: f32 | ours: int8 | ONNX Runtime f32, 1 thread | ours / ORT |\n|---|---|---|---|---|\n");
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    for c in v["per_sequence"]["cells"].as_array().into_iter().flatten() {
        let ours: Vec<f64> = c["ours"].as_array().into_iter().flatten().map(f).collect();
        let ort = f(&c["ort"]);
        let int8 = ours.get(1).copied();
        let ratio = |x: f64| format!("{:.2}x", x / ort);
        t += &format!(
            "| CPU per sequence, {} tokens x {} (ms) | {:.1} | {} | {:.1} | f32 {}{} |\n",
            c["tokens"],
            c["batch"],
            ours[0] * 1e3,
            int8.map_or("–".into(), |x| format!("{:.1}", x * 1e3)),
            ort * 1e3,
            ratio(ours[0]),
            int8.map_or(String::new(), |x| format!(", int8 {}", ratio(x))),
        );
    }
    let ort = &v["ort"];
    let ort_rate = f(&ort["messages"]) / f(&ort["classify_cpu"]);
    let one = &v["ort_one_at_a_time"];
    let one_rate = f(&one["messages"]) / f(&one["classify_cpu"]);
    let ours: Vec<f64> = v["ours"].as_array().into_iter().flatten().map(|o| f(&o["messages"]) / f(&o["process_cpu"])).collect();
    t += &format!(
        "| PostHog's 2026 mode, the whole stream ({} generations, {} last messages, {} distinct): messages per CPU-second (ours: the process, result cache off; ORT: its classification loop, batches of 32) | {:.2} | {} | {:.2} | f32 {:.2}x{} |\n",
        ort["generations"],
        ort["messages"],
        ort["distinct"],
        ours[0],
        ours.get(1).map_or("–".into(), |x| format!("{x:.2}")),
        ort_rate,
        ours[0] / ort_rate,
        ours.get(1).map_or(String::new(), |x| format!(", int8 {:.2}x", x / ort_rate)),
    );
    t += &format!(
        "| the same, ONNX Runtime one message at a time (no padding) | {:.2} | {} | {:.2} | f32 {:.2}x{} |\n",
        ours[0],
        ours.get(1).map_or("–".into(), |x| format!("{x:.2}")),
        one_rate,
        ours[0] / one_rate,
        ours.get(1).map_or(String::new(), |x| format!(", int8 {:.2}x", x / one_rate)),
    );
    let agree = |k: &str| -> String {
        let a = &v["labels"][k];
        if a.is_null() {
            return "–".into();
        }
        let (n, same) = (f(&a["compared"]), f(&a["same"]));
        format!("{same} / {n} ({:.1}%), largest score difference {:.4}", 100.0 * same / n, f(&a["worst_score_diff"]))
    };
    t += &format!(
        "| labels per generation, PostHog's mode: int8 = f32; int8 = ORT; f32 = ORT (f32's labels: {}) | {} | {} | {} | |\n",
        v["labels"]["f32_spread"],
        agree("int8_vs_f32"),
        agree("int8_vs_ort"),
        agree("f32_vs_ort"),
    );
    for d in v["labels"]["int8_vs_f32"]["differ"].as_array().into_iter().flatten().take(10) {
        let scores = |x: &Value| format!("{:.3} / {:.3} / {:.3}", f(&x["negative"]), f(&x["neutral"]), f(&x["positive"]));
        t += &format!(
            "| int8 and f32 differ, generation {}: label, negative / neutral / positive | {} {} | {} {} | | |\n",
            d["generation"].as_str().unwrap_or("?"),
            d["labels"][1].as_str().unwrap_or("?"),
            scores(&d["scores"][1]),
            d["labels"][0].as_str().unwrap_or("?"),
            scores(&d["scores"][0]),
        );
    }
    t
}

/// ONNX Runtime's latency grid on one thread (`ort_bench.py`, no stream),
/// for `llma-bench posthog` run on its own.
pub(crate) fn ort_grid(python: &Path, scripts: &Path, model: &Path, inputs: &Path) -> anyhow::Result<Value> {
    log("ONNX Runtime's grid, 1 thread");
    run_json(
        Command::new(python)
            .arg(scripts.join("ort_bench.py"))
            .args(["--model", &model.display().to_string(), "--inputs", &inputs.display().to_string()])
            .args(["--threads", "1", "--no-stream", "--reps", "8", "--budget", "3"]),
        "ort_bench.py",
    )
}

/// The `llma-sentiment` binary beside this one (both are built into the
/// same target dir).
pub(crate) fn sentiment_binary() -> PathBuf {
    std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("llma-sentiment"))).unwrap_or_else(|| "llma-sentiment".into())
}
