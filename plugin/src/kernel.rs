//! The plugin's f32 matrix-multiply kernel for tract, shaped for the engine
//! that runs the plugin (feature `plugin-gemm`, on by default; README
//! "Sandbox and limits" has the measurements).
//!
//! Under wasmtime on x86-64 the guest's vector locals live in 16 registers,
//! and the fuel check at every loop header has a slow path that calls into
//! the runtime, which clobbers all of them: a value live across a loop
//! header is stored and reloaded on every turn. tract's `wasm_f32_8x8` keeps
//! 16 accumulators (12 on the stack even without limits) and does one step
//! of k per turn. This kernel keeps 8 (`H` = 2 v128 of A, 8 rows, by `NR` = 4
//! columns of B, broadcast from one v128 load with shuffles) and does
//! `UNROLL` = 8 steps of k per turn, so the stack traffic the check forces
//! is paid once per 8 steps.
//!
//! Each step ends in its own exit test (`left == u`), which also handles the
//! remainder. That test is what keeps a step's arithmetic next to its loads:
//! Cranelift places pure instructions where their value is first needed,
//! and a branch that leaves the loop needs the accumulators as they are, so
//! each step's products are computed before the next step's loads. Without
//! it (one exit per turn) all of a turn's loads come first and its
//! arithmetic after, every loaded vector stays live, and more than 2 steps
//! per turn spill.
//!
//! Measured with `llma-bench compare` (interleaved, roberta-base-shape,
//! fuel on): 0.73-0.78x tract's kernel per sequence at 128 tokens and
//! 0.83-0.95x at 16. Tried and slower: B broadcast by `v128.load32_splat`
//! (Cranelift keeps a step's loads together, ahead of the pure arithmetic,
//! so none folds into a `vbroadcastss` from memory: each is a scalar load, a
//! move and a broadcast; 2x slower even as a 4x8 tile, where each broadcast
//! has a single use), an 8x6 tile (12 accumulators), 16 steps per turn,
//! each turn summed into a fresh tile added to the running one at its end
//! (to take the reload at the loop header off the accumulators' chain:
//! LLVM then duplicated the steps, 288 multiply-adds instead of 64, and it
//! ran 1.2-1.6x slower).
//!
//! Each product is a multiply and a separate add. The fused multiply-add
//! (`f32x4.relaxed_madd`, the host's FMA under wasmtime) was measured against
//! it with `llma-bench compare` (roberta-base-shape, 8 rounds, medians):
//! under fuel it took 0.89-0.93x the CPU on an Intel Xeon with AVX-512 (two
//! FMA ports, so multiply + add is port-bound there), 1.00-1.15x on an AMD
//! EPYC Zen 3 and 1.30-1.36x on a Zen 5 (1.44-1.57x without limits): the
//! FMA's 4-cycle latency sits on each accumulator's chain, which the store
//! and reload at every loop header lengthen, where an add takes 2-3 (so
//! on the Zen 5 fuel costs the separate pair +10-22% over no limits and
//! the fused one +3-6%: the FMA's chain hid the reloads). The separate
//! pair also gives every host the same bits.
//!
//! The kernel reaches tract through its registries: the routine (so the
//! dispatch holds it), a tier above tract's own wasm tier (for products
//! whose column count is known and above 1), and a preference above tract's
//! kernels (a symbolic sequence length leaves the choice to tract's generic
//! rules, which keep the most preferred kernels).

use std::arch::wasm32::*;
use std::sync::LazyLock;

use tract_linalg::isa::{Arch, IsaSet};
use tract_linalg::mmm::{DynKernel, FusedKerSpec, OutputStoreKer, Query, Suitable};
use tract_linalg::mmm_routines::MmmRoutine;
use tract_linalg::mmm_tiers::MmmTier;
use tract_linalg::pack::Packing;
use tract_onnx::prelude::DatumType;

/// Rows of A per v128.
const LANES: usize = 4;
/// A tile of 8 rows (two v128) by 4 columns: 8 accumulators.
const H: usize = 2;
const MR: usize = H * LANES;
const NR: usize = 4;
const UNROLL: usize = 8;

