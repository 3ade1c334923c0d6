//! `$ai_generation` events in, `$ai_sentiment` (or `$ai_evaluation`) events out.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::engine::{MessageResult, OverallResult};

/// Namespace of the sentiment event uuids: the event for a generation is
/// always UUIDv5(namespace, generation uuid), so a retry rewrites the same row.
pub const SENTIMENT_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6c6c_6d61_2d73_656e_7469_6d65_6e74_0001);

pub const GENERATION_EVENT: &str = "$ai_generation";
pub const SENTIMENT_EVENT: &str = "$ai_sentiment";
/// The event of the `evaluation` schema (what PostHog's UI reads since 2026).
pub const EVALUATION_EVENT: &str = "$ai_evaluation";

/// Namespace of the evaluation event uuids: UUIDv5(namespace, generation
/// uuid), not the sentiment schema's, so both schemas' rows can coexist.
pub const EVALUATION_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6c6c_6d61_2d73_656e_7469_6d65_6e74_0002);

/// Which event a classified generation becomes (`pipeline.event_schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EventSchema {
    /// `$ai_sentiment` (the seed).
    #[default]
    Sentiment,
    /// `$ai_evaluation`, what PostHog's UI reads since 2026.
    Evaluation,
}

impl EventSchema {
    pub fn event_name(self) -> &'static str {
        match self {
            EventSchema::Sentiment => SENTIMENT_EVENT,
            EventSchema::Evaluation => EVALUATION_EVENT,
        }
    }

    /// This schema's event uuid for a generation: a retry rewrites the same
    /// row, and the two schemas never share one.
    pub fn uuid_for(self, generation_uuid: Uuid) -> Uuid {
        let namespace = match self {
            EventSchema::Sentiment => &SENTIMENT_UUID_NAMESPACE,
            EventSchema::Evaluation => &EVALUATION_UUID_NAMESPACE,
        };
        Uuid::new_v5(namespace, generation_uuid.hyphenated().to_string().as_bytes())
    }
}

/// The host's part of the pipeline options: what the events look like.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOptions {
    pub schema: EventSchema,
    pub evaluation_id: String,
    pub evaluation_name: String,
    /// A generation without user messages becomes a neutral event (score 0,
    /// no messages) instead of a skip.
    pub emit_empty: bool,
    /// Message entries keep the classified text (as cut).
    pub store_text: bool,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            schema: EventSchema::Sentiment,
            evaluation_id: "llma-sentiment".into(),
            evaluation_name: "Sentiment".into(),
            emit_empty: false,
            store_text: false,
        }
    }
}

/// One classified user message: its place in `$ai_input`, its text as cut,
/// and the plugin's result for it (labelled by the margin rule).
#[derive(Debug, Clone)]
pub struct ClassifiedMessage {
    pub index: u32,
    pub text: String,
    pub result: MessageResult,
}

/// Why an input event cannot be processed at all: final, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event has no uuid")]
    MissingUuid,
    #[error("event uuid {0:?} is not a UUID")]
    InvalidUuid(String),
    #[error("event has no integer team_id")]
    InvalidTeamId,
    #[error("event has no distinct_id")]
    MissingDistinctId,
    #[error("event timestamp {0:?} is not an ISO 8601 / RFC 3339 time")]
    InvalidTimestamp(String),
    #[error("event timestamp {0:?} is outside 1970-01-01..2106-02-07, the range of DateTime('UTC')")]
    TimestampOutOfRange(String),
    #[error("event person_id {0:?} is not a UUID")]
    InvalidPersonId(String),
    #[error("event properties are not an object or a JSON-encoded object")]
    InvalidProperties,
}

/// Why a valid event yields no sentiment event: expected, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The event is not an `$ai_generation`.
    NotAiGeneration,
    /// `$ai_input` is missing or null.
    NoAiInput,
    /// `$ai_input` holds no user message to classify.
    NoUserMessages,
    /// Every user message trapped the plugin again on the last attempt.
    PluginTrapped,
}

