//! `$ai_generation` events in, `$ai_sentiment` (or `$ai_evaluation`) events out: each field typed
//! once, where it enters, so the layers after it (pipeline, sink, adapters)
//! use it as it is.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::MessageResult;
pub use crate::outcome::SkipReason;

mod ai_input;
mod generation;
mod sentiment;
mod time;

pub use ai_input::AiInput;
pub use generation::*;
pub use sentiment::*;
pub use time::{format_timestamp, parse_timestamp, EventTime};

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

/// The property that holds the conversation.
pub const AI_INPUT: &str = "$ai_input";

/// The uuid of the `$ai_sentiment` event of a generation.
pub fn sentiment_uuid_for(generation_uuid: Uuid) -> Uuid {
    EventSchema::Sentiment.uuid_for(generation_uuid)
}

