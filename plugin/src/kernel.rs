//! The plugin's f32 matrix-multiply kernel for tract, shaped for the engine
//! that runs the plugin (feature `plugin-gemm`, on by default;
//! docs/performance.md, "Why the kernel is shaped this way", has the
//! measurements, and "Measured and not shipped" the variants left out).
//!
//! Under wasmtime on x86-64 the guest's vector locals live in 16 registers,
//! and the check at every loop header (fuel or epoch) has a slow path that
//! calls into the runtime, which clobbers all of them: a value live across a
//! loop header is stored and reloaded on every turn. tract's `wasm_f32_8x8`
//! keeps 16 accumulators (12 on the stack even without limits) and does one
//! step of k per turn. This kernel keeps 8 (`H` = 2 v128 of A, 8 rows, by
//! `NR` = 4 columns of B, broadcast from one v128 load with shuffles) and
//! does `UNROLL` = 16 steps of k per turn, which measured faster than 8 or 32.
//!
//! Each turn sums its steps into a fresh tile (its first step only
//! multiplies), added to the running tile at the turn's end. The running
//! tile is what crosses the loop header, so the store and reload the check
//! forces are once per turn and off the steps' dependency chain, and one
//! turn's chain does not wait for the one before it. Each product after a
//! turn's first step is a fused multiply-add (`f32x4.relaxed_madd`, relaxed
//! SIMD enabled for these functions only: crate-wide it also turns tract's
//! own kernels' multiply-adds into it, which makes them slower). The fused
//! multiply-add is most of the gain over a multiply and a separate add: its
//! products leave a pipe free for the shuffles. wasmtime lowers it to the
//! host's FMA where the host has one and to a multiply and an add where not,
//! so a score may differ in its last bits between such hosts. The operand
//! order matters to Cranelift, which always emits `vfmadd213ps` (the result
//! in the first multiplicand's register): `relaxed_madd(a, broadcast, acc)`
//! is the faster order.
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
//! A call runs `SUBTILES` = 2 such subtiles, one below the other (a 16x4
//! tile for tract): tract's per-tile work (its tile loop, the fused ops'
//! pointers, two dynamic calls for the packed panels) is paid once for
//! both, with the same bits as one subtile per call. More subtiles would
//! leave much of a tile empty on short sequences (at 16 tokens an attention
//! product's 16 rows fill half a 32-row tile).
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
/// A subtile of 8 rows (two v128) by 4 columns: 8 accumulators.
const H: usize = 2;
const SUB_ROWS: usize = H * LANES;
/// Subtiles per call, one after the other down the rows: tract's work per
/// call (its tile loop, the fused ops' pointers, two dynamic calls for the
/// packed panels) is paid once for all of them.
const SUBTILES: usize = 2;
const MR: usize = SUBTILES * SUB_ROWS;
const NR: usize = 4;
const UNROLL: usize = 16;

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

/// One accumulator subtile: `ab[c][h]` holds rows `4h..4h+4` of column `c`.
type Tile = [[v128; H]; NR];

