//! frostnet's own packed f32 GEMM (BLIS-style), one micro-kernel per instruction-set level.
//!
//! `c (m x n, row-major) [+]= A (m x k) * B (k x n)` where `A` and `B` are read through arbitrary
//! row/column strides (so transposes are free). The structure is BLIS's:
//!
//! - `B` is packed once per call into `NR`-column panels (`[panel][k][NR]`, zero-padded at the
//!   right edge), in parallel over panels;
//! - the rows of `C` are cut into blocks of at most `MC` rows (and, when there are too few row
//!   blocks to keep every thread busy, the columns into groups of panels); each block is one
//!   task on rayon's pool;
//! - a task walks `k` in equal steps of at most `KC`: it packs its `MC x KC` slice of `A` into
//!   `MR`-row slivers (`[sliver][k][MR]`, zero-padded at the bottom edge; ~200 KB, kept in L2),
//!   then for every `B` micro-panel (`KC x NR`, reused by all slivers) runs the micro-kernel over
//!   every sliver. A row-major `A` (contiguous along `k`) is not packed at all: the `direct`
//!   kernels broadcast straight from its rows, and only a partial last sliver is packed. On
//!   InceptionV3's im2col products (`M` = pixels in the hundred thousands, `N` = 64-320 filters)
//!   the packing pass was a third of the time: forward GFLOP/s per CPU-second rose 1.3-1.7x;
//! - a row-major `B` (a convolution's HWIO kernel, or `dy` in a kernel gradient) is likewise
//!   read in place, panel by panel at its own row stride, unless its rows are 2 KiB apart (see
//!   `direct_b_pays`): InceptionV3's 8x8 layers at batch 1 ran 1.3x faster without the pass;
//! - the micro-kernel keeps an `MR x NR` tile of `C` in registers: per step of `k` it loads
//!   `NR / L` vectors of `B`, broadcasts `MR` values of `A` and issues `MR * NR / L` fused
//!   multiply-adds, then adds the tile into `C` (or stores it). Edge tiles go through a small
//!   buffer so nothing outside `C` is touched. It prefetches `B` 8 rows ahead, a packed `A` 96
//!   floats ahead and the `C` tile 64 steps before the end (see `PREFETCH_B_STEPS`).
//!
//! Tile shapes: AVX-512F 6 x 64 (24 zmm accumulators + 4 for `B` + 1 broadcast), or 8 x 48 or
//! 12 x 32 for outputs those pad less (see [`kernel_for`]), AVX2+FMA 6 x 16 (12 ymm + 2 + 1),
//! portable 4 x 16 in `[f32; 8]` chunks that LLVM vectorizes for the compile target.
//! Measurements that chose them are in `matmul.rs`'s header, [`kernel_for`] and the constants'
//! comments.

use super::buffer::Buffer;
use super::isa::Isa;
use super::matmul::RowsFn;
use super::simd::{Portable, Vector};
use rayon::prelude::*;
use std::cell::RefCell;
use std::thread::LocalKey;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    /// Index of `(i, j)`; callers only form indices inside the checked `rows x cols` extent.
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> usize {
        i * self.rs + j * self.cs
    }
}

/// Where [`sgemm`] reads `B` from.
#[derive(Clone, Copy)]
pub(crate) enum Rhs<'a> {
    /// A matrix: packed by the call, or read in place where that pays (`direct_b_pays`).
    View(View<'a>),
    /// All of `B` already in the packed layout of the call's level ([`pack_rhs`]): a frozen
    /// convolution's kernel, packed once and read by every call while its weights stand.
    Packed(&'a [f32]),
}

/// The micro-kernel: `kc` steps over an `MR`-row sliver of `A` and an `NR`-column panel of
/// `B` (depth step `p` at `b[p * ldb..][..NR]`: `ldb = NR` packed, or a row-major `B`'s row
/// stride), result added to (`load_c`) or stored into the `MR x NR` tile at `c` (row stride
/// `ldc`). `A` is read packed (`[kc][MR]`, `lda` unused) or, by the `direct` variants, straight
/// from a row-major matrix: row `r`, depth `p` at `a[r * lda + p]`.
///
/// # Safety
/// The CPU must support the kernel's level. `a` must be valid for the `MR x kc` reads its layout
/// implies, `b` for `kc` rows of `NR` values at row stride `ldb`, and `c` for reads and writes of
/// `MR` rows of `NR` values at row stride `ldc`.
type MicroFn = unsafe fn(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
);

/// One level's kernel and its blocking.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    /// Depth of one packed block. The `KC x NR` micro-panel of `B` stays in L1 at 12 x 32 (32 KB);
    /// at 6 x 64 it streams from L2 (96 KB at depth 384) behind the kernel's prefetches, and the
    /// deeper block halves the passes over `C` (depth 256 -> 384: +3-6% on sgemm 2048 and the
    /// 17x17 layers, 1 thread; the 12 x 32 tile at 384 was no faster).
    kc: usize,
    /// Most rows of one packed `A` block (`MC x KC` floats stays in L2).
    mc: usize,
    micro: MicroFn,
    /// The same tile reading `A` unpacked (row-major, contiguous along the depth).
    direct: MicroFn,
}

/// Largest `MR * NR` of any kernel (the edge-tile buffer's size; 12 x 32, 8 x 48 and 6 x 64).
const MAX_TILE: usize = 12 * 32;

