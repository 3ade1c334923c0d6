//! Per-generation aggregation: the worst per-message label wins.

use crate::types::{MessageResult, OverallResult};

/// Overall label = the worst label (negative > neutral > positive); its score
/// and scores come from the most confident message carrying that label (the
/// first one on a tie). `None` when there are no messages.
pub fn aggregate(messages: &[MessageResult]) -> Option<OverallResult> {
    let worst = messages.iter().map(|m| m.label).max_by_key(|l| l.severity())?;
    let mut pick: Option<&MessageResult> = None;
    for m in messages.iter().filter(|m| m.label == worst) {
        if pick.is_none_or(|p| m.score > p.score) {
            pick = Some(m);
        }
    }
    let pick = pick?;
    Some(OverallResult {
        label: worst,
        score: pick.score,
        scores: pick.scores,
        messages: messages.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Label, Scores};

    fn msg(neg: f32, neu: f32, pos: f32) -> MessageResult {
        MessageResult::from_scores(Scores { negative: neg, neutral: neu, positive: pos })
    }

    #[test]
    fn empty_has_no_overall() {
        assert_eq!(aggregate(&[]), None);
    }

    #[test]
    fn single_message_is_its_own_overall() {
        let m = msg(0.1, 0.2, 0.7);
        let o = aggregate(&[m]).unwrap();
        assert_eq!(o.label, Label::Positive);
        assert_eq!(o.score, 0.7);
        assert_eq!(o.scores, m.scores);
        assert_eq!(o.messages, vec![m]);
    }

    #[test]
    fn negative_beats_neutral_beats_positive() {
        let pos = msg(0.0, 0.1, 0.9);
        let neu = msg(0.2, 0.6, 0.2);
        let neg = msg(0.5, 0.3, 0.2);
        assert_eq!(aggregate(&[pos, neu, neg]).unwrap().label, Label::Negative);
        assert_eq!(aggregate(&[pos, neu]).unwrap().label, Label::Neutral);
        assert_eq!(aggregate(&[pos, pos]).unwrap().label, Label::Positive);
    }

    #[test]
    fn score_is_the_most_confident_message_of_the_worst_label() {
        let weak_neg = msg(0.5, 0.3, 0.2);
        let strong_neg = msg(0.9, 0.05, 0.05);
        let very_pos = msg(0.0, 0.01, 0.99);
        let o = aggregate(&[weak_neg, very_pos, strong_neg]).unwrap();
        assert_eq!(o.label, Label::Negative);
        assert_eq!(o.score, 0.9);
        assert_eq!(o.scores, strong_neg.scores);
        assert_eq!(o.messages, vec![weak_neg, very_pos, strong_neg]);
    }

    #[test]
    fn tie_keeps_the_first_message() {
        let a = msg(0.8, 0.1, 0.1);
        let b = msg(0.8, 0.15, 0.05);
        assert_eq!(aggregate(&[a, b]).unwrap().scores, a.scores);
    }
}
