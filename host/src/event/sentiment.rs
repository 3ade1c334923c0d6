//! `$ai_sentiment` (or `$ai_evaluation`) events out: the properties each
//! schema carries, built from a generation and the plugin's results.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::engine::{Label, OverallResult, Scores};

use super::*;

#[derive(Debug, Clone)]
pub struct Producer {
    pub model: String,
    pub plugin_version: String,
}

/// Floats as the JSON numbers they always were (f32 widened to f64).
fn widened<S: Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(*x))
}

fn label_str<S: Serializer>(l: &Label, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.as_str())
}

/// The three class probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SentimentScores {
    #[serde(serialize_with = "widened")]
    pub negative: f32,
    #[serde(serialize_with = "widened")]
    pub neutral: f32,
    #[serde(serialize_with = "widened")]
    pub positive: f32,
}

impl From<&Scores> for SentimentScores {
    fn from(s: &Scores) -> Self {
        SentimentScores { negative: s.negative, neutral: s.neutral, positive: s.positive }
    }
}

/// One user message's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageSentiment {
    #[serde(serialize_with = "label_str")]
    pub label: Label,
    #[serde(serialize_with = "widened")]
    pub score: f32,
    /// The evaluation schema only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<SentimentScores>,
    /// The text as cut, with `pipeline.store_text` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `$ai_sentiment_messages`: a list in message order (the seed's schema), or
/// an object keyed by each message's index in `$ai_input` (evaluation).
#[derive(Debug, Clone, PartialEq)]
pub enum Messages {
    List(Vec<MessageSentiment>),
    ByIndex(Vec<(u32, MessageSentiment)>),
}

impl Messages {
    pub fn len(&self) -> usize {
        match self {
            Messages::List(l) => l.len(),
            Messages::ByIndex(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for Messages {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Messages::List(l) => l.serialize(s),
            Messages::ByIndex(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (index, m) in entries {
                    map.serialize_entry(&index.to_string(), m)?;
                }
                map.end()
            }
        }
    }
}

/// What a `$ai_sentiment` event says about its generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentimentTarget {
    /// Copied from the generation (any JSON; null when absent).
    #[serde(rename = "$ai_trace_id")]
    pub trace_id: Value,
    #[serde(rename = "$ai_session_id")]
    pub session_id: Value,
    /// `$ai_generation_id`, else `$ai_span_id`, else the generation uuid.
    #[serde(rename = "$ai_parent_id")]
    pub parent_id: String,
    #[serde(rename = "$ai_generation_event_uuid")]
    pub generation_uuid: Uuid,
}

/// What a `$ai_evaluation` event says about itself and its generation (the
/// fields PostHog's UI reads).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationTarget {
    #[serde(rename = "$ai_evaluation_id")]
    pub evaluation_id: String,
    #[serde(rename = "$ai_evaluation_name")]
    pub evaluation_name: String,
    #[serde(rename = "$ai_evaluation_type")]
    pub evaluation_type: &'static str,
    #[serde(rename = "$ai_evaluation_runtime")]
    pub runtime: &'static str,
    #[serde(rename = "$ai_evaluation_result_type")]
    pub result_type: &'static str,
    #[serde(rename = "$ai_evaluation_start_time")]
    pub start_time: String,
    #[serde(rename = "$ai_evaluation_reasoning")]
    pub reasoning: String,
    #[serde(rename = "$ai_target_event_id")]
    pub target_event_id: Uuid,
    #[serde(rename = "$ai_target_event_type")]
    pub target_event_type: &'static str,
    #[serde(rename = "$ai_target_type")]
    pub target_type: &'static str,
    #[serde(rename = "$ai_trace_id")]
    pub trace_id: Value,
    /// `$ai_session_id`, else `$session_id`, of the generation.
    #[serde(rename = "$session_id")]
    pub session_id: Value,
}

/// The schema's own fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Target {
    Sentiment(SentimentTarget),
    Evaluation(Box<EvaluationTarget>),
}

