//! `a op= b` over f32 tensors in C order, `b` broadcast over `a` (each of
//! `b`'s axes is `a`'s or 1), as runs of contiguous elements: the arithmetic
//! behind `plan_ops::binary`, kept free of tract so that `make test` checks it.
//!
//! Each element gets the one IEEE operation tract's own eval would give it,
//! so results are bit-identical to tract's. What differs is the loop: runs
//! of 16 lanes with no call per element, which the compiler turns into
//! vector operations and, inside the sandbox, one fuel check per 16 lanes.

/// The binary operations tract's transformer graphs apply in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Add,
    /// `a - b`.
    Sub,
    /// `b - a` (tract's flipped subtraction).
    SubF,
    Mul,
}

/// Why a pair of shapes is not one this module runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("ranks differ: {a} and {b}")]
    Rank { a: usize, b: usize },
    #[error("axis {axis}: b has {b}, a has {a} (b must match a or be 1)")]
    Axis { axis: usize, a: usize, b: usize },
    #[error("{what} holds {len} elements, its shape {expected}")]
    Len { what: &'static str, len: usize, expected: usize },
}

/// `a[i] = a[i] op b[j(i)]` where `j` broadcasts `b`'s shape over `a`'s.
pub fn apply(kind: Kind, a: &mut [f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> Result<(), ShapeError> {
    check(a, a_shape, b, b_shape)?;
    if a.is_empty() {
        return Ok(());
    }
    // Axes where both have 1 change nothing: the run is decided by the last
    // axis where a has more than one element.
    let rank = a_shape.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
    let lockstep = rank > 0 && b_shape[rank - 1] != 1;
    // The trailing axes the run covers: b's own (lockstep) or b's 1s (one value of b per run).
    let mut split = rank;
    while split > 0 && (if lockstep { b_shape[split - 1] == a_shape[split - 1] } else { b_shape[split - 1] == 1 }) {
        split -= 1;
    }
    let run: usize = a_shape[split..rank].iter().product();
    // b's offset per step of each outer axis: its C-order stride, 0 where it repeats.
    let mut b_step = vec![0usize; split];
    let mut stride: usize = b_shape[split..].iter().product();
    for axis in (0..split).rev() {
        if b_shape[axis] != 1 {
            b_step[axis] = stride;
        }
        stride *= b_shape[axis];
    }
    let mut index = vec![0usize; split];
    let mut b_at = 0usize;
    for block in a.chunks_exact_mut(run) {
        if lockstep {
            each_pair(kind, block, &b[b_at..b_at + run]);
        } else {
            each_with(kind, block, b[b_at]);
        }
        // The next block's b offset: an odometer over the outer axes.
        for axis in (0..split).rev() {
            index[axis] += 1;
            b_at += b_step[axis];
            if index[axis] < a_shape[axis] {
                break;
            }
            b_at -= b_step[axis] * a_shape[axis];
            index[axis] = 0;
        }
    }
    Ok(())
}

fn check(a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> Result<(), ShapeError> {
    if a_shape.len() != b_shape.len() {
        return Err(ShapeError::Rank { a: a_shape.len(), b: b_shape.len() });
    }
    for (axis, (&x, &y)) in a_shape.iter().zip(b_shape).enumerate() {
        if y != x && y != 1 {
            return Err(ShapeError::Axis { axis, a: x, b: y });
        }
    }
    for (what, len, shape) in [("a", a.len(), a_shape), ("b", b.len(), b_shape)] {
        let expected = shape.iter().product();
        if len != expected {
            return Err(ShapeError::Len { what, len, expected });
        }
    }
    Ok(())
}

const LANES: usize = 16;

fn each_pair(kind: Kind, a: &mut [f32], b: &[f32]) {
    match kind {
        Kind::Add => zip(a, b, |x, y| x + y),
        Kind::Sub => zip(a, b, |x, y| x - y),
        Kind::SubF => zip(a, b, |x, y| y - x),
        Kind::Mul => zip(a, b, |x, y| x * y),
    }
}

fn each_with(kind: Kind, a: &mut [f32], s: f32) {
    match kind {
        Kind::Add => map(a, |x| x + s),
        Kind::Sub => map(a, |x| x - s),
        Kind::SubF => map(a, |x| s - x),
        Kind::Mul => map(a, |x| x * s),
    }
}

#[inline(always)]
fn zip(a: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    let mut a_runs = a.chunks_exact_mut(LANES);
    let mut b_runs = b.chunks_exact(LANES);
    for (x, y) in (&mut a_runs).zip(&mut b_runs) {
        for j in 0..LANES {
            x[j] = f(x[j], y[j]);
        }
    }
    for (x, y) in a_runs.into_remainder().iter_mut().zip(b_runs.remainder()) {
        *x = f(*x, *y);
    }
}

#[inline(always)]
fn map(a: &mut [f32], f: impl Fn(f32) -> f32) {
    let mut runs = a.chunks_exact_mut(LANES);
    for x in &mut runs {
        for v in x.iter_mut() {
            *v = f(*v);
        }
    }
    for v in runs.into_remainder() {
        *v = f(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Element by element, through each one's multi-index.
    fn reference(kind: Kind, a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> Vec<f32> {
        (0..a.len())
            .map(|i| {
                let (mut rest, mut j, mut b_stride) = (i, 0, 1);
                for k in (0..a_shape.len()).rev() {
                    let coord = rest % a_shape[k];
                    rest /= a_shape[k];
                    if b_shape[k] != 1 {
                        j += coord * b_stride;
                    }
                    b_stride *= b_shape[k];
                }
                let (x, y) = (a[i], b[j]);
                match kind {
                    Kind::Add => x + y,
                    Kind::Sub => x - y,
                    Kind::SubF => y - x,
                    Kind::Mul => x * y,
                }
            })
            .collect()
    }

    fn case() -> impl Strategy<Value = (Kind, Vec<usize>, Vec<bool>, Vec<f32>, Vec<f32>)> {
        let kind = prop_oneof![Just(Kind::Add), Just(Kind::Sub), Just(Kind::SubF), Just(Kind::Mul)];
        (kind, prop::collection::vec(0usize..6, 0..5).prop_flat_map(|dims| {
            let dims: Vec<usize> = dims.into_iter().map(|d| if d == 5 { 37 } else { d }).collect();
            let n = dims.len();
            (Just(dims), prop::collection::vec(any::<bool>(), n))
        }))
            .prop_flat_map(|(kind, (a_shape, ones))| {
                let b_shape: Vec<usize> = a_shape.iter().zip(&ones).map(|(&d, &one)| if one { 1 } else { d }).collect();
                let (na, nb) = (a_shape.iter().product::<usize>(), b_shape.iter().product::<usize>());
                (
                    Just(kind),
                    Just(a_shape),
                    Just(ones),
                    prop::collection::vec(-1e3f32..1e3, na),
                    prop::collection::vec(-1e3f32..1e3, nb),
                )
            })
    }

    proptest! {
        #[test]
        fn matches_element_by_element((kind, a_shape, ones, a, b) in case()) {
            let b_shape: Vec<usize> = a_shape.iter().zip(&ones).map(|(&d, &one)| if one { 1 } else { d }).collect();
            let expected = reference(kind, &a, &a_shape, &b, &b_shape);
            let mut got = a.clone();
            apply(kind, &mut got, &a_shape, &b, &b_shape).unwrap();
            // The same IEEE operation per element: bit-identical, not close.
            prop_assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn attention_mask_shape() {
        // scores [batch 2, heads 3, queries 4, keys 5] + mask [2, 1, 1, 5]
        let (a_shape, b_shape) = ([2, 3, 4, 5], [2, 1, 1, 5]);
        let a: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..10).map(|i| 1000.0 * i as f32).collect();
        let mut got = a.clone();
        apply(Kind::Add, &mut got, &a_shape, &b, &b_shape).unwrap();
        assert_eq!(got[0], 0.0);
        assert_eq!(got[4], 4.0 + 4000.0);
        assert_eq!(got[5], 5.0);
        assert_eq!(got[60 + 3], 63.0 + 8000.0);
        assert_eq!(got, reference(Kind::Add, &a, &a_shape, &b, &b_shape));
    }

    #[test]
    fn shapes_that_do_not_broadcast_are_refused() {
        let mut a = vec![0.0; 6];
        assert_eq!(apply(Kind::Add, &mut a, &[2, 3], &[0.0; 2], &[2]), Err(ShapeError::Rank { a: 2, b: 1 }));
        assert_eq!(apply(Kind::Add, &mut a, &[2, 3], &[0.0; 2], &[1, 2]), Err(ShapeError::Axis { axis: 1, a: 3, b: 2 }));
        assert_eq!(
            apply(Kind::Add, &mut a, &[2, 3], &[0.0; 2], &[1, 3]),
            Err(ShapeError::Len { what: "b", len: 2, expected: 3 })
        );
        assert_eq!(a, vec![0.0; 6]);
    }
}