/// The kernel for `isa` and an output `n` columns wide.
///
/// AVX-512 has three tiles of 24 zmm accumulators. 6 x 64 needs 10 loads (4 vectors of `B`, 6
/// broadcasts of `A`) per 24 FMAs where 12 x 32 needs 14, and measured 10-15% faster on sgemm
/// 2048 (1 thread, CPU time: 0.95-1.05 s vs 1.13-1.19 s for 8 products; 14 x 32 1.05, 7 x 64
/// spills). But its panels are 64 columns wide, so narrow outputs compute up to half their tile
/// in padding. The tile with the fewest padded columns runs, weighted by how much slower each
/// tile was on the shapes all three fit: 8 x 48 (11 loads) within 0-3% of 6 x 64 on sgemm 2048
/// and the 17x17 layers (`N` = 192), 12 x 32 5-8% behind. Gains of 8 x 48 (gemm-shapes, 1
/// thread, %peak): 1x1 35x35 256->48 62-64 -> 82-84 (6 x 64 computed 16 columns of padding),
/// 3x3 35x35 32->96 81-82 -> 86 (was 12 x 32).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn kernel_for(isa: Isa, n: usize) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // Padded width times the tile's relative cost per column (in hundredths).
            let cost = |nr: usize, weight: usize| n.div_ceil(nr) * nr * weight;
            let (c64, c48, c32) = (cost(64, 100), cost(48, 103), cost(32, 108));
            if c64 <= c48 && c64 <= c32 {
                Kernel {
                    mr: 6,
                    nr: 64,
                    kc: 384,
                    mc: 192,
                    micro: x86::micro_avx512_wide,
                    direct: x86::direct_avx512_wide,
                }
            } else if c48 <= c32 {
                Kernel {
                    mr: 8,
                    nr: 48,
                    kc: 384,
                    mc: 192,
                    micro: x86::micro_avx512_48,
                    direct: x86::direct_avx512_48,
                }
            } else {
                Kernel {
                    mr: 12,
                    nr: 32,
                    kc: 256,
                    mc: 192,
                    micro: x86::micro_avx512,
                    direct: x86::direct_avx512,
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Kernel {
            mr: 6,
            nr: 16,
            kc: 256,
            mc: 144,
            micro: x86::micro_avx2,
            direct: x86::direct_avx2,
        },
        _ => Kernel {
            mr: 4,
            nr: 16,
            kc: 256,
            mc: 128,
            micro: micro_portable,
            direct: direct_portable,
        },
    }
}

/// [`kernel_for`] with the depth cut into equal blocks: k = 288 runs as 2 x 144, not 256 + 32
/// (a short last block pays the C tile's load and store for little arithmetic).
fn blocked_kernel(isa: Isa, n: usize, k: usize) -> Kernel {
    let mut kern = kernel_for(isa, n);
    kern.kc = k.div_ceil(k.div_ceil(kern.kc).max(1)).max(1);
    kern
}

/// How many depth steps ahead the micro-kernel prefetches the rows of `B` it will read (every
/// line of the row, one prefetch per vector), and how many floats ahead it prefetches a packed
/// `A` sliver (16 steps of the 6-row tile). The hardware prefetchers alone left the kernel at
/// 0.80-0.85 of its in-L1 rate on sgemm 2048, where each `B` micro-panel streams from L2 (and
/// from L3 the first time) and the `A` block from L2.
const PREFETCH_B_STEPS: usize = 8;
/// See [`PREFETCH_B_STEPS`].
const PREFETCH_A_FLOATS: usize = 96;
/// How many depth steps before the end of the k loop the `C` tile is prefetched.
const PREFETCH_C_STEPS: usize = 64;

/// The register tile: `MR` rows x `NV` vectors; `A` packed or (`DIRECT`) row-major.
///
/// # Safety
/// As [`MicroFn`], with `NR = NV * S::L`, and the CPU supports `S`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_body<S: Vector, const MR: usize, const NV: usize, const DIRECT: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
) {
    // Distance between consecutive rows of the A sliver, and one depth step.
    let (ars, acs) = if DIRECT { (lda, 1) } else { (1, MR) };
    // SAFETY: every read of `a` is at `r * ars + p * acs` for `r < MR`, `p < kc`, of `b` at
    // `p * ldb + v * L + (L-1)` for `v * L < NR`, and of `c` at `r * ldc + v * L + (L-1)` for
    // `r < MR`, `v * L < NR`: all inside the extents this function's contract guarantees.
    // Prefetches read nothing (their addresses need not be valid).
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        let mut pa = a;
        let mut pb = b;
        // One depth step: `NV` vectors of `B`, `MR` broadcasts of `A`, `MR * NV` FMAs, and
        // software prefetches of what later steps read (see `PREFETCH_B_STEPS`). Prefetch
        // addresses may lie past the operands' ends: `wrapping_add` forms them without
        // claiming they are in bounds, and a prefetch never faults.
        // (A macro, not a closure: a closure would not inherit the caller's target features.)
        macro_rules! step {
            () => {
                // One prefetch per 64-byte line (16 floats: every AVX2 vector pair).
                for v in (0..NV).step_by(16usize.div_ceil(S::L)) {
                    S::prefetch(pb.wrapping_add(PREFETCH_B_STEPS * ldb + v * S::L));
                }
                if !DIRECT {
                    S::prefetch(pa.wrapping_add(PREFETCH_A_FLOATS));
                }
                let mut bv = [S::zero(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = S::load(pb.add(v * S::L));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = S::splat(pa.add(r * ars));
                    for v in 0..NV {
                        row[v] = S::fma(av, bv[v], row[v]);
                    }
                }
                // After the last step these point past the operands (not always one past the
                // end of an allocation), so they advance with `wrapping_add`.
                pa = pa.wrapping_add(acs);
                pb = pb.wrapping_add(ldb);
            };
        }
        // The C tile is read after the k loop; coming from L3 or memory its misses would stall
        // every tile's end. Fetched at the start (as before), it was evicted again by the `B`
        // stream of a 6 x 64 tile at depth 384 (96 KB through a 48 KB L1), so it is fetched
        // `PREFETCH_C_STEPS` steps before the end, every line of it.
        let tail = kc.min(PREFETCH_C_STEPS);
        for _ in 0..kc - tail {
            step!();
        }
        for r in 0..MR {
            for v in (0..NV).step_by(16usize.div_ceil(S::L)) {
                S::prefetch(c.wrapping_add(r * ldc + v * S::L));
            }
        }
        for _ in 0..tail {
            step!();
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let p = c.add(r * ldc + v * S::L);
                let y = if load_c { S::add(x, S::load(p)) } else { x };
                S::store(p, y);
            }
        }
    }
}

