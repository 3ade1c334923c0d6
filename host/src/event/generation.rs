//! `$ai_generation` events in: the fields typed once, `$ai_input` kept as
//! the text it came as (held to the plugin's nesting limit), the time
//! range-checked.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;


use super::ai_input::{plugin_parses, MAX_AI_INPUT_DEPTH};
use super::{parse_timestamp, sentiment_uuid_for, AiInput, EventTime, SkipReason, AI_INPUT, GENERATION_EVENT};

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

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationEvent {
    pub uuid: Uuid,
    pub event: String,
    pub team_id: i64,
    pub distinct_id: String,
    pub timestamp: Option<EventTime>,
    pub person_id: Option<Uuid>,
    /// Every property but `$ai_input` (see [`GenerationEvent::ai_input`]).
    pub properties: Map<String, Value>,
    /// `$ai_input`; `None` when missing or null.
    pub ai_input: Option<AiInput>,
}

/// An event read from text: `properties` kept as text so that `$ai_input`
/// reaches the plugin as it arrived.
#[derive(Deserialize)]
struct EventText<'a> {
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// Properties read from text, `$ai_input` kept as text.
#[derive(Deserialize)]
struct PropertiesText {
    #[serde(rename = "$ai_input", default)]
    ai_input: Option<Box<RawValue>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Where an event's properties come from.
enum PropertiesSource<'a> {
    Value(Option<&'a Value>),
    Text(&'a RawValue),
}

impl GenerationEvent {
    /// An event already parsed (workflow input).
    pub fn parse(value: &Value) -> Result<GenerationEvent, EventError> {
        let obj = value.as_object().ok_or(EventError::NotAnObject)?;
        Self::from_fields(obj, PropertiesSource::Value(obj.get("properties")))
    }

    /// An event as JSON text (an `analyze` line): `Err(None)` when the text is
    /// not JSON at all.
    pub fn parse_text(text: &str) -> Result<GenerationEvent, Option<EventError>> {
        let text = &*crate::jsonl::replace_lone_surrogates(text);
        match serde_json::from_str::<EventText>(text) {
            Ok(e) => Self::from_fields(&e.fields, match e.properties {
                Some(raw) => PropertiesSource::Text(raw),
                None => PropertiesSource::Value(None),
            })
            .map_err(Some),
            // Valid JSON that is not an object (or repeats a key): read it as a value.
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(value) => Self::parse(&value).map_err(Some),
                Err(_) => Err(None),
            },
        }
    }

    fn from_fields(obj: &Map<String, Value>, properties: PropertiesSource<'_>) -> Result<GenerationEvent, EventError> {
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
                Some(EventTime::new(t).ok_or_else(|| EventError::TimestampOutOfRange(s.clone()))?)
            }
            Some(other) => return Err(EventError::InvalidTimestamp(other.to_string())),
        };
        let person_id = match obj.get("person_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(Uuid::parse_str(s).map_err(|_| EventError::InvalidPersonId(s.clone()))?),
            Some(other) => return Err(EventError::InvalidPersonId(other.to_string())),
        };
        let (properties, ai_input) = read_properties(properties)?;
        // Producers of the workflow input send `$ai_generation` rows, so an
        // absent name means one; a name that is not a string is some other
        // row and must be skipped, not classified.
        let event = match obj.get("event") {
            None | Some(Value::Null) => GENERATION_EVENT.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        Ok(GenerationEvent { uuid, event, team_id, distinct_id, timestamp, person_id, properties, ai_input })
    }

    /// `$ai_input` as the JSON text the plugin takes, or why there is nothing
    /// to classify.
    pub fn ai_input_json(&self) -> Result<Cow<'_, str>, SkipReason> {
        if self.event != GENERATION_EVENT {
            return Err(SkipReason::NotAiGeneration);
        }
        self.ai_input.as_ref().map(AiInput::json).ok_or(SkipReason::NoAiInput)
    }

    pub fn sentiment_uuid(&self) -> Uuid {
        sentiment_uuid_for(self.uuid)
    }

    pub(super) fn prop_str(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }
}

