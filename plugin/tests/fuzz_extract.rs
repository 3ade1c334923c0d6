//! Fuzzing of `$ai_input` extraction (native build of the plugin's logic):
//! arbitrary JSON values and arbitrary JSON text, deep nesting, huge and
//! multi-byte strings, surrogate escapes, non-object shapes, numbers where
//! strings belong, mixed and nested blocks, `tool_result` blocks.
//!
//! Every property runs `LLMA_FUZZ_CASES` cases (256 by default, so `make
//! test` stays fast; `make reliability` runs 100_000) and prints how many
//! cases ran and how long they took. With `LLMA_RELIABILITY_REPORT=FILE` set,
//! each property also appends a row to FILE for the reliability table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use llma_sentiment_plugin::extract::{extract, extract_json, ExtractError};
use llma_sentiment_plugin::types::{ExtractOptions, UserMessage};
use llma_fuzz_harness::{any_json, fuzz, json_number, max_rss_mb};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------- strategies

/// Characters that matter to extraction: multi-byte code points of 2, 3 and 4
/// bytes, combining marks and joiners, the highest scalar value, BOM,
/// Unicode whitespace, and JSON's own syntax.
const PIECES: &[&str] = &[
    "a", "Z", " ", "  ", "\t", "\n", "é", "€", "😀", "👍🏽", "\u{0301}", "\u{200d}", "\u{feff}", "\u{10ffff}",
    "\u{a0}", "\u{2003}", "\u{3000}", "[", "]", "{", "}", "\"", "\\", ",", ":", "\\ud800", "\u{fffd}", "\0",
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z ,.!?']{0,40}",
        4 => any::<String>(),
        2 => "[ \t\n\r\u{a0}\u{2003}\u{3000}\u{85}]{0,6}",
        4 => prop::collection::vec(prop::sample::select(PIECES), 0..60).prop_map(|v| v.concat()),
        // Around the 2000-character cut, with code points of 1 to 4 bytes.
        2 => (prop::sample::select(vec!["a", "é", "€", "😀", " ", "a😀"]), 1990usize..2010, "[a-z😀 ]{0,3}")
            .prop_map(|(s, n, tail)| format!("{}{tail}", s.repeat(n))),
        // Whitespace at the end of a long text: the cut may keep only blanks.
        1 => (1usize..3000).prop_map(|n| format!("word{}", " ".repeat(n))),
        // JSON text inside a string: properties stored as strings.
        1 => (prop::collection::vec(("[a-z]{1,8}", prop::bool::ANY), 0..4), "[ \t\n]{0,2}").prop_map(|(ms, pad)| {
            let list: Vec<Value> = ms
                .into_iter()
                .map(|(t, user)| json!({"role": if user { "user" } else { "assistant" }, "content": t}))
                .collect();
            format!("{pad}{}", Value::Array(list))
        }),
    ]
    .boxed()
}

/// Large texts (up to ~1 MB; the 10 MB cases are separate tests below).
fn huge_text() -> BoxedStrategy<String> {
    prop_oneof![
        9 => (2_000usize..60_000).prop_map(|n| "x😀 é".repeat(n / 4 + 1)),
        1 => (60_000usize..1_000_000).prop_map(|n| format!("{}{}", "word ".repeat(n / 5), "😀".repeat(n % 7))),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec!["role", "content", "text", "type", "tool_use_id", "$ai_input", "source", ""])
            .prop_map(String::from),
        2 => "[a-z_]{1,6}",
        1 => any::<String>(),
    ]
    .boxed()
}

/// Something that is not a string where a string belongs.
fn not_a_string() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        Just(json!({})),
        Just(json!([])),
        Just(json!({"text": "inner"})),
        Just(json!(["a", "b"])),
    ]
    .boxed()
}

