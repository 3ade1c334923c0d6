//! Which user messages of an `$ai_input` get classified.
//!
//! Mirrors the seed's rules: a plain string is one message (index 0); a
//! single `{role, content}` object counts only if its role is `user`; in a
//! list only user-role entries count, indexed by their position in the list.
//! Content is a string or a list of blocks (`text`, `content`, or a bare
//! string), joined with single spaces. A message made only of `tool_result`
//! blocks is not the user speaking and is skipped.

use serde_json::Value;

use crate::types::{ExtractOptions, Truncation, UserMessage, HEAD_TAIL_SEPARATOR};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    #[error("$ai_input is not valid JSON: {0}")]
    NotJson(String),
    #[error("extraction options: {0}")]
    InvalidOptions(String),
}

/// Extracts from `$ai_input` given as JSON text (what the host holds).
pub fn extract_json(ai_input_json: &str, options: ExtractOptions) -> Result<Vec<UserMessage>, ExtractError> {
    options.check().map_err(ExtractError::InvalidOptions)?;
    let value: Value = serde_json::from_str(ai_input_json).map_err(|e| ExtractError::NotJson(e.to_string()))?;
    Ok(extract(&value, options))
}

/// Extracts from an already parsed `$ai_input`. Shapes that hold no user
/// message (numbers, null, assistant-only lists...) give an empty list.
/// `options` are taken as they are (`extract_json` checks them first).
pub fn extract(ai_input: &Value, options: ExtractOptions) -> Vec<UserMessage> {
    let mut messages = match ai_input {
        Value::String(s) => match decode_embedded(s) {
            Some(decoded) => return extract(&decoded, options),
            None => vec![UserMessage { index: 0, text: s.clone() }],
        },
        Value::Object(_) => user_text(ai_input).map(|text| UserMessage { index: 0, text }).into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let index = u32::try_from(i).ok()?;
                user_text(item).map(|text| UserMessage { index, text })
            })
            .collect(),
        _ => Vec::new(),
    };
    messages.retain(|m| !m.text.trim().is_empty());
    let keep = options.max_messages as usize;
    if messages.len() > keep {
        messages.drain(..messages.len() - keep);
    }
    for m in &mut messages {
        cut(&mut m.text, options.max_chars as usize, options.truncation);
    }
    messages
}

/// Cuts `text` to at most `max_chars` characters as `truncation` says.
pub fn cut(text: &mut String, max_chars: usize, truncation: Truncation) {
    match truncation {
        Truncation::HeadTail { head_chars } if head_chars > 0 => keep_head_and_tail(text, max_chars, head_chars as usize),
        _ => truncate_to_last_chars(text, max_chars),
    }
}

/// PostHog's cut: the first `head_chars` characters, the separator, and the
/// last `max_chars - head_chars - 5`, so the result has exactly `max_chars`
/// characters; shorter texts stay whole.
fn keep_head_and_tail(text: &mut String, max_chars: usize, head_chars: usize) {
    let count = text.chars().count();
    if count <= max_chars {
        return;
    }
    let tail_chars = max_chars.saturating_sub(head_chars + HEAD_TAIL_SEPARATOR.chars().count());
    let byte_at = |chars: usize| text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
    let (head_end, tail_start) = (byte_at(head_chars), byte_at(count - tail_chars));
    let mut out = String::with_capacity(head_end + HEAD_TAIL_SEPARATOR.len() + text.len() - tail_start);
    out.push_str(&text[..head_end]);
    out.push_str(HEAD_TAIL_SEPARATOR);
    out.push_str(&text[tail_start..]);
    *text = out;
}

/// Properties stored as strings carry `$ai_input` as JSON text of a list (or
/// object); anything else in a string is the message itself.
fn decode_embedded(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('[') || t.starts_with('{')) {
        return None;
    }
    match serde_json::from_str::<Value>(s) {
        Ok(v @ (Value::Array(_) | Value::Object(_))) => Some(v),
        _ => None,
    }
}

/// The text of a message if it is a user message worth classifying.
fn user_text(message: &Value) -> Option<String> {
    let obj = message.as_object()?;
    if obj.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    match obj.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(blocks) => {
            if !blocks.is_empty() && blocks.iter().all(is_tool_result) {
                return None;
            }
            Some(join_blocks(blocks))
        }
        _ => None,
    }
}

fn is_tool_result(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_result")
}

fn join_blocks(blocks: &[Value]) -> String {
    let parts: Vec<String> = blocks.iter().filter_map(block_text).collect();
    parts.join(" ")
}

