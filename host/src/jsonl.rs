//! Input text as producers send it. JSON lines are read one at a time, and
//! a line that is not UTF-8 is an error for that line, not the end of the
//! run. JSON is decoded leniently in one respect: a lone UTF-16 surrogate
//! escape (`"\ud83d"` without its pair, which JavaScript producers emit when
//! they cut a string inside an emoji) becomes U+FFFD, where a strict parser
//! would reject the whole document.

use std::borrow::Cow;
use std::io::BufRead;

use serde::de::DeserializeOwned;

/// A line that is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not UTF-8 (invalid byte at offset {offset})")]
pub struct NotUtf8 {
    pub line: usize,
    pub offset: usize,
}

/// The lines of a reader, numbered from 1, without their line ending; each
/// either its text or why it has none. Ends at the end of input or at a
/// read error.
pub struct Lines<R> {
    reader: R,
    number: usize,
    buf: Vec<u8>,
}

pub fn lines<R: BufRead>(reader: R) -> Lines<R> {
    Lines { reader, number: 0, buf: Vec::new() }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<(usize, Result<String, NotUtf8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                self.number += 1;
                let mut bytes = std::mem::take(&mut self.buf);
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                }
                let line = self.number;
                Some(Ok((line, String::from_utf8(bytes).map_err(|e| NotUtf8 { line, offset: e.utf8_error().valid_up_to() }))))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// Parses JSON text, reading lone surrogate escapes as U+FFFD.
pub fn from_str<T: DeserializeOwned>(json: &str) -> serde_json::Result<T> {
    serde_json::from_str(&replace_lone_surrogates(json))
}

/// [`from_str`] for bytes; invalid UTF-8 is an error like any other.
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(json) {
        Ok(text) => from_str(text),
        // serde_json reports where and why.
        Err(_) => serde_json::from_slice(json),
    }
}

/// `json` with every `\uXXXX` escape of an unpaired surrogate replaced by
/// `\ufffd`; borrowed unchanged when there is none. Escapes are recognised
/// wherever a backslash starts one (`\\ud800` is an escaped backslash and
/// text, and stays), which in valid JSON means inside strings.
pub fn replace_lone_surrogates(json: &str) -> Cow<'_, str> {
    let b = json.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            // `\"`, `\\`, ...: the escaped character is never the start of another escape.
            i += 2;
            continue;
        }
        let lone = match hex4(b, i + 2) {
            Some(0xD800..=0xDBFF) => {
                let paired = b.get(i + 6) == Some(&b'\\')
                    && b.get(i + 7) == Some(&b'u')
                    && matches!(hex4(b, i + 8), Some(0xDC00..=0xDFFF));
                if paired {
                    i += 12;
                    continue;
                }
                true
            }
            // A low surrogate not taken by a high one just before it.
            Some(0xDC00..=0xDFFF) => true,
            // Another code point, or a malformed escape serde_json will report.
            _ => false,
        };
        if lone {
            out.push_str(&json[copied..i]);
            out.push_str("\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    if copied == 0 {
        return Cow::Borrowed(json);
    }
    out.push_str(&json[copied..]);
    Cow::Owned(out)
}

fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn decode(json: &str) -> String {
        from_str::<Value>(json).unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_and_pairs_stay() {
        assert_eq!(decode(r#""\ud800 I hate this""#), "\u{FFFD} I hate this");
        assert_eq!(decode(r#""cut \ud83d""#), "cut \u{FFFD}");
        assert_eq!(decode(r#""\udc00 low first""#), "\u{FFFD} low first");
        assert_eq!(decode(r#""\ud83d\ude00 paired""#), "\u{1F600} paired");
        assert_eq!(decode(r#""\ud83d\ud83d\ude00""#), "\u{FFFD}\u{1F600}");
        assert_eq!(decode(r#""\ude00\ud83d""#), "\u{FFFD}\u{FFFD}");
        assert_eq!(decode(r#""\uD83D\uDE00 upper case""#), "\u{1F600} upper case");
        assert_eq!(decode(r#""\\ud800 is text""#), "\\ud800 is text");
        assert_eq!(decode(r#""\\\ud800""#), "\\\u{FFFD}");
        assert_eq!(decode(r#""é \u00e9 \u20ac""#), "é é €");
        let event: Value = from_str(r#"{"$ai_input":[{"role":"user","content":"\ud800 I hate this"}]}"#).unwrap();
        assert_eq!(event, json!({"$ai_input": [{"role": "user", "content": "\u{FFFD} I hate this"}]}));
    }

    #[test]
    fn text_without_lone_surrogates_is_not_copied_and_errors_stay_errors() {
        assert!(matches!(replace_lone_surrogates(r#"{"a":"\ud83d\ude00 \n"}"#), Cow::Borrowed(_)));
        assert!(from_str::<Value>(r#""\u12""#).is_err());
        assert!(from_str::<Value>(r#""\ud800\u12""#).is_err());
        assert!(from_str::<Value>("{not json").is_err());
        assert!(from_slice::<Value>(b"\"\xff\"").is_err());
        assert_eq!(from_slice::<Value>(br#""\ud800""#).unwrap(), json!("\u{FFFD}"));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error_for_that_line_only() {
        let input: &[u8] = b"{\"a\":1}\r\n\xff\xfe bad\n\nlast";
        let got: Vec<_> = lines(input).map(|l| l.unwrap()).collect();
        assert_eq!(
            got,
            vec![
                (1, Ok("{\"a\":1}".to_string())),
                (2, Err(NotUtf8 { line: 2, offset: 0 })),
                (3, Ok(String::new())),
                (4, Ok("last".to_string())),
            ]
        );
        assert_eq!(got[1].1.as_ref().unwrap_err().to_string(), "not UTF-8 (invalid byte at offset 0)");
    }
}
