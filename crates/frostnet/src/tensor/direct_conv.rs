//! Direct (channel-blocked) forward convolution for few-input-channel layers.
//!
//! im2col copies every input value `kh*kw` times into a patch matrix and then multiplies it with a
//! short (`kh*kw*c`) inner dimension; when `c` is small (InceptionV3's stem: 3, 32, 32 channels on
//! 299x299..147x147 images) that copy dominates and the matmul runs far below peak. Here each
//! task computes a tile of `PX` output pixels x `FB` output channels in registers, reading the
//! input in place (padding reads a shared zero row) and the kernel packed once per call into
//! `FB`-wide channel blocks, so every kernel vector load feeds `PX` fused multiply-adds.
//!
//! The tile sizes follow the vector registers: AVX-512 keeps 6 pixels x 32 channels (12 zmm
//! accumulators), AVX2 6 x 16 (12 ymm), the portable path 4 x 16. Which path runs is
//! [`super::isa::active`]'s choice on the calling thread, made once per call (the worker threads
//! run whatever it chose). The kernels are `std::arch` intrinsics: auto-vectorized versions of the
//! same loops ran at 7-50 GFLOP/s per thread depending on tile shape, these at 95 (AVX2) and 143
//! (AVX-512) on InceptionV3's 32->32 3x3 layer.

use super::conv::{apply_epilogue_serial, Conv2dGeometry, EpilogueStep};
use super::isa;
use rayon::prelude::*;

/// Whether the direct kernel is the faster choice for this geometry: any spatial kernel over at
/// most 128 input channels. Measured with `frostnet-bench kernels` (CPU time, InceptionV3's
/// layers at batch 1, AVX-512 and AVX2): direct was 1.3-4.7x faster than im2col + gemm for
/// 3..128 input channels (3x3, 5x5, 1x7; stride 1 and 2) and 0.8x at 288 -> 384 3x3/2, where
/// gemm's long inner dimension wins. Pointwise kernels are a plain matmul.
pub fn prefers_direct(g: &Conv2dGeometry, filters: usize) -> bool {
    !g.is_pointwise() && g.c <= 128 && filters >= 8 && g.oh * g.ow >= 16
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
    match isa::active() {
        #[cfg(target_arch = "x86_64")]
        isa::Isa::Avx512 => run::<x86::Avx512, 6>(x, g, kernel, filters, epilogue),
        #[cfg(target_arch = "x86_64")]
        isa::Isa::Avx2 => run::<x86::Avx2, 6>(x, g, kernel, filters, epilogue),
        _ => run::<Portable, 4>(x, g, kernel, filters, epilogue),
    }
}

/// One vector type: `L` lanes of f32. A tile holds two vectors (`2 * L` output channels) for each
/// of its pixels.
///
/// # Safety
/// Implementations may use CPU features; `row` is only called for a level the CPU supports.
unsafe trait Simd: Sync {
    type V: Copy;
    const L: usize;
    /// Runs one output row with this level's features enabled.
    ///
    /// # Safety
    /// The CPU must support the level's features.
    unsafe fn row<const PX: usize>(job: &RowJob, dst: &mut [f32]);
    /// # Safety (all below)
    /// Pointers must be valid for `L` (load/store) or 1 (splat) f32 values.
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn splat(p: *const f32) -> Self::V;
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
}

/// Plain arrays: LLVM vectorizes them for the compile target (SSE on x86-64, NEON on aarch64).
/// Multiply then add, not a fused `mul_add`, which is a slow library call without hardware FMA.
struct Portable;

// SAFETY: uses no CPU feature beyond the compile target's.
unsafe impl Simd for Portable {
    type V = [f32; 8];
    const L: usize = 8;
    unsafe fn row<const PX: usize>(job: &RowJob, dst: &mut [f32]) {
        // SAFETY: no features needed; `row_body`'s pointer contract is upheld by `run`.
        unsafe { row_body::<Self, PX>(job, dst) }
    }
    #[inline(always)]
    unsafe fn zero() -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable values.
        unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 1 readable value.
        [unsafe { *p }; 8]
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| c[i] + a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable values.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], v) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{row_body, RowJob, Simd};
    use std::arch::x86_64::*;

    /// 16-lane zmm vectors.
    pub(super) struct Avx512;
    /// 8-lane ymm vectors.
    pub(super) struct Avx2;

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn row_avx512<const PX: usize>(job: &RowJob, dst: &mut [f32]) {
        // SAFETY: forwarded from `Simd::row`'s contract.
        unsafe { row_body::<Avx512, PX>(job, dst) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2<const PX: usize>(job: &RowJob, dst: &mut [f32]) {
        // SAFETY: forwarded from `Simd::row`'s contract.
        unsafe { row_body::<Avx2, PX>(job, dst) }
    }

    // SAFETY: the intrinsics need avx512f, which `row` enables; callers check the CPU.
    unsafe impl Simd for Avx512 {
        type V = __m512;
        const L: usize = 16;
        unsafe fn row<const PX: usize>(job: &RowJob, dst: &mut [f32]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { row_avx512::<PX>(job, dst) }
        }
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 readable values.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 1 readable value.
            _mm512_set1_ps(unsafe { *p })
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees 16 writable values.
            unsafe { _mm512_storeu_ps(p, v) }
        }
    }

    // SAFETY: the intrinsics need avx2 and fma, which `row` enables; callers check the CPU.
    unsafe impl Simd for Avx2 {
        type V = __m256;
        const L: usize = 8;
        unsafe fn row<const PX: usize>(job: &RowJob, dst: &mut [f32]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { row_avx2::<PX>(job, dst) }
        }
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable values.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 1 readable value.
            _mm256_set1_ps(unsafe { *p })
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees 8 writable values.
            unsafe { _mm256_storeu_ps(p, v) }
        }
    }
}

