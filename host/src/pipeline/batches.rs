//! Which texts of a generation share a `classify` call.

/// Splits items of the given lengths into batches of at most `batch`
/// indices. Bucketed: shortest first (ties in input order), and a batch
/// closes early when the next item is over 10% (+4) longer than its shortest,
/// so padding stays within a few percent; otherwise in input order. Character
/// counts stand in for token counts, which only the plugin's tokenizer knows
/// (the benchmark measures how close that is). Why so tight: inside wasm a
/// batch of 8 costs only 1-10% less per sequence than one at a time
/// (`make bench`, roberta-base shape), so more padding than that loses.
pub fn plan_batches(lengths: &[usize], batch: usize, bucketed: bool) -> Vec<Vec<usize>> {
    let batch = batch.max(1);
    if !bucketed {
        return (0..lengths.len()).collect::<Vec<_>>().chunks(batch).map(<[usize]>::to_vec).collect();
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        let too_long = current
            .first()
            .is_some_and(|&first| lengths[i].saturating_mul(10) > lengths[first].saturating_mul(11).saturating_add(40));
        if current.len() >= batch || too_long {
            out.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::plan_batches;

    #[test]
    fn bucketed_batches_group_similar_lengths_and_cover_every_item_once() {
        let lengths = [50, 3, 7, 400, 3, 12, 60, 8, 9];
        let plan = plan_batches(&lengths, 4, true);
        assert_eq!(plan, vec![vec![1, 4, 2], vec![7, 8, 5], vec![0], vec![6], vec![3]]);
        // Similar lengths fill a batch up to its size.
        assert_eq!(plan_batches(&[100, 101, 102, 103, 104], 4, true), vec![vec![0, 1, 2, 3], vec![4]]);
        let mut all: Vec<usize> = plan.concat();
        all.sort();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
    }

    #[test]
    fn unbucketed_batches_keep_input_order() {
        assert_eq!(plan_batches(&[5, 1, 3], 2, false), vec![vec![0, 1], vec![2]]);
        assert_eq!(plan_batches(&[], 8, true), Vec::<Vec<usize>>::new());
        assert_eq!(plan_batches(&[1, 2], 0, true), vec![vec![0], vec![1]]);
    }
}
