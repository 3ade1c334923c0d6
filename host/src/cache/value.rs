//! A message result as the shared tier stores it: 13 bytes, a label and
//! three little-endian f32 probabilities. Anything else read back is garbage
//! (another writer, a corrupted value) and counts as a miss.

use crate::engine::{Label, MessageResult, Scores};

const VALUE_LEN: usize = 13;

fn label_index(label: Label) -> u8 {
    match label {
        Label::Negative => 0,
        Label::Neutral => 1,
        Label::Positive => 2,
    }
}

pub fn encode(r: &MessageResult) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    out[0] = label_index(r.label);
    for (i, v) in [r.scores.negative, r.scores.neutral, r.scores.positive].into_iter().enumerate() {
        out[1 + 4 * i..5 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// `None` unless `v` is exactly what [`encode`] writes: a known label and
/// three probabilities.
pub fn decode(v: &[u8]) -> Option<MessageResult> {
    if v.len() != VALUE_LEN {
        return None;
    }
    let f = |i: usize| f32::from_le_bytes(v[1 + 4 * i..5 + 4 * i].try_into().expect("4 bytes"));
    let scores = Scores { negative: f(0), neutral: f(1), positive: f(2) };
    if [scores.negative, scores.neutral, scores.positive].iter().any(|s| !(0.0..=1.0).contains(s)) {
        return None;
    }
    let label = match v[0] {
        0 => Label::Negative,
        1 => Label::Neutral,
        2 => Label::Positive,
        _ => return None,
    };
    let score = match label {
        Label::Negative => scores.negative,
        Label::Neutral => scores.neutral,
        Label::Positive => scores.positive,
    };
    Some(MessageResult { label, score, scores })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_rejected() {
        let r = MessageResult { label: Label::Neutral, score: 0.5, scores: Scores { negative: 0.2, neutral: 0.5, positive: 0.3 } };
        let back = decode(&encode(&r)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{r:?}"));
        assert!(decode(b"").is_none());
        assert!(decode(b"hello world!!").is_none(), "13 bytes of text");
        let mut bad = encode(&r);
        bad[0] = 7;
        assert!(decode(&bad).is_none(), "unknown label");
        let mut nan = encode(&r);
        nan[1..5].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(decode(&nan).is_none(), "NaN score");
        assert!(decode(&[encode(&r).as_slice(), b"x"].concat()).is_none(), "trailing byte");
    }
}
