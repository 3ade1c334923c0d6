//! Timing and memory readings every mode of the bench shares, and its inputs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use llma_proc_stats::{Proc, Proportional, Resident};
use llma_sentiment::engine::InstanceStart;
use llma_sentiment::event::GenerationEvent;
use serde_json::{json, Value};

use crate::WorkerArgs;

pub fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

/// The value at fraction `p` of `values` sorted (nearest rank), NaN if empty.
pub fn pct(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn median(values: &[f64]) -> f64 {
    pct(values, 0.5)
}

/// How a plugin's instances get ready, as the results record it: from a
/// snapshot (made now or found, how long that took, its file size) or by
/// loading the model, and why.
pub fn readiness(r: &InstanceStart) -> Value {
    match r {
        InstanceStart::Snapshot { created, took, file_bytes, .. } => json!({"created": created, "seconds": took.as_secs_f64(), "file_bytes": file_bytes}),
        InstanceStart::Load(why) => json!({"fallback": why.to_string()}),
    }
}

/// VmRSS and VmHWM of this process, bytes.
pub fn rss() -> Value {
    let r = Resident::of(Proc::This);
    json!({"VmRSS": r.rss, "VmHWM": r.hwm})
}

/// Proportional set size of this process, bytes (see `llma_proc_stats`).
pub fn pss() -> Value {
    let p = Proportional::of(Proc::This);
    json!({"Rss": p.rss, "Pss": p.pss, "Pss_Anon": p.pss_anon, "Pss_File": p.pss_file})
}

pub use llma_proc_stats::thread_cpu_seconds as thread_cpu;

/// Wall and thread CPU times of calls to `f`: the first is a warm-up unless
/// it is slow (then it counts); as many calls as fit in `budget` (wall),
/// within [min_reps, reps]. ort_bench.py and native-bench use the same rule.
pub fn timed_calls(mut f: impl FnMut() -> anyhow::Result<()>, w: &WorkerArgs) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
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

pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The grid texts: tokens -> texts (all of exactly that many tokens).
pub fn grid_texts(inputs: &Path) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
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

pub fn read_events(path: &Path) -> anyhow::Result<Vec<GenerationEvent>> {
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

/// Runs a child that prints one JSON object on stdout; its stderr passes through.
pub fn run_json(c: &mut Command, what: &str) -> anyhow::Result<Value> {
    let output = c.stderr(Stdio::inherit()).output().with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).with_context(|| format!("{what} printed no JSON"))?;
    serde_json::from_str(last).with_context(|| format!("{what} printed bad JSON"))
}

