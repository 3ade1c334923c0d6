//! Trace and session sentiment, computed when read (as PostHog does): the
//! stored events of either schema for one trace or session, the latest per
//! generation by `created_at`, their per-message scores flattened. The
//! overall result is the plugin's `mean` rule with the configured margin (the
//! caller asks the plugin; this module only reads).
//!
//! The SQL runs on ClickHouse 18.16 and modern servers: `visitParamExtract*`
//! (no `JSONExtract*` on 18.16) and values bound by the client (`?`, escaped
//! by the `clickhouse` crate; 18.16 has no server-side parameters).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::Scores;
use crate::sink::ClickHouseSink;

/// What to read: every generation of a trace, or of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Trace(String),
    Session(String),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Trace(_) => "trace",
            Scope::Session(_) => "session",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Scope::Trace(id) | Scope::Session(id) => id,
        }
    }

    /// The filter on `properties`, one `?` per bound id. Sessions: the
    /// sentiment schema carries `$ai_session_id`, the evaluation schema `$session_id`.
    fn filter(&self) -> &'static str {
        match self {
            Scope::Trace(_) => "visitParamExtractString(properties, '$ai_trace_id') = ?",
            Scope::Session(_) => {
                "(visitParamExtractString(properties, '$ai_session_id') = ? OR visitParamExtractString(properties, '$session_id') = ?)"
            }
        }
    }

    fn binds(&self) -> usize {
        match self {
            Scope::Trace(_) => 1,
            Scope::Session(_) => 2,
        }
    }
}

/// The read query for `scope` on `table` (already quoted), `?` for the id
/// (and, last, the team id when `team` is set). docs/operations.md documents it.
pub fn sql(table: &str, scope: &Scope, team: bool) -> String {
    let team = if team { "\n  AND team_id = ?" } else { "" };
    format!(
        "SELECT generation,
       argMax(event, created_at) AS latest_event,
       argMax(properties, created_at) AS latest_properties,
       toDateTime(max(created_at), 'UTC') AS latest_created_at,
       toDateTime(argMax(timestamp, created_at), 'UTC') AS generation_time
FROM (
  SELECT event, properties, created_at, timestamp,
         {GENERATION}
  FROM {table} FINAL
  WHERE {EVENTS}
    AND {}{team}
)
GROUP BY generation
ORDER BY latest_created_at, generation",
        scope.filter()
    )
}

/// The generation a stored event of either schema belongs to (`AS generation`).
pub const GENERATION: &str = "if(event = '$ai_evaluation',
            visitParamExtractString(properties, '$ai_target_event_id'),
            visitParamExtractString(properties, '$ai_generation_event_uuid')) AS generation";

/// The stored events of either schema.
pub const EVENTS: &str = "event IN ('$ai_sentiment', '$ai_evaluation')";

/// Runs `query` within the sink's connect + request timeouts; `what` names
/// the read in the errors.
pub async fn fetch_rows<T>(sink: &ClickHouseSink, query: clickhouse::query::Query, what: &str) -> Result<Vec<T>, QueryError>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    let limit = sink.config().connect_timeout + sink.config().request_timeout;
    match tokio::time::timeout(limit, query.fetch_all::<T>()).await {
        Ok(rows) => rows.map_err(|source| QueryError::Read { what: what.to_string(), source }),
        Err(_) => Err(QueryError::ReadTimeout { what: what.to_string(), secs: limit.as_secs() }),
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct LatestRow {
    generation: String,
    event: String,
    properties: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    created_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    generation_time: DateTime<Utc>,
}

/// One stored per-message result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    /// Position in `$ai_input` (the evaluation schema keys messages by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    pub label: String,
    /// `None` in the sentiment schema, whose entries are `{label, score}`.
    #[serde(skip)]
    pub scores: Option<Scores>,
    /// The confidence of `label`.
    #[serde(skip)]
    pub score: Option<f64>,
    /// The classified text, as cut, when `pipeline.store_text` kept it.
    #[serde(skip)]
    pub text: Option<String>,
}