/// Packs the HWIO kernel as `[channel block][ky][kx][c][block width]`, zero-padding the last
/// block, so a tile reads its kernel vectors contiguously.
fn pack(kernel: &[f32], g: &Conv2dGeometry, filters: usize, width: usize) -> Vec<f32> {
    let taps = g.kh * g.kw * g.c;
    let blocks = filters.div_ceil(width);
    let mut out = vec![0.0f32; blocks * taps * width];
    for b in 0..blocks {
        let f0 = b * width;
        let w = width.min(filters - f0);
        for t in 0..taps {
            out[(b * taps + t) * width..][..w].copy_from_slice(&kernel[t * filters + f0..][..w]);
        }
    }
    out
}

fn run<S: Simd, const PX: usize>(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "input length");
    assert_eq!(kernel.len(), g.patch_len() * filters, "kernel length");
    let packed = pack(kernel, g, filters, 2 * S::L);
    let zeros = vec![0.0f32; g.c];
    let row_len = g.ow * filters;
    if row_len == 0 || g.c == 0 {
        let mut out = super::buffer::zeroed(g.n * g.oh * row_len);
        apply_epilogue_serial(&mut out, filters, epilogue);
        return out;
    }
    let img_len = g.h * g.w * g.c;
    // Every row is stored whole by `S::row`.
    let mut out = super::buffer::overwritten(g.n * g.oh * row_len);
    out.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, dst)| {
            let (img, oy) = (row / g.oh, row % g.oh);
            let job = RowJob {
                src: &x[img * img_len..(img + 1) * img_len],
                zeros: &zeros,
                packed: &packed,
                g,
                filters,
                oy,
            };
            // SAFETY: `S` is the level `isa::active` chose, which never exceeds what
            // `is_x86_feature_detected!` found; `job` satisfies `row_body`'s contract (see there).
            unsafe { S::row::<PX>(&job, dst) };
            apply_epilogue_serial(dst, filters, epilogue);
        });
    out
}

/// What one output row needs.
struct RowJob<'a> {
    /// The row's image (`h * w * c` values).
    src: &'a [f32],
    /// `c` zeros, read in place of padding pixels.
    zeros: &'a [f32],
    /// The kernel from [`pack`] with the level's block width.
    packed: &'a [f32],
    g: &'a Conv2dGeometry,
    filters: usize,
    oy: usize,
}