/// A content block, possibly holding nested blocks.
fn block() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        3 => text().prop_map(Value::String),
        4 => text().prop_map(|t| json!({"type": "text", "text": t})),
        3 => text().prop_map(|t| json!({"type": "tool_result", "tool_use_id": "t1", "content": t})),
        1 => text().prop_map(|t| json!({"type": "other", "content": t})),
        1 => (text(), text()).prop_map(|(t, c)| json!({"text": t, "content": c})),
        // `text` present but not a string: `content` is not consulted.
        1 => (not_a_string(), text()).prop_map(|(t, c)| json!({"text": t, "content": c})),
        1 => not_a_string().prop_map(|v| json!({"type": "text", "text": v})),
        1 => not_a_string().prop_map(|v| json!({"type": "tool_result", "content": v})),
        1 => Just(json!({"type": "image", "source": {"data": "..."}})),
        1 => not_a_string(),
        1 => prop::sample::select(vec!["tool_result", "TOOL_RESULT", "text", ""])
            .prop_map(|t| json!({"type": t})),
    ];
    leaf.prop_recursive(8, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|b| json!({"type": "tool_result", "content": b})),
            prop::collection::vec(inner.clone(), 0..5).prop_map(|b| json!({"content": b})),
            prop::collection::vec(inner, 0..5).prop_map(|b| json!({"type": "text", "text": b})),
        ]
    })
    .boxed()
}

fn content() -> BoxedStrategy<Value> {
    prop_oneof![
        5 => text().prop_map(Value::String),
        5 => prop::collection::vec(block(), 0..8).prop_map(Value::Array),
        2 => prop::collection::vec(
            text().prop_map(|t| json!({"type": "tool_result", "tool_use_id": "t", "content": t})),
            0..4
        )
        .prop_map(Value::Array),
        2 => not_a_string(),
        1 => any_json(text(), key()),
    ]
    .boxed()
}

fn role() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        8 => Just(Some(json!("user"))),
        2 => prop::sample::select(vec!["assistant", "system", "tool", "developer"]).prop_map(|r| Some(json!(r))),
        1 => prop::sample::select(vec!["User", "USER", "user ", " user", "", "usér"]).prop_map(|r| Some(json!(r))),
        1 => not_a_string().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

/// A `{role, content}` message with optional stray keys.
fn message() -> BoxedStrategy<Value> {
    (role(), prop::option::weighted(0.9, content()), prop::collection::vec((key(), not_a_string()), 0..2), any::<bool>())
        .prop_map(|(role, content, extra, content_first)| {
            let mut m = Map::new();
            for (k, v) in extra {
                m.insert(k, v);
            }
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            };
            if content_first {
                put("content", content);
                put("role", role);
            } else {
                put("role", role);
                put("content", content);
            }
            Value::Object(m)
        })
        .boxed()
}

fn conversation() -> BoxedStrategy<Vec<Value>> {
    let item = prop_oneof![
        10 => message(),
        1 => text().prop_map(Value::String),
        1 => any_json(text(), key()),
    ];
    prop_oneof![
        8 => prop::collection::vec(item.clone(), 0..12),
        // More than max_messages (50) user messages.
        1 => prop::collection::vec(item, 45..70),
    ]
    .boxed()
}

/// A user message whose content nests blocks `depth` levels deep (two JSON
/// levels per block: the list and the block).
fn deep_content(depth: usize, leaf: String, kind: u8) -> Value {
    let mut v = Value::String(leaf);
    for _ in 0..depth {
        let block = match kind % 3 {
            0 => json!({"content": v}),
            1 => json!({"type": "text", "text": v}),
            _ => json!({"type": "tool_result", "content": v}),
        };
        v = json!([block]);
    }
    json!({"role": "user", "content": v})
}

/// JSON nesting depth: 0 for a scalar, 1 for `[]` or `[1]`.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Deepest nesting serde_json parses (its recursion limit is 128: the 128th
/// level is refused); checked in the 10_000-levels test.
const SERDE_MAX_DEPTH: usize = 127;

/// `value` wrapped in `depth` levels of arrays or objects.
fn wrapped(mut value: Value, depth: usize, kind: u8) -> Value {
    for i in 0..depth {
        value = match (kind as usize + i) % 3 {
            0 => json!([value]),
            1 => json!({"content": value}),
            _ => json!({"role": "user", "content": [value]}),
        };
    }
    value
}

