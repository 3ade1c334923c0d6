//! `$ai_input` as it reaches the plugin: the text it arrived as, held to
//! what the plugin's JSON parser takes.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;

/// `$ai_input` as it arrived: the JSON text itself when the event came as
/// text (an `analyze` line, properties sent JSON-encoded), handed to the
/// plugin untouched; a parsed value when the event came parsed (workflow
/// input), serialised once for the plugin.
#[derive(Debug, Clone)]
pub enum AiInput {
    /// Valid JSON text (serde_json checked it while reading the event).
    Text(Box<RawValue>),
    Value(Value),
}

impl AiInput {
    /// As a value: read once from text, a value as it is.
    fn as_value(&self) -> Option<Cow<'_, Value>> {
        match self {
            AiInput::Value(v) => Some(Cow::Borrowed(v)),
            AiInput::Text(t) => serde_json::from_str::<Value>(t.get()).ok().map(Cow::Owned),
        }
    }

    /// The JSON text the plugin's `extract` takes.
    pub fn json(&self) -> Cow<'_, str> {
        match self {
            AiInput::Text(raw) => Cow::Borrowed(raw.get()),
            AiInput::Value(v) => Cow::Owned(v.to_string()),
        }
    }
}

/// Equal when they hold the same JSON (text compares as text first).
impl PartialEq for AiInput {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AiInput::Text(a), AiInput::Text(b)) if a.get() == b.get() => true,
            (AiInput::Value(a), AiInput::Value(b)) => a == b,
            // A value is compared as it is, never written out and read again:
            // serde_json's default float reading is not exact, so a number
            // read twice may move by one ulp.
            _ => self.as_value() == other.as_value(),
        }
    }
}

/// Deepest `$ai_input` accepted as text: what the plugin's JSON parser
/// (serde_json, 128 levels) takes, less the properties object around it, as
/// when the properties are parsed as a whole (the raw text is not depth-checked
/// while it is read).
pub(super) const MAX_AI_INPUT_DEPTH: usize = 127;

/// Whether valid JSON text (as serde_json's raw capture reads it, which
/// neither counts depth nor decodes escapes) is what the plugin's parser
/// takes: nested at most `max_depth` deep, and no `\\u` escape of a lone
/// UTF-16 surrogate.
pub(super) fn plugin_parses(text: &str, max_depth: usize) -> bool {
    let bytes = text.as_bytes();
    let hex = |at: usize| text.get(at..at + 4).and_then(|h| u16::from_str_radix(h, 16).ok());
    let (mut depth, mut in_string, mut i) = (0usize, false, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => {
                if bytes.get(i + 1) == Some(&b'u') {
                    match hex(i + 2) {
                        Some(0xD800..=0xDBFF) => {
                            let low = (text.get(i + 6..i + 8) == Some("\\u")).then(|| hex(i + 8)).flatten();
                            if !matches!(low, Some(0xDC00..=0xDFFF)) {
                                return false;
                            }
                            i += 6;
                        }
                        Some(0xDC00..=0xDFFF) => return false,
                        _ => {}
                    }
                }
                i += 1;
            }
            b'"' => in_string = !in_string,
            b'[' | b'{' if !in_string => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_held_to_the_plugins_nesting_limit_and_surrogates() {
        assert!(plugin_parses(r#"[{"a": "[[[\\\"{"}, [1]]"#, 2));
        assert!(!plugin_parses(r#"[{"a": "[[[\\\"{"}, [1]]"#, 1));
        assert!(plugin_parses(r#""[[""#, 0));
        // Lone surrogates (JavaScript producers cutting an emoji in half)
        // are not JSON to serde_json; a pair is.
        assert!(plugin_parses(r#""\ud83d\ude00 ok""#, 0));
        for lone in [r#""\ud83d""#, r#""\ud83d x""#, r#""\ude00""#, r#""\ud83d\u0041""#] {
            assert!(!plugin_parses(lone, 0), "{lone}");
            assert!(serde_json::from_str::<Value>(lone).is_err(), "{lone}");
        }
        // An escaped backslash before `u` is no escape.
        assert!(plugin_parses(r#""\\ud83d""#, 0));
    }
}
