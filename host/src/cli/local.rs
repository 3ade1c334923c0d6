//! Standalone commands: the plugin and model only, no Temporal or ClickHouse.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use super::PluginArgs;
use crate::engine::{ExtractOptions, InstanceSlot, Limits};
use crate::event::GenerationEvent;
use crate::pipeline::{self, Analysis};

fn slot(args: &PluginArgs) -> anyhow::Result<(crate::engine::PluginEngine, InstanceSlot)> {
    let source = args.source();
    let engine = source.engine(Limits::default())?;
    let plugin = source.load(&engine)?;
    Ok((engine, InstanceSlot::new(plugin)))
}

fn print_line(out: &mut impl Write, value: &Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

pub fn extract(args: &PluginArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading $ai_input from stdin")?;
    let (_engine, mut slot) = slot(args)?;
    let options = ExtractOptions { max_messages: args.max_messages, max_chars: args.max_chars };
    let messages = slot.get()?.extract(input.trim(), options)?;
    let out: Vec<Value> = messages.into_iter().map(|m| json!({"index": m.index, "text": m.text})).collect();
    print_line(&mut std::io::stdout().lock(), &Value::Array(out))
}

pub fn classify(args: &PluginArgs, texts: &[String]) -> anyhow::Result<()> {
    let (_engine, mut slot) = slot(args)?;
    let mut out = std::io::stdout().lock();
    for chunk in texts.chunks(args.batch_size.max(1)) {
        let results = slot.get()?.classify(chunk)?;
        for (text, r) in chunk.iter().zip(results) {
            let line = json!({
                "text": text,
                "label": r.label.as_str(),
                "score": r.score,
                "scores": {"negative": r.scores.negative, "neutral": r.scores.neutral, "positive": r.scores.positive},
            });
            print_line(&mut out, &line)?;
        }
    }
    Ok(())
}

pub fn info(args: &PluginArgs) -> anyhow::Result<()> {
    let (_engine, mut slot) = slot(args)?;
    let plugin = slot.plugin().clone();
    let info = slot.get()?.info().clone();
    let line = json!({
        "name": info.name,
        "version": info.version,
        "interface_version": info.interface_version,
        "model": info.model_name,
        "labels": info.labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        "max_tokens": info.limits.max_tokens,
        "max_batch": info.limits.max_batch,
        "plugin_sha256": plugin.wasm_sha256,
        "model_dir": plugin.model_dir().display().to_string(),
    });
    print_line(&mut std::io::stdout().lock(), &line)
}

pub fn analyze(args: &PluginArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p == Path::new("-") => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => Box::new(BufReader::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)),
    };
    let (_engine, mut slot) = slot(args)?;
    let options = args.pipeline();
    let cache = args.result_cache();
    let mut out = std::io::stdout().lock();
    let (mut written, mut skipped, mut errors) = (0usize, 0usize, 0usize);
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("reading line {n}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = match analyze_line(&mut slot, &line, &options, &cache) {
            Ok((Analysis::Sentiment(event), _)) => {
                written += 1;
                serde_json::to_value(&*event)?
            }
            Ok((Analysis::Skipped(reason), uuid)) => {
                skipped += 1;
                json!({"skipped": true, "skip_reason": reason.as_str(), "generation_uuid": uuid})
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(line = n, error = %e, "line failed");
                json!({"error": format!("line {n}: {e}"), "line": n})
            }
        };
        print_line(&mut out, &record)?;
    }
    let stats = cache.stats();
    tracing::info!(written, skipped, errors, cache_hits = stats.hits, cache_misses = stats.misses, "analyze done");
    Ok(())
}

fn analyze_line(
    slot: &mut InstanceSlot,
    line: &str,
    options: &pipeline::PipelineOptions,
    cache: &crate::result_cache::ResultCache,
) -> anyhow::Result<(Analysis, String)> {
    let value: Value = serde_json::from_str(line).context("not valid JSON")?;
    let generation = GenerationEvent::parse(&value)?;
    let analysis = pipeline::analyze_cached(slot, &generation, options, Some(cache), |_| std::ops::ControlFlow::Continue(()))?;
    Ok((analysis, generation.uuid.to_string()))
}
