//! Int8 linear layers: `y = x · W` with W quantised once, when the bundle
//! loads, and x quantised on every call; the products are exact integer
//! sums, scaled back to f32. What a bundle marked `"llma_precision": "int8"`
//! runs for its matrix products with constant weights
//! (`plan_ops::int8_linear`); the attention products and the classifier
//! stay f32. Kept free of tract so that `make test` checks it natively.
//!
//! The arithmetic is shaped for wasm's relaxed integer dot product
//! (`i32x4.relaxed_dot_i8x16_i7x16_add_s`: 16 byte products summed into
//! four i32 lanes per instruction). Its result is the same on every host
//! when the second operand's bytes are in 0..=127, so:
//!
//! - **weights** are *signed 8-bit*, per output column, symmetric:
//!   `W[k][j] ≈ sw[j] q[k][j]`, `q` in -127..=127 (a trained or random
//!   layer's weights are centred, so the sign is a whole bit);
//! - **activations** are *unsigned 7-bit*, per row, asymmetric:
//!   `x[i][k] ≈ sx[i] (p[i][k] - zx[i])`, `p` in 0..=127, the range
//!   stretched to hold 0 so that `zx` is in range too (after a GELU a row
//!   is mostly positive: a zero point spends the 7 bits where it is);
//! - `y[i][j] = sx[i] sw[j] (Σk p[i][k] q[k][j] - zx[i] Σk q[k][j])`.
//!
//! On a base-width model, 8-bit weights and 7-bit activations gave a sixth
//! less error than the reverse (docs/performance.md, "How the int8 path is
//! shaped").
//!
//! No pair of products can saturate the 16-bit step some hosts take
//! (`pmaddubsw`: 2 x 127 x 127 < 32767), and a sum over k = 3072 stays far
//! inside i32, so the integer part is exact and the SIMD kernel gives the
//! scalar reference's bits.

mod kernel;

/// Output columns per panel: two v128 of i32 lanes.
pub const PANEL: usize = 8;
/// Activation rows per block: one v128 holds 4 rows x 4 k.
pub const ROWS: usize = 4;
/// k values per i32 lane of the dot product.
pub const GROUP: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Int8Error {
    #[error("int8 linear: weights of {got} values for a {k}x{n} matrix")]
    Shape { got: usize, k: usize, n: usize },
    #[error("int8 linear: input of {got} values is not rows of {k}")]
    Input { got: usize, k: usize },
    #[error("int8 linear: {0} is not finite")]
    NotFinite(&'static str),
}

/// A `[k, n]` weight matrix quantised and laid out for the kernel: panel by
/// panel of `PANEL` columns, each a run of k-groups of `PANEL x GROUP`
/// bytes (column-major inside a group, so that each i32 lane is one
/// column's 4 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeights {
    pub k: usize,
    pub n: usize,
    /// k rounded up to a whole group (the padding is zero).
    kp: usize,
    bytes: Vec<i8>,
    /// Per column, the padding's included (scale 0: it is never stored).
    scale: Vec<f32>,
    /// Σk q[k][j], for the activations' zero points.
    colsum: Vec<i32>,
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

impl PackedWeights {
    /// Quantises `w`, row-major `[k, n]`.
    pub fn quantize(w: &[f32], k: usize, n: usize) -> Result<Self, Int8Error> {
        if w.len() != k * n || k == 0 || n == 0 {
            return Err(Int8Error::Shape { got: w.len(), k, n });
        }
        if w.iter().any(|v| !v.is_finite()) {
            return Err(Int8Error::NotFinite("a weight"));
        }
        let kp = round_up(k, GROUP);
        let np = round_up(n, PANEL);
        // Row by row, in memory order; comparisons rather than `f32::max`,
        // which inside wasm is a call.
        let mut amax = vec![0f32; n];
        for row in w.chunks(n) {
            for (m, &v) in amax.iter_mut().zip(row) {
                if v.abs() > *m {
                    *m = v.abs();
                }
            }
        }
        let mut scale = vec![0f32; np];
        for (s, &m) in scale.iter_mut().zip(&amax) {
            *s = if m > 0.0 { m / 127.0 } else { 1.0 };
        }
        let mut bytes = vec![0i8; np * kp];
        let mut colsum = vec![0i32; np];
        for (r, row) in w.chunks(n).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let q = (v / scale[j]).round_ties_even().clamp(-127.0, 127.0) as i32;
                colsum[j] += q;
                bytes[Self::index(kp, r, j)] = q as i8;
            }
        }
        Ok(PackedWeights { k, n, kp, bytes, scale, colsum })
    }

    fn index(kp: usize, r: usize, j: usize) -> usize {
        (j / PANEL) * PANEL * kp + (r / GROUP) * PANEL * GROUP + (j % PANEL) * GROUP + r % GROUP
    }

    /// The quantised weight `(q, scale)` of row `r`, column `j`.
    pub fn at(&self, r: usize, j: usize) -> (i32, f32) {
        (self.bytes[Self::index(self.kp, r, j)] as i32, self.scale[j])
    }

    /// Bytes held: what the bundle's weights cost in memory.
    pub fn size(&self) -> usize {
        self.bytes.len() + self.scale.len() * 4 + self.colsum.len() * 4
    }

    /// `x · W` for `x` row-major `[m, k]`: `[m, n]`, row-major.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, Int8Error> {
        if self.k == 0 || !x.len().is_multiple_of(self.k) {
            return Err(Int8Error::Input { got: x.len(), k: self.k });
        }
        let m = x.len() / self.k;
        let acts = Activations::quantize(x, m, self.k, self.kp)?;
        // A fresh zeroed allocation (calloc: one `memory.fill`), not
        // `resize`, which compiles to a loop of 16-byte stores that pays an
        // interruption check on every turn under the engine's epoch limit.
        let mut out = vec![0.0; m * self.n];
        kernel::gemm(self, &acts, &mut out);
        Ok(out)
    }
}

