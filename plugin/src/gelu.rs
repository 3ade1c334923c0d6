//! The exact GELU, `0.5 x (1 + erf(x / sqrt 2))`, in one pass over a
//! buffer: what tract 0.23.9's `GeluExact` computes, with the same
//! operations in the same order, so the results are the same bits.
//!
//! tract runs it as three passes per chunk of 1024 (scale into scratch, its
//! erf kernel through the element-wise dispatch, the final multiply), each
//! a short loop. Inside the sandbox every loop header pays the engine's
//! check, and short loops pay it most: those passes cost several times
//! under fuel what they cost without limits (docs/performance.md, "Plan
//! nodes the plugin runs itself"). One pass of two vectors per turn keeps
//! the values in registers and the checks few. Kept free of tract so that
//! `make test` checks it natively.

/// Abramowitz and Stegun 7.1.28 (max error 3e-7), tract's coefficients.
const A: [f32; 6] = [0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672, 0.0000430638];

/// tract's `1 / sqrt 2`, computed as it computes it.
fn inv_sqrt2() -> f32 {
    2f32.sqrt().recip()
}

/// GELU of every element, in place.
pub fn gelu_in_place(xs: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    lanes::gelu(xs);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    xs.iter_mut().for_each(|x| *x = gelu(*x));
}

/// One element, the lanes' operations in scalar form (IEEE f32 arithmetic is
/// the same per lane): the reference the vector form is held to.
pub fn gelu(x: f32) -> f32 {
    let s = x * inv_sqrt2();
    let abs = s.abs();
    let mut y = A[5] * abs;
    for a in A[..5].iter().rev() {
        y = (y + a) * abs;
    }
    let mut r = y + 1.0;
    for _ in 0..4 {
        r = r * r;
    }
    let erf = (1.0 - 1.0 / r).copysign(s);
    (x * 0.5) * (erf + 1.0)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use std::arch::wasm32::*;

    use super::{inv_sqrt2, A};

    #[inline(always)]
    fn gelu4(x: v128) -> v128 {
        let one = f32x4_splat(1.0);
        let s = f32x4_mul(x, f32x4_splat(inv_sqrt2()));
        let abs = f32x4_abs(s);
        let mut y = f32x4_mul(f32x4_splat(A[5]), abs);
        for a in A[..5].iter().rev() {
            y = f32x4_mul(f32x4_add(y, f32x4_splat(*a)), abs);
        }
        let mut r = f32x4_add(y, one);
        for _ in 0..4 {
            r = f32x4_mul(r, r);
        }
        let erf = f32x4_sub(one, f32x4_div(one, r));
        let erf = v128_or(erf, v128_and(s, f32x4_splat(-0.0)));
        f32x4_mul(f32x4_mul(x, f32x4_splat(0.5)), f32x4_add(erf, one))
    }

    pub fn gelu(xs: &mut [f32]) {
        let mut pairs = xs.chunks_exact_mut(8);
        for c in &mut pairs {
            let p = c.as_mut_ptr();
            // SAFETY: `c` holds 8 f32, two v128; wasm loads need no alignment.
            unsafe {
                let (a, b) = (v128_load(p as *const v128), v128_load(p.add(4) as *const v128));
                v128_store(p as *mut v128, gelu4(a));
                v128_store(p.add(4) as *mut v128, gelu4(b));
            }
        }
        for c in pairs.into_remainder().chunks_mut(4) {
            let mut lane = [0f32; 4];
            lane[..c.len()].copy_from_slice(c);
            // SAFETY: `lane` is 4 f32.
            let out = unsafe { gelu4(v128_load(lane.as_ptr() as *const v128)) };
            // SAFETY: as above.
            unsafe { v128_store(lane.as_mut_ptr() as *mut v128, out) };
            c.copy_from_slice(&lane[..c.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (|x| <= 3) and its asymptotic
    /// complement beyond: independent of the approximation under test.
    fn erf64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            let t = 1.0 / (x * x);
            let tail = (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()) * (1.0 - t / 2.0 + 3.0 * t * t / 4.0);
            return (1.0 - tail).copysign(x);
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn matches_the_exact_gelu_within_the_approximations_error() {
        let mut worst = 0f64;
        for i in -8000..=8000 {
            let x = i as f32 / 1000.0;
            let exact = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            worst = worst.max((gelu(x) as f64 - exact).abs() / (1.0 + exact.abs()));
        }
        assert!(worst < 1e-6, "worst relative error {worst:e}");
    }

    #[test]
    fn odd_inputs_are_what_the_formula_gives() {
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert!(gelu(f32::NAN).is_nan());
        // Large negative inputs give 0, not a NaN from 0 * inf.
        assert_eq!(gelu(-20.0).abs(), 0.0);
    }

    #[test]
    fn the_buffer_form_is_the_element_form_at_every_length() {
        for len in 0..20 {
            let xs: Vec<f32> = (0..len).map(|i| (i as f32 * 0.77).sin() * 5.0).collect();
            let mut buf = xs.clone();
            gelu_in_place(&mut buf);
            let want: Vec<u32> = xs.iter().map(|&x| gelu(x).to_bits()).collect();
            assert_eq!(buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "len {len}");
        }
    }
}