/// The properties of a sentiment (or evaluation) event, in the order they are stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentimentProperties {
    #[serde(flatten)]
    pub target: Target,
    #[serde(rename = "$ai_sentiment_label", serialize_with = "label_str")]
    pub label: Label,
    #[serde(rename = "$ai_sentiment_score", serialize_with = "widened")]
    pub score: f32,
    #[serde(rename = "$ai_sentiment_scores")]
    pub scores: SentimentScores,
    #[serde(rename = "$ai_sentiment_model")]
    pub model: String,
    #[serde(rename = "$ai_sentiment_plugin_version")]
    pub plugin_version: String,
    /// Per classified user message.
    #[serde(rename = "$ai_sentiment_messages")]
    pub messages: Messages,
    /// The evaluation schema only.
    #[serde(rename = "$ai_sentiment_message_count", skip_serializing_if = "Option::is_none")]
    pub message_count: Option<usize>,
    /// User messages left out because they trapped the plugin on the last
    /// attempt (present only when some were).
    #[serde(rename = "$ai_sentiment_skipped_messages", skip_serializing_if = "Option::is_none")]
    pub skipped_messages: Option<usize>,
}

/// The `$ai_sentiment` event for a generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentimentEvent {
    pub event: &'static str,
    pub uuid: Uuid,
    pub distinct_id: String,
    pub team_id: i64,
    pub timestamp: EventTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<Uuid>,
    pub properties: SentimentProperties,
}

/// PostHog's result for a generation without user messages (`emit_empty`).
fn empty_overall() -> OverallResult {
    let zero = Scores { negative: 0.0, neutral: 0.0, positive: 0.0 };
    OverallResult { label: Label::Neutral, score: 0.0, scores: zero, messages: Vec::new() }
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
        now: EventTime,
        started: DateTime<Utc>,
        options: &EventOptions,
    ) -> Self {
        let g = generation;
        let trace_id = g.properties.get("$ai_trace_id").cloned().unwrap_or(Value::Null);
        let target = match options.schema {
            EventSchema::Sentiment => {
                let parent = g.prop_str("$ai_generation_id").or_else(|| g.prop_str("$ai_span_id")).map(str::to_string);
                Target::Sentiment(SentimentTarget {
                    trace_id,
                    session_id: g.properties.get("$ai_session_id").cloned().unwrap_or(Value::Null),
                    parent_id: parent.unwrap_or_else(|| g.uuid.to_string()),
                    generation_uuid: g.uuid,
                })
            }
            EventSchema::Evaluation => {
                let session = ["$ai_session_id", "$session_id"].iter().find_map(|k| g.properties.get(*k).filter(|v| !v.is_null()));
                Target::Evaluation(Box::new(EvaluationTarget {
                    evaluation_id: options.evaluation_id.clone(),
                    evaluation_name: options.evaluation_name.clone(),
                    evaluation_type: "online",
                    runtime: "sentiment",
                    result_type: "sentiment",
                    start_time: format_timestamp(&started),
                    reasoning: format!("Classified {} user message(s) as {}", messages.len(), overall.label.as_str()),
                    target_event_id: g.uuid,
                    target_event_type: GENERATION_EVENT,
                    target_type: "generation_uuid",
                    trace_id,
                    session_id: session.cloned().unwrap_or(Value::Null),
                }))
            }
        };
        let entry = |m: &ClassifiedMessage| MessageSentiment {
            label: m.result.label,
            score: m.result.score,
            // The evaluation schema keeps each message's three scores (trace
            // and session means are computed from them on read); the seed's
            // entries stay `{label, score}`.
            scores: (options.schema == EventSchema::Evaluation).then(|| (&m.result.scores).into()),
            text: options.store_text.then(|| m.text.clone()),
        };
        let (messages_out, message_count) = match options.schema {
            EventSchema::Sentiment => (Messages::List(messages.iter().map(entry).collect()), None),
            EventSchema::Evaluation => {
                (Messages::ByIndex(messages.iter().map(|m| (m.index, entry(m))).collect()), Some(messages.len()))
            }
        };
        let properties = SentimentProperties {
            target,
            label: overall.label,
            score: overall.score,
            scores: (&overall.scores).into(),
            model: producer.model.clone(),
            plugin_version: producer.plugin_version.clone(),
            messages: messages_out,
            message_count,
            skipped_messages: None,
        };
        SentimentEvent {
            event: options.schema.event_name(),
            uuid: options.schema.uuid_for(g.uuid),
            distinct_id: g.distinct_id.clone(),
            team_id: g.team_id,
            timestamp: g.timestamp.unwrap_or(now),
            person_id: g.person_id,
            properties,
        }
    }

    /// `emit_empty`: the event of a generation without user messages
    /// (neutral, score 0, no messages), as PostHog writes it.
    pub fn empty(generation: &GenerationEvent, producer: &Producer, now: EventTime, started: DateTime<Utc>, options: &EventOptions) -> Self {
        SentimentEvent::build(generation, &empty_overall(), &[], producer, now, started, options)
    }
}