/// Defines a level's packed-`A` and direct-`A` kernels for one register tile.
macro_rules! tile_kernels {
    ($(#[$attr:meta])* $packed:ident, $direct:ident, $simd:ty, $mr:literal, $nv:literal, $what:literal) => {
        #[doc = concat!("The ", $what, " tile, `A` packed.")]
        ///
        /// # Safety
        /// As `MicroFn` for this tile; the CPU has the features enabled here.
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $packed(
            kc: usize,
            a: *const f32,
            lda: usize,
            b: *const f32,
            ldb: usize,
            c: *mut f32,
            ldc: usize,
            load_c: bool,
        ) {
            // SAFETY: forwarded from this function's contract.
            unsafe { micro_body::<$simd, $mr, $nv, false>(kc, a, lda, b, ldb, c, ldc, load_c) }
        }

        #[doc = concat!("The ", $what, " tile, `A` read row-major (`lda` apart).")]
        ///
        /// # Safety
        /// As `MicroFn` for this tile; the CPU has the features enabled here.
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $direct(
            kc: usize,
            a: *const f32,
            lda: usize,
            b: *const f32,
            ldb: usize,
            c: *mut f32,
            ldc: usize,
            load_c: bool,
        ) {
            // SAFETY: forwarded from this function's contract.
            unsafe { micro_body::<$simd, $mr, $nv, true>(kc, a, lda, b, ldb, c, ldc, load_c) }
        }
    };
}

// No CPU feature needed beyond the compile target's.
tile_kernels!(
    micro_portable,
    direct_portable,
    Portable,
    4,
    2,
    "portable 4 x 16"
);

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::micro_body;
    use crate::tensor::simd::{Avx2, Avx512};

    tile_kernels!(
        #[target_feature(enable = "avx512f,avx2,fma")]
        micro_avx512,
        direct_avx512,
        Avx512,
        12,
        2,
        "AVX-512F 12 x 32"
    );
    tile_kernels!(
        #[target_feature(enable = "avx512f,avx2,fma")]
        micro_avx512_wide,
        direct_avx512_wide,
        Avx512,
        6,
        4,
        "AVX-512F 6 x 64"
    );
    tile_kernels!(
        #[target_feature(enable = "avx512f,avx2,fma")]
        micro_avx512_48,
        direct_avx512_48,
        Avx512,
        8,
        3,
        "AVX-512F 8 x 48"
    );
    tile_kernels!(
        #[target_feature(enable = "avx2,fma")]
        micro_avx2,
        direct_avx2,
        Avx2,
        6,
        2,
        "AVX2+FMA 6 x 16"
    );
}

thread_local! {
    /// Each thread's spare packing buffers for `A` and (on the calling thread) for `B`. A call
    /// takes one off the stack (or starts an empty one) and pushes it back when done, so no
    /// borrow is held across a rayon call. A thread waiting in `join` may run another matmul's
    /// task (an outer parallel loop whose chunks call matmul, which goes parallel itself); with
    /// a single slot per thread, such nested calls found it taken and allocated a fresh buffer
    /// every time, zero-filling new pages (a few % of inception_frozen's time). With a stack,
    /// each nesting depth finds its own buffer from the second call on.
    static PACK_A: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Most spare buffers a thread keeps per stack (more than nested matmuls ever need at once).
const MAX_SPARE_BUFFERS: usize = 4;

/// Takes a buffer from `stack` (empty if none is spare).
fn take_buffer(stack: &'static LocalKey<RefCell<Vec<Vec<f32>>>>) -> Vec<f32> {
    stack.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

/// Returns `buf` to `stack` for the next call on this thread (dropped if the stack is full).
fn give_back(stack: &'static LocalKey<RefCell<Vec<Vec<f32>>>>, buf: Vec<f32>) {
    stack.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX_SPARE_BUFFERS {
            s.push(buf);
        }
    });
}

/// A buffer of at least `len` floats whose used part starts 64-byte aligned (a cache line, and a
/// zmm vector), reusing `buf`'s allocation. Returns the offset of the aligned start.
fn aligned(buf: &mut Vec<f32>, len: usize) -> usize {
    let need = len + 16;
    if buf.len() < need {
        buf.clear();
        buf.resize(need, 0.0);
    }
    let off = buf.as_ptr().align_offset(64);
    // align_offset of an f32 pointer to 64 bytes is at most 15 elements.
    debug_assert!(off < 16);
    off.min(15)
}

/// Packs rows `p0..p0 + kc` and columns `j0..j0 + nr` (clipped to `n`) of `B` as `[kc][nr]`
/// into `dst`, zero-padding the missing columns.
#[allow(clippy::too_many_arguments)]
fn pack_b_panel(b: &View, p0: usize, kc: usize, n: usize, j0: usize, nr: usize, dst: &mut [f32]) {
    let w = nr.min(n - j0);
    if b.cs == 1 {
        for (p, row) in dst.chunks_exact_mut(nr).take(kc).enumerate() {
            let s = b.at(p0 + p, j0);
            row[..w].copy_from_slice(&b.data[s..s + w]);
            row[w..].fill(0.0);
        }
    } else {
        for (p, row) in dst.chunks_exact_mut(nr).take(kc).enumerate() {
            for (j, d) in row[..w].iter_mut().enumerate() {
                *d = b.data[b.at(p0 + p, j0 + j)];
            }
            row[w..].fill(0.0);
        }
    }
}

/// Packs rows `i0..i0 + rows` and depth `p0..p0 + kc` of `A` as `MR`-row slivers `[kc][mr]`,
/// zero-padding the last sliver's missing rows.
#[allow(clippy::too_many_arguments)]
fn pack_a_block(
    a: &View,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    mr: usize,
    dst: &mut [f32],
) {
    for (s, sliver) in dst
        .chunks_exact_mut(kc * mr)
        .take(rows.div_ceil(mr))
        .enumerate()
    {
        let r0 = s * mr;
        let h = mr.min(rows - r0);
        if a.rs == 1 {
            // Column-major A (a transposed operand): each depth step's rows are contiguous.
            // A full sliver copies a fixed-size group per step (inlined moves; a `memcpy`
            // call per 6 values cost more than the arithmetic on 1x1 convolutions' kernel
            // gradients, where A is the transposed input).
            fn full<const MR: usize>(a: &View, r: usize, p0: usize, sliver: &mut [f32]) {
                for (p, d) in sliver.chunks_exact_mut(MR).enumerate() {
                    let src = a.at(r, p0 + p);
                    let d: &mut [f32; MR] = d.try_into().expect("chunk of MR");
                    *d = a.data[src..src + MR].try_into().expect("MR values");
                }
            }
            match (h == mr, mr) {
                (true, 4) => full::<4>(a, i0 + r0, p0, sliver),
                (true, 6) => full::<6>(a, i0 + r0, p0, sliver),
                (true, 8) => full::<8>(a, i0 + r0, p0, sliver),
                (true, 12) => full::<12>(a, i0 + r0, p0, sliver),
                _ => {
                    for (p, d) in sliver.chunks_exact_mut(mr).enumerate() {
                        let src = a.at(i0 + r0, p0 + p);
                        d[..h].copy_from_slice(&a.data[src..src + h]);
                        d[h..].fill(0.0);
                    }
                }
            }
        } else {
            // Row-major A: one contiguous pass over each row, scattered into its lane of the
            // sliver (which stays in L1); missing rows are zero.
            for r in 0..mr {
                if r < h {
                    let base = a.at(i0 + r0 + r, p0);
                    let row = a.data[base..base + (kc - 1) * a.cs + 1]
                        .iter()
                        .step_by(a.cs);
                    for (d, &v) in sliver.chunks_exact_mut(mr).zip(row) {
                        d[r] = v;
                    }
                } else {
                    sliver.chunks_exact_mut(mr).for_each(|d| d[r] = 0.0);
                }
            }
        }
    }
}