/// What `$ai_input` may hold.
fn ai_input() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => text().prop_map(Value::String),
        3 => message(),
        8 => conversation().prop_map(Value::Array),
        // Huge texts: alone, or as one message of a conversation.
        1 => huge_text().prop_map(Value::String),
        1 => (conversation(), huge_text(), any::<prop::sample::Index>()).prop_map(|(mut c, big, at)| {
            let i = at.index(c.len() + 1);
            c.insert(i, json!({"role": "user", "content": big}));
            Value::Array(c)
        }),
        // Properties stored as strings: the list or object JSON-encoded, with
        // JSON or non-JSON leading whitespace.
        3 => (conversation(), prop::sample::select(vec!["", " ", "\n\t", "\u{a0}"]))
            .prop_map(|(c, pad)| Value::String(format!("{pad}{}", Value::Array(c)))),
        1 => message().prop_map(|m| Value::String(m.to_string())),
        // Encoded twice: decoded once only, so it stays one plain message.
        1 => conversation().prop_map(|c| Value::String(Value::String(Value::Array(c).to_string()).to_string())),
        2 => any_json(text(), key()),
        // Up to 70 block levels: 142 JSON levels, beyond serde_json's limit.
        2 => (0usize..=70, "[a-z ]{0,10}", any::<u8>()).prop_map(|(d, leaf, k)| deep_content(d, leaf, k)),
        2 => (message(), 0usize..=64, any::<u8>()).prop_map(|(m, d, k)| wrapped(m, d, k)),
    ]
    .boxed()
}

fn options() -> BoxedStrategy<ExtractOptions> {
    prop_oneof![
        4 => Just(ExtractOptions::default()),
        3 => (0u32..60, 0u32..3000).prop_map(|(m, c)| ExtractOptions { max_messages: m, max_chars: c, ..ExtractOptions::default() }),
        1 => (prop::sample::select(vec![0u32, 1, u32::MAX]), prop::sample::select(vec![0u32, 1, 2, u32::MAX]))
            .prop_map(|(m, c)| ExtractOptions { max_messages: m, max_chars: c, ..ExtractOptions::default() }),
    ]
    .boxed()
}

// ---------------------------------------------------------------- reference

/// Reference model of the extraction rules (docs/architecture.md, "Extraction rules"),
/// written independently of `plugin/src/extract.rs`: every user message
/// with its position and its full, untruncated text.
mod reference {
    use serde_json::Value;

    pub fn candidates(input: &Value) -> Vec<(u32, String)> {
        match input {
            Value::String(s) => {
                let t = s.trim_start();
                if t.starts_with('[') || t.starts_with('{') {
                    if let Ok(decoded @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str::<Value>(s) {
                        return structured(&decoded);
                    }
                }
                vec![(0, s.clone())]
            }
            other => structured(other),
        }
    }

    fn structured(input: &Value) -> Vec<(u32, String)> {
        match input {
            Value::Object(_) => message_text(input).map(|t| vec![(0, t)]).unwrap_or_default(),
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) = message_text(item) {
                        out.push((i as u32, t));
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    fn message_text(m: &Value) -> Option<String> {
        if m.get("role")? != "user" {
            return None;
        }
        match m.get("content")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(blocks) => {
                let only_tool_results =
                    !blocks.is_empty() && blocks.iter().all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
                if only_tool_results {
                    None
                } else {
                    Some(joined(blocks))
                }
            }
            _ => None,
        }
    }

    fn joined(blocks: &[Value]) -> String {
        let mut out = String::new();
        let mut first = true;
        for b in blocks {
            let part = match b {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => match o.get("text").or_else(|| o.get("content")) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Array(nested)) => Some(joined(nested)),
                    _ => None,
                },
                _ => None,
            };
            if let Some(p) = part {
                if !first {
                    out.push(' ');
                }
                out.push_str(&p);
                first = false;
            }
        }
        out
    }

    /// The last `n` characters of `s`.
    pub fn tail(s: &str, n: usize) -> String {
        let mut chars: Vec<char> = s.chars().rev().take(n).collect();
        chars.reverse();
        chars.into_iter().collect()
    }
}

