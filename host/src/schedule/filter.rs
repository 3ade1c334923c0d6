//! Which messages of the events topic start a workflow, and the event the
//! workflow gets. PostHog's rules: the `productTrack` header, when present,
//! must be `llma`; the event must be `$ai_generation`; the team must be
//! allowed; the generation must be in the rollout. A message that is not a
//! usable event is skipped with its reason (and committed past): it must
//! never block its partition.

use serde_json::{Map, Value};

use crate::event::GENERATION_EVENT;

/// The header PostHog's capture sets on LLM-analytics events.
pub const PRODUCT_TRACK_HEADER: &str = "productTrack";
pub const LLMA_TRACK: &str = "llma";

/// Why a message starts no workflow (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `productTrack` header present and not `llma`.
    OtherProduct,
    /// Not `$ai_generation`.
    OtherEvent,
    /// The team is not in `schedule.teams`.
    TeamNotAllowed,
    /// Left out by the rollout percentage.
    SampledOut,
    // Unusable messages (logged with their offset):
    NoPayload,
    NotJson,
    NotAnObject,
    NoUuid,
    NoTeam,
    BadProperties,
}

impl Skip {
    /// Every reason counted in `llma_sentiment_schedule_filtered_total`
    /// (sampled-out events have a counter of their own).
    pub const FILTERED: [Skip; 9] = [
        Skip::OtherProduct,
        Skip::OtherEvent,
        Skip::TeamNotAllowed,
        Skip::NoPayload,
        Skip::NotJson,
        Skip::NotAnObject,
        Skip::NoUuid,
        Skip::NoTeam,
        Skip::BadProperties,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::OtherProduct => "other_product",
            Skip::OtherEvent => "other_event",
            Skip::TeamNotAllowed => "team_not_allowed",
            Skip::SampledOut => "sampled_out",
            Skip::NoPayload => "no_payload",
            Skip::NotJson => "not_json",
            Skip::NotAnObject => "not_an_object",
            Skip::NoUuid => "no_uuid",
            Skip::NoTeam => "no_team",
            Skip::BadProperties => "bad_properties",
        }
    }

    /// A message nobody should have produced (as opposed to one meant for
    /// another consumer): worth a warning with its offset.
    pub fn is_unusable(self) -> bool {
        matches!(self, Skip::NoPayload | Skip::NotJson | Skip::NotAnObject | Skip::NoUuid | Skip::NoTeam | Skip::BadProperties)
    }
}

/// A message that starts a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The generation uuid as the event carries it (the workflow id's part).
    pub uuid: String,
    /// The event as the workflow takes it: `properties` an object.
    pub event: Value,
}

/// The rules of one scheduler.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `None`: every team.
    pub teams: Option<Vec<i64>>,
    pub rollout_percent: f64,
}

impl Filter {
    /// The verdict on one message: its payload and its `productTrack` header
    /// (`None` when the message has none).
    pub fn check(&self, payload: Option<&[u8]>, product_track: Option<&[u8]>) -> Result<Kept, Skip> {
        // The header is cheap to read: PostHog's consumers look at it before the payload.
        if product_track.is_some_and(|t| t != LLMA_TRACK.as_bytes()) {
            return Err(Skip::OtherProduct);
        }
        let payload = payload.filter(|p| !p.is_empty()).ok_or(Skip::NoPayload)?;
        let value: Value = crate::jsonl::from_slice(payload).map_err(|_| Skip::NotJson)?;
        let Value::Object(mut obj) = value else { return Err(Skip::NotAnObject) };
        if obj.get("event").and_then(Value::as_str) != Some(GENERATION_EVENT) {
            return Err(Skip::OtherEvent);
        }
        let uuid = match obj.get("uuid").and_then(Value::as_str) {
            Some(u) if uuid::Uuid::parse_str(u).is_ok() => u.to_string(),
            _ => return Err(Skip::NoUuid),
        };
        let team = team_id(&obj).ok_or(Skip::NoTeam)?;
        if self.teams.as_ref().is_some_and(|t| !t.contains(&team)) {
            return Err(Skip::TeamNotAllowed);
        }
        if !crate::worker::rollout::in_rollout(&uuid, self.rollout_percent) {
            return Err(Skip::SampledOut);
        }
        // The topic carries `properties` as a JSON string; the workflow gets an object.
        if let Some(Value::String(text)) = obj.get("properties") {
            match crate::jsonl::from_str::<Value>(text) {
                Ok(props @ Value::Object(_)) => {
                    obj.insert("properties".into(), props);
                }
                _ => return Err(Skip::BadProperties),
            }
        }
        match obj.get("properties") {
            None | Some(Value::Object(_)) => {}
            Some(Value::Null) => {
                obj.insert("properties".into(), Value::Object(Map::new()));
            }
            Some(_) => return Err(Skip::BadProperties),
        }
        Ok(Kept { uuid, event: Value::Object(obj) })
    }
}

