//! How a batch of texts is cut into forward passes: pure arithmetic on
//! token counts, kept apart from the model so that it builds and is tested
//! without tract.

/// Batches larger than this are refused: the host splits its work.
pub const MAX_BATCH: usize = 64;
/// Padded positions (texts x the longest) one forward pass holds; a batch
/// past it runs as several passes. The attention scores grow with texts x
/// length squared, and past a few thousand positions they leave the caches,
/// so long texts lose by sharing a pass while short ones gain from it. Up to
/// 512 positions no batch measured cost more per text than its texts in
/// smaller batches (docs/performance.md, "Batches and passes").
pub const PASS_TOKENS: usize = 512;

/// Splits a batch, in order, into runs whose count times their longest
/// (padded positions, an empty encoding counting as one) stays within
/// `budget`; a text longer than `budget` runs alone.
pub fn passes(lens: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut longest) = (0, 0);
    for (i, &len) in lens.iter().enumerate() {
        let len = len.max(1);
        let widened = longest.max(len);
        if i > start && (i + 1 - start) * widened > budget {
            out.push(start..i);
            (start, longest) = (i, len);
        } else {
            longest = widened;
        }
    }
    if start < lens.len() {
        out.push(start..lens.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::passes;

    /// Every text in exactly one pass, in order, each pass within budget unless it is one text.
    fn check(lens: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
        let out = passes(lens, budget);
        let mut next = 0;
        for r in &out {
            assert_eq!(r.start, next, "{lens:?}: passes {out:?} skip or repeat a text");
            assert!(!r.is_empty());
            let padded = r.len() * lens[r.clone()].iter().map(|&l| l.max(1)).max().unwrap();
            assert!(padded <= budget || r.len() == 1, "{lens:?}: pass {r:?} holds {padded} > {budget}");
            next = r.end;
        }
        assert_eq!(next, lens.len());
        // Greedy: a pass ends only where its next text would pass the budget.
        for w in out.windows(2) {
            let (r, following) = (&w[0], w[1].start);
            let longest = lens[r.start..=following].iter().map(|&l| l.max(1)).max().unwrap();
            assert!((r.len() + 1) * longest > budget, "{lens:?}: pass {r:?} could have held text {following}");
        }
        out
    }

    #[test]
    fn a_batch_splits_where_its_padded_size_would_pass_the_budget() {
        assert_eq!(check(&[16; 8], 512), vec![0..8]);
        assert_eq!(check(&[128; 8], 512), vec![0..4, 4..8]);
        assert_eq!(check(&[512; 3], 512), vec![0..1, 1..2, 2..3]);
        // One long text among short ones pads only its own pass.
        assert_eq!(check(&[20, 30, 500, 40, 10], 512), vec![0..2, 2..3, 3..5]);
        // Longer than the budget: alone, never dropped.
        assert_eq!(check(&[900, 10], 512), vec![0..1, 1..2]);
        assert_eq!(check(&[0, 0, 0], 2), vec![0..2, 2..3]);
        assert!(check(&[], 512).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn passes_hold_every_text_once_for_any_lengths(
            lens in proptest::collection::vec(0usize..700, 0..40),
            budget in 1usize..2048,
        ) {
            check(&lens, budget);
        }
    }
}
