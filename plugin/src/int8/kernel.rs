//! The int8 product: for each panel of `PANEL` weight columns (kept in the
//! cache while it runs), each block of `ROWS` activation rows, a tile of
//! 4 x 8 i32 sums over k, then scaled back to f32.
//!
//! Inside wasm a step of 4 k is one v128 of activations (4 rows x 4 bytes),
//! two of weights (8 columns x 4 bytes), each row's 4 bytes broadcast with a
//! shuffle, and 8 relaxed dot products into 8 accumulators: 128 products
//! where the f32 kernel's step does 32. The loop has the f32 kernel's shape
//! (`crate::kernel`: a fresh tile per turn of `UNROLL` steps, an exit test
//! after each step) for the same reason: the engine's check at each loop
//! header clobbers the vector registers, so only the running tile crosses
//! it. wasmtime 48 lowers the dot product on x86 to `pmaddubsw`, `pmaddwd`
//! and `paddd` (its `vpdpbusd` rules match a form its wasm translator does
//! not emit); other hosts were not measured.

use super::{Activations, PackedWeights, GROUP, PANEL, ROWS};

/// `(acc - zx · Σq) sx sw`: one output, the same operations in the same
/// order as the vector form's lanes.
#[inline(always)]
pub fn dequantize(acc: i32, zx: i32, colsum: i32, sx: f32, sw: f32) -> f32 {
    (acc - colsum * zx) as f32 * (sx * sw)
}