static GEMM: LazyLock<DynKernel<MR, NR, f32>> = LazyLock::new(|| {
    let mut kernel = DynKernel::<MR, NR, f32>::new(&format!("llma_f32_{MR}x{NR}"), run, f32::packing(MR), f32::packing(NR));
    kernel.arch = Some(Arch::Wasm32Simd128);
    // tract's own kernels have preference 0.
    kernel.with_boost(|| 1)
});

inventory::submit! {
    MmmRoutine { make: || GEMM.mmm() }
}

inventory::submit! {
    MmmTier {
        arch: Some(Arch::Wasm32Simd128),
        // tract's own wasm tier is 1: asked first, this one claims the f32 GEMMs.
        precedence: 2,
        name: "llma-wasm-x86",
        applies: |_| true,
        preferred,
    }
}

fn preferred(_isa: &IsaSet, acc: DatumType, query: &Query, _suitable: &[Suitable]) -> Option<&'static str> {
    match (acc, query.n) {
        (DatumType::F32, Some(1)) => None,
        (DatumType::F32, _) => Some(GEMM.name.as_str()),
        _ => None,
    }
}

/// The kernel's name in tract's dispatch, for the plugin's own diagnostics.
pub fn gemm_name() -> &'static str {
    // Touching the static also keeps this object, and with it the registry
    // entries above, in the link: wasm-ld drops an object nothing references.
    GEMM.name.as_str()
}

/// One accumulator tile: `ab[c][h]` holds rows `4h..4h+4` of column `c`.
type Tile = [[v128; H]; NR];

unsafe fn run(ops: &[FusedKerSpec<f32>]) -> isize {
    unsafe { kernel(ops.as_ptr()) }
}

#[inline(always)]
fn each(ab: &mut Tile, f: impl Fn(v128) -> v128) {
    for col in ab.iter_mut() {
        for v in col.iter_mut() {
            *v = f(*v);
        }
    }
}

/// `op(row_operand, acc)` with the per-row operand loaded along the lanes.
#[inline(always)]
unsafe fn per_row(ab: &mut Tile, rows: *const f32, op: impl Fn(v128, v128) -> v128) {
    let r: [v128; H] = std::array::from_fn(|h| unsafe { v128_load(rows.add(h * LANES) as *const v128) });
    for col in ab.iter_mut() {
        for (v, r) in col.iter_mut().zip(r) {
            *v = op(r, *v);
        }
    }
}

/// `op(column_operand, acc)`, the column's value broadcast over its rows.
#[inline(always)]
unsafe fn per_col(ab: &mut Tile, cols: *const f32, op: impl Fn(v128, v128) -> v128) {
    for (c, col) in ab.iter_mut().enumerate() {
        let s = f32x4_splat(unsafe { *cols.add(c) });
        for v in col.iter_mut() {
            *v = op(s, *v);
        }
    }
}

/// The address of element (row `4h + lane`, column `c`) of an output tile.
#[inline(always)]
fn at(tile: &OutputStoreKer, h: usize, lane: usize, c: usize) -> *mut u8 {
    let row = (h * LANES + lane) as isize;
    tile.ptr.wrapping_offset(row * tile.row_byte_stride + c as isize * tile.col_byte_stride)
}

#[inline(always)]
unsafe fn load_tile(tile: &OutputStoreKer) -> Tile {
    std::array::from_fn(|c| {
        std::array::from_fn(|h| unsafe {
            if tile.row_byte_stride == 4 {
                v128_load(at(tile, h, 0, c) as *const v128)
            } else {
                f32x4(
                    *(at(tile, h, 0, c) as *const f32),
                    *(at(tile, h, 1, c) as *const f32),
                    *(at(tile, h, 2, c) as *const f32),
                    *(at(tile, h, 3, c) as *const f32),
                )
            }
        })
    })
}