/// The latest stored event of one generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredGeneration {
    pub generation_uuid: String,
    pub event: String,
    pub label: String,
    pub score: f64,
    pub message_count: usize,
    pub created_at: DateTime<Utc>,
    /// `$ai_sentiment_scores`.
    #[serde(skip)]
    pub scores: Option<Scores>,
    #[serde(skip)]
    pub messages: Vec<StoredMessage>,
    /// The stored event's `timestamp`: when the generation happened.
    #[serde(skip)]
    pub generation_time: DateTime<Utc>,
    /// `$ai_sentiment_model` and `$ai_sentiment_plugin_version`: what classified it.
    #[serde(skip)]
    pub model: Option<String>,
    #[serde(skip)]
    pub plugin_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("reading {scope} {id}: {source}")]
    ClickHouse { scope: &'static str, id: String, source: clickhouse::error::Error },
    #[error("reading {scope} {id}: timed out after {secs} s")]
    Timeout { scope: &'static str, id: String, secs: u64 },
    #[error("stored event of generation {generation} is unreadable: {reason}")]
    BadRow { generation: String, reason: String },
    #[error("reading {what}: {source}")]
    Read { what: String, source: clickhouse::error::Error },
    #[error("reading {what}: timed out after {secs} s")]
    ReadTimeout { what: String, secs: u64 },
}

/// The latest event per generation of `scope` (of one team when given),
/// oldest first.
pub async fn fetch(sink: &ClickHouseSink, scope: &Scope, team_id: Option<i64>) -> Result<Vec<StoredGeneration>, QueryError> {
    let sql = sql(sink.table(), scope, team_id.is_some());
    // Untyped result columns (argMax(...)): validation off, as for 18.16.
    let mut query = sink.client().clone().with_validation(false).query(&sql);
    for _ in 0..scope.binds() {
        query = query.bind(scope.id());
    }
    if let Some(team) = team_id {
        query = query.bind(team);
    }
    let limit = sink.config().connect_timeout + sink.config().request_timeout;
    let rows = match tokio::time::timeout(limit, query.fetch_all::<LatestRow>()).await {
        Ok(rows) => rows.map_err(|source| QueryError::ClickHouse { scope: scope.kind(), id: scope.id().to_string(), source })?,
        Err(_) => return Err(QueryError::Timeout { scope: scope.kind(), id: scope.id().to_string(), secs: limit.as_secs() }),
    };
    rows.into_iter().map(StoredGeneration::from_row).collect()
}

impl StoredGeneration {
    fn from_row(row: LatestRow) -> Result<StoredGeneration, QueryError> {
        let bad = |reason: &str| QueryError::BadRow { generation: row.generation.clone(), reason: reason.to_string() };
        let properties: Map<String, Value> = match serde_json::from_str(&row.properties) {
            Ok(Value::Object(m)) => m,
            _ => return Err(bad("properties are not a JSON object")),
        };
        let label = properties.get("$ai_sentiment_label").and_then(Value::as_str).ok_or_else(|| bad("no $ai_sentiment_label"))?;
        let score = properties.get("$ai_sentiment_score").and_then(Value::as_f64).unwrap_or(0.0);
        let messages = match properties.get("$ai_sentiment_messages") {
            // The sentiment schema: a list in message order.
            Some(Value::Array(list)) => list.iter().map(|m| message(None, m)).collect::<Option<Vec<_>>>(),
            // The evaluation schema: keyed by the message's index.
            Some(Value::Object(by_index)) => {
                by_index.iter().map(|(k, m)| message(Some(k.parse().ok()?), m)).collect::<Option<Vec<_>>>()
            }
            None | Some(Value::Null) => Some(Vec::new()),
            Some(_) => None,
        }
        .ok_or_else(|| bad("$ai_sentiment_messages entries are not {label, score, scores}"))?;
        let text = |k: &str| properties.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(StoredGeneration {
            model: text("$ai_sentiment_model"),
            plugin_version: text("$ai_sentiment_plugin_version"),
            generation_time: row.generation_time,
            scores: properties.get("$ai_sentiment_scores").and_then(scores),
            message_count: messages.len(),
            generation_uuid: row.generation,
            event: row.event,
            label: label.to_string(),
            score,
            created_at: row.created_at,
            messages,
        })
    }
}

fn message(index: Option<u32>, m: &Value) -> Option<StoredMessage> {
    let label = m.get("label")?.as_str()?.to_string();
    Some(StoredMessage {
        index,
        label,
        scores: m.get("scores").and_then(scores),
        score: m.get("score").and_then(Value::as_f64),
        text: m.get("text").and_then(Value::as_str).map(str::to_string),
    })
}

fn scores(s: &Value) -> Option<Scores> {
    let get = |k: &str| s.get(k).and_then(Value::as_f64).map(|x| x as f32);
    Some(Scores { negative: get("negative")?, neutral: get("neutral")?, positive: get("positive")? })
}

/// The scores that enter the mean, generation by generation in read order:
/// each message's own (the evaluation schema stores them); a generation
/// whose messages have none (the sentiment schema's `{label, score}`)
/// enters once, with its overall `$ai_sentiment_scores`; an empty
/// (`emit_empty`) generation not at all.
pub fn flatten(generations: &[StoredGeneration]) -> Vec<Scores> {
    let mut out = Vec::new();
    for g in generations {
        let own: Vec<Scores> = g.messages.iter().filter_map(|m| m.scores).collect();
        match (own.is_empty(), g.scores) {
            (false, _) => out.extend(own),
            (true, Some(overall)) if g.message_count > 0 => out.push(overall),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EVALUATION_EVENT, SENTIMENT_EVENT};

    #[test]
    fn the_shared_fragments_name_both_events() {
        assert!(GENERATION.contains(&format!("event = '{EVALUATION_EVENT}'")));
        assert_eq!(EVENTS, format!("event IN ('{SENTIMENT_EVENT}', '{EVALUATION_EVENT}')"));
    }

    #[test]
    fn sql_binds_every_value_and_names_both_schemas() {
        let q = sql("`db`.`events`", &Scope::Trace("t1".into()), false);
        assert_eq!(q.matches('?').count(), 1, "{q}");
        assert!(q.contains("event IN ('$ai_sentiment', '$ai_evaluation')"), "{q}");
        assert!(!q.contains("t1"));
        let q = sql("`db`.`events`", &Scope::Session("s".into()), true);
        assert_eq!(q.matches('?').count(), 3, "{q}");
        assert!(q.contains("AND team_id = ?\n)"), "{q}");
    }

    #[test]
    fn readme_shows_the_trace_and_session_queries() {
        let readme = include_str!("../../docs/operations.md");
        for scope in [Scope::Trace(String::new()), Scope::Session(String::new())] {
            let q = sql("`default`.`events`", &scope, false);
            assert!(readme.contains(&q), "README lacks the {} query:\n{q}", scope.kind());
        }
    }

    fn row(event: &str, properties: Value) -> LatestRow {
        LatestRow {
            generation: "g".into(),
            event: event.into(),
            properties: properties.to_string(),
            created_at: Utc::now(),
            generation_time: Utc::now(),
        }
    }

    #[test]
    fn both_schemas_flatten_to_their_messages() {
        let scores = serde_json::json!({"negative": 0.1, "neutral": 0.2, "positive": 0.7});
        let worst = serde_json::json!({"negative": 0.6, "neutral": 0.3, "positive": 0.1});
        let seed = row(SENTIMENT_EVENT, serde_json::json!({"$ai_sentiment_label": "negative", "$ai_sentiment_score": 0.6,
            "$ai_sentiment_scores": worst,
            "$ai_sentiment_messages": [{"label": "positive", "score": 0.7}, {"label": "negative", "score": 0.6}]}));
        let eval = row(EVALUATION_EVENT, serde_json::json!({"$ai_sentiment_label": "positive", "$ai_sentiment_score": 0.7,
            "$ai_sentiment_scores": scores,
            "$ai_sentiment_messages": {"3": {"label": "positive", "score": 0.7, "scores": scores},
                                       "5": {"label": "positive", "score": 0.7, "scores": scores}}}));
        let empty = row(EVALUATION_EVENT, serde_json::json!({"$ai_sentiment_label": "neutral", "$ai_sentiment_score": 0.0,
            "$ai_sentiment_scores": {"negative": 0.0, "neutral": 0.0, "positive": 0.0}, "$ai_sentiment_messages": {}}));
        let gens: Vec<StoredGeneration> = [seed, eval, empty].into_iter().map(|r| StoredGeneration::from_row(r).unwrap()).collect();
        assert_eq!(gens.iter().map(|g| g.message_count).collect::<Vec<_>>(), vec![2, 2, 0]);
        assert_eq!(gens[1].messages[1].index, Some(5));
        let flat = flatten(&gens);
        let seven = Scores { negative: 0.1, neutral: 0.2, positive: 0.7 };
        assert_eq!(flat, vec![Scores { negative: 0.6, neutral: 0.3, positive: 0.1 }, seven, seven]);
        let broken = row(SENTIMENT_EVENT, serde_json::json!({"$ai_sentiment_label": "x", "$ai_sentiment_messages": [1]}));
        assert!(matches!(StoredGeneration::from_row(broken), Err(QueryError::BadRow { .. })));
    }
}
