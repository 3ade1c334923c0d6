//! Benchmarks of the plugin inside wasmtime: cold compile, cached load,
//! model load, and per-message latency by length and batch size. Prints a
//! table; speed targets live here, never in timed tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use llma_sentiment::engine::{InstanceSlot, Limits, PluginEngine};

#[derive(Debug, Parser)]
#[command(about = "Benchmark the sentiment plugin inside wasmtime")]
struct Args {
    /// Plugin component.
    #[arg(long)]
    plugin: PathBuf,
    /// Model bundle directories to measure.
    #[arg(long = "model", required = true)]
    models: Vec<PathBuf>,
    /// Approximate token lengths of the measured texts.
    #[arg(long, value_delimiter = ',', default_value = "16,64,128,512")]
    lengths: Vec<usize>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batches: Vec<usize>,
    /// Timed repetitions per cell (after one warm-up).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

/// A deterministic English-ish text of about `tokens` tokens.
fn text_of(tokens: usize, seed: usize) -> String {
    const WORDS: [&str; 16] = [
        "the", "answer", "was", "great", "but", "slow", "and", "I", "really", "hate", "waiting", "for", "it", "thanks", "again", "today",
    ];
    (0..tokens.saturating_sub(2).max(1)).map(|i| WORDS[(i * 7 + seed * 3) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wasm = std::fs::read(&args.plugin).with_context(|| format!("reading {}", args.plugin.display()))?;
    let cache = tempfile::tempdir()?;
    println!("cores: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("plugin: {} ({:.1} MB)", args.plugin.display(), wasm.len() as f64 / 1e6);
    for model in &args.models {
        let engine = PluginEngine::new(Limits::default(), Some(cache.path().to_path_buf()))?;
        let cold = engine.load_plugin(&wasm, model)?;
        let warm = engine.load_plugin(&wasm, model)?;
        assert!(warm.from_cache);
        let t = Instant::now();
        let mut slot = InstanceSlot::new(Arc::new(warm));
        let info = slot.get()?.info().clone();
        let model_load = t.elapsed();
        println!();
        println!("model: {} ({})", info.model_name, model.display());
        println!("| step | ms |");
        println!("|---|---|");
        println!("| cold compile (Cranelift) | {} |", ms(cold.compile_time));
        println!("| cached artifact load | {} |", ms(slot.plugin().compile_time));
        println!("| instantiate + model load | {} |", ms(model_load));
        println!();
        println!("| tokens | batch | p50 ms/call | p99 ms/call | ms/message | fuel/message |");
        println!("|---|---|---|---|---|---|");
        for &len in &args.lengths {
            for &batch in &args.batches {
                let texts: Vec<String> = (0..batch).map(|i| text_of(len, i)).collect();
                slot.get()?.classify(&texts)?;
                let mut times = Vec::with_capacity(args.reps);
                let mut fuel = 0u64;
                for _ in 0..args.reps {
                    let t = Instant::now();
                    let instance = slot.get()?;
                    instance.classify(&texts)?;
                    times.push(t.elapsed());
                    fuel = instance.last_fuel;
                }
                times.sort();
                let p50 = pct(&times, 0.5);
                println!(
                    "| {len} | {batch} | {} | {} | {} | {:.2e} |",
                    ms(p50),
                    ms(pct(&times, 0.99)),
                    ms(p50 / batch as u32),
                    fuel as f64 / batch as f64
                );
            }
        }
    }
    Ok(())
}