/// A hint to fetch `p`'s cache line into L2 (a no-op off x86-64); never faults, so any address
/// is sound.
#[inline(always)]
fn prefetch_l2(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address; SSE (which
    // `_mm_prefetch` needs) is part of every x86-64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The output matrix, shared by the tasks; each task writes only its own disjoint block.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write pairwise disjoint row x column blocks of the buffer (see `sgemm`), and the
// buffer outlives every task (`sgemm` holds its `&mut` borrow until all tasks are joined).
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Whether reading a row-major `B` (row stride `ldb` floats) in place beats packing it, for an
/// `A` of `m` rows and panels `nr` wide: never when its rows are a multiple of 2 KiB apart
/// (a panel's rows then fall into a few L1 sets and evict each other); always for AVX-512's
/// panels (32 or 64 columns, whole cache lines per row); for narrower ones (AVX2's 16) only when
/// `A` has few rows, where packing all of `B` costs as much as the arithmetic.
///
/// Measured with `frostnet-bench kernels` (im2col engine) and `gemm-shapes` (one thread, GFLOP
/// per CPU-second, packed -> in place). AVX-512: InceptionV3's 8x8 layers at batch 1 (`M` = 64)
/// 110-115 -> 142-147, at batch 8 145-147 -> 148-154; 1x1 35x35 192->64 149-155 -> 156-167;
/// 7x1 17x17 143-148 -> 150-156; kernel gradients (`A` transposed, `B` = dy) 1x1 35x35
/// 103-108 -> 123; but sgemm 2048 (rows 8 KiB apart) 139-144 -> 64-113. AVX2: 8x8 layers at
/// batch 1 61-87 -> 79-87 (448->384 3x3 +35%), but batch-8 shapes 0-10% slower.
fn direct_b_pays(m: usize, ldb: usize, nr: usize) -> bool {
    !ldb.is_multiple_of(512) && (nr >= 32 || m <= NARROW_DIRECT_B_MAX_ROWS)
}

/// See [`direct_b_pays`]: InceptionV3's 17x17 layers at batch 1 have 289 rows.
const NARROW_DIRECT_B_MAX_ROWS: usize = 320;

/// Packed `B` sizes above which the tasks prefetch each next unit into L2: this machine's L2
/// (2 MiB per core); a smaller `B` stays in L2 between uses.
const PREFETCH_UNITS_MIN_BYTES: usize = 2 << 20;

/// Below this many multiply-adds a product runs on the calling thread.
const PAR_MIN_FLOPS: usize = 1 << 18;

/// Whether an `m x k x n` product shares its work out over `threads`: when there is more than
/// one, the product is large enough, and the caller has not asked for it to stay on its thread
/// ([`super::matmul::serially`]).
fn splits(threads: usize, m: usize, n: usize, k: usize) -> bool {
    threads > 1
        && !super::matmul::runs_serially()
        && m.saturating_mul(n).saturating_mul(k) >= PAR_MIN_FLOPS
}

/// `c [+]= A * B` at `isa`'s level (which the caller has checked the CPU supports).
///
/// # Panics
/// If a view or `c` is too short for `m x k`, `k x n`, `m x n` (checked here, before any unsafe
/// code runs), or if `isa` is not supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: Rhs,
    c: &mut [f32],
    accumulate: bool,
    then: Option<&RowsFn>,
) {
    assert!(
        isa.is_supported(),
        "sgemm: {isa} is not supported by this CPU"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        if let Some(f) = then {
            c[..m * n].chunks_exact_mut(n).for_each(|r| f(0, r));
        }
        return;
    }
    // Every index formed below is `<= (rows-1)*rs + (cols-1)*cs` of a view, checked here once
    // (the sums cannot overflow: they are at most the slice lengths they are compared with).
    let last = |v: &View, r: usize, cl: usize| (r - 1) * v.rs + (cl - 1) * v.cs;
    let b_fits = match b {
        Rhs::View(v) => last(&v, k, n) < v.data.len(),
        Rhs::Packed(p) => p.len() >= packed_rhs_len(isa, k, n),
    };
    assert!(
        last(&a, m, k) < a.data.len() && b_fits && m * n <= c.len(),
        "sgemm: operands too short for {m}x{k}x{n}"
    );
    let kern = blocked_kernel(isa, n, k);
    // The edge-tile buffer below must hold a whole tile.
    assert!(kern.mr * kern.nr <= MAX_TILE);
    let (mr, nr) = (kern.mr, kern.nr);
    let panels = n.div_ceil(nr);
    let threads = rayon::current_num_threads().max(1);
    let parallel = splits(threads, m, n, k);

    // A row-major `B` is read in place (see `direct_b_pays`); only a partial last panel
    // (zero-padded) is packed. Otherwise the call packs all of it, unless the caller has.
    let (bv, prepacked) = match b {
        Rhs::View(v) => (v, None),
        Rhs::Packed(p) => (
            View {
                data: &[],
                rs: 0,
                cs: 0,
            },
            Some(p),
        ),
    };
    let direct_b = prepacked.is_none() && bv.cs == 1 && direct_b_pays(m, bv.rs, nr);
    let needs_pack = |jp: usize| !direct_b || (jp + 1) * nr > n;
    let mut bbuf = take_buffer(&PACK_B);
    let blen = panels * nr * k;
    let bpack = match prepacked {
        Some(p) => &p[..blen],
        None => {
            let boff = aligned(&mut bbuf, blen);
            let dst = &mut bbuf[boff..boff + blen];
            pack_units(&bv, &kern, k, n, dst, needs_pack, parallel);
            &*dst
        }
    };
    // Whether the tasks prefetch each next packed unit of `B` into L2 (see the task loop).
    let prefetch_next_unit = blen * std::mem::size_of::<f32>() > PREFETCH_UNITS_MIN_BYTES;

    // Row blocks: as many as needed to respect MC, rounded up to a multiple of the thread count
    // so the blocks share out evenly; with too few of them, panel groups split the columns too.
    let (row_blocks, col_groups) = if parallel {
        let rb = m.div_ceil(kern.mc).div_ceil(threads) * threads;
        let rb = rb.min(m.div_ceil(mr));
        let cg = if rb >= 2 * threads {
            1
        } else {
            (2 * threads).div_ceil(rb).min(panels)
        };
        (rb, cg)
    } else {
        (m.div_ceil(kern.mc), 1)
    };
    // Block `b` starts at sliver `b * slivers / row_blocks`: block sizes differ by at most one
    // sliver, so each thread's share of whole blocks is even. (Blocks of one rounded-up `mc`
    // left sgemm 2048's last block at 134 rows against 174: one thread ran 1,044 rows, the other
    // 1,004, and 2% of the two threads' time was idle.)
    let slivers = m.div_ceil(mr);
    let row_blocks = row_blocks.min(slivers);
    let block_start = |b: usize| (b * slivers / row_blocks * mr).min(m);
    let panels_per_group = panels.div_ceil(col_groups);
    let col_groups = panels.div_ceil(panels_per_group);
    let out = OutPtr(c.as_mut_ptr());
    // A row-major `A` (contiguous along the depth) needs no packing: the kernel broadcasts
    // straight from its rows, which saves a pass over `A`, the whole cost of packing when `B`
    // is a single panel (convolutions with few filters and a huge pixel count).
    // (Packing an `A` whose rows are a multiple of 2 KiB apart, as in sgemm 2048, paid before
    // the micro-kernel prefetched `B`: 0.66 -> 0.72 of the FMA peak on 1 thread; with the
    // prefetches the direct kernel is as fast there, and 8-10% faster on 1x1 8x8 2048->448.)
    let direct = a.cs == 1;
    let task = |t: usize| {
        let (rb, cg) = (t / col_groups, t % col_groups);
        let i0 = block_start(rb);
        let rows = block_start(rb + 1) - i0;
        let jp0 = cg * panels_per_group;
        let jp1 = (jp0 + panels_per_group).min(panels);
        let mut abuf = take_buffer(&PACK_A);
        let kc_max = kern.kc.min(k);
        let alen = rows.div_ceil(mr) * mr * kc_max;
        let aoff = aligned(&mut abuf, alen);
        let mut p0 = 0;
        while p0 < k {
            let kc = kern.kc.min(k - p0);
            // Full slivers of a row-major `A` are read in place by the direct kernel; only
            // the partial last sliver (zero-padded) is packed, as sliver 0 of the buffer.
            let full = if direct { rows / mr } else { 0 };
            let packed_rows = rows - full * mr;
            let apack = &mut abuf[aoff..aoff + packed_rows.div_ceil(mr) * mr * kc];
            pack_a_block(&a, i0 + full * mr, packed_rows, p0, kc, mr, apack);
            let apack = &*apack;
            let load_c = accumulate || p0 > 0;
            for jp in jp0..jp1 {
                let j0 = jp * nr;
                let w = nr.min(n - j0);
                // In bounds: a full panel's columns j0..j0+nr <= n and rows p0..p0+kc <= k
                // lie in the checked k x n extent of `b` (row stride b.rs, column stride 1).
                let bmicro = if needs_pack(jp) {
                    (
                        bpack[p0 * panels * nr + jp * kc * nr..][..kc * nr].as_ptr(),
                        nr,
                    )
                } else {
                    (bv.data[bv.at(p0, j0)..].as_ptr(), bv.rs)
                };
                // While the slivers run over this packed unit, fetch the next unit in memory
                // (the next panel, or the next depth block's first) into L2, a share of its
                // lines per sliver: the first tile over a unit otherwise waits on L3 for all of
                // it. sgemm 2048, 1 thread: +1-4% (gemm-shapes GF/cpu1 188-190 -> 189-198);
                // 512 x 2048 x 2048 +5-10%; 2 threads within noise. Only when the packed `B`
                // is larger than L2: on the input gradients of the 35x35 and 17x17 layers
                // (`B` under 1 MB, in L2 anyway) the prefetches cost 1-5%, and doing the same
                // for a `B` read in place (rows `ldb` apart) cost the forward 35x35 and 17x17
                // layers 4-6%.
                let slivers = rows.div_ceil(mr);
                let next_lines = (kc * nr).div_ceil(16);
                let per_sliver = next_lines.div_ceil(slivers);
                for s in 0..slivers {
                    if prefetch_next_unit && needs_pack(jp) {
                        let next = bmicro.0.wrapping_add(kc * nr);
                        for l in s * per_sliver..((s + 1) * per_sliver).min(next_lines) {
                            prefetch_l2(next.wrapping_add(l * 16));
                        }
                    }
                    let r0 = i0 + s * mr;
                    let h = mr.min(m - r0);
                    let (micro, asl) = if s < full {
                        // In bounds: rows r0..r0+mr <= m, depth p0..p0+kc <= k (the view's
                        // extent was checked above).
                        (kern.direct, (a.data[a.at(r0, p0)..].as_ptr(), a.rs))
                    } else {
                        (kern.micro, (apack[(s - full) * kc * mr..].as_ptr(), 0))
                    };
                    // SAFETY: `isa` is supported (asserted above), so the kernel's features
                    // are present. A packed sliver holds kc*mr values; a direct one reads
                    // A(r0 + r, p0 + p) for r < mr, p < kc, inside the checked m x k extent of
                    // `a` (row stride a.rs, column stride 1). `bmicro` is kc*nr packed values
                    // (stride nr) or kc rows of nr values of a full panel of `b` (stride b.rs).
                    // The tile's valid part (rows r0..r0+h, columns j0..j0+w) lies inside the
                    // m x n matrix `c` (length >= m*n, asserted), in this task's block (rows
                    // i0..i0+rows, panels jp0..jp1), which no other task touches: so do the
                    // row segments handed to `then`, each a unique borrow while `f` runs.
                    unsafe {
                        let cp = out.get().add(r0 * n + j0);
                        run_tile(&kern, micro, kc, asl, bmicro, cp, n, h, w, load_c);
                        // The tile is final after the last depth block: hand its rows to
                        // `then` while they are in L1.
                        if let Some(f) = then.filter(|_| p0 + kc == k) {
                            for r in 0..h {
                                f(j0, std::slice::from_raw_parts_mut(cp.add(r * n), w));
                            }
                        }
                    }
                }
            }
            p0 += kc;
        }
        give_back(&PACK_A, abuf);
    };
    let tasks = row_blocks * col_groups;
    if parallel && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
    give_back(&PACK_B, bbuf);
}

/// Packs the panels of `B` that `needs_pack` names into `dst`, depth block by depth block
/// (`[depth block][panel][kc][nr]`, the others left as they are), so the part of `B` one depth
/// step of every task reads is one contiguous stream (3% faster on sgemm 2048 than
/// `[panel][k][nr]`).
fn pack_units(
    b: &View,
    kern: &Kernel,
    k: usize,
    n: usize,
    dst: &mut [f32],
    needs_pack: impl Fn(usize) -> bool,
    parallel: bool,
) {
    let nr = kern.nr;
    let panels = n.div_ceil(nr);
    let mut units: Vec<(usize, usize, &mut [f32])> =
        Vec::with_capacity(k.div_ceil(kern.kc) * panels);
    let mut rest = dst;
    let mut p0 = 0;
    while p0 < k {
        let kc = kern.kc.min(k - p0);
        for jp in 0..panels {
            let (unit, tail) = rest.split_at_mut(kc * nr);
            if needs_pack(jp) {
                units.push((p0, jp, unit));
            }
            rest = tail;
        }
        p0 += kc;
    }
    let pack = |(p0, jp, dst): (usize, usize, &mut [f32])| {
        let kc = dst.len() / nr;
        pack_b_panel(b, p0, kc, n, jp * nr, nr, dst)
    };
    if parallel && units.len() > 1 {
        units.into_par_iter().for_each(pack);
    } else {
        units.into_iter().for_each(pack);
    }
}

/// How many values [`pack_rhs`] writes for a `k x n` matrix at `isa`'s level.
pub(crate) fn packed_rhs_len(isa: Isa, k: usize, n: usize) -> usize {
    let nr = kernel_for(isa, n).nr;
    n.div_ceil(nr) * nr * k
}

/// Packs all of `B` (`k x n`) into `dst` ([`packed_rhs_len`] values) as [`sgemm`] packs it per
/// call at `isa`'s level, for [`Rhs::Packed`]: a product whose `B` stands across calls skips the
/// packing pass, and reads `B` as one contiguous stream where it would otherwise read a row-major
/// `B` in place, a 64-byte line per row (InceptionV3 at batch 1, where the weights are most of
/// what a layer reads: see `conv::KernelCache`).
///
/// # Panics
/// If `b` is too short for `k x n` or `dst` for the packed layout.
pub(crate) fn pack_rhs(isa: Isa, k: usize, n: usize, b: View, dst: &mut [f32]) {
    if k == 0 || n == 0 {
        return;
    }
    assert!(
        (k - 1) * b.rs + (n - 1) * b.cs < b.data.len() && dst.len() >= packed_rhs_len(isa, k, n),
        "pack_rhs: operands too short for {k}x{n}"
    );
    let kern = blocked_kernel(isa, n, k);
    let threads = rayon::current_num_threads().max(1);
    let parallel = splits(threads, kern.mc, n, k);
    let len = packed_rhs_len(isa, k, n);
    pack_units(&b, &kern, k, n, &mut dst[..len], |_| true, parallel);
}

/// A source of `B` values that packs itself (so `B` need not exist as a matrix).
pub(crate) trait RhsSource: Sync {
    /// Packs rows `p0..p0 + kc` and columns `j0..j0 + nr` (clipped to `n`) as `[kc][nr]` into
    /// `dst` (`kc * nr` values), zero-padding the missing columns.
    #[allow(clippy::too_many_arguments)]
    fn pack(&self, p0: usize, kc: usize, n: usize, j0: usize, nr: usize, dst: &mut [f32]);
}

impl RhsSource for View<'_> {
    fn pack(&self, p0: usize, kc: usize, n: usize, j0: usize, nr: usize, dst: &mut [f32]) {
        pack_b_panel(self, p0, kc, n, j0, nr, dst)
    }
}