impl SkipReason {
    pub const ALL: [SkipReason; 4] =
        [SkipReason::NotAiGeneration, SkipReason::NoAiInput, SkipReason::NoUserMessages, SkipReason::PluginTrapped];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotAiGeneration => "not_ai_generation",
            SkipReason::NoAiInput => "no_ai_input",
            SkipReason::NoUserMessages => "no_user_messages",
            SkipReason::PluginTrapped => "plugin_trapped",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationEvent {
    pub uuid: Uuid,
    pub event: String,
    pub team_id: i64,
    pub distinct_id: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub person_id: Option<Uuid>,
    pub properties: Map<String, Value>,
}

impl GenerationEvent {
    pub fn parse(value: &Value) -> Result<GenerationEvent, EventError> {
        let obj = value.as_object().ok_or(EventError::NotAnObject)?;
        let uuid = match obj.get("uuid") {
            Some(Value::String(s)) if !s.is_empty() => Uuid::parse_str(s).map_err(|_| EventError::InvalidUuid(s.clone()))?,
            Some(Value::String(_)) | Some(Value::Null) | None => return Err(EventError::MissingUuid),
            Some(other) => return Err(EventError::InvalidUuid(other.to_string())),
        };
        let team_id = match obj.get("team_id") {
            Some(Value::Number(n)) => n.as_i64().ok_or(EventError::InvalidTeamId)?,
            Some(Value::String(s)) => s.trim().parse().map_err(|_| EventError::InvalidTeamId)?,
            _ => return Err(EventError::InvalidTeamId),
        };
        let distinct_id = match obj.get("distinct_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(EventError::MissingDistinctId),
        };
        let timestamp = match obj.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = parse_timestamp(s).ok_or_else(|| EventError::InvalidTimestamp(s.clone()))?;
                // The sink stores DateTime('UTC') (u32 seconds): a time it
                // cannot hold would fail the whole batch's insert.
                if t.timestamp() < 0 || t.timestamp() > u32::MAX as i64 {
                    return Err(EventError::TimestampOutOfRange(s.clone()));
                }
                Some(t)
            }
            Some(other) => return Err(EventError::InvalidTimestamp(other.to_string())),
        };
        let person_id = match obj.get("person_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(Uuid::parse_str(s).map_err(|_| EventError::InvalidPersonId(s.clone()))?),
            Some(other) => return Err(EventError::InvalidPersonId(other.to_string())),
        };
        let properties = match obj.get("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            // Producers that store properties as strings send them JSON-encoded.
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                _ => return Err(EventError::InvalidProperties),
            },
            Some(_) => return Err(EventError::InvalidProperties),
        };
        // Producers of the workflow input send `$ai_generation` rows, so an
        // absent name means one; a name that is not a string is some other
        // row and must be skipped, not classified.
        let event = match obj.get("event") {
            None | Some(Value::Null) => GENERATION_EVENT.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        Ok(GenerationEvent { uuid, event, team_id, distinct_id, timestamp, person_id, properties })
    }

    /// `$ai_input` as JSON text, or why there is nothing to classify.
    pub fn ai_input_json(&self) -> Result<String, SkipReason> {
        if self.event != GENERATION_EVENT {
            return Err(SkipReason::NotAiGeneration);
        }
        match self.properties.get("$ai_input") {
            None | Some(Value::Null) => Err(SkipReason::NoAiInput),
            Some(v) => Ok(v.to_string()),
        }
    }

    pub fn sentiment_uuid(&self) -> Uuid {
        EventSchema::Sentiment.uuid_for(self.uuid)
    }

    fn prop_str(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }
}

/// Accepts RFC 3339 and ClickHouse's `YYYY-MM-DD hh:mm:ss[.fff]` (read as UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Who produced a result: recorded on every sentiment event.
#[derive(Debug, Clone)]
pub struct Producer {
    pub model: String,
    pub plugin_version: String,
}

/// The `$ai_sentiment` event for `generation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentimentEvent {
    pub event: &'static str,
    pub uuid: Uuid,
    pub distinct_id: String,
    pub team_id: i64,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<Uuid>,
    pub properties: Map<String, Value>,
}

fn scores_json(s: &crate::engine::Scores) -> Value {
    json!({"negative": s.negative, "neutral": s.neutral, "positive": s.positive})
}

