//! The workflow input as producers send it: one event, or a batch.

use serde_json::Value;
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::{ENCODING_PAYLOAD_KEY, JSON_ENCODING_VAL};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("workflow input is not one JSON payload (encoding {0:?})")]
    NotJsonPayload(String),
    #[error("workflow input is not JSON: {0}")]
    NotJson(String),
    #[error("workflow input is not a JSON object")]
    NotAnObject,
    #[error("workflow input has neither `event_data` (an object) nor `events` (a list)")]
    NoEvents,
    #[error("`events` must be a list")]
    EventsNotAList,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowInput {
    /// `{"event_data": {...}}`: one `$ai_generation` event.
    Single(Value),
    /// `{"events": [...]}`: events classified independently. A further
    /// round of a batch that did not fit one activity carries `start_at`,
    /// the index of its first event not yet reached (0 for producers).
    Batch { events: Vec<Value>, start_at: usize },
}

impl WorkflowInput {
    /// Decodes the input as Temporal delivered it. The workflow and the
    /// activity take it undecoded (`RawValue`) and only this decodes it,
    /// leniently (see [`crate::jsonl`]): the SDK's own strict decoding would
    /// fail on a lone surrogate escape, and in the workflow task Temporal
    /// retries that failure until the execution times out.
    pub fn decode(raw: &RawValue) -> Result<WorkflowInput, InputError> {
        let [payload] = raw.payloads.as_slice() else {
            return Err(InputError::NotJsonPayload(format!("{} payloads", raw.payloads.len())));
        };
        let encoding = payload.metadata.get(ENCODING_PAYLOAD_KEY).map(|e| String::from_utf8_lossy(e).into_owned()).unwrap_or_default();
        if encoding != JSON_ENCODING_VAL {
            return Err(InputError::NotJsonPayload(encoding));
        }
        let value: Value = crate::jsonl::from_slice(&payload.data).map_err(|e| InputError::NotJson(e.to_string()))?;
        WorkflowInput::parse(&value)
    }

    /// A workflow input of JSON text as it is (`submit` forwards events as
    /// they were read, without decoding and re-encoding them).
    pub fn payload(json: Vec<u8>) -> RawValue {
        let metadata = [(ENCODING_PAYLOAD_KEY.to_string(), JSON_ENCODING_VAL.as_bytes().to_vec())].into_iter().collect();
        RawValue::new(vec![Payload { metadata, data: json, external_payloads: vec![] }])
    }

    pub fn parse(input: &Value) -> Result<WorkflowInput, InputError> {
        let obj = input.as_object().ok_or(InputError::NotAnObject)?;
        if let Some(events) = obj.get("events") {
            let start_at = obj.get("start_at").and_then(Value::as_u64).map_or(0, |n| n as usize);
            return match events {
                Value::Array(list) => Ok(WorkflowInput::Batch { events: list.clone(), start_at: start_at.min(list.len()) }),
                _ => Err(InputError::EventsNotAList),
            };
        }
        match obj.get("event_data") {
            Some(e @ Value::Object(_)) => Ok(WorkflowInput::Single(e.clone())),
            // Some producers JSON-encode the event.
            Some(Value::String(s)) => match crate::jsonl::from_str::<Value>(s) {
                Ok(e @ Value::Object(_)) => Ok(WorkflowInput::Single(e)),
                _ => Err(InputError::NoEvents),
            },
            _ => Err(InputError::NoEvents),
        }
    }

    pub fn events(&self) -> &[Value] {
        match self {
            WorkflowInput::Single(e) => std::slice::from_ref(e),
            WorkflowInput::Batch { events, .. } => events,
        }
    }

    pub fn is_batch(&self) -> bool {
        matches!(self, WorkflowInput::Batch { .. })
    }

    /// The index of the first event this activity runs.
    pub fn start_at(&self) -> usize {
        match self {
            WorkflowInput::Single(_) => 0,
            WorkflowInput::Batch { start_at, .. } => *start_at,
        }
    }