/// The patch (im2col) matrix of a convolution's input, never materialized: row `p` is output
/// pixel `p`'s window (pixels of all images in order), column `j = (ky * kw + kx) * c + ch`;
/// values in the padding are zero.
pub(crate) struct Patches<'a> {
    pub x: &'a [f32],
    pub g: &'a super::conv::Conv2dGeometry,
}

impl RhsSource for Patches<'_> {
    fn pack(&self, p0: usize, kc: usize, n: usize, j0: usize, nr: usize, dst: &mut [f32]) {
        let g = self.g;
        let w = nr.min(n - j0);
        let per_img = g.oh * g.ow;
        for (p, row) in dst.chunks_exact_mut(nr).take(kc).enumerate() {
            let q = p0 + p;
            let (img, rem) = (q / per_img, q % per_img);
            let (oy, ox) = (rem / g.ow, rem % g.ow);
            // Runs of columns within one tap are contiguous channels of one input pixel.
            let mut j = 0;
            while j < w {
                let col = j0 + j;
                let (tap, ch) = (col / g.c, col % g.c);
                let len = (g.c - ch).min(w - j);
                match (g.in_row(oy, tap / g.kw), g.in_col(ox, tap % g.kw)) {
                    (Some(iy), Some(ix)) => {
                        let s = ((img * g.h + iy) * g.w + ix) * g.c + ch;
                        row[j..j + len].copy_from_slice(&self.x[s..s + len]);
                    }
                    _ => row[j..j + len].fill(0.0),
                }
                j += len;
            }
            row[w..].fill(0.0);
        }
    }
}