unsafe fn run(ops: &[FusedKerSpec<f32>]) -> isize {
    for sub in 0..SUBTILES {
        let err = unsafe { kernel(ops.as_ptr(), sub * SUB_ROWS) };
        if err != 0 {
            return err;
        }
    }
    0
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

/// The address of element (row `4h + lane`, column `c`) of the subtile
/// whose first row is `row0` of an output tile.
#[inline(always)]
fn at(tile: &OutputStoreKer, row0: usize, h: usize, lane: usize, c: usize) -> *mut u8 {
    let row = (row0 + h * LANES + lane) as isize;
    tile.ptr.wrapping_offset(row * tile.row_byte_stride + c as isize * tile.col_byte_stride)
}

#[inline(always)]
unsafe fn load_tile(tile: &OutputStoreKer, row0: usize) -> Tile {
    std::array::from_fn(|c| {
        std::array::from_fn(|h| unsafe {
            if tile.row_byte_stride == 4 {
                v128_load(at(tile, row0, h, 0, c) as *const v128)
            } else {
                f32x4(
                    *(at(tile, row0, h, 0, c) as *const f32),
                    *(at(tile, row0, h, 1, c) as *const f32),
                    *(at(tile, row0, h, 2, c) as *const f32),
                    *(at(tile, row0, h, 3, c) as *const f32),
                )
            }
        })
    })
}

#[inline(always)]
unsafe fn store(ab: &Tile, tile: &OutputStoreKer, row0: usize) {
    for (c, col) in ab.iter().enumerate() {
        for (h, &v) in col.iter().enumerate() {
            unsafe {
                if tile.row_byte_stride == 4 {
                    v128_store(at(tile, row0, h, 0, c) as *mut v128, v);
                } else {
                    *(at(tile, row0, h, 0, c) as *mut f32) = f32x4_extract_lane::<0>(v);
                    *(at(tile, row0, h, 1, c) as *mut f32) = f32x4_extract_lane::<1>(v);
                    *(at(tile, row0, h, 2, c) as *mut f32) = f32x4_extract_lane::<2>(v);
                    *(at(tile, row0, h, 3, c) as *mut f32) = f32x4_extract_lane::<3>(v);
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
/// stack frame in linear memory. `a` first: see the module's note on
/// `vfmadd213ps`.
#[inline]
#[target_feature(enable = "relaxed-simd")]
unsafe fn step(mut ab: Tile, a: *const f32, b: *const f32) -> Tile {
    let av: [v128; H] = std::array::from_fn(|h| unsafe { v128_load(a.add(h * LANES) as *const v128) });
    let bv: [v128; NR / LANES] = std::array::from_fn(|j| unsafe { v128_load(b.add(j * LANES) as *const v128) });
    for (c, col) in ab.iter_mut().enumerate() {
        let bc = broadcast(bv[c / LANES], c % LANES);
        for (v, a) in col.iter_mut().zip(av) {
            *v = f32x4_relaxed_madd(a, bc, *v);
        }
    }
    ab
}

/// A step that starts a turn: products only, into a fresh tile.
#[inline]
unsafe fn first(a: *const f32, b: *const f32) -> Tile {
    let av: [v128; H] = std::array::from_fn(|h| unsafe { v128_load(a.add(h * LANES) as *const v128) });
    let bv: [v128; NR / LANES] = std::array::from_fn(|j| unsafe { v128_load(b.add(j * LANES) as *const v128) });
    std::array::from_fn(|c| {
        let bc = broadcast(bv[c / LANES], c % LANES);
        std::array::from_fn(|h| f32x4_mul(bc, av[h]))
    })
}

#[inline(always)]
fn sum(mut ab: Tile, t: Tile) -> Tile {
    for (col, t) in ab.iter_mut().zip(t) {
        for (v, t) in col.iter_mut().zip(t) {
            *v = f32x4_add(*v, t);
        }
    }
    ab
}

/// Inlined into the kernel so that the tile is one of its locals: as a
/// function of its own the tile crossed the call in linear memory. Each
/// turn sums into a fresh tile: the running one crosses the loop header
/// (and its check's call) alone, so its store and reload are off the steps'
/// chain.
#[inline]
#[target_feature(enable = "relaxed-simd")]
unsafe fn add_mat_mul(mut ab: Tile, k: usize, mut pa: *const f32, mut pb: *const f32) -> Tile {
    let mut left = k;
    unsafe {
        loop {
            if left == 0 {
                return ab;
            }
            let mut t = first(pa, pb);
            macro_rules! steps {
                ($($u:literal)*) => {$(
                    if left == $u {
                        return sum(ab, t);
                    }
                    t = step(t, pa.add($u * MR), pb.add($u * NR));
                )*};
            }
            steps!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            const { assert!(UNROLL == 16, "steps! lists UNROLL steps") };
            ab = sum(ab, t);
            left -= UNROLL;
            pa = pa.add(UNROLL * MR);
            pb = pb.add(UNROLL * NR);
        }
    }
}

/// Runs the fused ops on the subtile whose first row is `row0` of the tile.
#[target_feature(enable = "relaxed-simd")]
unsafe fn kernel(mut op: *const FusedKerSpec<f32>, row0: usize) -> isize {
    let zero = f32x4_splat(0.0);
    let mut ab: Tile = [[zero; H]; NR];
    unsafe {
        while !op.is_null() {
            match *op {
                FusedKerSpec::Done => break,
                FusedKerSpec::Clear => ab = [[zero; H]; NR],
                FusedKerSpec::LoadTile(col_major, _row_major) => {
                    ab = std::array::from_fn(|c| {
                        std::array::from_fn(|h| v128_load(col_major.add(c * MR + row0 + h * LANES) as *const v128))
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
                FusedKerSpec::PerRowMin(p) => per_row(&mut ab, p.add(row0), |r, v| f32x4_min(r, v)),
                FusedKerSpec::PerRowMax(p) => per_row(&mut ab, p.add(row0), |r, v| f32x4_max(r, v)),
                FusedKerSpec::PerRowAdd(p) => per_row(&mut ab, p.add(row0), |r, v| f32x4_add(r, v)),
                FusedKerSpec::PerRowMul(p) => per_row(&mut ab, p.add(row0), |r, v| f32x4_mul(r, v)),
                FusedKerSpec::PerRowSub(p) => per_row(&mut ab, p.add(row0), |r, v| f32x4_sub(r, v)),
                FusedKerSpec::PerRowSubF(p) => per_row(&mut ab, p.add(row0), |r, v| f32x4_sub(v, r)),
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
                    let other = load_tile(&tile, row0);
                    for (col, o) in ab.iter_mut().zip(other) {
                        for (v, o) in col.iter_mut().zip(o) {
                            *v = f32x4_add(*v, o);
                        }
                    }
                }
                FusedKerSpec::AddRowColProducts(rows, cols) => {
                    let r: [v128; H] = std::array::from_fn(|h| v128_load(rows.add(row0 + h * LANES) as *const v128));
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
                    store(&ab, &tile, row0)
                }
                FusedKerSpec::AddMatMul { k, pa, pb, packing } => {
                    if packing != 0 {
                        return 1;
                    }
                    ab = add_mat_mul(ab, k, (pa as *const f32).add(row0), pb as *const f32)
                }
            }
            op = op.add(1);
        }
    }
    0
}
