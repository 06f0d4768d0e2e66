//! Direct (channel-blocked) forward convolution for few-input-channel layers.
//!
//! im2col copies every input value `kh*kw` times into a patch matrix and then multiplies it with a
//! short (`kh*kw*c`) inner dimension; when `c` is small (InceptionV3's stem: 3, 32, 32 channels on
//! 299x299..147x147 images) that copy dominates and the matmul runs far below peak. Here each
//! task computes a tile of `PX` output pixels x `FB` output channels in registers, reading the
//! input in place (padding reads a shared zero row) and the kernel packed once per call into
//! `FB`-wide channel blocks, so every kernel vector load feeds `PX` fused multiply-adds.
//!
//! The tile sizes follow the vector registers. AVX-512 cuts the filters into blocks of 4 zmm
//! vectors (64 channels) and one remainder block of 1-3 vectors (96 = 64 + 32), with 6 pixels
//! for 4 vectors (24 accumulators, 10 loads per 24 FMAs), 8 for 3 or 2 vectors and 6 for 1;
//! AVX2 6 pixels x 2 ymm (12 accumulators), the portable path 4 x 16. A row's last short group
//! of pixels runs a half-height tile when it fits (17 = 6 + 6 + 5, but 13 = 6 + 6 + 3, not
//! 6 + 6 + 6). Which path runs is [`super::isa::active`]'s choice on the calling thread, made once per
//! call (the worker threads run whatever it chose). The kernels are `std::arch` intrinsics:
//! auto-vectorized versions of the same loops ran at 7-50 GFLOP/s per thread depending on tile
//! shape, these at 95 (AVX2) and 143 (AVX-512) on InceptionV3's 32->32 3x3 layer.
//!
//! The tile's pixel pointers are rebuilt per tap and tile; for taps whose pixels all lie inside
//! the row they come from one checked slice instead of a padding test per pixel, which was a
//! tenth of the time on 32-channel layers. Measured with `frostnet-bench kernels --threads 1`
//! (batch 1, GFLOP per CPU-second, one core, AVX-512 peak ~214; interleaved, load 4-5), before
//! (6 x 32 tiles only) -> after:
//!
//! | layer              | AVX-512       | AVX2         |
//! |--------------------|---------------|--------------|
//! | stem2 32->32 3x3   | 155 -> 172    | 94-95 -> 91-99 |
//! | stem3 32->64 3x3   | 155 -> 166-171 | 91-97 -> 93-100 |
//! | stem5 80->192 3x3  | 158-159 -> 184-186 | 100-105 -> 100-104 |
//! | mixed 48->64 5x5   | 161-163 -> 185-200 | 94-105 -> 94-103 |
//! | mixed 64->96 3x3   | 158-161 -> 170-178 | 92-105 -> 90-101 |
//! | mixed 128->128 1x7 | 149-166 -> 163-174 | 80-99 -> 78-98 |
//!
//! Then, at stride 1, a tile whose windows lie inside the row merges each kernel row's `kw` taps
//! into one run of `kw * c` values ([`tile_taps`]); same bench, AVX-512 (before -> after):
//! stem2 156-158 -> 174-176, stem3 168 -> 181-182, stem5 183-185 -> 193-194, 5x5 187-190 ->
//! 194-198, 64->96 159-176 -> 157-184; the 17x17 1x7 layers (one tile in three merges) within
//! noise (128: 158-173 -> 162-174, 160: 140-160 -> 155-167); AVX2 unchanged to +5%.
//!
//! Work is shared out in groups of output rows (run block by block, so a block's kernel is
//! reused from L2 across the group: 3x3/2 288->384 at batch 8 rose from 223 to 297 GFLOP per
//! CPU-second over 2 threads, 7x1 192->192 from 348-366 to 379-386, stem5 340-347 -> 349-362,
//! the small-kernel stem layers unchanged), or, when there are fewer than 16 rows per thread
//! (17x17 layers at batch 1), by row segments of at least 8 pixels. With the grouping, im2col +
//! gemm still wins above 192 channels (288->384 3x3/2 303-305 vs 270-304, 448->384 3x3 at 8x8
//! 317-318 vs 198-213; AVX2 alike), so [`prefers_direct`] stays.
//!
//! End to end, all of this series with the sgemm change (`frostnet-bench inception_frozen
//! --threads 2`, CPU ms per step, medians of 4, three interleaved runs at load 5.7-6, base =
//! 6940c47): AVX-512 997-1100 -> 857-871 (88 -> 106 GFLOP per CPU-second), forced AVX2
//! 1429-1482 -> 1246-1300; `inception_infer` 119-126 -> 115-121 (AVX2 186-202 -> 175-198,
//! noise). Per layer class in `profile inception_frozen` (GFLOP per CPU-second):
//! 3x3 109-124 -> 122-140, 1x7/7x1 128-130 -> 155-158, 5x5 137-148 -> 165-166.
//!
//! 12-pixel tiles for 2-vector blocks (24 accumulators) ran slower than 8: twelve pixel
//! pointers do not fit the general registers and were reloaded from the stack in the inner loop.

