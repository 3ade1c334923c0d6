//! Plain Rust mirrors of the WIT records, so the logic is testable natively.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Negative,
    Neutral,
    Positive,
}

impl Label {
    pub const ALL: [Label; 3] = [Label::Negative, Label::Neutral, Label::Positive];

    /// Worse labels rank higher: the overall label is the worst one seen.
    pub fn severity(self) -> u8 {
        match self {
            Label::Negative => 2,
            Label::Neutral => 1,
            Label::Positive => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }

    /// Maps a model's `id2label` name; accepts the usual spellings
    /// ("negative", "NEGATIVE", "neg", "LABEL_NEGATIVE").
    pub fn from_model_name(name: &str) -> Option<Label> {
        let n = name.trim().to_ascii_lowercase();
        let n = n.strip_prefix("label_").unwrap_or(&n);
        match n {
            "negative" | "neg" => Some(Label::Negative),
            "neutral" | "neu" => Some(Label::Neutral),
            "positive" | "pos" => Some(Label::Positive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub negative: f32,
    pub neutral: f32,
    pub positive: f32,
}

impl Scores {
    pub fn get(&self, label: Label) -> f32 {
        match label {
            Label::Negative => self.negative,
            Label::Neutral => self.neutral,
            Label::Positive => self.positive,
        }
    }

    fn set(&mut self, label: Label, value: f32) {
        match label {
            Label::Negative => self.negative = value,
            Label::Neutral => self.neutral = value,
            Label::Positive => self.positive = value,
        }
    }

    /// Softmax of `logits`, whose i-th entry belongs to `labels[i]`.
    pub fn from_logits(logits: &[f32], labels: &[Label; 3]) -> Scores {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let mut scores = Scores { negative: 0.0, neutral: 0.0, positive: 0.0 };
        for (label, e) in labels.iter().zip(exps) {
            scores.set(*label, e / sum);
        }
        scores
    }

    /// The most probable label; ties go to the earlier of negative, neutral, positive.
    pub fn top(&self) -> (Label, f32) {
        let mut best = (Label::Negative, self.negative);
        for label in [Label::Neutral, Label::Positive] {
            if self.get(label) > best.1 {
                best = (label, self.get(label));
            }
        }
        best
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MessageResult {
    pub label: Label,
    pub score: f32,
    pub scores: Scores,
}

impl MessageResult {
    pub fn from_scores(scores: Scores) -> MessageResult {
        let (label, score) = scores.top();
        MessageResult { label, score, scores }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverallResult {
    pub label: Label,
    pub score: f32,
    pub scores: Scores,
    pub messages: Vec<MessageResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserMessage {
    pub index: u32,
    pub text: String,
}

/// How a text longer than `max_chars` characters is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Its last `max_chars` characters (the seed's rule).
    #[default]
    Tail,
    /// Its first `head_chars` characters, [`HEAD_TAIL_SEPARATOR`], and its
    /// last `max_chars - head_chars - 5`; `head_chars = 0` is `Tail`.
    HeadTail { head_chars: u32 },
}

/// Between the head and the tail of a head+tail cut (5 characters).
pub const HEAD_TAIL_SEPARATOR: &str = "\n...\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    pub max_messages: u32,
    pub max_chars: u32,
    pub truncation: Truncation,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions { max_messages: 50, max_chars: 2000, truncation: Truncation::Tail }
    }
}

impl ExtractOptions {
    /// Options the extraction cannot honour, as a reason.
    pub fn check(&self) -> Result<(), String> {
        match self.truncation {
            Truncation::HeadTail { head_chars } if head_chars > 0 => {
                let sep = HEAD_TAIL_SEPARATOR.chars().count() as u64;
                if u64::from(head_chars) + sep >= u64::from(self.max_chars) {
                    return Err(format!(
                        "head-tail: head_chars {head_chars} + {sep} separator characters leave no tail within max_chars {}",
                        self.max_chars
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// How per-message scores make a generation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AggregationRule {
    /// The worst label wins; score and scores of its most confident message.
    #[default]
    Worst,
    /// Mean scores; label their argmax after the margin rule.
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Labelling {
    /// A polar top class within this margin of neutral is neutral; 0 is off.
    pub neutral_margin: f64,
    pub rule: AggregationRule,
}
