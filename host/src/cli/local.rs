//! Standalone commands: the plugin and model only, no Temporal or ClickHouse.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::InstanceSlot;
use crate::pipeline::{Attempt, Driver, Failure, Outcome, Summary};

pub(super) fn slot(config: &Config) -> anyhow::Result<(crate::engine::PluginEngine, InstanceSlot)> {
    let source = config.plugin.source().context("plugin.trusted_keys")?;
    // One-shot commands use a snapshot a worker or `plugin prepare` made;
    // making one would cost more than the one load it saves.
    let engine = source.engine(config.limits.limits(), crate::engine::SnapshotPolicy::UseExisting)?;
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
    let messages = slot.get()?.extract(&crate::jsonl::replace_lone_surrogates(input.trim()), args.pipeline.plugin_options().extraction)?;
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

/// Where the events went, for the summary.
struct Written<'a> {
    rows: u64,
    table: &'a str,
}

/// The run's summary as `analyze` prints it (JSON on stdout after a
/// ClickHouse run; one line on stderr always).
fn report(summary: &Summary, written: &Written, cache: &crate::cache::TierCounts) -> Value {
    json!({
        "read": summary.read(),
        "classified": summary.classified,
        "written": written.rows,
        "table": written.table,
        "skipped": summary.skipped,
        "skip_reasons": summary.skip_reasons,
        "failed": summary.failed,
        "cache": cache,
    })
}

/// User messages answered by the in-process cache (`l1`), by Redis (`l2`), or classified (`misses`).
fn tier_counts(cache: &crate::cache::ResultCache) -> crate::cache::TierCounts {
    let st = cache.stats();
    crate::cache::TierCounts { l1: st.l1_hits, l2: st.l2_hits, misses: st.misses }
}

fn human(summary: &Summary, written: Option<&Written>, cache: &crate::cache::TierCounts) -> String {
    let reasons = summary.skip_reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
    let skipped = if reasons.is_empty() { "0".to_string() } else { format!("{} ({reasons})", summary.skipped) };
    let written = written.map(|w| format!(", {} written to {}", w.rows, w.table)).unwrap_or_default();
    format!(
        "analyze: {} events read, {} classified{written}, skipped {skipped}, {} failed; cache hits l1 {} l2 {}, misses {}",
        summary.read(),
        summary.classified,
        summary.failed,
        cache.l1,
        cache.l2,
        cache.misses
    )
}

/// Non-empty lines of a regular file, for the progress total; `None` for
/// stdin (a backfill from a pipe shows its count and rate only).
fn count_events(file: Option<&Path>) -> Option<u64> {
    let p = file.filter(|p| *p != Path::new("-"))?;
    let f = std::fs::File::open(p).ok()?;
    let mut n = 0u64;
    for line in crate::jsonl::lines(BufReader::new(f)) {
        // A line that is not UTF-8 is reported as a failed event: it counts.
        if line.ok()?.1.is_ok_and(|text| text.trim().is_empty()) {
            continue;
        }
        n += 1;
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
    // No retries here: every run is its own last attempt, so a message that
    // traps the plugin is skipped (as on the worker's last attempt).
    let mut driver = Driver::new(args.pipeline.options(), Attempt::ONLY, false);
    let cache = args.result_cache()?;
    let mut out = std::io::stdout().lock();
    let mut bar = crate::progress::Progress::stderr(progress, "events", count_events(file));
    for line in crate::jsonl::lines(reader) {
        let (n, line) = line.context("reading the input")?;
        if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
            continue;
        }
        let (line_outcome, outcome) = match line {
            Ok(line) => driver.run_text(n - 1, &line, &mut slot, Some(&cache)).context("analyze was interrupted")?,
            Err(not_utf8) => {
                let outcome = Outcome::Failed(Failure::new(not_utf8, false));
                (driver.record(n - 1, None, &outcome), outcome)
            }
        };
        let record = match outcome {
            Outcome::Classified(event) => match clickhouse.as_mut() {
                Some(ch) => {
                    if let Err(e) = ch.push(*event) {
                        bar.finish();
                        eprintln!("{}", human(driver.summary(), Some(&Written { rows: ch.written(), table: ch.table() }), &tier_counts(&cache)));
                        return Err(e);
                    }
                    None
                }
                None => Some(serde_json::to_value(&*event)?),
            },
            Outcome::Skipped(reason) => Some(
                json!({"skipped": true, "skip_reason": reason.as_str(), "generation_uuid": line_outcome.generation_uuid}),
            ),
            Outcome::Failed(failure) => {
                bar.suspend(|| tracing::warn!(line = n, error = %failure.message, "line failed"));
                Some(json!({"error": format!("line {n}: {}", failure.message), "line": n}))
            }
        };
        // With ClickHouse output stdout carries only the summary.
        if let (Some(record), None) = (record, clickhouse.as_ref()) {
            print_line(&mut out, &record)?;
        }
        bar.inc(1);
    }
    let summary = driver.into_summary();
    if let Some(ch) = clickhouse.as_mut() {
        let flushed = ch.flush();
        let w = Written { rows: ch.written(), table: ch.table() };
        bar.finish();
        eprintln!("{}", human(&summary, Some(&w), &tier_counts(&cache)));
        flushed?;
        print_line(&mut out, &report(&summary, &w, &tier_counts(&cache)))?;
    } else {
        bar.finish();
        eprintln!("{}", human(&summary, None, &tier_counts(&cache)));
    }
    let stats = cache.stats();
    tracing::info!(read = summary.read(), classified = summary.classified, skipped = summary.skipped, failed = summary.failed, cache_l1_hits = stats.l1_hits, cache_l2_hits = stats.l2_hits, cache_misses = stats.misses, redis_errors = stats.l2_errors, "analyze done");
    Ok(())
}