fn message_json(m: &ClassifiedMessage, options: &EventOptions) -> Value {
    let mut entry = Map::new();
    entry.insert("label".into(), Value::String(m.result.label.as_str().into()));
    entry.insert("score".into(), json!(m.result.score));
    // The evaluation schema keeps each message's three scores (trace and
    // session means are computed from them on read); the seed's entries stay
    // `{label, score}`.
    if options.schema == EventSchema::Evaluation {
        entry.insert("scores".into(), scores_json(&m.result.scores));
    }
    if options.store_text {
        entry.insert("text".into(), Value::String(m.text.clone()));
    }
    Value::Object(entry)
}

/// PostHog's result for a generation without user messages (`emit_empty`).
fn empty_overall() -> OverallResult {
    let zero = crate::engine::Scores { negative: 0.0, neutral: 0.0, positive: 0.0 };
    OverallResult { label: crate::engine::Label::Neutral, score: 0.0, scores: zero, messages: Vec::new() }
}

impl SentimentEvent {
    /// The event for `generation` in `options.schema`: `overall` is the
    /// plugin's result over `messages` (in message order, each with the
    /// result the plugin's aggregation labelled). `started` is when the
    /// classification began.
    pub fn build(
        generation: &GenerationEvent,
        overall: &OverallResult,
        messages: &[ClassifiedMessage],
        producer: &Producer,
        now: DateTime<Utc>,
        started: DateTime<Utc>,
        options: &EventOptions,
    ) -> Self {
        let g = generation;
        let mut p = Map::new();
        match options.schema {
            EventSchema::Sentiment => {
                let parent = g.prop_str("$ai_generation_id").or_else(|| g.prop_str("$ai_span_id")).map(str::to_string);
                p.insert("$ai_trace_id".into(), g.properties.get("$ai_trace_id").cloned().unwrap_or(Value::Null));
                p.insert("$ai_session_id".into(), g.properties.get("$ai_session_id").cloned().unwrap_or(Value::Null));
                p.insert("$ai_parent_id".into(), Value::String(parent.unwrap_or_else(|| g.uuid.to_string())));
                p.insert("$ai_generation_event_uuid".into(), Value::String(g.uuid.to_string()));
            }
            EventSchema::Evaluation => {
                p.insert("$ai_evaluation_id".into(), Value::String(options.evaluation_id.clone()));
                p.insert("$ai_evaluation_name".into(), Value::String(options.evaluation_name.clone()));
                p.insert("$ai_evaluation_type".into(), Value::String("online".into()));
                p.insert("$ai_evaluation_runtime".into(), Value::String("sentiment".into()));
                p.insert("$ai_evaluation_result_type".into(), Value::String("sentiment".into()));
                p.insert("$ai_evaluation_start_time".into(), Value::String(format_timestamp(&started)));
                let reasoning = format!("Classified {} user message(s) as {}", messages.len(), overall.label.as_str());
                p.insert("$ai_evaluation_reasoning".into(), Value::String(reasoning));
                p.insert("$ai_target_event_id".into(), Value::String(g.uuid.to_string()));
                p.insert("$ai_target_event_type".into(), Value::String(GENERATION_EVENT.into()));
                p.insert("$ai_target_type".into(), Value::String("generation_uuid".into()));
                p.insert("$ai_trace_id".into(), g.properties.get("$ai_trace_id").cloned().unwrap_or(Value::Null));
                let session = ["$ai_session_id", "$session_id"].iter().find_map(|k| g.properties.get(*k).filter(|v| !v.is_null()));
                p.insert("$session_id".into(), session.cloned().unwrap_or(Value::Null));
            }
        }
        p.insert("$ai_sentiment_label".into(), Value::String(overall.label.as_str().into()));
        p.insert("$ai_sentiment_score".into(), json!(overall.score));
        p.insert("$ai_sentiment_scores".into(), scores_json(&overall.scores));
        p.insert("$ai_sentiment_model".into(), Value::String(producer.model.clone()));
        p.insert("$ai_sentiment_plugin_version".into(), Value::String(producer.plugin_version.clone()));
        match options.schema {
            EventSchema::Sentiment => {
                let list = messages.iter().map(|m| message_json(m, options)).collect();
                p.insert("$ai_sentiment_messages".into(), Value::Array(list));
            }
            EventSchema::Evaluation => {
                let by_index: Map<String, Value> = messages.iter().map(|m| (m.index.to_string(), message_json(m, options))).collect();
                p.insert("$ai_sentiment_messages".into(), Value::Object(by_index));
                p.insert("$ai_sentiment_message_count".into(), json!(messages.len()));
            }
        }
        SentimentEvent {
            event: options.schema.event_name(),
            uuid: options.schema.uuid_for(g.uuid),
            distinct_id: g.distinct_id.clone(),
            team_id: g.team_id,
            timestamp: format_timestamp(&g.timestamp.unwrap_or(now)),
            person_id: g.person_id,
            properties: p,
        }
    }