#[inline(always)]
unsafe fn store(ab: &Tile, tile: &OutputStoreKer) {
    for (c, col) in ab.iter().enumerate() {
        for (h, &v) in col.iter().enumerate() {
            unsafe {
                if tile.row_byte_stride == 4 {
                    v128_store(at(tile, h, 0, c) as *mut v128, v);
                } else {
                    *(at(tile, h, 0, c) as *mut f32) = f32x4_extract_lane::<0>(v);
                    *(at(tile, h, 1, c) as *mut f32) = f32x4_extract_lane::<1>(v);
                    *(at(tile, h, 2, c) as *mut f32) = f32x4_extract_lane::<2>(v);
                    *(at(tile, h, 3, c) as *mut f32) = f32x4_extract_lane::<3>(v);
                }
            }
        }
    }
}

/// Column `l` of a v128 of B, broadcast over the lanes.
#[inline(always)]
fn broadcast(v: v128, l: usize) -> v128 {
    match l {
        0 => i32x4_shuffle::<0, 0, 0, 0>(v, v),
        1 => i32x4_shuffle::<1, 1, 1, 1>(v, v),
        2 => i32x4_shuffle::<2, 2, 2, 2>(v, v),
        _ => i32x4_shuffle::<3, 3, 3, 3>(v, v),
    }
}

/// One step of k: A's `MR` values against B's `NR`. The tile goes in and out
/// by value so that it lives in locals (the engine's registers), not in the
/// stack frame in linear memory.
#[inline]
unsafe fn step(mut ab: Tile, a: *const f32, b: *const f32) -> Tile {
    let av: [v128; H] = std::array::from_fn(|h| unsafe { v128_load(a.add(h * LANES) as *const v128) });
    let bv: [v128; NR / LANES] = std::array::from_fn(|j| unsafe { v128_load(b.add(j * LANES) as *const v128) });
    for (c, col) in ab.iter_mut().enumerate() {
        let bc = broadcast(bv[c / LANES], c % LANES);
        for (v, a) in col.iter_mut().zip(av) {
            *v = f32x4_add(f32x4_mul(bc, a), *v);
        }
    }
    ab
}

/// Inlined into the kernel so that the tile is one of its locals: as a
/// function of its own the tile crossed the call in linear memory, and with
/// the exits below LLVM kept it there (a load and a store per product) once
/// the tile or the turn grew.
#[inline]
unsafe fn add_mat_mul(mut ab: Tile, k: usize, mut pa: *const f32, mut pb: *const f32) -> Tile {
    let mut left = k;
    unsafe {
        loop {
            macro_rules! steps {
                ($($u:literal)*) => {$(
                    if left == $u {
                        return ab;
                    }
                    ab = step(ab, pa.add($u * MR), pb.add($u * NR));
                )*};
            }
            steps!(0 1 2 3 4 5 6 7);
            const { assert!(UNROLL == 8, "steps! lists UNROLL steps") };
            left -= UNROLL;
            pa = pa.add(UNROLL * MR);
            pb = pb.add(UNROLL * NR);
        }
    }
}