/// A call's activations, quantised per row and laid out in blocks of
/// `ROWS` rows, each a run of k-groups of `ROWS x GROUP` bytes.
pub struct Activations {
    m: usize,
    bytes: Vec<i8>,
    scale: Vec<f32>,
    /// Each row's zero point.
    zero: Vec<i32>,
}

impl Activations {
    /// Where value `k` of row `r` of its block sits in the block's bytes.
    fn index(r: usize, k: usize) -> usize {
        (k / GROUP) * ROWS * GROUP + r * GROUP + k % GROUP
    }

    fn quantize(x: &[f32], m: usize, k: usize, kp: usize) -> Result<Self, Int8Error> {
        let mp = round_up(m, ROWS);
        let mut bytes = vec![0i8; mp * kp];
        let mut scale = vec![0f32; mp];
        let mut zero = vec![0i32; mp];
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            let (lo, hi) = kernel::range(row);
            // NaN and infinities both leave a bound that is not finite.
            if !lo.is_finite() || !hi.is_finite() {
                return Err(Int8Error::NotFinite("an activation"));
            }
            if hi == lo {
                // All zero (the range holds 0): p = 0, zero point 0, scale 0.
                continue;
            }
            scale[i] = (hi - lo) / 127.0;
            let inv = 127.0 / (hi - lo);
            zero[i] = (-lo * inv).round_ties_even().clamp(0.0, 127.0) as i32;
            let block = &mut bytes[(i / ROWS) * ROWS * kp..(i / ROWS + 1) * ROWS * kp];
            kernel::quantize_row(row, inv, zero[i], block, i % ROWS);
        }
        Ok(Activations { m, bytes, scale, zero })
    }
}

/// For an einsum expression `x,w->o`: `(prefix, summed)` when `x` is
/// `prefix` free axes then `summed` axes, `w` the same summed axes then its
/// own free axes, and `o` x's free axes then w's. `None` for any other form.
pub fn linear_form(expr: &str) -> Option<(usize, usize)> {
    let (inputs, o) = expr.split_once("->")?;
    let (x, w) = inputs.split_once(',')?;
    let (x, w, o): (Vec<char>, Vec<char>, Vec<char>) = (x.chars().collect(), w.chars().collect(), o.chars().collect());
    let summed = w.iter().take_while(|c| !o.contains(c)).count();
    let w_free = &w[summed..];
    if summed == 0 || w_free.is_empty() || summed > x.len() || w_free.iter().any(|c| !o.contains(c)) {
        return None;
    }
    let prefix = x.len() - summed;
    let distinct = |s: &[char]| s.iter().enumerate().all(|(i, c)| !s[..i].contains(c));
    let fits = x[prefix..] == w[..summed] && o.len() == prefix + w_free.len() && o[..prefix] == x[..prefix] && o[prefix..] == *w_free;
    (fits && distinct(&x) && distinct(&w) && distinct(&o)).then_some((prefix, summed))
}