/// Runs one `mr x nr` tile with `micro` (`kern`'s packed or direct kernel): full tiles straight
/// into `c`, edge tiles (`h < mr` rows or `w < nr` columns valid) through a buffer.
///
/// # Safety
/// The CPU supports `kern`'s level; `a` (with `lda`) is valid for what `micro` reads of an
/// `mr x kc` sliver, `b` (with `ldb`) for `kc` rows of `nr` values at row stride `ldb`; `c` is
/// valid for reads and writes of `h` rows of `w` values at row stride `ldc`, and no other thread
/// accesses them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(
    kern: &Kernel,
    micro: MicroFn,
    kc: usize,
    (a, lda): (*const f32, usize),
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    h: usize,
    w: usize,
    load_c: bool,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    debug_assert!(mr * nr <= MAX_TILE);
    // SAFETY: per this function's contract; the buffer holds mr * nr <= MAX_TILE values.
    unsafe {
        if h == mr && w == nr {
            micro(kc, a, lda, b, ldb, c, ldc, load_c);
        } else {
            let mut tile = [0.0f32; MAX_TILE];
            if load_c {
                for r in 0..h {
                    std::ptr::copy_nonoverlapping(c.add(r * ldc), tile.as_mut_ptr().add(r * nr), w);
                }
            }
            micro(kc, a, lda, b, ldb, tile.as_mut_ptr(), nr, load_c);
            for r in 0..h {
                std::ptr::copy_nonoverlapping(tile.as_ptr().add(r * nr), c.add(r * ldc), w);
            }
        }
    }
}