/// Checks `got` (from extracting `input` with `options`) against the rules.
fn check(input: &Value, options: ExtractOptions, got: &[UserMessage]) -> Result<(), TestCaseError> {
    let max_messages = options.max_messages as usize;
    let max_chars = options.max_chars as usize;
    prop_assert!(got.len() <= max_messages, "{} messages > max_messages {}", got.len(), max_messages);
    for w in got.windows(2) {
        prop_assert!(w[0].index < w[1].index, "indices not strictly increasing: {} then {}", w[0].index, w[1].index);
    }
    let list_len = match input {
        Value::Array(a) => Some(a.len()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) if s.trim_start().starts_with('[') => Some(a.len()),
            _ => None,
        },
        _ => None,
    };
    for m in got {
        match list_len {
            Some(n) => prop_assert!((m.index as usize) < n, "index {} out of a list of {}", m.index, n),
            None => prop_assert_eq!(m.index, 0, "a non-list input has one message, index 0"),
        }
        prop_assert!(m.text.chars().count() <= max_chars, "text of {} chars > max_chars {}", m.text.chars().count(), max_chars);
    }

    let candidates = reference::candidates(input);
    for m in got {
        let full = candidates.iter().find(|(i, _)| *i == m.index).map(|(_, t)| t);
        prop_assert!(full.is_some(), "index {} is not a user message of the input", m.index);
        let full = full.unwrap();
        prop_assert!(!full.trim().is_empty(), "index {} is a blank message and was kept", m.index);
        prop_assert!(full.ends_with(m.text.as_str()), "text of index {} is not a suffix of the message", m.index);
        if full.chars().count() <= max_chars {
            prop_assert_eq!(&m.text, full, "a short text must be kept whole");
        }
    }
    let kept: Vec<(u32, String)> = candidates.into_iter().filter(|(_, t)| !t.trim().is_empty()).collect();
    let skip = kept.len().saturating_sub(max_messages);
    let want: Vec<(u32, String)> = kept[skip..].iter().map(|(i, t)| (*i, reference::tail(t, max_chars))).collect();
    let got_pairs: Vec<(u32, String)> = got.iter().map(|m| (m.index, m.text.clone())).collect();
    prop_assert_eq!(got_pairs, want, "extraction differs from the reference rules");
    Ok(())
}

// ---------------------------------------------------------------- properties

#[test]
fn fuzz_extract_values_against_the_rules() {
    // What the cases exercised, printed after the run.
    let [with_messages, truncated, capped, too_deep] = [(); 4].map(|_| AtomicU64::new(0));
    fuzz("extract(value)", (ai_input(), options()), |(input, options)| {
        let got = extract(&input, options);
        check(&input, options, &got)?;
        let full = reference::candidates(&input);
        let blank = full.iter().filter(|(_, t)| !t.trim().is_empty()).count();
        with_messages.fetch_add(u64::from(!got.is_empty()), Ordering::Relaxed);
        capped.fetch_add(u64::from(blank > options.max_messages as usize), Ordering::Relaxed);
        let cut = got.iter().any(|m| full.iter().any(|(i, t)| *i == m.index && t.len() > m.text.len()));
        truncated.fetch_add(u64::from(cut), Ordering::Relaxed);
        too_deep.fetch_add(u64::from(depth(&input) > SERDE_MAX_DEPTH), Ordering::Relaxed);
        // The component receives JSON text: same result through extract_json,
        // up to serde_json's nesting limit (the host's JSON never exceeds it:
        // it was parsed by serde_json too).
        let via_text = extract_json(&input.to_string(), options);
        if depth(&input) <= SERDE_MAX_DEPTH {
            prop_assert_eq!(via_text.as_deref(), Ok(&got[..]), "extract_json(to_string) differs from extract");
        } else {
            prop_assert!(
                matches!(&via_text, Err(ExtractError::NotJson(m)) if m.contains("recursion limit")),
                "depth {} > {}: {:?}", depth(&input), SERDE_MAX_DEPTH, via_text.map(|v| v.len())
            );
        }
        Ok(())
    });
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "  cases with messages kept {}, with a text cut to max_chars {}, over max_messages {}, nested beyond serde_json's limit {}",
        n(&with_messages),
        n(&truncated),
        n(&capped),
        n(&too_deep)
    );
}

/// JSON text with escapes the parser must judge: lone and paired surrogates,
/// broken \u sequences, NUL, escaped syntax.
const ESCAPES: &[&str] = &[
    r"\ud800", r"\udc00", r"\udfff", r"\uDBFF", r"\ud83d\ude00", r"\ud83d", r"\ud83dx", r"\ud800\ud800",
    r"\udc00\ud800", r"\u0000", r"\u00e9", r"\u20ac", r"\u12", r"\u", r"\x41", r"\/", r#"\""#, r"\\", r"\n", r"\t",
    r"\b", r"\f", r"\r", r"\'", "\u{1}", "\u{1f}", "\u{7f}", "é", "😀",
];