    /// The input of the round that goes on from event `start_at`: the same
    /// events (indices keep their meaning across rounds), the start moved.
    pub fn resumed_at(&self, start_at: usize) -> RawValue {
        let events = self.events();
        let json = serde_json::json!({ "events": events, "start_at": start_at.min(events.len()) });
        WorkflowInput::payload(serde_json::to_vec(&json).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_batch_and_errors() {
        let e = json!({"uuid": "x"});
        assert_eq!(WorkflowInput::parse(&json!({"event_data": e})).unwrap(), WorkflowInput::Single(e.clone()));
        assert_eq!(WorkflowInput::parse(&json!({"event_data": e.to_string()})).unwrap(), WorkflowInput::Single(e.clone()));
        assert_eq!(WorkflowInput::parse(&json!({"events": [e, 1]})).unwrap().events().len(), 2);
        assert_eq!(WorkflowInput::parse(&json!([1])), Err(InputError::NotAnObject));
        assert_eq!(WorkflowInput::parse(&json!({"x": 1})), Err(InputError::NoEvents));
        assert_eq!(WorkflowInput::parse(&json!({"events": {}})), Err(InputError::EventsNotAList));
    }

    /// A further round carries the same events and where to go on from.
    #[test]
    fn a_resumed_batch_keeps_its_events_and_starts_later() {
        let batch = WorkflowInput::parse(&json!({"events": [{"uuid": "a"}, {"uuid": "b"}, {"uuid": "c"}]})).unwrap();
        assert_eq!(batch.start_at(), 0);
        let resumed = WorkflowInput::decode(&batch.resumed_at(2)).unwrap();
        assert_eq!((resumed.events(), resumed.start_at()), (batch.events(), 2));
        assert_eq!(WorkflowInput::decode(&batch.resumed_at(9)).unwrap().start_at(), 3, "never past the end");
        assert_eq!(WorkflowInput::parse(&json!({"event_data": {"uuid": "a"}})).unwrap().start_at(), 0);
    }

    #[test]
    fn a_lone_surrogate_in_the_payload_is_decoded_as_a_replacement_character() {
        let raw = WorkflowInput::payload(br#"{"event_data":{"uuid":"x","properties":{"$ai_input":[{"role":"user","content":"\ud800 I hate this"}]}}}"#.to_vec());
        let WorkflowInput::Single(event) = WorkflowInput::decode(&raw).unwrap() else { panic!("one event") };
        assert_eq!(event["properties"]["$ai_input"][0]["content"], "\u{FFFD} I hate this");
        assert!(matches!(WorkflowInput::decode(&WorkflowInput::payload(b"{nope".to_vec())), Err(InputError::NotJson(_))));
        assert!(matches!(WorkflowInput::decode(&RawValue::empty()), Err(InputError::NotJsonPayload(_))));
    }

    /// PostHog's `SentimentClassificationInput` dataclass as the Temporal SDKs
    /// send it (`json/plain`): `{"events": [...]}` (batch version) or
    /// `{"event_data": {...}}` (first version), each event a raw
    /// `clickhouse_events_json` row with `properties` as a JSON string.
    #[test]
    fn posthogs_dataclass_payloads() {
        let row = json!({
            "uuid": "0195a3b2-7c1e-7a10-8f00-000000000001", "event": "$ai_generation", "team_id": 2,
            "project_id": 2, "distinct_id": "u", "person_id": "0195a3b2-7c1e-7a10-8f00-0000000000aa",
            "timestamp": "2026-11-01 10:00:00.123000", "created_at": "2026-11-01 10:00:01.000000",
            "elements_chain": "", "properties": "{\"$ai_input\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
            "person_mode": "full", "person_properties": "{}", "historical_migration": false
        });
        let batch = WorkflowInput::parse(&json!({"events": [row.clone(), row.clone()]})).unwrap();
        assert!(batch.is_batch());
        assert_eq!(batch.events().len(), 2);
        let single = WorkflowInput::parse(&json!({"event_data": row.clone()})).unwrap();
        assert_eq!(single.events(), std::slice::from_ref(&row));
        let parsed = crate::event::GenerationEvent::parse(&batch.events()[0]).unwrap();
        assert_eq!(parsed.team_id, 2);
        assert!(parsed.timestamp.is_some());
        assert!(parsed.ai_input.is_some(), "$ai_input is read");
        assert!(parsed.ai_input_json().unwrap().starts_with("[{\"role\": \"user\""), "the text as it came");
    }
}
