//! `$ai_generation` events in, `$ai_sentiment` events out.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::engine::{MessageResult, OverallResult};

/// Namespace of the sentiment event uuids: the event for a generation is
/// always UUIDv5(namespace, generation uuid), so a retry rewrites the same row.
pub const SENTIMENT_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6c6c_6d61_2d73_656e_7469_6d65_6e74_0001);

pub const GENERATION_EVENT: &str = "$ai_generation";
pub const SENTIMENT_EVENT: &str = "$ai_sentiment";

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
            Some(Value::String(s)) => match crate::jsonl::from_str::<Value>(s) {
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
        Uuid::new_v5(&SENTIMENT_UUID_NAMESPACE, self.uuid.hyphenated().to_string().as_bytes())
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

fn message_json(m: &MessageResult) -> Value {
    json!({"label": m.label.as_str(), "score": m.score})
}

impl SentimentEvent {
    pub fn build(generation: &GenerationEvent, overall: &OverallResult, producer: &Producer, now: DateTime<Utc>) -> Self {
        let g = generation;
        let parent = g.prop_str("$ai_generation_id").or_else(|| g.prop_str("$ai_span_id")).map(str::to_string);
        let mut p = Map::new();
        p.insert("$ai_trace_id".into(), g.properties.get("$ai_trace_id").cloned().unwrap_or(Value::Null));
        p.insert("$ai_session_id".into(), g.properties.get("$ai_session_id").cloned().unwrap_or(Value::Null));
        p.insert("$ai_parent_id".into(), Value::String(parent.unwrap_or_else(|| g.uuid.to_string())));
        p.insert("$ai_generation_event_uuid".into(), Value::String(g.uuid.to_string()));
        p.insert("$ai_sentiment_label".into(), Value::String(overall.label.as_str().into()));
        p.insert("$ai_sentiment_score".into(), json!(overall.score));
        p.insert("$ai_sentiment_scores".into(), scores_json(&overall.scores));
        p.insert("$ai_sentiment_model".into(), Value::String(producer.model.clone()));
        p.insert("$ai_sentiment_plugin_version".into(), Value::String(producer.plugin_version.clone()));
        p.insert("$ai_sentiment_messages".into(), Value::Array(overall.messages.iter().map(message_json).collect()));
        SentimentEvent {
            event: SENTIMENT_EVENT,
            uuid: g.sentiment_uuid(),
            distinct_id: g.distinct_id.clone(),
            team_id: g.team_id,
            timestamp: format_timestamp(&g.timestamp.unwrap_or(now)),
            person_id: g.person_id,
            properties: p,
        }
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