fn escaped_string() -> BoxedStrategy<String> {
    prop::collection::vec(prop_oneof![3 => prop::sample::select(ESCAPES).prop_map(String::from), 2 => "[a-z ]{0,4}"], 0..8)
        .prop_map(|v| v.concat())
        .boxed()
}

/// JSON text: valid, with escape edge cases, or broken.
fn json_text() -> BoxedStrategy<String> {
    prop_oneof![
        // An ai_input, serialised.
        3 => ai_input().prop_map(|v| v.to_string()),
        // Escapes as a plain string, as a message's content, as a block's text,
        // and inside a JSON-encoded list (escaped twice).
        2 => escaped_string().prop_map(|e| format!("\"{e}\"")),
        2 => escaped_string().prop_map(|e| format!(r#"[{{"role":"user","content":"a{e}b"}}]"#)),
        2 => escaped_string().prop_map(|e| format!(r#"{{"role":"user","content":[{{"type":"text","text":"{e}"}},"ok"]}}"#)),
        1 => escaped_string().prop_map(|e| {
            let inner = format!(r#"[{{"role":"user","content":"{e}"}}]"#);
            Value::String(inner).to_string()
        }),
        // Broken JSON: truncated, spliced, random.
        2 => (ai_input(), any::<prop::sample::Index>()).prop_map(|(v, at)| {
            let s = v.to_string();
            let cut = at.index(s.len() + 1);
            let cut = (0..=cut).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            s[..cut].to_string()
        }),
        2 => (ai_input(), any::<prop::sample::Index>(), prop::sample::select(PIECES)).prop_map(|(v, at, piece)| {
            let mut s = v.to_string();
            let i = at.index(s.len() + 1);
            let i = (0..=i).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            s.insert_str(i, piece);
            s
        }),
        1 => any::<String>(),
        1 => (1usize..200, prop::sample::select(vec!["[", "{\"a\":", "[{\"role\":\"user\",\"content\":["]))
            .prop_map(|(n, open)| open.repeat(n)),
    ]
    .boxed()
}

#[test]
fn fuzz_extract_json_text_gives_messages_or_a_typed_error() {
    fuzz("extract_json(text)", (json_text(), options()), |(text, options)| {
        match extract_json(&text, options) {
            Ok(got) => {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    TestCaseError::fail(format!("extract_json accepted text serde_json rejects ({e})"))
                })?;
                check(&value, options, &got)?;
            }
            Err(ExtractError::NotJson(msg)) => {
                prop_assert!(serde_json::from_str::<Value>(&text).is_err(), "valid JSON rejected: {msg}");
                prop_assert!(!msg.is_empty());
            }
            // The strategy draws tail cuts only, which are always valid.
            Err(e @ ExtractError::InvalidOptions(_)) => return Err(TestCaseError::fail(format!("{e} for {options:?}"))),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------- edge cases

/// Runs `f` on a thread with a small stack: a parser that recursed per level
/// of nesting would overflow it long before 10_000 levels.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(512 * 1024).spawn(f).unwrap().join().expect("no panic, no overflow")
}

#[test]
fn ten_thousand_levels_of_nesting_are_a_typed_error_not_a_stack_overflow() {
    on_small_stack(|| {
        let n = 10_000;
        let shapes = [
            format!("{}{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)),
            format!("{}{}", "[{\"role\":\"user\",\"content\":".repeat(n), "\"x\"}]".repeat(n)),
            // Unterminated: the parser must give up at the depth limit, not at EOF.
            "[".repeat(n),
        ];
        for text in &shapes {
            match extract_json(text, ExtractOptions::default()) {
                Err(ExtractError::NotJson(msg)) => assert!(msg.contains("recursion limit"), "{msg}"),
                other => panic!("{}...: expected a recursion-limit error, got {other:?}", &text[..40]),
            }
        }
        // The same text inside a JSON string is not decoded (too deep): it is
        // what the user typed, one message cut to its last 2000 characters.
        let inside = Value::String(shapes[0].clone()).to_string();
        let got = extract_json(&inside, ExtractOptions::default()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "]".repeat(2000));
        // The limit is exact: 127 levels parse, 128 do not.
        let nested = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        assert_eq!(extract_json(&nested(SERDE_MAX_DEPTH), ExtractOptions::default()), Ok(vec![]));
        assert!(extract_json(&nested(SERDE_MAX_DEPTH + 1), ExtractOptions::default()).is_err());
        // Nesting within the limit is fine, and deep blocks still join.
        let depth = 60;
        let ok = deep_content(depth, "deep text".into(), 0);
        let got = extract_json(&json!([ok]).to_string(), ExtractOptions::default()).unwrap();
        assert_eq!(got, vec![UserMessage { index: 0, text: "deep text".into() }]);
    });
}

#[test]
fn surrogate_escapes_are_decoded_or_rejected_never_mangled() {
    let opts = ExtractOptions::default();
    // A pair is one code point.
    let got = extract_json(r#""\ud83d\ude00 ok""#, opts).unwrap();
    assert_eq!(got[0].text, "😀 ok");
    // Lone surrogates cannot be a Rust string: a typed error, for the whole
    // input (the host only sends what serde_json wrote, which never has them).
    for bad in [r#""\ud800""#, r#""\udc00x""#, r#"[{"role":"user","content":"a\ud800b"}]"#, r#""\ud83d\ud83d""#] {
        assert!(matches!(extract_json(bad, opts), Err(ExtractError::NotJson(_))), "{bad}");
    }
    // Inside a JSON-encoded string the lone surrogate only breaks the inner
    // decode: the text is kept as typed.
    let inner = r#"[{"role":"user","content":"\ud800"}]"#;
    let got = extract_json(&Value::String(inner.into()).to_string(), opts).unwrap();
    assert_eq!(got, vec![UserMessage { index: 0, text: inner.into() }]);
}

#[test]
fn ten_megabyte_inputs_complete_with_bounded_output() {
    let opts = ExtractOptions::default();
    let mb10 = 10 * 1024 * 1024;
    let started = Instant::now();

    // 5000 user messages of ~2 KB each.
    let msg = "I am not happy with this answer. ".repeat(64);
    let n = mb10 / msg.len() + 1;
    let list: Vec<Value> = (0..n).map(|i| json!({"role": if i % 7 == 3 { "assistant" } else { "user" }, "content": msg})).collect();
    let text = Value::Array(list).to_string();
    assert!(text.len() >= mb10);
    let got = extract_json(&text, opts).unwrap();
    assert_eq!(got.len(), 50);
    let last_user = (0..n).rev().find(|i| i % 7 != 3).unwrap();
    assert_eq!(got.last().unwrap().index as usize, last_user);
    assert!(got.iter().all(|m| m.text.chars().count() <= 2000));

    // One 10 MB message of multi-byte characters.
    let big = "é€😀 ".repeat(mb10 / 10 + 1);
    let got = extract_json(&Value::String(big.clone()).to_string(), opts).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text.chars().count(), 2000);
    assert!(big.ends_with(&got[0].text));

    // One message of 10 MB worth of blocks, 100 bytes each.
    let blocks: Vec<Value> = (0..mb10 / 100).map(|i| json!({"type": "text", "text": format!("{i:>90}")})).collect();
    let got = extract_json(&json!([{"role": "user", "content": blocks}]).to_string(), opts).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text.chars().count(), 2000);

    // 10 MB list JSON-encoded inside a string (properties stored as strings).
    let encoded = Value::String(text).to_string();
    let got = extract_json(&encoded, opts).unwrap();
    assert_eq!(got.len(), 50);

    // 10 MB of tool results only: nothing to classify.
    let results: Vec<Value> =
        (0..mb10 / 100).map(|_| json!({"type": "tool_result", "content": "r".repeat(60)})).collect();
    let got = extract_json(&json!({"role": "user", "content": results}).to_string(), opts).unwrap();
    assert!(got.is_empty());

    println!("10 MB $ai_input cases: {:.2} s, max RSS {:.0} MB", started.elapsed().as_secs_f64(), max_rss_mb());
}