/// `team_id` as a number, or a string of one (both occur in PostHog's rows).
fn team_id(obj: &Map<String, Value>) -> Option<i64> {
    match obj.get("team_id")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UUID: &str = "0190b6a5-0000-7000-8000-000000000001"; // rollout bucket 51.19

    fn all() -> Filter {
        Filter { teams: None, rollout_percent: 100.0 }
    }

    fn row(event: &str, team: Value, props: Value) -> Vec<u8> {
        json!({"uuid": UUID, "event": event, "team_id": team, "distinct_id": "d", "timestamp": "2026-11-01 10:00:00.123000", "properties": props})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_posthog_row_becomes_the_event_the_workflow_takes() {
        let props = json!({"$ai_input": [{"role": "user", "content": "hi"}], "$ai_trace_id": "t"}).to_string();
        let kept = all().check(Some(&row("$ai_generation", json!(2), json!(props))), Some(b"llma")).unwrap();
        assert_eq!(kept.uuid, UUID);
        assert_eq!(kept.event["properties"]["$ai_input"][0]["content"], "hi", "properties decoded into an object");
        let parsed = crate::event::GenerationEvent::parse(&kept.event).unwrap();
        assert_eq!((parsed.team_id, parsed.uuid.to_string()), (2, UUID.to_string()));
        assert!(parsed.ai_input.is_some());
        // No header: kept too; properties already an object: kept as is.
        assert!(all().check(Some(&row("$ai_generation", json!("2"), json!({"a": 1}))), None).is_ok());
    }

    #[test]
    fn every_reason_is_its_own() {
        let ok = row("$ai_generation", json!(2), json!("{}"));
        let f = all();
        assert_eq!(f.check(Some(&ok), Some(b"product_analytics")), Err(Skip::OtherProduct));
        assert_eq!(f.check(Some(&row("$pageview", json!(2), json!("{}"))), None), Err(Skip::OtherEvent));
        assert_eq!(f.check(None, None), Err(Skip::NoPayload));
        assert_eq!(f.check(Some(b"{nope"), None), Err(Skip::NotJson));
        assert_eq!(f.check(Some(b"[1]"), None), Err(Skip::NotAnObject));
        assert_eq!(f.check(Some(br#"{"event":"$ai_generation","uuid":"x","team_id":1}"#), None), Err(Skip::NoUuid));
        assert_eq!(f.check(Some(&row("$ai_generation", json!(null), json!("{}"))), None), Err(Skip::NoTeam));
        assert_eq!(f.check(Some(&row("$ai_generation", json!(2), json!("{not json"))), None), Err(Skip::BadProperties));
        assert_eq!(f.check(Some(&row("$ai_generation", json!(2), json!([1]))), None), Err(Skip::BadProperties));
        let only_3 = Filter { teams: Some(vec![3]), rollout_percent: 100.0 };
        assert_eq!(only_3.check(Some(&ok), None), Err(Skip::TeamNotAllowed));
        // The uuid's bucket is 51.19: in at 51.2, out at 50 (the rule `submit` has).
        assert!(Filter { teams: None, rollout_percent: 51.2 }.check(Some(&ok), None).is_ok());
        assert_eq!(Filter { teams: None, rollout_percent: 50.0 }.check(Some(&ok), None), Err(Skip::SampledOut));
        assert!(Skip::NotJson.is_unusable() && !Skip::OtherEvent.is_unusable());
    }
}