/// `c [+]= A * B` over depth `p_begin..p_end` on the calling thread, BLIS's loop order with `B`
/// packed one `KC x n` block at a time (L2-sized), so a `B` that is expensive to form (patches)
/// is formed once, into cache, right before use.
#[allow(clippy::too_many_arguments)]
fn blocked<B: RhsSource>(
    kern: &Kernel,
    m: usize,
    n: usize,
    (p_begin, p_end): (usize, usize),
    a: &View,
    b: &B,
    c: &mut [f32],
    accumulate: bool,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let panels = n.div_ceil(nr);
    let kc_max = kern.kc.min(p_end - p_begin);
    let mc = kern.mc.min(m.div_ceil(mr) * mr);
    let mut bbuf = take_buffer(&PACK_B);
    let boff = aligned(&mut bbuf, panels * nr * kc_max);
    let mut abuf = take_buffer(&PACK_A);
    let aoff = aligned(&mut abuf, mc * kc_max);
    let mut p0 = p_begin;
    while p0 < p_end {
        let kc = kern.kc.min(p_end - p0);
        let bblock = &mut bbuf[boff..boff + panels * nr * kc];
        for (jp, dst) in bblock.chunks_exact_mut(kc * nr).enumerate() {
            b.pack(p0, kc, n, jp * nr, nr, dst);
        }
        let bblock = &bbuf[boff..boff + panels * nr * kc];
        let load_c = accumulate || p0 > p_begin;
        let mut i0 = 0;
        while i0 < m {
            let rows = mc.min(m - i0);
            let apack = &mut abuf[aoff..aoff + rows.div_ceil(mr) * mr * kc];
            pack_a_block(a, i0, rows, p0, kc, mr, apack);
            for (jp, bmicro) in bblock.chunks_exact(kc * nr).enumerate() {
                let j0 = jp * nr;
                for (s, asl) in apack.chunks_exact(kc * mr).enumerate() {
                    let r0 = i0 + s * mr;
                    // SAFETY: the caller checked the level; `bmicro` holds kc * nr packed values;
                    // the tile's valid part (rows r0.., at most m - r0; columns j0.., at most
                    // n - j0) lies inside the m x n matrix
                    // `c` (checked by the caller: c.len() >= m * n), borrowed mutably here.
                    unsafe {
                        run_tile(
                            kern,
                            kern.micro,
                            kc,
                            (asl.as_ptr(), 0),
                            (bmicro.as_ptr(), nr),
                            c.as_mut_ptr().add(r0 * n + j0),
                            n,
                            mr.min(m - r0),
                            nr.min(n - j0),
                            load_c,
                        )
                    };
                }
            }
            i0 += rows;
        }
        p0 += kc;
    }
    give_back(&PACK_A, abuf);
    give_back(&PACK_B, bbuf);
}