use super::conv::{apply_epilogue_serial, Conv2dGeometry, EpilogueStep};
use super::isa;
use super::simd::{Portable, Vector};
use rayon::prelude::*;

/// Whether the direct kernel is the faster choice for this geometry: any spatial kernel over at
/// most 128 input channels, or over at most 192 at stride 1. Measured with `frostnet-bench
/// kernels` (CPU time, InceptionV3's layers at batch 1, AVX-512 and AVX2): direct was 1.3-4.7x
/// faster than im2col + gemm for 3..128 input channels (3x3, 5x5, 1x7; stride 1 and 2) and 0.8x
/// at 288 -> 384 3x3/2, where gemm's long inner dimension wins. Re-measured after the 64-wide
/// tiles (`KERNEL_BATCH=1` and `8`, one thread, GFLOP per CPU-second, im2col -> direct): 1x7
/// 160 -> 160 at 17x17 150-157 -> 156-165 (AVX2 92-95 -> 100-104), 7x1 192 -> 192 146-155 ->
/// 181-192 (AVX2 81-95 -> 98-112); but 3x3/2 192 -> 320 146-154 -> 108-113 (batch 1: 117 ->
/// 79-84), 3x3 448 -> 384 at 8x8 126-152 -> 84 and 1x3 384 -> 384 at 8x8 149-154 -> 122-127.
/// Pointwise kernels are a plain matmul.
pub fn prefers_direct(g: &Conv2dGeometry, filters: usize) -> bool {
    let stride1 = g.sh == 1 && g.sw == 1;
    !g.is_pointwise()
        && (g.c <= 128 || (g.c <= 192 && stride1))
        && filters >= 8
        && g.oh * g.ow >= 16
}

/// Forward convolution, NHWC in and out, HWIO kernel, with `epilogue` applied to each output row
/// (one image row of pixels) as soon as it is computed.
///
/// # Panics
/// If `x` or `kernel` does not have the length `g` and `filters` imply (a caller bug).
pub fn conv2d_direct(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    let job = (kernel, filters, epilogue, None, 0);
    dispatch(x, g, job)
}

/// A kernel packed by [`pack`]: the kernel's version, the lanes and widest block it was packed
/// for (they differ between instruction sets), and the packed values.
pub(crate) type Packed = Option<((u64, usize, usize), Vec<f32>)>;

/// What [`run`] computes: kernel, filters, epilogue, where to keep the packed kernel (none: pack
/// for this call only) and the kernel's version.
type Job<'a> = (
    &'a [f32],
    usize,
    &'a [EpilogueStep<'a>],
    Option<&'a mut Packed>,
    u64,
);

/// [`conv2d_direct`] reusing the packed kernel in `kept` when it was packed from `version` for
/// this call's instruction set, and leaving the one it packs there otherwise.
pub(crate) fn conv2d_direct_kept(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
    kept: &mut Packed,
    version: u64,
) -> Vec<f32> {
    dispatch(x, g, (kernel, filters, epilogue, Some(kept), version))
}