/// The integer reference: `Σk p[i][k] q[k][j]` from the packed forms, one
/// product at a time. The kernel is held to its bits.
pub fn reference(w: &PackedWeights, x: &[f32]) -> Result<Vec<f32>, Int8Error> {
    let m = x.len() / w.k.max(1);
    let acts = Activations::quantize(x, m, w.k, w.kp)?;
    let mut out = vec![0f32; m * w.n];
    for i in 0..m {
        for j in 0..w.n {
            let mut acc = 0i32;
            for r in 0..w.kp {
                let p = acts.bytes[(i / ROWS) * ROWS * w.kp + Activations::index(i % ROWS, r)];
                acc += p as i32 * w.at(r, j).0;
            }
            out[i * w.n + j] = kernel::dequantize(acc, acts.zero[i], w.colsum[j], acts.scale[i], w.scale[j]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of values with a few outliers, like a layer's.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s % 20001) as f32 / 10000.0 - 1.0;
                if i % 97 == 0 { v * 8.0 } else { v }
            })
            .collect()
    }

    fn f32_matmul(x: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
        let m = x.len() / k;
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for r in 0..k {
                for j in 0..n {
                    out[i * n + j] += x[i * k + r] * w[r * n + j];
                }
            }
        }
        out
    }

    #[test]
    fn the_kernel_gives_the_integer_references_bits_on_ragged_shapes() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (4, 8, 8), (5, 13, 17), (16, 64, 24), (9, 768, 40)] {
            let w = values(k * n, 3);
            let x = values(m * k, 5);
            let packed = PackedWeights::quantize(&w, k, n).unwrap();
            let got = packed.matmul(&x).unwrap();
            assert_eq!(got, reference(&packed, &x).unwrap(), "m={m} k={k} n={n}");
        }
    }

    #[test]
    fn each_product_is_within_its_rounding_bound_of_f32s() {
        let (m, k, n) = (6, 768, 32);
        let w = values(k * n, 11);
        let x = values(m * k, 13);
        let want = f32_matmul(&x, &w, k, n);
        let packed = PackedWeights::quantize(&w, k, n).unwrap();
        let got = packed.matmul(&x).unwrap();
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            let (lo, hi) = row.iter().fold((0f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let sx = (hi - lo) / 127.0;
            for j in 0..n {
                let sw = packed.scale[j];
                // Each side is off by at most half its step, per product;
                // plus f32's own rounding over the sum.
                let bound: f32 = (0..k)
                    .map(|r| {
                        let (xv, wv) = (x[i * k + r].abs(), w[r * n + j].abs());
                        xv * sw / 2.0 + wv * sx / 2.0 + sx * sw / 4.0 + xv * wv * 1e-5
                    })
                    .sum();
                let err = (got[i * n + j] - want[i * n + j]).abs();
                assert!(err <= bound, "[{i}][{j}]: {} against f32's {}, bound {bound}", got[i * n + j], want[i * n + j]);
            }
        }
        let rms = |v: &mut dyn Iterator<Item = f32>| v.map(|e| e * e).sum::<f32>().sqrt();
        let rel = rms(&mut got.iter().zip(&want).map(|(g, w)| g - w)) / rms(&mut want.iter().copied());
        assert!(rel < 0.08, "relative RMS error {rel}");
    }

    #[test]
    fn zero_rows_columns_and_constant_columns_are_exact() {
        let (k, n) = (8, 3);
        // Column 0 all zero, column 1 constant, column 2 mixed.
        let w: Vec<f32> = (0..k * n).map(|i| [0.0, 0.5, if i % 2 == 0 { 1.0 } else { -1.0 }][i % n]).collect();
        let mut x = vec![0.0f32; 2 * k];
        x[k..].iter_mut().for_each(|v| *v = 1.0);
        let got = PackedWeights::quantize(&w, k, n).unwrap().matmul(&x).unwrap();
        assert_eq!(&got[..3], &[0.0, 0.0, 0.0], "a zero row");
        assert_eq!(got[3], 0.0);
        assert!((got[4] - 4.0).abs() < 1e-5, "constant column: {}", got[4]);
    }

    #[test]
    fn bad_shapes_and_values_are_typed_errors() {
        assert_eq!(PackedWeights::quantize(&[1.0; 5], 2, 3), Err(Int8Error::Shape { got: 5, k: 2, n: 3 }));
        assert_eq!(PackedWeights::quantize(&[f32::NAN; 6], 2, 3), Err(Int8Error::NotFinite("a weight")));
        let w = PackedWeights::quantize(&[1.0; 6], 2, 3).unwrap();
        assert_eq!(w.matmul(&[1.0; 3]), Err(Int8Error::Input { got: 3, k: 2 }));
        assert_eq!(w.matmul(&[f32::INFINITY, 1.0]), Err(Int8Error::NotFinite("an activation")));
    }

    #[test]
    fn the_packed_weights_are_a_quarter_of_f32s_and_round_trip() {
        let (k, n) = (64, 16);
        let w = values(k * n, 7);
        let packed = PackedWeights::quantize(&w, k, n).unwrap();
        assert!(packed.size() < k * n * 4 / 3, "{} bytes", packed.size());
        for r in 0..k {
            for j in 0..n {
                let (q, s) = packed.at(r, j);
                assert!((-127..=127).contains(&q));
                assert!((s * q as f32 - w[r * n + j]).abs() <= s * 0.5 + 1e-6);
            }
        }
    }

    #[test]
    fn the_linear_forms_are_recognised_and_the_others_are_not() {
        assert_eq!(linear_form("amk,kn->amn"), Some((2, 1)));
        assert_eq!(linear_form("ambk,bkn->amn"), Some((2, 2)));
        assert_eq!(linear_form("mk,kn->mn"), Some((1, 1)));
        // The classifier's transposed weight, attention's two activations.
        assert_eq!(linear_form("mk,nk->mn"), None);
        assert_eq!(linear_form("ambk,anbk->abmn"), None);
        assert_eq!(linear_form("abmk,akbn->ambn"), None);
        // Output axes out of order, a repeated axis, no free weight axis.
        assert_eq!(linear_form("amk,kn->man"), None);
        assert_eq!(linear_form("aak,kn->aan"), None);
        assert_eq!(linear_form("amk,k->am"), None);
        assert_eq!(linear_form("garbage"), None);
    }
}