/// One output row (`ow * filters` values): tiles of `PX` pixels x `2 * S::L` channels accumulated
/// in registers over every tap and input channel.
///
/// # Safety
/// The CPU must support `S`'s features. Every pointer formed is in bounds: pixel pointers come
/// from checked slices of `src` (`c` values each) or point at `zeros` (`c` values), and are read
/// at offsets `< c`; kernel pointers come from checked slices of `packed` holding `c * 2 * S::L`
/// values per tap; tile results go to a local buffer and are copied with checked slices.
#[inline(always)]
unsafe fn row_body<S: Simd, const PX: usize>(job: &RowJob, dst: &mut [f32]) {
    let g = job.g;
    let c = g.c;
    let width = 2 * S::L;
    let ntaps = g.kh * g.kw;
    let blocks = job.filters.div_ceil(width);
    let mut taps: Vec<([*const f32; PX], *const f32)> = Vec::with_capacity(ntaps);
    let mut tile = vec![[0.0f32; 32]; PX];
    assert!(width <= 32);
    // Channel blocks outermost: one block's packed kernel (kh*kw*c*2L values) stays in L2 while
    // the row's tiles stream past it; with pixels outermost, wide layers (288 -> 384 channels)
    // re-read the whole kernel from L3 for every tile and ran at half the speed.
    for b in 0..blocks {
        let mut ox0 = 0;
        while ox0 < g.ow {
            let px = PX.min(g.ow - ox0);
            taps.clear();
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(job.oy, ky) else {
                    continue;
                };
                for kx in 0..g.kw {
                    let pix: [*const f32; PX] = std::array::from_fn(|p| {
                        match (p < px).then(|| g.in_col(ox0 + p, kx)).flatten() {
                            Some(ix) => job.src[(iy * g.w + ix) * c..][..c].as_ptr(),
                            None => job.zeros[..c].as_ptr(),
                        }
                    });
                    let k = &job.packed[(b * ntaps + ky * g.kw + kx) * c * width..][..c * width];
                    taps.push((pix, k.as_ptr()));
                }
            }
            // SAFETY: see this function's contract.
            unsafe { tile_kernel::<S, PX>(&taps, c, &mut tile) };
            let f0 = b * width;
            let w = width.min(job.filters - f0);
            for (p, t) in tile.iter().enumerate().take(px) {
                let o = (ox0 + p) * job.filters + f0;
                dst[o..o + w].copy_from_slice(&t[..w]);
            }
            ox0 += PX;
        }
    }
}

/// The register tile: `PX` pixels x two vectors, summed over `taps` x `c` input channels.
///
/// # Safety
/// As [`row_body`]: each tap's pixel pointers address `c` values, its kernel pointer `c * 2L`.
#[inline(always)]
unsafe fn tile_kernel<S: Simd, const PX: usize>(
    taps: &[([*const f32; PX], *const f32)],
    c: usize,
    out: &mut [[f32; 32]],
) {
    // SAFETY: offsets stay below `c` (pixels) and `c * 2L` (kernel) per the contract; `out` has
    // `PX` rows of 32 >= 2L values.
    unsafe {
        let mut acc0 = [S::zero(); PX];
        let mut acc1 = [S::zero(); PX];
        for (pix, k) in taps {
            for ci in 0..c {
                let k0 = S::load(k.add(ci * 2 * S::L));
                let k1 = S::load(k.add(ci * 2 * S::L + S::L));
                for p in 0..PX {
                    let xv = S::splat(pix[p].add(ci));
                    acc0[p] = S::fma(xv, k0, acc0[p]);
                    acc1[p] = S::fma(xv, k1, acc1[p]);
                }
            }
        }
        for p in 0..PX {
            S::store(out[p].as_mut_ptr(), acc0[p]);
            S::store(out[p].as_mut_ptr().add(S::L), acc1[p]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::conv::Padding;
    use crate::tensor::random;

    /// The definition, in f64.
    fn reference(x: &[f32], g: &Conv2dGeometry, k: &[f32], f: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; g.n * g.oh * g.ow * f];
        for n in 0..g.n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for o in 0..f {
                        let mut s = 0.0f64;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let (Some(iy), Some(ix)) = (g.in_row(oy, ky), g.in_col(ox, kx))
                                else {
                                    continue;
                                };
                                for c in 0..g.c {
                                    let xv = x[((n * g.h + iy) * g.w + ix) * g.c + c];
                                    let kv = k[((ky * g.kw + kx) * g.c + c) * f + o];
                                    s += xv as f64 * kv as f64;
                                }
                            }
                        }
                        out[((n * g.oh + oy) * g.ow + ox) * f + o] = s;
                    }
                }
            }
        }
        out
    }

    /// Odd sizes (pixel and channel tails on every path), strides, both paddings, rectangular
    /// kernels, every ISA this CPU runs; tolerance 1e-5 relative to the sum of |x||k| terms.
    #[test]
    fn matches_f64_reference_on_every_isa() {
        let mut r = random::rng(Some(5));
        let cases = [
            ([2, 11, 13, 3], (3, 3), (2, 2), Padding::Valid, 33),
            ([1, 9, 10, 5], (3, 3), (1, 1), Padding::Same, 17),
            ([3, 7, 8, 1], (2, 3), (1, 2), Padding::Same, 7),
            ([1, 6, 15, 32], (3, 3), (1, 1), Padding::Valid, 40),
            ([2, 8, 7, 4], (1, 5), (1, 1), Padding::Same, 65),
        ];
        for (shape, k, s, p, f) in cases {
            let g = Conv2dGeometry::new(&shape, k, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let kern = random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0);
            let want = reference(&x, &g, &kern, f);
            let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            let ak: Vec<f32> = kern.iter().map(|v| v.abs()).collect();
            let scale = reference(&ax, &g, &ak, f);
            for level in isa::Isa::supported() {
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
}