/// [`run`] at the calling thread's level.
fn dispatch(x: &[f32], g: &Conv2dGeometry, job: Job) -> Vec<f32> {
    match isa::active() {
        #[cfg(target_arch = "x86_64")]
        isa::Isa::Avx512 => run::<x86::Avx512>(x, g, job),
        #[cfg(target_arch = "x86_64")]
        isa::Isa::Avx2 => run::<x86::Avx2>(x, g, job),
        _ => run::<Portable>(x, g, job),
    }
}

/// A level's entry point and widest block. A tile holds up to `MAX_NV` vectors of output
/// channels for each of its pixels.
///
/// # Safety
/// Implementations may use CPU features; `row` is only called for a level the CPU supports.
unsafe trait Simd: Vector + Sync {
    /// Widest channel block, in vectors.
    const MAX_NV: usize;
    /// Runs one output row with this level's features enabled.
    ///
    /// # Safety
    /// The CPU must support the level's features.
    unsafe fn row(job: &RowJob, dst: &mut [f32]);
    /// [`tile_kernel`] for this level, in a function of its own (never inlined into `row`):
    /// inlined, the eight tile shapes of a level shared one huge function's register
    /// allocation, and an unrelated change elsewhere in the crate once made LLVM spill the
    /// accumulators of the hot loop to the stack (1x7 160->160 fell from 160 to 80 GFLOP/s).
    ///
    /// # Safety
    /// The CPU must support the level's features; as [`tile_kernel`].
    unsafe fn tile<const PX: usize, const NV: usize>(
        taps: &[*const f32],
        c: usize,
        out: &mut [[f32; MAX_WIDTH]],
    );
}