    /// `emit_empty`: the event of a generation without user messages
    /// (neutral, score 0, no messages), as PostHog writes it.
    pub fn empty(generation: &GenerationEvent, producer: &Producer, now: DateTime<Utc>, started: DateTime<Utc>, options: &EventOptions) -> Self {
        SentimentEvent::build(generation, &empty_overall(), &[], producer, now, started, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 2, "distinct_id": "u1",
               "timestamp": "2026-11-01T10:00:00Z", "properties": {"$ai_input": "hi"}})
    }

    #[test]
    fn parses_object_and_string_properties() {
        let g = GenerationEvent::parse(&base()).unwrap();
        assert_eq!(g.team_id, 2);
        assert_eq!(g.ai_input_json().unwrap(), "\"hi\"");
        let mut v = base();
        v["properties"] = Value::String(json!({"$ai_input": [1]}).to_string());
        assert_eq!(GenerationEvent::parse(&v).unwrap().ai_input_json().unwrap(), "[1]");
    }

    #[test]
    fn typed_errors_for_bad_fields() {
        let cases = [
            ("uuid", Value::Null, EventError::MissingUuid),
            ("uuid", json!("nope"), EventError::InvalidUuid("nope".into())),
            ("team_id", json!(1.5), EventError::InvalidTeamId),
            ("team_id", json!("x"), EventError::InvalidTeamId),
            ("distinct_id", Value::Null, EventError::MissingDistinctId),
            ("timestamp", json!("yesterday"), EventError::InvalidTimestamp("yesterday".into())),
            ("timestamp", json!("1969-12-31T23:59:59Z"), EventError::TimestampOutOfRange("1969-12-31T23:59:59Z".into())),
            ("timestamp", json!("2107-01-01T00:00:00Z"), EventError::TimestampOutOfRange("2107-01-01T00:00:00Z".into())),
            ("properties", json!([1]), EventError::InvalidProperties),
            ("properties", json!("not json"), EventError::InvalidProperties),
        ];
        for (field, value, want) in cases {
            let mut v = base();
            v[field] = value;
            assert_eq!(GenerationEvent::parse(&v), Err(want), "{field}");
        }
        assert_eq!(GenerationEvent::parse(&json!([1])), Err(EventError::NotAnObject));
    }

    #[test]
    fn skip_reasons() {
        let mut v = base();
        v["properties"] = json!({});
        assert_eq!(GenerationEvent::parse(&v).unwrap().ai_input_json(), Err(SkipReason::NoAiInput));
        v["properties"] = json!({"$ai_input": null});
        assert_eq!(GenerationEvent::parse(&v).unwrap().ai_input_json(), Err(SkipReason::NoAiInput));
        let mut v = base();
        v["event"] = json!("$pageview");
        assert_eq!(GenerationEvent::parse(&v).unwrap().ai_input_json(), Err(SkipReason::NotAiGeneration));
        for not_a_name in [json!(1), json!(true), json!(["$ai_generation"]), json!({"name": "$ai_generation"})] {
            v["event"] = not_a_name;
            assert_eq!(GenerationEvent::parse(&v).unwrap().ai_input_json(), Err(SkipReason::NotAiGeneration), "{v}");
        }
    }

    #[test]
    fn sentiment_uuid_is_stable_and_distinct() {
        let g = GenerationEvent::parse(&base()).unwrap();
        assert_eq!(g.sentiment_uuid(), g.sentiment_uuid());
        assert_ne!(g.sentiment_uuid(), g.uuid);
        assert_eq!(g.sentiment_uuid().get_version_num(), 5);
    }

    #[test]
    fn clickhouse_timestamps_are_accepted() {
        assert_eq!(parse_timestamp("2026-11-01 10:00:00"), parse_timestamp("2026-11-01T10:00:00Z"));
        assert!(parse_timestamp("2026-11-01T10:00:00.123+02:00").is_some());
    }
}