/// `c (m x n) [+]= A (m x k) * B (k x n)` split over the depth `k`: each thread takes a range of
/// `k` and sums into its own `m x n` buffer (the first range into `c` itself), and the buffers
/// are added at the end in a fixed order (so the result depends only on the thread count). For
/// small outputs with a long depth: a convolution's kernel gradient (`filters x patch` outputs,
/// depth = every output pixel of the batch), where splitting the outputs would leave threads
/// idle and materializing `B` would cost more than the arithmetic.
///
/// # Panics
/// If `a` or `c` is too short for `m x k` / `m x n`, or `isa` is not supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_split_k<B: RhsSource>(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: &B,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(
        isa.is_supported(),
        "sgemm: {isa} is not supported by this CPU"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        (m - 1) * a.rs + (k - 1) * a.cs < a.data.len() && m * n <= c.len(),
        "sgemm: operands too short for {m}x{k}x{n}"
    );
    let kern = kernel_for(isa, n);
    assert!(kern.mr * kern.nr <= MAX_TILE);
    let threads = rayon::current_num_threads().max(1);
    let parallel = splits(threads, m, n, k);
    let parts = if parallel {
        threads.min(k.div_ceil(kern.kc))
    } else {
        1
    };
    let per = k.div_ceil(parts).div_ceil(kern.kc) * kern.kc;
    let parts = k.div_ceil(per);
    let c = &mut c[..m * n];
    if parts == 1 {
        blocked(&kern, m, n, (0, k), &a, b, c, accumulate);
        return;
    }
    let mut partial: Vec<Buffer> = (1..parts)
        .map(|_| Buffer(super::buffer::zeroed(m * n)))
        .collect();
    rayon::scope(|s| {
        for (i, buf) in partial.iter_mut().enumerate() {
            let range = ((i + 1) * per, ((i + 2) * per).min(k));
            let (kern, a) = (&kern, &a);
            s.spawn(move |_| blocked(kern, m, n, range, a, b, buf, false));
        }
        blocked(&kern, m, n, (0, per.min(k)), &a, b, c, accumulate);
    });
    for buf in &partial {
        c.iter_mut().zip(buf.iter()).for_each(|(x, y)| *x += y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::isa;
    use crate::tensor::random::{rng, uniform};

    /// `sum_p A(i, p) * B(p, j)` in f64 and `sum_p |A(i, p) * B(p, j)|` (the scale of the f32
    /// rounding error of a length-k dot product), read through the views' strides.
    fn reference(m: usize, n: usize, k: usize, a: &View, b: &View) -> (Vec<f64>, Vec<f64>) {
        let mut c = vec![0.0f64; m * n];
        let mut s = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let x = a.data[a.at(i, p)] as f64 * b.data[b.at(p, j)] as f64;
                    c[i * n + j] += x;
                    s[i * n + j] += x.abs();
                }
            }
        }
        (c, s)
    }

    /// A matmul nested inside another on the same thread (as when a thread waiting in rayon's
    /// `join` runs another matmul's task) reuses its packing buffers from the second call on
    /// instead of allocating: the buffers a call returns are found again by the next call at
    /// the same nesting depth.
    #[test]
    fn nested_calls_reuse_pack_buffers() {
        let (m, n, k) = (16, 16, 16); // below PAR_MIN_FLOPS: runs on this thread
        let a = vec![1.0f32; m * k];
        let b = vec![1.0f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let view = |d| View {
            data: d,
            rs: k,
            cs: 1,
        };
        let top = |stack: &'static LocalKey<RefCell<Vec<Vec<f32>>>>| {
            stack.with(|s| s.borrow().last().map(|v| v.as_ptr()))
        };
        let run = |c: &mut [f32]| {
            sgemm(
                Isa::Portable,
                m,
                n,
                k,
                view(&a),
                Rhs::View(view(&b)),
                c,
                false,
                None,
            )
        };
        run(&mut c);
        assert!(c.iter().all(|&x| x == k as f32));
        let (a0, b0) = (top(&PACK_A), top(&PACK_B));
        assert!(a0.is_some() && b0.is_some());
        // An outer call holds this thread's buffers while an inner one runs twice.
        let (outer_a, outer_b) = (take_buffer(&PACK_A), take_buffer(&PACK_B));
        run(&mut c);
        let (a1, b1) = (top(&PACK_A), top(&PACK_B));
        run(&mut c);
        assert_eq!(
            (top(&PACK_A), top(&PACK_B)),
            (a1, b1),
            "inner call reallocated"
        );
        assert!(c.iter().all(|&x| x == k as f32));
        give_back(&PACK_A, outer_a);
        give_back(&PACK_B, outer_b);
        run(&mut c);
        assert_eq!(
            (top(&PACK_A), top(&PACK_B)),
            (a0, b0),
            "outer call reallocated"
        );
    }

    /// Every kernel path, with the dispatch forced to each level this CPU runs, against an f64
    /// reference on odd sizes: all three AVX-512 tiles (6 x 64 for n = 64, 192, 512; 8 x 48 for
    /// n = 47, 48, 65, 96, 129, 257; 12 x 32 for n <= 31), `A` read in place (row-major, also
    /// with a row stride longer than `k`) and packed (transposed), `B` row-major (read in place,
    /// also with a row stride longer than `n`, or packed when its rows are 2 KiB apart) and
    /// transposed, edge tiles in every dimension, several depth blocks (k > KC), overwrite and
    /// accumulate, and the split-depth driver.
    fn every_path_matches_f64_reference_on_odd_sizes(levels: Vec<Isa>) {
        let mut r = rng(Some(7));
        let sizes = [1usize, 7, 13, 31, 65, 129, 257];
        let mut shapes = Vec::new();
        for (i, &m) in sizes.iter().enumerate() {
            for (j, &k) in sizes.iter().enumerate() {
                // A diagonal walk through the n sizes keeps the debug-mode reference fast
                // while every size meets every other size in some dimension.
                let n = sizes[(i + 2 * j) % sizes.len()];
                shapes.push((m, k, n));
            }
        }
        // n = 512: a row-major B whose rows are 2 KiB apart is packed, not read in place.
        // k = 401, 700: several depth blocks of the 8 x 48 and 6 x 64 tiles (KC = 384).
        shapes.extend([
            (13, 300, 64),
            (13, 700, 64),
            (29, 401, 48),
            (70, 13, 96),
            (9, 5, 47),
            (65, 7, 192),
            (257, 31, 64),
            (31, 600, 129),
            (13, 31, 512),
        ]);
        #[cfg(target_arch = "x86_64")]
        {
            let mut tiles: Vec<usize> = shapes
                .iter()
                .map(|&(_, _, n)| kernel_for(Isa::Avx512, n).nr)
                .collect();
            tiles.sort_unstable();
            tiles.dedup();
            assert_eq!(
                tiles,
                [32, 48, 64],
                "the shapes must exercise every AVX-512 tile"
            );
        }
        for (m, k, n) in shapes {
            // A: row-major with row stride k + 3 (direct, lda != k) or transposed (packed).
            let a_rm = uniform(&mut r, m * (k + 3), -1.0, 1.0);
            let a_t = uniform(&mut r, k * m, -1.0, 1.0);
            let b_rm = uniform(&mut r, k * (n + 5), -1.0, 1.0);
            let b_t = uniform(&mut r, n * k, -1.0, 1.0);
            let views_a = [
                View {
                    data: &a_rm,
                    rs: k + 3,
                    cs: 1,
                },
                View {
                    data: &a_t,
                    rs: 1,
                    cs: m,
                },
            ];
            let views_b = [
                View {
                    data: &b_rm,
                    rs: n,
                    cs: 1,
                },
                // Row stride longer than n (B read in place with ldb != n).
                View {
                    data: &b_rm,
                    rs: n + 5,
                    cs: 1,
                },
                View {
                    data: &b_t,
                    rs: 1,
                    cs: k,
                },
            ];
            for a in &views_a {
                for b in &views_b {
                    let (want, scale) = reference(m, n, k, a, b);
                    for isa in levels.clone() {
                        isa::with_forced(isa, || {
                            let check = |c: &[f32], plus: f64, what: &str| {
                                for i in 0..m * n {
                                    let tol = 1e-5 * (scale[i] + plus.abs() + 1e-30);
                                    let (x, y) = (c[i] as f64, want[i] + plus);
                                    assert!(
                                        (x - y).abs() <= tol,
                                        "{isa} {what} {m}x{k}x{n} a.rs {} b.rs {} [{i}]: {x} vs {y}",
                                        a.rs,
                                        b.rs
                                    );
                                }
                            };
                            let mut c = vec![f32::NAN; m * n];
                            sgemm(isa, m, n, k, *a, Rhs::View(*b), &mut c, false, None);
                            check(&c, 0.0, "overwrite");
                            // `B` packed beforehand: the same operations in the same order as
                            // the call's own packing or in-place reads, so the same bits.
                            let mut packed = vec![f32::NAN; packed_rhs_len(isa, k, n)];
                            pack_rhs(isa, k, n, *b, &mut packed);
                            let mut cp = vec![f32::NAN; m * n];
                            sgemm(isa, m, n, k, *a, Rhs::Packed(&packed), &mut cp, false, None);
                            assert!(
                                c.iter().zip(&cp).all(|(x, y)| x.to_bits() == y.to_bits()),
                                "{isa} prepacked B {m}x{k}x{n} differs"
                            );
                            let mut c = vec![0.25f32; m * n];
                            sgemm(isa, m, n, k, *a, Rhs::View(*b), &mut c, true, None);
                            check(&c, 0.25, "accumulate");
                            let mut cp = vec![0.25f32; m * n];
                            sgemm(isa, m, n, k, *a, Rhs::Packed(&packed), &mut cp, true, None);
                            check(&cp, 0.25, "accumulate, B prepacked");
                            let mut c = vec![f32::NAN; m * n];
                            sgemm_split_k(isa, m, n, k, *a, b, &mut c, false);
                            check(&c, 0.0, "split-k");
                        });
                    }
                }
            }
        }
    }
    crate::level_tests!(every_path_matches_f64_reference_on_odd_sizes);
}