unsafe fn kernel(mut op: *const FusedKerSpec<f32>) -> isize {
    let zero = f32x4_splat(0.0);
    let mut ab: Tile = [[zero; H]; NR];
    unsafe {
        while !op.is_null() {
            match *op {
                FusedKerSpec::Done => break,
                FusedKerSpec::Clear => ab = [[zero; H]; NR],
                FusedKerSpec::LoadTile(col_major, _row_major) => {
                    ab = std::array::from_fn(|c| {
                        std::array::from_fn(|h| v128_load(col_major.add(c * MR + h * LANES) as *const v128))
                    })
                }
                FusedKerSpec::ScalarMin(s) => each(&mut ab, |v| f32x4_min(f32x4_splat(s), v)),
                FusedKerSpec::ScalarMax(s) => each(&mut ab, |v| f32x4_max(f32x4_splat(s), v)),
                FusedKerSpec::ScalarAdd(s) => each(&mut ab, |v| f32x4_add(f32x4_splat(s), v)),
                FusedKerSpec::ScalarMul(s) => each(&mut ab, |v| f32x4_mul(f32x4_splat(s), v)),
                FusedKerSpec::ScalarSub(s) => each(&mut ab, |v| f32x4_sub(f32x4_splat(s), v)),
                FusedKerSpec::ScalarSubF(s) => each(&mut ab, |v| f32x4_sub(v, f32x4_splat(s))),
                FusedKerSpec::LeakyRelu(alpha) => each(&mut ab, |v| {
                    v128_bitselect(v, f32x4_mul(f32x4_splat(alpha), v), f32x4_gt(v, zero))
                }),
                FusedKerSpec::PerRowMin(p) => per_row(&mut ab, p, |r, v| f32x4_min(r, v)),
                FusedKerSpec::PerRowMax(p) => per_row(&mut ab, p, |r, v| f32x4_max(r, v)),
                FusedKerSpec::PerRowAdd(p) => per_row(&mut ab, p, |r, v| f32x4_add(r, v)),
                FusedKerSpec::PerRowMul(p) => per_row(&mut ab, p, |r, v| f32x4_mul(r, v)),
                FusedKerSpec::PerRowSub(p) => per_row(&mut ab, p, |r, v| f32x4_sub(r, v)),
                FusedKerSpec::PerRowSubF(p) => per_row(&mut ab, p, |r, v| f32x4_sub(v, r)),
                FusedKerSpec::PerColMin(p) => per_col(&mut ab, p, |s, v| f32x4_min(s, v)),
                FusedKerSpec::PerColMax(p) => per_col(&mut ab, p, |s, v| f32x4_max(s, v)),
                FusedKerSpec::PerColAdd(p) => per_col(&mut ab, p, |s, v| f32x4_add(s, v)),
                FusedKerSpec::PerColMul(p) => per_col(&mut ab, p, |s, v| f32x4_mul(s, v)),
                FusedKerSpec::PerColSub(p) => per_col(&mut ab, p, |s, v| f32x4_sub(s, v)),
                FusedKerSpec::PerColSubF(p) => per_col(&mut ab, p, |s, v| f32x4_sub(v, s)),
                // The quantisation steps reach an f32 accumulator as plain scalings.
                FusedKerSpec::QScale(shift, policy, mult) => {
                    let scale = tract_linalg::Scaler::from_fuse_params(shift, policy, mult).scale;
                    each(&mut ab, |v| f32x4_mul(f32x4_splat(scale), v))
                }
                FusedKerSpec::RoundingShiftRight(shift, _) => {
                    let scale = 2f32.powi(-(shift as i32));
                    each(&mut ab, |v| f32x4_mul(f32x4_splat(scale), v))
                }
                FusedKerSpec::ShiftLeft(shift) => {
                    let scale = 2f32.powi(shift as i32);
                    each(&mut ab, |v| f32x4_mul(f32x4_splat(scale), v))
                }
                FusedKerSpec::AddUnicast(tile) => {
                    if tile.item_size != 4 {
                        return 1;
                    }
                    let other = load_tile(&tile);
                    for (col, o) in ab.iter_mut().zip(other) {
                        for (v, o) in col.iter_mut().zip(o) {
                            *v = f32x4_add(*v, o);
                        }
                    }
                }
                FusedKerSpec::AddRowColProducts(rows, cols) => {
                    let r: [v128; H] = std::array::from_fn(|h| v128_load(rows.add(h * LANES) as *const v128));
                    for (c, col) in ab.iter_mut().enumerate() {
                        let s = f32x4_splat(*cols.add(c));
                        for (v, r) in col.iter_mut().zip(r) {
                            *v = f32x4_add(*v, f32x4_mul(r, s));
                        }
                    }
                }
                FusedKerSpec::Store(tile) => {
                    if tile.item_size != 4 {
                        return 1;
                    }
                    store(&ab, &tile)
                }
                FusedKerSpec::AddMatMul { k, pa, pb, packing } => {
                    if packing != 0 {
                        return 1;
                    }
                    ab = add_mat_mul(ab, k, pa as *const f32, pb as *const f32)
                }
            }
            op = op.add(1);
        }
    }
    0
}