fn block_text(block: &Value) -> Option<String> {
    match block {
        Value::String(s) => Some(s.clone()),
        Value::Object(obj) => {
            let inner = if obj.contains_key("text") { obj.get("text") } else { obj.get("content") };
            match inner? {
                Value::String(s) => Some(s.clone()),
                // tool_result content may itself be a list of blocks
                Value::Array(nested) => Some(join_blocks(nested)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Keeps the last `max_chars` characters, never splitting a code point.
pub fn truncate_to_last_chars(text: &mut String, max_chars: usize) {
    let count = text.chars().count();
    if count <= max_chars {
        return;
    }
    let cut = text.char_indices().nth(count - max_chars).map(|(i, _)| i).unwrap_or(text.len());
    text.drain(..cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ex(v: Value) -> Vec<(u32, String)> {
        extract(&v, ExtractOptions::default()).into_iter().map(|m| (m.index, m.text)).collect()
    }

    #[test]
    fn plain_string_is_one_message() {
        assert_eq!(ex(json!("I love it")), vec![(0, "I love it".into())]);
    }

    #[test]
    fn user_dict_counts_other_roles_do_not() {
        assert_eq!(ex(json!({"role": "user", "content": "hi"})), vec![(0, "hi".into())]);
        assert!(ex(json!({"role": "assistant", "content": "hi"})).is_empty());
        assert!(ex(json!({"role": "system", "content": "be nice"})).is_empty());
        assert!(ex(json!({"content": "no role"})).is_empty());
    }

    #[test]
    fn list_keeps_user_entries_with_their_positions() {
        let input = json!([
            {"role": "system", "content": "You are helpful"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            "stray string",
            {"role": "user", "content": "second"}
        ]);
        assert_eq!(ex(input), vec![(1, "first".into()), (4, "second".into())]);
    }

    #[test]
    fn blocks_are_joined_with_one_space() {
        let input = json!([{"role": "user", "content": [
            {"type": "text", "text": "look at"},
            "this",
            {"type": "image", "source": {}},
            {"type": "other", "content": "and that"}
        ]}]);
        assert_eq!(ex(input), vec![(0, "look at this and that".into())]);
    }

    #[test]
    fn tool_result_only_messages_are_skipped() {
        let input = json!([
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "42 rows"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "ok"}]}
            ]},
            {"role": "user", "content": "thanks"}
        ]);
        assert_eq!(ex(input), vec![(1, "thanks".into())]);
    }

    #[test]
    fn mixed_text_and_tool_result_is_kept() {
        let input = json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "42 rows"},
            {"type": "text", "text": "why so few?"}
        ]}]);
        assert_eq!(ex(input), vec![(0, "42 rows why so few?".into())]);
    }

    #[test]
    fn empty_texts_are_dropped() {
        let input = json!([
            {"role": "user", "content": ""},
            {"role": "user", "content": "   "},
            {"role": "user", "content": []},
            {"role": "user", "content": null},
            {"role": "user", "content": "real"}
        ]);
        assert_eq!(ex(input), vec![(4, "real".into())]);
        assert!(ex(json!("")).is_empty());
    }

    #[test]
    fn sixty_messages_keep_the_last_fifty_with_original_indices() {
        let msgs: Vec<Value> = (0..60)
            .flat_map(|i| [json!({"role": "user", "content": format!("m{i}")}), json!({"role": "assistant", "content": "a"})])
            .collect();
        let out = ex(Value::Array(msgs));
        assert_eq!(out.len(), 50);
        assert_eq!(out[0], (20, "m10".into()));
        assert_eq!(out[49], (118, "m59".into()));
    }

    #[test]
    fn truncation_keeps_the_tail() {
        let text = format!("{}END", "x".repeat(2500));
        let out = ex(json!([{"role": "user", "content": text}]));
        assert_eq!(out[0].1.chars().count(), 2000);
        assert!(out[0].1.ends_with("xEND"));
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        // 1999 ASCII chars + 3 multi-byte ones: the cut falls next to code
        // points of 2, 3 and 4 bytes and must not split any of them.
        let text = format!("é{}€😀", "a".repeat(1999));
        let out = ex(json!(text));
        assert_eq!(out[0].1.chars().count(), 2000);
        assert!(out[0].1.ends_with("a€😀"));
        assert!(!out[0].1.starts_with('é'));
        let emoji = "😀".repeat(2001);
        let out = ex(json!(emoji));
        assert_eq!(out[0].1, "😀".repeat(2000));
    }

    #[test]
    fn options_change_the_limits() {
        let input = json!([{"role": "user", "content": "abcdef"}, {"role": "user", "content": "ghij"}]);
        let got = extract(&input, ExtractOptions { max_messages: 1, max_chars: 3, truncation: Truncation::Tail });
        assert_eq!(got, vec![UserMessage { index: 1, text: "hij".into() }]);
    }

    fn posthog(head_chars: u32) -> ExtractOptions {
        ExtractOptions { max_messages: 1, max_chars: 1000, truncation: Truncation::HeadTail { head_chars } }
    }

    fn cut_with(text: &str, options: ExtractOptions) -> String {
        let mut out = extract_json(&json!(text).to_string(), options).unwrap();
        assert_eq!(out.len(), 1);
        out.pop().unwrap().text
    }

    #[test]
    fn last_message_only_keeps_its_index() {
        let input = json!([
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": "last"},
            {"role": "assistant", "content": "bye"}
        ]);
        assert_eq!(extract(&input, posthog(300)), vec![UserMessage { index: 2, text: "last".into() }]);
    }

    #[test]
    fn head_tail_keeps_exactly_max_chars_and_whole_texts_up_to_it() {
        let exact = "x".repeat(1000);
        assert_eq!(cut_with(&exact, posthog(300)), exact, "exactly max_chars stays whole");
        // One over: 300 head + separator + 695 tail, and nothing else.
        let over: String = (0..1001).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let got = cut_with(&over, posthog(300));
        assert_eq!(got.chars().count(), 1000);
        let chars: Vec<char> = over.chars().collect();
        let head: String = chars[..300].iter().collect();
        let tail: String = chars[1001 - 695..].iter().collect();
        assert_eq!(got, format!("{head}\n...\n{tail}"));
    }

    #[test]
    fn head_tail_never_splits_a_code_point_at_either_cut() {
        // Characters of 2, 3 and 4 bytes sit on both sides of both cuts.
        let text = format!("{}é€{}😀é{}", "a".repeat(299), "b".repeat(1000), "c".repeat(693));
        let got = cut_with(&text, posthog(300));
        assert_eq!(got.chars().count(), 1000);
        let (head, tail) = got.split_once("\n...\n").unwrap();
        assert_eq!(head, format!("{}é", "a".repeat(299)));
        assert_eq!(tail, format!("😀é{}", "c".repeat(693)));
        let emoji = "😀".repeat(1500);
        let got = cut_with(&emoji, posthog(300));
        assert_eq!(got, format!("{}\n...\n{}", "😀".repeat(300), "😀".repeat(695)));
    }

    #[test]
    fn head_chars_zero_is_the_tail_cut() {
        let text = format!("{}END", "x".repeat(1500));
        let got = cut_with(&text, posthog(0));
        assert_eq!(got, format!("{}END", "x".repeat(997)));
        let tail = ExtractOptions { truncation: Truncation::Tail, ..posthog(0) };
        assert_eq!(got, cut_with(&text, tail));
    }

    #[test]
    fn a_head_that_leaves_no_tail_is_refused() {
        let options = ExtractOptions { max_messages: 1, max_chars: 10, truncation: Truncation::HeadTail { head_chars: 5 } };
        assert!(matches!(extract_json("\"hi\"", options), Err(ExtractError::InvalidOptions(_))));
        let options = ExtractOptions { truncation: Truncation::HeadTail { head_chars: 4 }, ..options };
        assert_eq!(cut_with("0123456789ab", options), "0123\n...\nb");
    }

    #[test]
    fn json_encoded_list_is_decoded() {
        let encoded = json!([{"role": "user", "content": "encoded"}]).to_string();
        assert_eq!(ex(Value::String(encoded)), vec![(0, "encoded".into())]);
        let encoded_dict = json!({"role": "user", "content": "dict"}).to_string();
        assert_eq!(ex(Value::String(encoded_dict)), vec![(0, "dict".into())]);
        // Looks like JSON but is not: it is what the user typed.
        assert_eq!(ex(json!("[not json")), vec![(0, "[not json".into())]);
    }

    #[test]
    fn shapes_without_messages_give_nothing() {
        for v in [json!(42), json!(null), json!(true), json!([1, 2]), json!({})] {
            assert!(ex(v).is_empty());
        }
    }

    #[test]
    fn invalid_json_text_is_a_typed_error() {
        assert!(matches!(extract_json("{", ExtractOptions::default()), Err(ExtractError::NotJson(_))));
        assert_eq!(extract_json("\"hi\"", ExtractOptions::default()).unwrap()[0].text, "hi");
    }
}