/// The properties but `$ai_input`, and `$ai_input` as it arrived.
fn read_properties(source: PropertiesSource<'_>) -> Result<(Map<String, Value>, Option<AiInput>), EventError> {
    let from_map = |mut m: Map<String, Value>| {
        // A null `$ai_input` is no `$ai_input` (as a null read from text is).
        let ai_input = m.shift_remove(AI_INPUT).filter(|v| !v.is_null()).map(AiInput::Value);
        (m, ai_input)
    };
    let from_clean_text = |text: &str| match serde_json::from_str::<PropertiesText>(text) {
        Ok(p) if p.ai_input.as_ref().is_some_and(|raw| !plugin_parses(raw.get(), MAX_AI_INPUT_DEPTH)) => {
            Err(EventError::InvalidProperties)
        }
        Ok(p) => Ok((p.rest, p.ai_input.map(AiInput::Text))),
        // Not an object, or a key given twice (the last one counts, as in a value).
        Err(_) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(from_map(m)),
            _ => Err(EventError::InvalidProperties),
        },
    };
    // Lone surrogate escapes read as U+FFFD, as everywhere input is read.
    let from_text = |text: &str| from_clean_text(&crate::jsonl::replace_lone_surrogates(text));
    match source {
        PropertiesSource::Value(None | Some(Value::Null)) => Ok((Map::new(), None)),
        PropertiesSource::Value(Some(Value::Object(m))) => Ok(from_map(m.clone())),
        // Producers that store properties as strings send them JSON-encoded.
        PropertiesSource::Value(Some(Value::String(s))) => from_text(s),
        PropertiesSource::Value(Some(_)) => Err(EventError::InvalidProperties),
        PropertiesSource::Text(raw) => match raw.get().trim_start().as_bytes().first() {
            Some(b'{') => from_text(raw.get()),
            // A string, null, or what is not properties: as a value (small).
            _ => {
                let value: Value = serde_json::from_str(raw.get()).map_err(|_| EventError::InvalidProperties)?;
                read_properties(PropertiesSource::Value(Some(&value)))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn ai_input_text_reaches_the_plugin_as_it_arrived() {
        // Properties sent JSON-encoded (ClickHouse rows): the text of `$ai_input` itself.
        let props = r#"{"$ai_trace_id":"t","$ai_input": [ {"role":"user", "content":"caf\u00e9"} ]}"#;
        let mut v = base();
        v["properties"] = Value::String(props.into());
        let g = GenerationEvent::parse(&v).unwrap();
        assert_eq!(g.ai_input_json().unwrap(), r#"[ {"role":"user", "content":"caf\u00e9"} ]"#);
        assert!(matches!(g.ai_input_json().unwrap(), Cow::Borrowed(_)));
        assert_eq!(g.properties.get("$ai_trace_id"), Some(&json!("t")));
        assert!(!g.properties.contains_key(AI_INPUT));
        // A line of text: the same, whether properties are an object or a string.
        let line = format!(r#"{{"uuid":"0190b6a5-0000-7000-8000-000000000001","team_id":2,"distinct_id":"u1","properties":{props}}}"#);
        let from_line = GenerationEvent::parse_text(&line).unwrap();
        assert_eq!(from_line.ai_input_json().unwrap(), r#"[ {"role":"user", "content":"caf\u00e9"} ]"#);
        assert_eq!(from_line.properties, g.properties);
        let line = json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 2, "distinct_id": "u1", "properties": props}).to_string();
        assert_eq!(GenerationEvent::parse_text(&line).unwrap().ai_input_json().unwrap(), r#"[ {"role":"user", "content":"caf\u00e9"} ]"#);
        // Parsed input (workflow input): serialised once.
        let g = GenerationEvent::parse(&base()).unwrap();
        assert!(matches!(g.ai_input_json().unwrap(), Cow::Owned(_)));
        // Text and value forms of one event are the same event.
        assert_eq!(GenerationEvent::parse_text(&base().to_string()).unwrap(), g);
    }

    #[test]
    fn ai_input_text_is_held_to_the_plugins_nesting_limit() {
        let nested = |d: usize| format!(r#"{{"$ai_input": {}"x"{}}}"#, "[".repeat(d), "]".repeat(d));
        for (depth, ok) in [(MAX_AI_INPUT_DEPTH, true), (MAX_AI_INPUT_DEPTH + 1, false), (10_000, false)] {
            let mut v = base();
            v["properties"] = Value::String(nested(depth));
            let parsed = GenerationEvent::parse(&v);
            assert_eq!(parsed.is_ok(), ok, "depth {depth}");
            if let Ok(g) = parsed {
                // What is accepted, the plugin's parser takes.
                assert!(serde_json::from_str::<Value>(&g.ai_input_json().unwrap()).is_ok());
            } else {
                assert_eq!(parsed, Err(EventError::InvalidProperties));
            }
        }
    }

    /// Found by `make reliability` (53 of 100 000 fuzz cases): a number
    /// serde_json reads a second time one ulp away.
    #[test]
    fn text_and_value_forms_agree_on_numbers_read_inexactly() {
        let line = r#"{"uuid":"00000000-0000-0000-0000-000000000000","team_id":0,"distinct_id":"","properties":{"$ai_input":[{"role":"user","content":-2.1844318945993723e-103}]}}"#;
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(GenerationEvent::parse_text(line).unwrap(), GenerationEvent::parse(&value).unwrap());
    }

    #[test]
    fn text_that_is_not_an_event_object() {
        assert_eq!(GenerationEvent::parse_text("[1]"), Err(Some(EventError::NotAnObject)));
        assert_eq!(GenerationEvent::parse_text("{not json"), Err(None));
        let mut v = base();
        v["properties"] = json!(7);
        assert_eq!(GenerationEvent::parse_text(&v.to_string()), Err(Some(EventError::InvalidProperties)));
        // A key given twice: the last one counts, as when read as a value.
        let twice = r#"{"uuid":"0190b6a5-0000-7000-8000-000000000001","team_id":2,"distinct_id":"u1","properties":{"$ai_input":"a","$ai_input":"b"}}"#;
        assert_eq!(GenerationEvent::parse_text(twice).unwrap().ai_input_json().unwrap(), r#""b""#);
        let null = r#"{"uuid":"0190b6a5-0000-7000-8000-000000000001","team_id":2,"distinct_id":"u1","properties":{"$ai_input":null}}"#;
        assert_eq!(GenerationEvent::parse_text(null).unwrap().ai_input_json(), Err(SkipReason::NoAiInput));
    }

    #[test]
    fn sentiment_uuid_is_stable_and_distinct() {
        let g = GenerationEvent::parse(&base()).unwrap();
        assert_eq!(g.sentiment_uuid(), g.sentiment_uuid());
        assert_ne!(g.sentiment_uuid(), g.uuid);
        assert_eq!(g.sentiment_uuid().get_version_num(), 5);
    }

}
