//! Overall sentiment computed by the plugin's own `aggregate` from scores the
//! host holds: a JSON list on stdin (`aggregate`), or every stored message of
//! a trace or a session read back from ClickHouse (`trace`, `session`).

use std::io::{Read, Write};

use anyhow::Context;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::{AggregationRule, Labelling, OverallResult, Scores};
use crate::query::{Scope, StoredGeneration};

fn scores_json(s: &Scores) -> Value {
    json!({"negative": s.negative, "neutral": s.neutral, "positive": s.positive})
}

fn overall_json(o: &OverallResult) -> Value {
    json!({
        "label": o.label.as_str(),
        "score": o.score,
        "scores": scores_json(&o.scores),
        "messages": o.messages.iter().map(|m| json!({"label": m.label.as_str(), "score": m.score})).collect::<Vec<_>>(),
    })
}

/// The plugin's result for `scores` under `labelling` (`None`: no scores).
fn aggregate_with_plugin(config: &Config, scores: &[Scores], labelling: Labelling) -> anyhow::Result<Option<OverallResult>> {
    let (_engine, mut slot) = super::local::slot(config)?;
    Ok(slot.get()?.aggregate_scores(scores, labelling)?)
}

/// `aggregate`: `[{"negative":..,"neutral":..,"positive":..}, ...]` on stdin;
/// `rule` overrides `pipeline.aggregation` (the margin is `--neutral-margin`).
pub fn aggregate(config: &Config, rule: Option<crate::config::AggregationMode>) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading scores from stdin")?;
    let scores: Vec<Scores> = parse_scores(&input)?;
    let mut labelling = config.pipeline.plugin_options().labelling;
    if let Some(rule) = rule {
        labelling.rule = match rule {
            crate::config::AggregationMode::Worst => AggregationRule::Worst,
            crate::config::AggregationMode::Mean => AggregationRule::Mean,
        };
    }
    let out = match aggregate_with_plugin(config, &scores, labelling)? {
        Some(o) => overall_json(&o),
        None => Value::Null,
    };
    println!("{out}");
    Ok(())
}

fn parse_scores(input: &str) -> anyhow::Result<Vec<Scores>> {
    let list: Vec<Value> = serde_json::from_str(input.trim()).context("stdin is not a JSON list of score objects")?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let get = |k: &str| {
                v.get(k)
                    .and_then(Value::as_f64)
                    .map(|x| x as f32)
                    .with_context(|| format!("entry {i}: `{k}` is missing or not a number: {v}"))
            };
            Ok(Scores { negative: get("negative")?, neutral: get("neutral")?, positive: get("positive")? })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadFormat {
    Json,
    Table,
}

/// `trace ID` / `session ID`: the latest stored event per generation, every
/// message's scores through the plugin's `mean` rule with the configured margin.
pub fn read(config: &Config, scope: Scope, team_id: Option<i64>, format: ReadFormat) -> anyhow::Result<()> {
    let generations = super::service::runtime()?.block_on(async {
        let sink = crate::sink::ClickHouseSink::connect(config.clickhouse.sink_config()).await?;
        anyhow::Ok(crate::query::fetch(&sink, &scope, team_id).await?)
    })?;
    let labelling = Labelling { rule: AggregationRule::Mean, ..config.pipeline.plugin_options().labelling };
    let scores = crate::query::flatten(&generations);
    let overall = if scores.is_empty() { None } else { aggregate_with_plugin(config, &scores, labelling)? };
    let report = report_json(&scope, &generations, overall.as_ref());
    let mut out = std::io::stdout().lock();
    match format {
        ReadFormat::Json => writeln!(out, "{report}")?,
        ReadFormat::Table => write!(out, "{}", table(&scope, &generations, overall.as_ref()))?,
    }
    Ok(())
}

fn report_json(scope: &Scope, generations: &[StoredGeneration], overall: Option<&OverallResult>) -> Value {
    json!({
        format!("{}_id", scope.kind()): scope.id(),
        "label": overall.map(|o| o.label.as_str()),
        "score": overall.map(|o| o.score),
        "scores": overall.map(|o| scores_json(&o.scores)),
        "message_count": generations.iter().map(|g| g.message_count).sum::<usize>(),
        "generation_count": generations.len(),
        "generations": generations,
    })
}

fn table(scope: &Scope, generations: &[StoredGeneration], overall: Option<&OverallResult>) -> String {
    let messages: usize = generations.iter().map(|g| g.message_count).sum();
    let mut s = match overall {
        Some(o) => format!(
            "{} {}: {} {:.4} (negative {:.4}, neutral {:.4}, positive {:.4}); {messages} message(s) in {} generation(s)\n",
            scope.kind(),
            scope.id(),
            o.label.as_str(),
            o.score,
            o.scores.negative,
            o.scores.neutral,
            o.scores.positive,
            generations.len()
        ),
        None => format!("{} {}: no classified messages stored ({} generation(s))\n", scope.kind(), scope.id(), generations.len()),
    };
    s.push_str(&format!("{:<38} {:<16} {:<9} {:>8} {:>8}  {}\n", "generation", "event", "label", "score", "messages", "created_at"));
    for g in generations {
        s.push_str(&format!(
            "{:<38} {:<16} {:<9} {:>8.4} {:>8}  {}\n",
            g.generation_uuid,
            g.event,
            g.label,
            g.score,
            g.message_count,
            g.created_at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_or_name_the_bad_entry() {
        let s = parse_scores(r#"[{"negative":0.1,"neutral":0.2,"positive":0.7}]"#).unwrap();
        assert_eq!(s, vec![Scores { negative: 0.1, neutral: 0.2, positive: 0.7 }]);
        let e = parse_scores(r#"[{"negative":0.1,"neutral":0.2,"positive":0.7},{"negative":"x"}]"#).unwrap_err();
        assert!(format!("{e:#}").contains("entry 1: `negative`"), "{e:#}");
        assert!(parse_scores("{}").is_err());
        assert_eq!(parse_scores("[]").unwrap(), vec![]);
    }
}
