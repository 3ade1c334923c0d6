//! Per-generation aggregation: the seed's `worst` rule (the 1.0 contract's
//! `aggregate`), and the 1.1 rules: the neutral margin and the `mean` rule.

use crate::types::{AggregationRule, Label, Labelling, MessageResult, OverallResult, Scores};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AggregateError {
    #[error("neutral margin {0} is not within 0..1")]
    InvalidMargin(f64),
    #[error("message {index}: scores {scores:?} are not probabilities summing to 1")]
    NotProbabilities { index: usize, scores: Scores },
}

/// How far from 1 the three scores of a message may sum (f32 softmax).
const SUM_TOLERANCE: f32 = 1e-3;

/// The label of `scores` under the margin rule: a negative or positive top
/// class is neutral when `round(p_top - p_neutral, 4) <= margin` (exactly at
/// the margin is neutral); `score` is the probability of the label given. A
/// margin of 0 is off, so the seed's tie order holds.
pub fn label(scores: Scores, neutral_margin: f64) -> MessageResult {
    let top = MessageResult::from_scores(scores);
    if neutral_margin > 0.0 && top.label != Label::Neutral {
        let gap = f64::from(top.score) - f64::from(scores.neutral);
        if round4(gap) <= neutral_margin {
            return MessageResult { label: Label::Neutral, score: scores.neutral, scores };
        }
    }
    top
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Labels each message's scores and aggregates them by `options.rule`;
/// `None` when there are no messages.
pub fn aggregate_with(scores: &[Scores], options: Labelling) -> Result<Option<OverallResult>, AggregateError> {
    let margin = options.neutral_margin;
    if !(0.0..1.0).contains(&margin) {
        return Err(AggregateError::InvalidMargin(margin));
    }
    for (index, s) in scores.iter().enumerate() {
        let all = [s.negative, s.neutral, s.positive];
        let sum: f32 = all.iter().sum();
        if all.iter().any(|p| !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(AggregateError::NotProbabilities { index, scores: *s });
        }
    }
    let messages: Vec<MessageResult> = scores.iter().map(|s| label(*s, margin)).collect();
    Ok(match options.rule {
        AggregationRule::Worst => aggregate(&messages),
        AggregationRule::Mean => mean(scores, margin).map(|overall| OverallResult { messages, ..overall }),
    })
}

/// The mean of the messages' scores, labelled by the margin rule (without
/// per-message results, which the caller adds).
fn mean(scores: &[Scores], neutral_margin: f64) -> Option<OverallResult> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let avg = |get: fn(&Scores) -> f32| (scores.iter().map(|s| f64::from(get(s))).sum::<f64>() / n) as f32;
    let means = Scores { negative: avg(|s| s.negative), neutral: avg(|s| s.neutral), positive: avg(|s| s.positive) };
    let overall = label(means, neutral_margin);
    Some(OverallResult { label: overall.label, score: overall.score, scores: means, messages: Vec::new() })
}

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

    fn s(neg: f32, neu: f32, pos: f32) -> Scores {
        Scores { negative: neg, neutral: neu, positive: pos }
    }

    const POSTHOG: f64 = 0.15;

    #[test]
    fn margin_at_just_below_and_just_above() {
        // p_top - p_neutral = 0.15 (at), 0.1499 (below): neutral, with the neutral probability.
        for (scores, want) in [
            (s(0.05, 0.40, 0.55), Label::Neutral),
            (s(0.0501, 0.40, 0.5499), Label::Neutral),
            (s(0.0499, 0.40, 0.5501), Label::Positive),
            (s(0.55, 0.40, 0.05), Label::Neutral),
            (s(0.5501, 0.40, 0.0499), Label::Negative),
        ] {
            let r = label(scores, POSTHOG);
            assert_eq!(r.label, want, "{scores:?}");
            assert_eq!(r.score, scores.get(want), "{scores:?}");
            assert_eq!(r.scores, scores);
        }
        // A clear polar label is kept; neutral tops are never touched.
        assert_eq!(label(s(0.1, 0.2, 0.7), POSTHOG).label, Label::Positive);
        assert_eq!(label(s(0.3, 0.4, 0.3), POSTHOG).label, Label::Neutral);
    }

    #[test]
    fn margin_zero_is_the_seed() {
        for scores in [s(0.05, 0.40, 0.55), s(0.4, 0.4, 0.2), s(0.34, 0.33, 0.33), s(0.1, 0.2, 0.7)] {
            assert_eq!(label(scores, 0.0), MessageResult::from_scores(scores), "{scores:?}");
        }
        let all = [s(0.05, 0.40, 0.55), s(0.5, 0.3, 0.2), s(0.1, 0.8, 0.1)];
        let seed: Vec<MessageResult> = all.iter().map(|x| MessageResult::from_scores(*x)).collect();
        assert_eq!(aggregate_with(&all, Labelling::default()).unwrap(), aggregate(&seed));
    }

    #[test]
    fn worst_rule_uses_the_margin_labels() {
        // Negative by 0.1 over neutral: neutral under the margin, so the
        // overall label is neutral and comes from the most confident neutral.
        let weak_neg = s(0.45, 0.35, 0.20);
        let pos = s(0.05, 0.15, 0.80);
        let worst = Labelling { neutral_margin: POSTHOG, rule: AggregationRule::Worst };
        let o = aggregate_with(&[weak_neg, pos], worst).unwrap().unwrap();
        assert_eq!(o.label, Label::Neutral);
        assert_eq!(o.score, 0.35);
        assert_eq!(o.scores, weak_neg);
        assert_eq!(o.messages.iter().map(|m| m.label).collect::<Vec<_>>(), vec![Label::Neutral, Label::Positive]);
        // Without the margin the same messages are negative.
        assert_eq!(aggregate_with(&[weak_neg, pos], Labelling::default()).unwrap().unwrap().label, Label::Negative);
    }

    #[test]
    fn mean_rule_against_a_hand_computed_case() {
        // Means: negative (0.7+0.1+0.1)/3 = 0.3, neutral (0.2+0.3+0.1)/3 = 0.2,
        // positive (0.1+0.6+0.8)/3 = 0.5: positive 0.5, 0.3 over neutral.
        let msgs = [s(0.7, 0.2, 0.1), s(0.1, 0.3, 0.6), s(0.1, 0.1, 0.8)];
        let mean = Labelling { neutral_margin: POSTHOG, rule: AggregationRule::Mean };
        let o = aggregate_with(&msgs, mean).unwrap().unwrap();
        assert_eq!(o.label, Label::Positive);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(o.score, 0.5), "{o:?}");
        assert!(close(o.scores.negative, 0.3) && close(o.scores.neutral, 0.2) && close(o.scores.positive, 0.5), "{o:?}");
        // The worst rule on the same messages says negative.
        let worst = Labelling { rule: AggregationRule::Worst, ..mean };
        assert_eq!(aggregate_with(&msgs, worst).unwrap().unwrap().label, Label::Negative);
        assert_eq!(o.messages.iter().map(|m| m.label).collect::<Vec<_>>(), vec![Label::Negative, Label::Positive, Label::Positive]);
    }

    #[test]
    fn mean_rule_applies_the_margin_overall() {
        // Means: negative 0.3, neutral 0.3, positive 0.4: positive by 0.1,
        // within the margin: neutral, score 0.3.
        let msgs = [s(0.5, 0.2, 0.3), s(0.1, 0.4, 0.5)];
        let mean = Labelling { neutral_margin: POSTHOG, rule: AggregationRule::Mean };
        let o = aggregate_with(&msgs, mean).unwrap().unwrap();
        assert_eq!(o.label, Label::Neutral);
        assert!((o.score - 0.3).abs() < 1e-6, "{o:?}");
        // Just above the margin overall: means 0.1, 0.3, 0.6 (0.3 over neutral).
        let o = aggregate_with(&[s(0.1, 0.3, 0.6)], Labelling { neutral_margin: 0.2999, ..mean }).unwrap().unwrap();
        assert_eq!(o.label, Label::Positive);
        let o = aggregate_with(&[s(0.1, 0.3, 0.6)], Labelling { neutral_margin: 0.3, ..mean }).unwrap().unwrap();
        assert_eq!(o.label, Label::Neutral);
    }

    #[test]
    fn bad_margins_and_scores_are_typed_errors() {
        let mean = |m: f64| Labelling { neutral_margin: m, rule: AggregationRule::Mean };
        for m in [-0.1, 1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(aggregate_with(&[], mean(m)), Err(AggregateError::InvalidMargin(_))), "{m}");
        }
        assert_eq!(aggregate_with(&[], mean(0.15)).unwrap(), None);
        for bad in [s(0.5, 0.5, 0.5), s(-0.1, 0.6, 0.5), s(f32::NAN, 0.5, 0.5)] {
            assert!(matches!(aggregate_with(&[s(0.2, 0.3, 0.5), bad], mean(0.0)), Err(AggregateError::NotProbabilities { index: 1, .. })));
        }
    }
}