/// `(min(row, 0), max(row, 0))`; a NaN in the row makes one of them NaN.
pub fn range(row: &[f32]) -> (f32, f32) {
    let fold = |(lo, hi): (f32, f32), v: &f32| {
        if v.is_nan() {
            (f32::NAN, f32::NAN)
        } else {
            (if *v < lo { *v } else { lo }, if *v > hi { *v } else { hi })
        }
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let whole = row.len() / 16 * 16;
        // SAFETY: `whole` values from the slice's start.
        let r = unsafe { lanes::range(row.as_ptr(), whole) };
        row[whole..].iter().fold(r, fold)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    row.iter().fold((0f32, 0f32), fold)
}

/// Row `r` of a block (`ROWS` rows by k-groups), quantised: `p = x inv +
/// zero`, rounded, in 0..=127.
pub fn quantize_row(row: &[f32], inv: f32, zero: i32, block: &mut [i8], r: usize) {
    let at = |k: usize| Activations::index(r, k);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = {
        let done = row.len() / 16 * 16;
        assert!(r < ROWS && block.len() >= at(row.len().max(1) - 1) + 1);
        // SAFETY: the `done` values read are the row's; each store of 4
        // bytes lands at `at(k)` for a group inside the row (asserted above).
        unsafe { lanes::quantize_row(row.as_ptr(), done, inv, zero, block.as_mut_ptr().add(r * GROUP)) };
        done
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (k, v) in row.iter().enumerate().skip(done) {
        // Ties to even: one instruction inside wasm (`f32.nearest`), where
        // `round` is a call; the vector form's `f32x4.nearest` alike.
        block[at(k)] = ((v * inv).round_ties_even() as i32 + zero).clamp(0, 127) as i8;
    }
}

/// `out[i][j]`, row-major `[m, n]`, for every row and column.
pub fn gemm(w: &PackedWeights, x: &Activations, out: &mut [f32]) {
    let groups = w.kp / GROUP;
    let panels = w.n.div_ceil(PANEL);
    for p in 0..panels {
        let wp = &w.bytes[p * PANEL * w.kp..(p + 1) * PANEL * w.kp];
        let colsum = &w.colsum[p * PANEL..(p + 1) * PANEL];
        let sw = &w.scale[p * PANEL..(p + 1) * PANEL];
        let j0 = p * PANEL;
        let cols = PANEL.min(w.n - j0);
        for b in 0..x.m.div_ceil(ROWS) {
            let xb = &x.bytes[b * ROWS * w.kp..(b + 1) * ROWS * w.kp];
            let rows = ROWS.min(x.m - b * ROWS);
            let zx = &x.zero[b * ROWS..(b + 1) * ROWS];
            let sx = &x.scale[b * ROWS..(b + 1) * ROWS];
            let mut tile = [[0f32; PANEL]; ROWS];
            block(xb, wp, groups, colsum, sw, zx, sx, &mut tile);
            let i0 = b * ROWS;
            if rows == ROWS && cols == PANEL {
                // A whole tile: a loop of constant count, unrolled into
                // straight copies (no interruption check per row).
                for (r, row) in tile.iter().enumerate() {
                    out[(i0 + r) * w.n + j0..][..PANEL].copy_from_slice(row);
                }
            } else {
                for (r, row) in tile.iter().enumerate().take(rows) {
                    out[(i0 + r) * w.n + j0..][..cols].copy_from_slice(&row[..cols]);
                }
            }
        }
    }
}

/// The 4 x 8 tile of one activation block against one panel, scaled back.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[allow(clippy::too_many_arguments)]
fn block(xb: &[i8], wp: &[i8], groups: usize, colsum: &[i32], sw: &[f32], zx: &[i32], sx: &[f32], tile: &mut [[f32; PANEL]; ROWS]) {
    let mut t = [[0i32; PANEL]; ROWS];
    for g in 0..groups {
        let a = &xb[g * ROWS * GROUP..(g + 1) * ROWS * GROUP];
        let b = &wp[g * PANEL * GROUP..(g + 1) * PANEL * GROUP];
        for (r, row) in t.iter_mut().enumerate() {
            for (c, acc) in row.iter_mut().enumerate() {
                *acc += (0..GROUP).map(|u| a[r * GROUP + u] as i32 * b[c * GROUP + u] as i32).sum::<i32>();
            }
        }
    }
    for r in 0..ROWS {
        for c in 0..PANEL {
            tile[r][c] = dequantize(t[r][c], zx[r], colsum[c], sx[r], sw[c]);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[allow(clippy::too_many_arguments)]
fn block(xb: &[i8], wp: &[i8], groups: usize, colsum: &[i32], sw: &[f32], zx: &[i32], sx: &[f32], tile: &mut [[f32; PANEL]; ROWS]) {
    assert!(xb.len() >= groups * ROWS * GROUP && wp.len() >= groups * PANEL * GROUP);
    assert!(colsum.len() == PANEL && sw.len() == PANEL && zx.len() == ROWS && sx.len() == ROWS);
    // SAFETY: the slices hold `groups` steps of each side and a panel's and
    // a block's scales (asserted above); v128 loads and stores take any
    // alignment.
    unsafe { lanes::block(xb.as_ptr(), wp.as_ptr(), groups, colsum.as_ptr(), sw.as_ptr(), zx.as_ptr(), sx.as_ptr(), tile.as_mut_ptr() as *mut f32) }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use std::arch::wasm32::*;

    use super::{GROUP, PANEL, ROWS};

    /// `t[r][h]`: row `r`'s sums for columns `4h..4h+4` of the panel.
    type Tile = [[v128; 2]; ROWS];
    const UNROLL: usize = 8;
    const A_STEP: usize = ROWS * GROUP;
    const W_STEP: usize = PANEL * GROUP;

    #[inline(always)]
    fn row(a: v128, r: usize) -> v128 {
        match r {
            0 => i32x4_shuffle::<0, 0, 0, 0>(a, a),
            1 => i32x4_shuffle::<1, 1, 1, 1>(a, a),
            2 => i32x4_shuffle::<2, 2, 2, 2>(a, a),
            _ => i32x4_shuffle::<3, 3, 3, 3>(a, a),
        }
    }

    /// One step of 4 k: the weights' bytes are the signed operand, the
    /// activations' (0..=127) the 7-bit one.
    #[inline]
    #[target_feature(enable = "relaxed-simd")]
    unsafe fn step(mut t: Tile, a: *const i8, w: *const i8) -> Tile {
        let av = unsafe { v128_load(a as *const v128) };
        let w0 = unsafe { v128_load(w as *const v128) };
        let w1 = unsafe { v128_load(w.add(16) as *const v128) };
        for (r, t) in t.iter_mut().enumerate() {
            let ar = row(av, r);
            t[0] = i32x4_relaxed_dot_i8x16_i7x16_add(w0, ar, t[0]);
            t[1] = i32x4_relaxed_dot_i8x16_i7x16_add(w1, ar, t[1]);
        }
        t
    }

    #[inline(always)]
    fn sum(mut a: Tile, b: Tile) -> Tile {
        for (a, b) in a.iter_mut().zip(b) {
            a[0] = i32x4_add(a[0], b[0]);
            a[1] = i32x4_add(a[1], b[1]);
        }
        a
    }

    /// The integer tile. Every exit leaves the loop with the running tile
    /// and the turn's as they are, to one sum after it: a branch that
    /// carries them makes Cranelift compute each step before the next
    /// step's loads, where an exit that summed in place had each step's
    /// products recomputed on every path out.
    #[inline(always)]
    unsafe fn tile(mut pa: *const i8, mut pw: *const i8, groups: usize) -> Tile {
        let zero = i32x4_splat(0);
        let mut ab: Tile = [[zero; 2]; ROWS];
        let mut left = groups;
        let (ab, t) = 'done: loop {
            if left == 0 {
                break 'done (ab, [[zero; 2]; ROWS]);
            }
            let mut t = unsafe { step([[zero; 2]; ROWS], pa, pw) };
            macro_rules! steps {
                ($($u:literal)*) => {$(
                    if left == $u {
                        break 'done (ab, t);
                    }
                    t = unsafe { step(t, pa.add($u * A_STEP), pw.add($u * W_STEP)) };
                )*};
            }
            steps!(1 2 3 4 5 6 7);
            const { assert!(UNROLL == 8, "steps! lists UNROLL steps") };
            ab = sum(ab, t);
            left -= UNROLL;
            pa = unsafe { pa.add(UNROLL * A_STEP) };
            pw = unsafe { pw.add(UNROLL * W_STEP) };
        };
        sum(ab, t)
    }

    /// `(min(row, 0), max(row, 0))` over `len` (a multiple of 16) values,
    /// four v128 per turn: the engine's check at each loop header costs a
    /// turn, not a vector. `f32x4.min` and `max` keep a NaN.
    pub unsafe fn range(row: *const f32, len: usize) -> (f32, f32) {
        let zero = f32x4_splat(0.0);
        let (mut lo, mut hi) = ([zero; 4], [zero; 4]);
        for i in (0..len).step_by(16) {
            for t in 0..4 {
                let v = unsafe { v128_load(row.add(i + 4 * t) as *const v128) };
                lo[t] = f32x4_min(lo[t], v);
                hi[t] = f32x4_max(hi[t], v);
            }
        }
        let lo = f32x4_min(f32x4_min(lo[0], lo[1]), f32x4_min(lo[2], lo[3]));
        let hi = f32x4_max(f32x4_max(hi[0], hi[1]), f32x4_max(hi[2], hi[3]));
        let lanes = |v: v128| [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)];
        let (lo, hi) = (lanes(lo), lanes(hi));
        if lo.iter().chain(&hi).any(|v| v.is_nan()) {
            return (f32::NAN, f32::NAN);
        }
        (lo.into_iter().fold(0f32, |a, v| if v < a { v } else { a }), hi.into_iter().fold(0f32, |a, v| if v > a { v } else { a }))
    }

    /// `len` (a multiple of 16) values of a row quantised, 16 at a time:
    /// their four groups of 4 bytes land one block step (`ROWS * GROUP`)
    /// apart from `dst`. The same operations as the scalar form, per lane.
    pub unsafe fn quantize_row(row: *const f32, len: usize, inv: f32, zero: i32, dst: *mut i8) {
        let (s, z) = (f32x4_splat(inv), i32x4_splat(zero));
        let (floor, ceil) = (i32x4_splat(0), i32x4_splat(127));
        for c in (0..len).step_by(16) {
            let q: [v128; 4] = std::array::from_fn(|t| {
                let v = unsafe { v128_load(row.add(c + 4 * t) as *const v128) };
                let p = i32x4_add(i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v, s))), z);
                i32x4_min(i32x4_max(p, floor), ceil)
            });
            // 0 <= q <= 127: the saturating narrowings keep every value.
            let b = i8x16_narrow_i16x8(i16x8_narrow_i32x4(q[0], q[1]), i16x8_narrow_i32x4(q[2], q[3]));
            let d = unsafe { dst.add(c / GROUP * ROWS * GROUP) };
            let step = ROWS * GROUP;
            unsafe {
                v128_store32_lane::<0>(b, d as *mut u32);
                v128_store32_lane::<1>(b, d.add(step) as *mut u32);
                v128_store32_lane::<2>(b, d.add(2 * step) as *mut u32);
                v128_store32_lane::<3>(b, d.add(3 * step) as *mut u32);
            }
        }
    }

    /// The tile, scaled back to f32 into `out` (`ROWS` x `PANEL`, row-major).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "relaxed-simd")]
    pub unsafe fn block(
        pa: *const i8,
        pw: *const i8,
        groups: usize,
        colsum: *const i32,
        sw: *const f32,
        zx: *const i32,
        sx: *const f32,
        out: *mut f32,
    ) {
        unsafe {
            let t = tile(pa, pw, groups);
            for (r, t) in t.iter().enumerate() {
                let zx = i32x4_splat(*zx.add(r));
                let sx = f32x4_splat(*sx.add(r));
                for (h, &acc) in t.iter().enumerate() {
                    let colsum = v128_load(colsum.add(h * 4) as *const v128);
                    let s = f32x4_mul(sx, v128_load(sw.add(h * 4) as *const v128));
                    let y = f32x4_mul(f32x4_convert_i32x4(i32x4_sub(acc, i32x4_mul(colsum, zx))), s);
                    v128_store(out.add(r * PANEL + h * 4) as *mut v128, y);
                }
            }
        }
    }
}