// SAFETY: uses no CPU feature beyond the compile target's.
unsafe impl Simd for Portable {
    const MAX_NV: usize = 2;
    unsafe fn row(job: &RowJob, dst: &mut [f32]) {
        // SAFETY: no features needed; `row_body`'s pointer contract is upheld by `run`.
        unsafe { row_body::<Self, 4, 2, 4, 2, 0, 0, 0, 0>(job, dst) }
    }
    #[inline(never)]
    unsafe fn tile<const PX: usize, const NV: usize>(
        taps: &[*const f32],
        c: usize,
        out: &mut [[f32; MAX_WIDTH]],
    ) {
        // SAFETY: no features needed; forwarded from this function's contract.
        unsafe { tile_kernel::<Self, PX, NV>(taps, c, out) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{row_body, tile_kernel, RowJob, Simd, MAX_WIDTH};
    pub(super) use crate::tensor::simd::{Avx2, Avx512};

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline(never)]
    unsafe fn tile_avx512<const PX: usize, const NV: usize>(
        taps: &[*const f32],
        c: usize,
        out: &mut [[f32; MAX_WIDTH]],
    ) {
        // SAFETY: forwarded from `Simd::tile`'s contract.
        unsafe { tile_kernel::<Avx512, PX, NV>(taps, c, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    unsafe fn tile_avx2<const PX: usize, const NV: usize>(
        taps: &[*const f32],
        c: usize,
        out: &mut [[f32; MAX_WIDTH]],
    ) {
        // SAFETY: forwarded from `Simd::tile`'s contract.
        unsafe { tile_kernel::<Avx2, PX, NV>(taps, c, out) }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn row_avx512(job: &RowJob, dst: &mut [f32]) {
        // SAFETY: forwarded from `Simd::row`'s contract.
        unsafe { row_body::<Avx512, 6, 3, 8, 4, 8, 4, 6, 3>(job, dst) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2(job: &RowJob, dst: &mut [f32]) {
        // SAFETY: forwarded from `Simd::row`'s contract.
        unsafe { row_body::<Avx2, 6, 3, 6, 3, 0, 0, 0, 0>(job, dst) }
    }

    // SAFETY: the intrinsics need avx512f, which `row` enables; callers check the CPU.
    unsafe impl Simd for Avx512 {
        const MAX_NV: usize = 4;
        unsafe fn row(job: &RowJob, dst: &mut [f32]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { row_avx512(job, dst) }
        }
        unsafe fn tile<const PX: usize, const NV: usize>(
            taps: &[*const f32],
            c: usize,
            out: &mut [[f32; MAX_WIDTH]],
        ) {
            // SAFETY: forwarded from this function's contract.
            unsafe { tile_avx512::<PX, NV>(taps, c, out) }
        }
    }

    // SAFETY: the intrinsics need avx2 and fma, which `row` enables; callers check the CPU.
    unsafe impl Simd for Avx2 {
        const MAX_NV: usize = 2;
        unsafe fn row(job: &RowJob, dst: &mut [f32]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { row_avx2(job, dst) }
        }
        unsafe fn tile<const PX: usize, const NV: usize>(
            taps: &[*const f32],
            c: usize,
            out: &mut [[f32; MAX_WIDTH]],
        ) {
            // SAFETY: forwarded from this function's contract.
            unsafe { tile_avx2::<PX, NV>(taps, c, out) }
        }
    }
}

/// One channel block of the output: filters `f0..f0 + nv * L` (the last block may reach past
/// `filters`; its missing columns are zero in the packed kernel and never stored), packed at
/// `off` in the buffer from [`pack`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Block {
    f0: usize,
    nv: usize,
    off: usize,
}

/// Cuts `filters` into blocks of at most `max_nv` vectors of `lanes` channels: full blocks, then
/// one block of as many vectors as the remainder needs (96 filters at AVX-512 = 64 + 32, not
/// 64 + 64 with half of the second block wasted).
fn plan(filters: usize, lanes: usize, max_nv: usize, taps: usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut f0, mut off) = (0, 0);
    while f0 < filters {
        let nv = (filters - f0).div_ceil(lanes).min(max_nv);
        blocks.push(Block { f0, nv, off });
        off += taps * nv * lanes;
        f0 += nv * lanes;
    }
    blocks
}

/// Packs the HWIO kernel block by block as `[ky][kx][c][block width]` into `out` ([`packed_len`]
/// values, every one written: the last block's padding columns are zeroed), so a tile reads its
/// kernel vectors contiguously.
fn pack(
    kernel: &[f32],
    g: &Conv2dGeometry,
    filters: usize,
    lanes: usize,
    blocks: &[Block],
    out: &mut [f32],
) {
    let taps = g.kh * g.kw * g.c;
    for b in blocks {
        let width = b.nv * lanes;
        let w = width.min(filters - b.f0);
        for t in 0..taps {
            let (vals, pad) = out[b.off + t * width..][..width].split_at_mut(w);
            vals.copy_from_slice(&kernel[t * filters + b.f0..][..w]);
            pad.fill(0.0);
        }
    }
}

/// Values [`pack`] writes for `blocks`.
fn packed_len(blocks: &[Block], g: &Conv2dGeometry, lanes: usize) -> usize {
    blocks
        .last()
        .map_or(0, |b| b.off + g.kh * g.kw * g.c * b.nv * lanes)
}

fn run<S: Simd>(
    x: &[f32],
    g: &Conv2dGeometry,
    (kernel, filters, epilogue, kept, version): Job,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "input length");
    assert_eq!(kernel.len(), g.patch_len() * filters, "kernel length");
    let blocks = plan(filters, S::L, S::MAX_NV, g.patch_len());
    let len = packed_len(&blocks, g, S::L);
    let mut fresh;
    let packed: &[f32] = match kept {
        Some(slot) => super::conv::kept(slot, (version, S::L, S::MAX_NV), len, |out| {
            pack(kernel, g, filters, S::L, &blocks, out)
        }),
        None => {
            fresh = super::buffer::Buffer(super::buffer::overwritten(len));
            pack(kernel, g, filters, S::L, &blocks, &mut fresh);
            &fresh
        }
    };
    let zeros = vec![0.0f32; g.c];
    let row_len = g.ow * filters;
    if row_len == 0 || g.c == 0 {
        let mut out = super::buffer::zeroed(g.n * g.oh * row_len);
        apply_epilogue_serial(&mut out, filters, epilogue);
        return out;
    }
    // Work units: groups of whole rows, or, with few rows (InceptionV3's 17x17 layers at batch
    // 1: 17 rows on 2 threads ran 9 + 8), pixel segments of one row, so the threads' shares
    // come out even. A group runs block by block over all its rows, so a block's kernel is
    // read from L2 once per group rather than once per row: with several blocks of a large
    // kernel (3x3x288 x 64 = 663 KB each) the whole kernel no longer streams from L3 per row.
    let rows = g.n * g.oh;
    let want = 16 * rayon::current_num_threads().max(1);
    let (group, segs) = if rows >= want {
        let g_rows = (GROUP_FLOATS / row_len).clamp(1, rows / want);
        (g_rows, 1)
    } else {
        (1, want.div_ceil(rows).min(g.ow / MIN_SEGMENT).max(1))
    };
    let seg_px = g.ow.div_ceil(segs);
    // Every row is stored whole by `S::row`.
    let mut out = super::buffer::overwritten(g.n * g.oh * row_len);
    out.par_chunks_mut(group * row_len)
        .enumerate()
        .flat_map(|(unit, r)| {
            let inner = if segs > 1 {
                seg_px * filters
            } else {
                group * row_len
            };
            r.par_chunks_mut(inner)
                .enumerate()
                .map(move |(seg, dst)| (unit, seg, dst))
        })
        .for_each(|(unit, seg, dst)| {
            let x_lo = if segs > 1 { seg * seg_px } else { 0 };
            let (row0, nrows) = if segs > 1 {
                (unit, 1)
            } else {
                (unit * group, dst.len() / row_len)
            };
            let job = RowJob {
                x,
                zeros: &zeros,
                packed,
                blocks: &blocks,
                g,
                filters,
                row0,
                nrows,
                x_lo,
                x_hi: x_lo + dst.len() / nrows / filters,
            };
            // SAFETY: `S` is the level `isa::active` chose, which never exceeds what
            // `is_x86_feature_detected!` found; `job` satisfies `row_body`'s contract (see there).
            unsafe { S::row(&job, dst) };
            apply_epilogue_serial(dst, filters, epilogue);
        });
    out
}

/// Most output values in one group of rows (see `run`): 256 KiB, so the group's output is still
/// in L2 when the epilogue runs over it.
const GROUP_FLOATS: usize = 64 * 1024;

/// Fewest pixels in a row segment (see `run`): a few tiles, so their setup stays amortized.
const MIN_SEGMENT: usize = 8;

/// What one work unit needs: output rows `row0..row0 + nrows` (counted over all images), pixels
/// `x_lo..x_hi` of each (`dst` holds exactly them, row after row).
struct RowJob<'a> {
    /// The whole input (`n * h * w * c` values).
    x: &'a [f32],
    /// `c` zeros, read in place of padding pixels.
    zeros: &'a [f32],
    /// The kernel from [`pack`], laid out as `blocks` say.
    packed: &'a [f32],
    blocks: &'a [Block],
    g: &'a Conv2dGeometry,
    filters: usize,
    row0: usize,
    nrows: usize,
    x_lo: usize,
    x_hi: usize,
}

/// One output row of a work unit: its image's input and its row in the output image.
#[derive(Clone, Copy)]
struct Row<'a> {
    /// The row's image (`h * w * c` values).
    src: &'a [f32],
    oy: usize,
}

/// Largest tile width in f32 lanes (4 zmm vectors) and pixel count of any level's tile.
const MAX_WIDTH: usize = 64;
const MAX_PX: usize = 12;

/// One output row segment (`(x_hi - x_lo) * filters` values), block by block. `P<nv>` is the tile's pixel count
/// for a block of `nv` vectors and `H<nv>` the smaller tile used for a short last group of
/// pixels (0 = that block width never occurs at this level).
///
/// # Safety
/// The CPU must support `S`'s features. Every pointer formed is in bounds: pixel pointers come
/// from checked slices of `src` holding the `len` values a tap reads (`c`, or `kw * c` for a
/// merged tap) or point at `zeros` (`c` values, only in unmerged taps), and are read at offsets
/// `< len`; kernel pointers come from checked slices of `packed` holding `len * nv * S::L`
/// values; tile results go to a local buffer and are copied with checked slices.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_body<
    S: Simd,
    const P1: usize,
    const H1: usize,
    const P2: usize,
    const H2: usize,
    const P3: usize,
    const H3: usize,
    const P4: usize,
    const H4: usize,
>(
    job: &RowJob,
    dst: &mut [f32],
) {
    // Per tap: the tile's pixel pointers, then the tap's kernel pointer.
    let mut taps: Vec<*const f32> = Vec::with_capacity(job.g.kh * job.g.kw * (MAX_PX + 1));
    let mut tile = vec![[0.0f32; MAX_WIDTH]; MAX_PX];
    // Channel blocks outermost: one block's packed kernel (kh*kw*c*width values) stays in L2
    // while the row's tiles stream past it; with pixels outermost, wide layers (288 -> 384
    // channels) re-read the whole kernel from L3 for every tile and ran at half the speed.
    let g = job.g;
    let img_len = g.h * g.w * g.c;
    let seg_len = (job.x_hi - job.x_lo) * job.filters;
    for b in job.blocks {
        for (i, dst) in dst.chunks_exact_mut(seg_len).take(job.nrows).enumerate() {
            let r = job.row0 + i;
            let (img, oy) = (r / g.oh, r % g.oh);
            let row = Row {
                src: &job.x[img * img_len..(img + 1) * img_len],
                oy,
            };
            // SAFETY: forwarded from this function's contract.
            unsafe {
                match b.nv {
                    1 => block_row::<S, P1, H1, 1>(job, row, b, &mut taps, &mut tile, dst),
                    2 => block_row::<S, P2, H2, 2>(job, row, b, &mut taps, &mut tile, dst),
                    3 => block_row::<S, P3, H3, 3>(job, row, b, &mut taps, &mut tile, dst),
                    _ => block_row::<S, P4, H4, 4>(job, row, b, &mut taps, &mut tile, dst),
                }
            }
        }
    }
}

/// Fills `taps` for the tile of `t` pixels at `ox0` (`px <= t` of them real, the rest reading
/// zeros) and block `b` of width `width`: per tap (rows in the padding skipped), `t` pixel
/// pointers and the kernel pointer. Returns the number of input values each tap sums over.
///
/// When every pixel's whole window row lies inside the input, pixel `p`'s `kw` taps of a kernel
/// row read `kw * c` consecutive input values (pixels `x0 + p * sw .. x0 + p * sw + kw`) against
/// `kw * c` consecutive packed kernel rows, so they merge into one tap of `kw * c` values: a
/// third of the taps to set up on 3x3 layers, a seventh on 1x7. (At stride 2 too: the 3-channel
/// stem's taps went from 3 values each to 9.)
#[inline(always)]
fn tile_taps(
    job: &RowJob,
    out_row: Row,
    b: &Block,
    width: usize,
    (ox0, px, t): (usize, usize, usize),
    taps: &mut Vec<*const f32>,
) -> usize {
    let g = job.g;
    let c = g.c;
    taps.clear();
    // (No underflow: the last window ends at or after the first one's start, `>= pad_left`.)
    let merged =
        px == t && ox0 * g.sw >= g.pad_left && (ox0 + px - 1) * g.sw + g.kw - 1 - g.pad_left < g.w;
    for ky in 0..g.kh {
        let Some(iy) = g.in_row(out_row.oy, ky) else {
            continue;
        };
        let row = &out_row.src[iy * g.w * c..(iy + 1) * g.w * c];
        if merged {
            let x0 = ox0 * g.sw - g.pad_left;
            let span = &row[x0 * c..(x0 + (px - 1) * g.sw + g.kw) * c];
            taps.extend((0..t).map(|p| span[p * g.sw * c..][..g.kw * c].as_ptr()));
            let k = &job.packed[b.off + ky * g.kw * c * width..][..g.kw * c * width];
            taps.push(k.as_ptr());
            continue;
        }
        for kx in 0..g.kw {
            // Input column of pixel p (before removing the left padding): x0 + p * sw.
            let x0 = ox0 * g.sw + kx;
            let last = x0 + (px - 1) * g.sw;
            if px == t && x0 >= g.pad_left && last - g.pad_left < g.w {
                // Every pixel inside the row: one checked slice covers them all.
                let span = &row[(x0 - g.pad_left) * c..(last - g.pad_left + 1) * c];
                taps.extend((0..t).map(|p| span[p * g.sw * c..][..c].as_ptr()));
            } else {
                taps.extend((0..t).map(
                    |p| match (p < px).then(|| g.in_col(ox0 + p, kx)).flatten() {
                        Some(ix) => row[ix * c..][..c].as_ptr(),
                        None => job.zeros[..c].as_ptr(),
                    },
                ));
            }
            let k = &job.packed[b.off + (ky * g.kw + kx) * c * width..][..c * width];
            taps.push(k.as_ptr());
        }
    }
    if merged {
        g.kw * c
    } else {
        c
    }
}

/// One block of one output row: tiles of `PX` pixels (the last short group, if it has at most
/// `HX` pixels, as an `HX`-pixel tile) x `NV` vectors.
///
/// # Safety
/// As [`row_body`].
#[inline(always)]
unsafe fn block_row<S: Simd, const PX: usize, const HX: usize, const NV: usize>(
    job: &RowJob,
    row: Row,
    b: &Block,
    taps: &mut Vec<*const f32>,
    tile: &mut [[f32; MAX_WIDTH]],
    dst: &mut [f32],
) {
    let width = NV * S::L;
    assert!(PX > 0 && PX <= MAX_PX && HX <= PX && width <= MAX_WIDTH && b.nv == NV);
    let w = width.min(job.filters - b.f0);
    let mut ox0 = job.x_lo;
    while ox0 < job.x_hi {
        let px = PX.min(job.x_hi - ox0);
        let t = if px <= HX { HX } else { PX };
        let len = tile_taps(job, row, b, width, (ox0, px, t), taps);
        // SAFETY: see this function's contract; `taps` holds groups of `t + 1` pointers.
        unsafe {
            if t == HX {
                S::tile::<HX, NV>(taps, len, tile)
            } else {
                S::tile::<PX, NV>(taps, len, tile)
            }
        };
        for (p, t) in tile.iter().enumerate().take(px) {
            let o = (ox0 - job.x_lo + p) * job.filters + b.f0;
            dst[o..o + w].copy_from_slice(&t[..w]);
        }
        ox0 += PX;
    }
}

/// The register tile: `PX` pixels x `NV` vectors, summed over `taps` x `c` input values (one
/// pixel's channels, or a merged run of `kw` pixels' from [`tile_taps`]).
///
/// # Safety
/// As [`row_body`]: `taps` is groups of `PX` pixel pointers, each addressing `c` values, and a
/// kernel pointer addressing `c * NV * L`.
#[inline(always)]
unsafe fn tile_kernel<S: Simd, const PX: usize, const NV: usize>(
    taps: &[*const f32],
    c: usize,
    out: &mut [[f32; MAX_WIDTH]],
) {
    // SAFETY: offsets stay below `c` (pixels) and `c * NV * L` (kernel) per the contract; `out`
    // has at least `PX` rows of MAX_WIDTH >= NV * L values.
    unsafe {
        let mut acc = [[S::zero(); NV]; PX];
        for tap in taps.chunks_exact(PX + 1) {
            let pix: [*const f32; PX] = std::array::from_fn(|p| tap[p]);
            let mut k = tap[PX];
            for ci in 0..c {
                let mut kv = [S::zero(); NV];
                for (v, x) in kv.iter_mut().enumerate() {
                    *x = S::load(k.add(v * S::L));
                }
                for p in 0..PX {
                    let xv = S::splat(pix[p].add(ci));
                    for v in 0..NV {
                        acc[p][v] = S::fma(xv, kv[v], acc[p][v]);
                    }
                }
                k = k.add(NV * S::L);
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            for (v, &x) in a.iter().enumerate() {
                S::store(o.as_mut_ptr().add(v * S::L), x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::conv::{reference, Padding};
    use crate::tensor::random;

    /// Blocks cover the filters once, widest first, with the remainder in one block.
    #[test]
    fn plan_covers_filters_with_one_remainder_block() {
        let nvs = |f: usize, l: usize, max: usize| -> Vec<usize> {
            plan(f, l, max, 9).iter().map(|b| b.nv).collect()
        };
        assert_eq!(nvs(96, 16, 4), [4, 2]);
        assert_eq!(nvs(192, 16, 4), [4, 4, 4]);
        assert_eq!(nvs(100, 16, 4), [4, 3]);
        assert_eq!(nvs(33, 16, 4), [3]);
        assert_eq!(nvs(7, 16, 4), [1]);
        assert_eq!(nvs(40, 8, 2), [2, 2, 1]);
        let b = plan(100, 16, 4, 9);
        assert_eq!((b[1].f0, b[1].off), (64, 9 * 64));
    }

    /// Odd sizes (pixel and channel tails on every path), strides, both paddings, rectangular
    /// kernels, every block width and tile size of each level, every ISA this CPU runs;
    /// tolerance 1e-5 relative to the sum of |x||k| terms.
    fn matches_f64_reference_on_every_isa(levels: Vec<isa::Isa>) {
        let mut r = random::rng(Some(5));
        let cases = [
            ([2, 11, 13, 3], (3, 3), (2, 2), Padding::Valid, 33),
            ([1, 9, 10, 5], (3, 3), (1, 1), Padding::Same, 17),
            ([3, 7, 8, 1], (2, 3), (1, 2), Padding::Same, 7),
            ([1, 6, 15, 32], (3, 3), (1, 1), Padding::Valid, 40),
            ([2, 8, 7, 4], (1, 5), (1, 1), Padding::Same, 65),
            // Every AVX-512 block width (64 + 48 = 100; 64 + 64 + 16 = 130; 32; 64), full
            // and short tiles of each pixel count (ow 15, 21, 11, 7 against 6/3 and 8/4; ow 21
            // on 5 rows also runs as row segments),
            // interior and padded taps, stride 2 with padding.
            ([1, 9, 15, 6], (3, 3), (1, 1), Padding::Same, 100),
            ([1, 5, 21, 16], (1, 7), (1, 1), Padding::Same, 130),
            ([1, 8, 11, 12], (5, 5), (1, 1), Padding::Same, 32),
            ([2, 12, 13, 8], (3, 3), (2, 2), Padding::Same, 64),
            // Few rows, so rows are cut into pixel segments (2 of 11 + 10; 5 of 8).
            ([1, 3, 40, 4], (3, 3), (1, 1), Padding::Same, 24),
            // Many rows (69), so they run in groups of 2 (up to 4 on one thread), the last
            // group short, across image boundaries.
            ([3, 23, 9, 5], (3, 3), (1, 1), Padding::Same, 70),
        ];
        for (shape, k, s, p, f) in cases {
            let g = Conv2dGeometry::new(&shape, k, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let kern = random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0);
            let want = reference::forward(&x, &g, &kern, f);
            let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            let ak: Vec<f32> = kern.iter().map(|v| v.abs()).collect();
            let scale = reference::forward(&ax, &g, &ak, f);
            for level in levels.clone() {
                let got = isa::with_forced(level, || conv2d_direct(&x, &g, &kern, f, &[]));
                assert_eq!(got.len(), want.len());
                for i in 0..got.len() {
                    let err = (got[i] as f64 - want[i]).abs();
                    assert!(
                        err <= 1e-5 * scale[i] + 1e-30,
                        "{level} {shape:?} {k:?} {s:?} {p:?} f={f} at {i}: {} vs {}",
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }
    crate::level_tests!(matches_f64_reference_on_every_isa);
}
