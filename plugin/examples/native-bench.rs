//! Native tract, for `make bench`: the plugin's own `Classifier` compiled for
//! the host (x86-64 kernels, no sandbox), on the inputs `models/gen_stream.py`
//! wrote. Prints one JSON object; `llma-bench` runs it and builds the table.
//!
//!     native-bench --model DIR --inputs DIR [--batches 1,8] [--reps N] [--min-reps N]
//!                  [--budget SECONDS] [--warm-cutoff SECONDS] [--no-stream]
//!
//! Measures model load (bytes to optimised plan), the wall and thread CPU
//! time of each `classify` call per grid cell (tokenize + pad + run, same timing rule as
//! the other runtimes), the sample stream through the same per-generation
//! batching as the host pipeline (extract, then chunks of `--batch-size` in
//! message order), and resident memory (VmRSS/VmHWM).

use std::path::PathBuf;
use std::time::Instant;

use llma_sentiment_plugin::extract::extract;
use llma_sentiment_plugin::model::Classifier;
use llma_sentiment_plugin::types::ExtractOptions;
use llma_proc_stats::{thread_cpu_seconds as thread_cpu, Proc, Resident};
use serde_json::{json, Value};

struct Args {
    model: PathBuf,
    inputs: PathBuf,
    batches: Vec<usize>,
    reps: usize,
    min_reps: usize,
    budget: f64,
    warm_cutoff: f64,
    batch_size: usize,
    stream: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        model: PathBuf::new(),
        inputs: PathBuf::new(),
        batches: vec![1, 8],
        reps: 10,
        min_reps: 2,
        budget: 5.0,
        warm_cutoff: 2.0,
        batch_size: 8,
        stream: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--model" => a.model = val().into(),
            "--inputs" => a.inputs = val().into(),
            "--batches" => a.batches = val().split(',').map(|b| b.parse().unwrap_or_else(|_| die("bad --batches"))).collect(),
            "--reps" => a.reps = val().parse().unwrap_or_else(|_| die("bad --reps")),
            "--min-reps" => a.min_reps = val().parse().unwrap_or_else(|_| die("bad --min-reps")),
            "--budget" => a.budget = val().parse().unwrap_or_else(|_| die("bad --budget")),
            "--warm-cutoff" => a.warm_cutoff = val().parse().unwrap_or_else(|_| die("bad --warm-cutoff")),
            "--batch-size" => a.batch_size = val().parse().unwrap_or_else(|_| die("bad --batch-size")),
            "--no-stream" => a.stream = false,
            other => die(&format!("unknown argument {other}")),
        }
    }
    if a.model.as_os_str().is_empty() || a.inputs.as_os_str().is_empty() {
        die("usage: native-bench --model DIR --inputs DIR [...]");
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("native-bench: {msg}");
    std::process::exit(2)
}

/// VmRSS and VmHWM of this process, bytes.
fn rss() -> Value {
    let r = Resident::of(Proc::This);
    json!({"VmRSS": r.rss, "VmHWM": r.hwm})
}

/// Wall and CPU times of calls to `f`: the first is a warm-up unless it is
/// slow (then it counts); as many as fit in `budget` (wall), within
/// [min_reps, reps].
fn timed_calls(mut f: impl FnMut(), a: &Args) -> (Vec<f64>, Vec<f64>) {
    let (c, t) = (thread_cpu(), Instant::now());
    f();
    let (first, first_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
    let (mut times, mut cpus) = if first < a.warm_cutoff { (Vec::new(), Vec::new()) } else { (vec![first], vec![first_cpu]) };
    // A call slower than 4 budgets is measured once.
    let n = if first >= 4.0 * a.budget { 1 } else { a.min_reps.max(a.reps.min((a.budget / first.max(1e-6)).ceil() as usize)) };
    while times.len() < n {
        let (c, t) = (thread_cpu(), Instant::now());
        f();
        times.push(t.elapsed().as_secs_f64());
        cpus.push(thread_cpu() - c);
    }
    (times, cpus)
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
    serde_json::from_str(&text).unwrap_or_else(|e| die(&format!("{}: {e}", path.display())))
}

fn main() {
    let a = parse_args();
    let rss_start = rss();
    let (c, t) = (thread_cpu(), Instant::now());
    let classifier = Classifier::load_dir(&a.model).unwrap_or_else(|e| die(&format!("load: {e}")));
    let (load_seconds, load_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
    let rss_loaded = rss();

    let grid = read_json(&a.inputs.join("grid.json"));
    let mut cells = Vec::new();
    for (length, entry) in grid["lengths"].as_object().unwrap_or_else(|| die("grid.json has no lengths")) {
        let texts: Vec<String> = entry["texts"]
            .as_array()
            .unwrap_or_else(|| die("grid.json: texts"))
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect();
        for &batch in &a.batches {
            let batch_texts = &texts[..batch.min(texts.len())];
            let (times, cpus) = timed_calls(
                || {
                    classifier.classify(batch_texts).unwrap_or_else(|e| die(&format!("classify: {e}")));
                },
                &a,
            );
            cells.push(json!({"tokens": length.parse::<usize>().unwrap_or(0), "batch": batch, "times": times, "cpu": cpus}));
        }
    }

    let mut out = json!({
        "runtime": "tract-native",
        "load_seconds": load_seconds,
        "load_cpu": load_cpu,
        "rss_start": rss_start,
        "rss_loaded": rss_loaded,
        "grid": cells,
    });

    if a.stream {
        let sample = std::fs::read_to_string(a.inputs.join("sample.jsonl")).unwrap_or_else(|e| die(&format!("sample.jsonl: {e}")));
        let mut generations = 0usize;
        let mut messages = 0usize;
        let (c0, t0) = (thread_cpu(), Instant::now());
        for line in sample.lines().filter(|l| !l.trim().is_empty()) {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| die(&format!("sample.jsonl: {e}")));
            let props = match &event["properties"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                other => other.clone(),
            };
            let Some(ai_input) = props.get("$ai_input").filter(|v| !v.is_null()) else { continue };
            let texts: Vec<String> = extract(ai_input, ExtractOptions::default()).into_iter().map(|m| m.text).collect();
            if texts.is_empty() {
                continue;
            }
            generations += 1;
            for chunk in texts.chunks(a.batch_size.max(1)) {
                classifier.classify(chunk).unwrap_or_else(|e| die(&format!("classify: {e}")));
                messages += chunk.len();
            }
        }
        out["stream"] = json!({
            "generations": generations,
            "messages": messages,
            "wall": t0.elapsed().as_secs_f64(),
            "cpu": thread_cpu() - c0,
        });
    }
    out["rss_end"] = rss();
    println!("{out}");
}
