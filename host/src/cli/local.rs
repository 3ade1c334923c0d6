//! Standalone commands: the plugin and model only, no Temporal or ClickHouse.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::InstanceSlot;
use crate::event::GenerationEvent;
use crate::pipeline::{self, Analysis};

pub(super) fn slot(config: &Config) -> anyhow::Result<(crate::engine::PluginEngine, InstanceSlot)> {
    let source = config.plugin.source();
    let engine = source.engine(config.limits.limits())?;
    let plugin = source.load(&engine)?;
    // As at a worker's activation: options the plugin's interface lacks stop here.
    config.pipeline.plugin_options().check(plugin.contract)?;
    Ok((engine, InstanceSlot::new(plugin)))
}

fn print_line(out: &mut impl Write, value: &Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

pub fn extract(args: &Config) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading $ai_input from stdin")?;
    let (_engine, mut slot) = slot(args)?;
    let messages = slot.get()?.extract(input.trim(), args.pipeline.plugin_options().extraction)?;
    let out: Vec<Value> = messages.into_iter().map(|m| json!({"index": m.index, "text": m.text})).collect();
    print_line(&mut std::io::stdout().lock(), &Value::Array(out))
}

pub fn classify(args: &Config, texts: &[String]) -> anyhow::Result<()> {
    let (_engine, mut slot) = slot(args)?;
    let mut out = std::io::stdout().lock();
    for chunk in texts.chunks(args.pipeline.batch_size.max(1)) {
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

pub fn info(args: &Config) -> anyhow::Result<()> {
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

/// Where `analyze` sends the `$ai_sentiment` events.
pub enum Output {
    /// One JSON line per input line on stdout.
    Json,
    /// Batched INSERTs into the events table; a summary on stdout.
    ClickHouse { clickhouse: crate::config::ClickHouseConfig, batch_size: usize, flush_interval: std::time::Duration },
}

/// What a run did, printed at the end.
#[derive(Debug, Default, serde::Serialize)]
struct AnalyzeSummary {
    read: u64,
    classified: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    skipped: u64,
    skip_reasons: std::collections::BTreeMap<&'static str, u64>,
    failed: u64,
}

impl AnalyzeSummary {
    fn human(&self) -> String {
        let reasons = self.skip_reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
        let skipped = if reasons.is_empty() { "0".to_string() } else { format!("{} ({reasons})", self.skipped) };
        let written = match (&self.written, &self.table) {
            (Some(w), Some(t)) => format!(", {w} written to {t}"),
            _ => String::new(),
        };
        format!("analyze: {} events read, {} classified{written}, skipped {skipped}, {} failed", self.read, self.classified, self.failed)
    }
}

/// Non-empty lines of a regular file, for the progress total; `None` for
/// stdin (a backfill from a pipe shows its count and rate only).
fn count_events(file: Option<&Path>) -> Option<u64> {
    let p = file.filter(|p| *p != Path::new("-"))?;
    let f = std::fs::File::open(p).ok()?;
    let mut n = 0u64;
    for line in BufReader::new(f).lines() {
        if !line.ok()?.trim().is_empty() {
            n += 1;
        }
    }
    Some(n)
}

pub fn analyze(
    args: &Config,
    file: Option<&Path>,
    output: Output,
    progress: &crate::progress::ProgressConfig,
) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p == Path::new("-") => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => Box::new(BufReader::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)),
    };
    // Connect before loading the plugin: a wrong address fails at once.
    let mut clickhouse = match &output {
        Output::Json => None,
        Output::ClickHouse { clickhouse, batch_size, flush_interval } => {
            Some(super::backfill::ClickHouseOutput::connect(clickhouse, *batch_size, *flush_interval)?)
        }
    };
    let (_engine, mut slot) = slot(args)?;
    let options = args.pipeline.options();
    let cache = args.pipeline.result_cache();
    let mut out = std::io::stdout().lock();
    let mut summary = AnalyzeSummary::default();
    let mut bar = crate::progress::Progress::stderr(progress, "events", count_events(file));
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("reading line {n}"))?;
        if line.trim().is_empty() {
            continue;
        }
        summary.read += 1;
        let record = match analyze_line(&mut slot, &line, &options, &cache) {
            Ok((Analysis::Sentiment(event), _)) => {
                summary.classified += 1;
                match clickhouse.as_mut() {
                    Some(ch) => {
                        if let Err(e) = ch.push(*event) {
                            summary.written = Some(ch.written());
                            summary.table = Some(ch.table().to_string());
                            bar.finish();
                            eprintln!("{}", summary.human());
                            return Err(e);
                        }
                        None
                    }
                    None => Some(serde_json::to_value(&*event)?),
                }
            }
            Ok((Analysis::Skipped(reason), uuid)) => {
                summary.skipped += 1;
                *summary.skip_reasons.entry(reason.as_str()).or_default() += 1;
                Some(json!({"skipped": true, "skip_reason": reason.as_str(), "generation_uuid": uuid}))
            }
            Err(e) => {
                summary.failed += 1;
                bar.suspend(|| tracing::warn!(line = n, error = %e, "line failed"));
                Some(json!({"error": format!("line {n}: {e}"), "line": n}))
            }
        };
        // With ClickHouse output stdout carries only the summary.
        if let (Some(record), None) = (record, clickhouse.as_ref()) {
            print_line(&mut out, &record)?;
        }
        bar.inc(1);
    }
    if let Some(ch) = clickhouse.as_mut() {
        let flushed = ch.flush();
        summary.written = Some(ch.written());
        summary.table = Some(ch.table().to_string());
        if let Err(e) = flushed {
            bar.finish();
            eprintln!("{}", summary.human());
            return Err(e);
        }
    }
    bar.finish();
    eprintln!("{}", summary.human());
    if clickhouse.is_some() {
        print_line(&mut out, &serde_json::to_value(&summary)?)?;
    }
    let stats = cache.stats();
    tracing::info!(read = summary.read, classified = summary.classified, skipped = summary.skipped, failed = summary.failed, cache_hits = stats.hits, cache_misses = stats.misses, "analyze done");
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
