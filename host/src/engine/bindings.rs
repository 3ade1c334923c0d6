//! Host bindings generated from the WIT contract in `wit/`: the current
//! minor version (1.1) is what the rest of the host speaks; a 1.0 plugin's
//! values are converted into it here, once.

mod v1_1 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/sentiment.wit",
        additional_derives: [PartialEq],
        // Async calls, so a call can yield on fuel (see `interrupt::drive`).
        exports: { default: async },
    });
}

/// The frozen 1.0 contract (`wit/v1.0/`), for plugins built against it.
pub(super) mod v1_0 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/v1.0/sentiment.wit",
        additional_derives: [PartialEq],
        exports: { default: async },
    });

    pub use exports::llma::sentiment::sentiment as api;
}

pub(super) use v1_1::{Plugin as PluginV1_1, PluginPre as PluginPreV1_1};

pub use v1_1::exports::llma::sentiment::sentiment::{
    AggregationRule, Error as PluginError, ExtractOptions, Extraction, Label, Labelling, Limits as PluginLimits,
    MessageResult, OverallResult, PluginInfo, Scores, Truncation, UserMessage,
};

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }
}

impl Default for Extraction {
    /// The seed's: the last 50 user messages, the last 2000 characters of each.
    fn default() -> Self {
        Extraction { max_messages: 50, max_chars: 2000, truncation: Truncation::Tail }
    }
}

impl Default for Labelling {
    /// The seed's: no neutral margin, the worst label wins.
    fn default() -> Self {
        Labelling { neutral_margin: 0.0, rule: AggregationRule::Worst }
    }
}

use v1_0::api as old;

impl From<old::Label> for Label {
    fn from(l: old::Label) -> Self {
        match l {
            old::Label::Negative => Label::Negative,
            old::Label::Neutral => Label::Neutral,
            old::Label::Positive => Label::Positive,
        }
    }
}

impl From<Label> for old::Label {
    fn from(l: Label) -> Self {
        match l {
            Label::Negative => old::Label::Negative,
            Label::Neutral => old::Label::Neutral,
            Label::Positive => old::Label::Positive,
        }
    }
}

impl From<old::Scores> for Scores {
    fn from(s: old::Scores) -> Self {
        Scores { negative: s.negative, neutral: s.neutral, positive: s.positive }
    }
}

impl From<Scores> for old::Scores {
    fn from(s: Scores) -> Self {
        old::Scores { negative: s.negative, neutral: s.neutral, positive: s.positive }
    }
}

impl From<old::MessageResult> for MessageResult {
    fn from(m: old::MessageResult) -> Self {
        MessageResult { label: m.label.into(), score: m.score, scores: m.scores.into() }
    }
}

impl From<MessageResult> for old::MessageResult {
    fn from(m: MessageResult) -> Self {
        old::MessageResult { label: m.label.into(), score: m.score, scores: m.scores.into() }
    }
}

impl From<old::OverallResult> for OverallResult {
    fn from(o: old::OverallResult) -> Self {
        OverallResult {
            label: o.label.into(),
            score: o.score,
            scores: o.scores.into(),
            messages: o.messages.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<old::UserMessage> for UserMessage {
    fn from(m: old::UserMessage) -> Self {
        UserMessage { index: m.index, text: m.text }
    }
}

impl From<old::PluginInfo> for PluginInfo {
    fn from(i: old::PluginInfo) -> Self {
        PluginInfo {
            name: i.name,
            version: i.version,
            interface_version: i.interface_version,
            model_name: i.model_name,
            labels: i.labels.into_iter().map(Into::into).collect(),
            limits: PluginLimits { max_tokens: i.limits.max_tokens, max_batch: i.limits.max_batch },
        }
    }
}

impl From<old::Error> for PluginError {
    fn from(e: old::Error) -> Self {
        match e {
            old::Error::InvalidInput(m) => PluginError::InvalidInput(m),
            old::Error::ModelNotLoaded => PluginError::ModelNotLoaded,
            old::Error::ModelLoad(m) => PluginError::ModelLoad(m),
            old::Error::InvalidArgument(m) => PluginError::InvalidArgument(m),
            old::Error::Tokenize(m) => PluginError::Tokenize(m),
            old::Error::Inference(m) => PluginError::Inference(m),
        }
    }
}
