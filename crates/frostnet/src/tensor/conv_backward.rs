//! Backward kernels of a spatial 2-D convolution (NHWC input, HWIO kernel): the input gradient
//! and the kernel gradient, each with more than one engine, chosen per geometry by measurement.
//! [`super::conv::conv2d_backward`] is the entry point; the engines are public so that
//! `frostnet-bench conv-bwd` can time each of them on the same shapes.
//!
//! **Input gradient.** `dx[iy] = sum_{oy, ky: oy*s + ky - pad = iy} dy[oy] k[ky]^T` (per axis).
//! - [`DxEngine::Col2im`]: `dy * K^T` into a patch matrix (`pixels x kh*kw*c`), scattered back
//!   with col2im. Works for every geometry, but writes and re-reads a patch matrix `kh*kw` times
//!   the size of `dx` and adds into `dx` one tap at a time.
//! - [`DxEngine::PhasesDirect`] (and `PhasesGemm`): the stride-phase decomposition. The input pixels with `iy % sh = ry`
//!   and `ix % sw = rx` (one "phase") receive gradient from the taps `ky = (ry + pad) mod sh
//!   (+ sh, + 2sh, ..)` only, and along a phase consecutive pixels read consecutive `dy` pixels:
//!   each phase is a *stride-1* convolution of `dy` with the phase's taps, flipped in space, in and
//!   out channels swapped. That runs through the forward engines ([`super::conv::conv2d_forward`],
//!   the direct kernel where it suits the channels, im2col + gemm otherwise), whose output is
//!   then interleaved into `dx` in one pass. For stride 1 there is one phase, `dx` itself.
//!   A phase whose taps would start before `dy`'s first row (strides larger than the kernel with
//!   much padding) cannot be expressed with non-negative padding; those geometries use col2im.
//!
//! **Kernel gradient.** `dk[j][f] = sum_p patch[p][j] dy[p][f]` over every output pixel `p`.
//! - [`DkEngine::Gemm`]: `dy^T * patches` through sgemm's split-k path, the patch matrix packed
//!   on the fly from `x` (never materialized).
//! - [`DkEngine::Direct`]: for few input channels the gemm's `n = kh*kw*c` is tiny (9 for a
//!   1-channel 3x3), so its 32- or 64-wide tiles are mostly padding. Here a register tile of up
//!   to 12 patch columns x 32 filters (AVX-512; 6 x 16 on AVX2) accumulates over a run of
//!   pixels: per pixel two `dy` vector loads and one broadcast per patch column feed `2 * rows`
//!   fused multiply-adds. The patch rows of a run of pixels are formed into an L1-sized buffer.
//!   Pixels are split into a fixed number of groups whose partial sums are added in a fixed
//!   order, so the result does not depend on the thread count.
//!
//! **Measurements** (`frostnet-bench conv-bwd`, Intel Xeon AVX-512, 2 threads, CPU ms per call,
//! engines interleaved, median of 3; the machine was shared, so ±10%). Input gradient, AVX-512
//! (AVX2 in brackets):
//!
//! | layer (batch) | col2im | phases, direct | phases, im2col |
//! |---|---|---|---|
//! | 96->96 3x3/2 at 35 (8) | 5.17 (7.13) | **4.02 (5.29)** | 5.00 (7.19) |
//! | 288->384 3x3/2 at 35 (8) | **39.8 (61.8)** | 43.8 (59.5) | 50.3 (68.0) |
//! | 192->320 3x3/2 at 17 (8) | **4.71 (7.76)** | 6.86 (9.29) | 6.14 (8.99) |
//! | 192->192 3x3/2 at 17 (8) | **2.73 (4.22)** | 3.88 (5.45) | 3.32 (4.87) |
//! | 32->32 3x3 at 149 (8) | 55.2 (69.8) | **25.2 (38.8)** | 53.6 (94.3) |
//! | 32->64 3x3 at 147 (8) | 79.7 (104) | **47.2 (69.6)** | 118 (186) |
//! | 80->192 3x3 at 73 (8) | **93.9 (137)** | 104 (135) | 148 (202) |
//! | 48->64 5x5 at 35 (8) | 17.7 (22.8) | **14.6 (16.2)** | 26.3 (24.5) |
//! | 192->192 7x1 at 17 (8) | 10.5 (15.9) | **9.39 (13.9)** | 11.4 (17.8) |
//! | 448->384 3x3 at 8 (8) | **14.5 (22.2)** | 27.1 (31.7) | 16.0 (24.7) |
//! | 32->64 3x3 at 14 (64, cnn_train) | 5.59 (8.00) | **4.21 (5.60)** | 6.46 (9.28) |
//! | 1->32 3x3 at 28 (64, cnn_train) | **2.58 (2.57)** | 6.75 (5.24) | 11.4 (9.61) |
//!
//! So the phases run through the direct kernel while its input channels (`filters`) are few
//! and its outputs (`c`) fill its channel blocks ([`prefer_phases`]); that is what stride 1
//! already did (the stride-1 rows above were already on the direct path for <= 128 filters),
//! and it now also covers strided layers (96->96 3x3/2: -22%) and 160-192-filter layers with
//! as many channels (7x1 192->192: -11%). Wide layers keep col2im, whose gemm has the long
//! inner dimension: there the phase split only adds passes.
//!
//! Kernel gradient, few input channels (CPU ms per call, AVX-512 / AVX2, interleaved, median
//! of 5): cnn_train's 1->32 3x3 at batch 64: gemm 4.55 / 3.55, direct 1.12 / 1.38 (6 -> 26
//! GFLOP per CPU-second); InceptionV3's stem 3->32 3x3/2 at batch 8: gemm 15.0 / 15.6, direct
//! 5.8 / 7.9 (20 -> 53); `dy` alone is 6.4 and 23 MB there, read once. The patch fill takes the channel count as a constant: with a runtime-length copy per
//! tap the first version ran at 2.28 ms (cnn_train) and 9.7 ms (stem).
//!
//! With 32 input channels the direct engine also wins on AVX-512 (patch rows formed into an
//! L1-sized buffer, median of 3): cnn_train's 32->64 3x3 at batch 64 gemm 4.44, direct 3.62;
//! InceptionV3's 32->32 3x3 at 149 29% less (39.1 -> 28.2), 32->64 at 147 16% less (58.0 ->
//! 49.0). Not on AVX2 (6.29 -> 6.09, 57.6 -> 48.0 but 86.9 -> 91.0), and from 48 channels on
//! the gemm wins on both (48->64 5x5 12.0 vs 13.0, 80->192 77.5 vs 88.8, 288->384 33.4 vs 55.3
//! on AVX-512) ([`prefer_direct_dk`]).

use super::buffer::{self, Buffer};
use super::conv::Conv2dGeometry;
use super::direct_conv::conv2d_direct;
use super::isa::{self, Isa};
use super::matmul::{matmul, Transpose};
use super::{winograd, winograd_1d};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The input-gradient engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DxEngine {
    /// `dy * K^T` into a patch matrix, scattered back by col2im.
    Col2im,
    /// Stride-phase decomposition, each phase through the direct kernel.
    PhasesDirect,
    /// Stride phases, each through im2col + gemm.
    PhasesGemm,
    /// Stride phases, each 3x3 stride-1 phase through Winograd, each `1 x r` / `r x 1` one
    /// through [`winograd_1d`] (the others as `PhasesDirect`).
    PhasesWinograd,
}

impl DxEngine {
    pub const ALL: [DxEngine; 4] = [
        DxEngine::Col2im,
        DxEngine::PhasesDirect,
        DxEngine::PhasesGemm,
        DxEngine::PhasesWinograd,
    ];
}

/// The kernel-gradient engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkEngine {
    /// sgemm with the patch matrix packed from `x` on the fly.
    Gemm,
    /// Register-tiled direct accumulation (AVX2/AVX-512; the gemm elsewhere).
    Direct,
}

impl DkEngine {
    pub const ALL: [DkEngine; 2] = [DkEngine::Gemm, DkEngine::Direct];
}

/// Whether engine `e` can compute the input gradient of `g` (a spatial convolution).
pub fn dx_engine_applies(e: DxEngine, g: &Conv2dGeometry, filters: usize) -> bool {
    match e {
        DxEngine::Col2im => true,
        _ => phase_plan(g, filters).is_some(),
    }
}

/// Whether the phase decomposition (through the direct kernel) beats col2im for this geometry.
/// Measured with `frostnet-bench conv-bwd` (see the module header): the direct kernel wins while
/// its input channels (`filters`) are few and its outputs (`c`) fill its channel blocks.
fn prefer_phases(g: &Conv2dGeometry, filters: usize) -> bool {
    (filters <= 128 && g.c >= 8) || (filters <= 192 && g.c >= 128)
}

/// Whether a 3x3 stride-1 input gradient runs fastest as one Winograd convolution of `dy`
/// (`DxEngine::PhasesWinograd`). Measured with `frostnet-bench conv-bwd` (AMD EPYC Zen 4,
/// 2 threads, batch 8 / 64, CPU ms, engines interleaved, median of 3), direct -> Winograd:
/// AVX-512 cnn_train 32->64 5.38 -> 5.06, 32->32 at 149 34.1 -> 31.3, 32->64 at 147 64.4 ->
/// 53.3, 64->96 at 35 10.35 -> 7.83, 96->96 15.7 -> 10.6; AVX2 7.01 -> 5.97, 39.9 -> 37.6,
/// 14.9 -> 14.2, 20.1 -> 16.5. Where col2im runs today: 80->192 at 73 on AVX2 157 -> 89.6, on
/// AVX-512 146 vs 148 (a tie, left to col2im), 448->384 at 8x8 18.1 vs 18.0. Re-measured in a
/// later session on the same kind of machine, 80->192 at 73 on AVX-512 took 85-100 ms by
/// Winograd against col2im's 122-151 (nine interleaved runs; one outlier pair at 142 vs 216),
/// with and without `matmul::serially`. So: wherever the direct phases ran, and up to 192
/// filters; never at the portable level (Winograd is not used there, see `winograd::prefers`).
///
/// A `1 x r` / `r x 1` stride-1 gradient is one [`winograd_1d`] convolution wherever that module
/// is preferred forward (its phase has `filters` inputs and `c` outputs). Same bench, later
/// session, two interleaved runs, best engine before -> 1-D Winograd: 128->128 1x7 at 17x17
/// (batch 8) AVX-512 5.45 -> 4.91, AVX2 6.29 -> 5.59; 192->192 7x1 AVX-512 10.9-11.1 ->
/// 10.0-11.3, AVX2 11.3-14.0 -> 10.0-12.8; 384->384 1x3 at 8x8 (col2im before) AVX-512
/// 4.6-5.0 -> 4.4-5.0, AVX2 5.1-5.8 -> 4.7-5.5. `inception_finetune` CPU ms per step,
/// interleaved, with the forward too: 3338 -> 3244, 2957 -> 2897.
fn prefer_winograd_dx(isa: Isa, g: &Conv2dGeometry, filters: usize) -> bool {
    let three_by_three = g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1;
    // The stride-1 phase: `dy` in, `filters` channels, `g.c` out, the same kernel shape.
    let one_d = || winograd_1d::prefers(&Conv2dGeometry { c: filters, ..*g }, g.c);
    match isa {
        Isa::Avx512 | Isa::Avx2 => {
            three_by_three && (prefer_phases(g, filters) || filters <= 192) || one_d()
        }
        Isa::Portable => false,
    }
}

/// Whether the direct kernel-gradient engine beats the gemm for this geometry at level `isa`.
/// Measured with `frostnet-bench conv-bwd` (see the module header): always for <= 8 input
/// channels; on AVX-512 also for 32 (its 12 x 32 tile keeps up with the gemm's, and no patch
/// packing for the gemm's B operand), not on AVX2 (6 x 16 tile), nor beyond 32 on either.
fn prefer_direct_dk(isa: Isa, g: &Conv2dGeometry) -> bool {
    g.c <= 8 || (isa == Isa::Avx512 && g.c <= 32)
}

/// The input gradient `(n, h, w, c)` of the spatial convolution `g` from `dy` `(n, oh, ow,
/// filters)`, by the engine this geometry runs fastest with.
pub fn input_grad(dy: &[f32], g: &Conv2dGeometry, kernel: &[f32], filters: usize) -> Vec<f32> {
    // A geometry without a phase plan runs col2im whatever the engine (`input_grad_with`).
    let e = if prefer_winograd_dx(isa::active(), g, filters) {
        DxEngine::PhasesWinograd
    } else if prefer_phases(g, filters) {
        DxEngine::PhasesDirect
    } else {
        DxEngine::Col2im
    };
    input_grad_with(e, dy, g, kernel, filters)
}

/// [`input_grad`] by engine `e`; a phase engine that does not apply (see [`dx_engine_applies`])
/// runs col2im.
pub fn input_grad_with(
    e: DxEngine,
    dy: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
) -> Vec<f32> {
    assert!(
        dy.len() >= g.n * g.oh * g.ow * filters && kernel.len() >= g.patch_len() * filters,
        "conv2d input gradient: gradient or kernel shorter than the geometry"
    );
    match (e, phase_plan(g, filters)) {
        (DxEngine::Col2im, _) | (_, None) => input_grad_col2im(dy, g, kernel, filters),
        (e, Some(plan)) => input_grad_phases(e, dy, g, kernel, filters, &plan),
    }
}

/// Adds the kernel gradient of the spatial convolution `g` to `dk` (HWIO), by the engine this
/// geometry runs fastest with.
pub fn kernel_grad(x: &[f32], g: &Conv2dGeometry, filters: usize, dy: &[f32], dk: &mut [f32]) {
    let e = if prefer_direct_dk(isa::active(), g) {
        DkEngine::Direct
    } else {
        DkEngine::Gemm
    };
    kernel_grad_with(e, x, g, filters, dy, dk)
}

/// [`kernel_grad`] by engine `e`.
pub fn kernel_grad_with(
    e: DkEngine,
    x: &[f32],
    g: &Conv2dGeometry,
    filters: usize,
    dy: &[f32],
    dk: &mut [f32],
) {
    let plen = g.patch_len();
    assert!(
        x.len() >= g.n * g.h * g.w * g.c && dy.len() >= g.n * g.oh * g.ow * filters,
        "conv2d_backward: input or gradient shorter than the geometry"
    );
    assert!(
        dk.len() >= plen * filters,
        "conv2d_backward: kernel gradient too short"
    );
    match (e, isa::active()) {
        #[cfg(target_arch = "x86_64")]
        (DkEngine::Direct, Isa::Avx512) => direct_dk::run::<x86::Avx512>(x, g, filters, dy, dk),
        #[cfg(target_arch = "x86_64")]
        (DkEngine::Direct, Isa::Avx2) => direct_dk::run::<x86::Avx2>(x, g, filters, dy, dk),
        _ => kernel_grad_gemm(x, g, filters, dy, dk),
    }
}

// ---------------------------------------------------------------------------------------------
// Input gradient by col2im.

/// How many images to process at once so the patch buffer stays near 16 MiB.
fn chunk_images(g: &Conv2dGeometry) -> usize {
    let per_image = g.oh * g.ow * g.patch_len() * 4;
    (16 << 20) / per_image.max(1)
}

fn input_grad_col2im(dy: &[f32], g: &Conv2dGeometry, kernel: &[f32], filters: usize) -> Vec<f32> {
    let rows_per_img = g.oh * g.ow;
    let plen = g.patch_len();
    let mut dx = buffer::zeroed(g.n * g.h * g.w * g.c);
    let chunk = chunk_images(g).clamp(1, g.n.max(1));
    let mut col = Buffer(buffer::overwritten(chunk * rows_per_img * plen));
    let mut first = 0;
    while first < g.n {
        let imgs = chunk.min(g.n - first);
        let m = imgs * rows_per_img;
        let dy_chunk = &dy[first * rows_per_img * filters..(first + imgs) * rows_per_img * filters];
        matmul(
            dy_chunk,
            Transpose::No,
            kernel,
            Transpose::Yes,
            &mut col,
            m,
            filters,
            plen,
            false,
        );
        col2im(&col, g, first, imgs, &mut dx);
        first += imgs;
    }
    dx
}

/// Scatters `col` gradients back into `dx` for images starting at `first` (adds).
fn col2im(dcol: &[f32], g: &Conv2dGeometry, first: usize, images: usize, dx: &mut [f32]) {
    let plen = g.patch_len();
    let img_len = g.h * g.w * g.c;
    dx[first * img_len..(first + images) * img_len]
        .par_chunks_mut(img_len)
        .enumerate()
        .for_each(|(i, dst)| {
            for oy in 0..g.oh {
                for ky in 0..g.kh {
                    let Some(iy) = g.in_row(oy, ky) else { continue };
                    for ox in 0..g.ow {
                        let row = (i * g.oh + oy) * g.ow + ox;
                        let patch = &dcol[row * plen..(row + 1) * plen];
                        for kx in 0..g.kw {
                            let Some(ix) = g.in_col(ox, kx) else { continue };
                            let o = (iy * g.w + ix) * g.c;
                            let s = (ky * g.kw + kx) * g.c;
                            for (d, v) in dst[o..o + g.c].iter_mut().zip(&patch[s..s + g.c]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Input gradient by stride phases.

/// One axis of one phase: input positions `r, r + s, ..` (`len` of them) receive gradient from
/// the taps `k0, k0 + s, ..` (`taps` of them); as a stride-1 convolution over `dy` with the taps
/// flipped, its padding before is `pad`.
#[derive(Clone, Copy, Debug)]
struct PhaseAxis {
    len: usize,
    k0: usize,
    taps: usize,
    pad: usize,
}

/// The phase of input positions `r (mod s)` along an axis of `input` positions, kernel `k`,
/// padding before `pad`; `None` if it cannot be a stride-1 convolution with padding >= 0.
fn phase_axis(r: usize, s: usize, pad: usize, k: usize, input: usize) -> Option<PhaseAxis> {
    let len = (input - r).div_ceil(s);
    let k0 = (r + pad) % s;
    let taps = if k0 < k { (k - k0).div_ceil(s) } else { 0 };
    if taps == 0 {
        return Some(PhaseAxis {
            len,
            k0,
            taps,
            pad: 0,
        });
    }
    // Input position r + s*p takes tap k0 + s*j from output p + q - j, q = (r + pad - k0) / s;
    // with the taps flipped (j' = taps - 1 - j) that is output p + j' - (taps - 1 - q).
    let q = (r + pad) / s;
    let pad = (taps - 1).checked_sub(q)?;
    Some(PhaseAxis { len, k0, taps, pad })
}

/// Every phase of `g`'s input (rows then columns), or `None` if one of them is not a stride-1
/// convolution with non-negative padding (then col2im runs).
fn phase_plan(g: &Conv2dGeometry, _filters: usize) -> Option<Vec<(PhaseAxis, PhaseAxis)>> {
    if g.h == 0 || g.w == 0 {
        return None;
    }
    let rows: Option<Vec<_>> = (0..g.sh.min(g.h))
        .map(|r| phase_axis(r, g.sh, g.pad_top, g.kh, g.h))
        .collect();
    let cols: Option<Vec<_>> = (0..g.sw.min(g.w))
        .map(|r| phase_axis(r, g.sw, g.pad_left, g.kw, g.w))
        .collect();
    let (rows, cols) = (rows?, cols?);
    Some(
        rows.iter()
            .flat_map(|&a| cols.iter().map(move |&b| (a, b)))
            .collect(),
    )
}

/// The phase's taps of the HWIO kernel, flipped in space, in and out channels swapped: the HWIO
/// kernel (`taps_y x taps_x x filters x c`) of the phase's stride-1 convolution over `dy`.
fn phase_kernel(
    kernel: &[f32],
    g: &Conv2dGeometry,
    filters: usize,
    (ay, ax): (PhaseAxis, PhaseAxis),
) -> Buffer {
    let c = g.c;
    let mut out = buffer::take(ay.taps * ax.taps * filters * c);
    for j in 0..ay.taps {
        let ky = ay.k0 + g.sh * (ay.taps - 1 - j);
        for i in 0..ax.taps {
            let kx = ax.k0 + g.sw * (ax.taps - 1 - i);
            let src = &kernel[(ky * g.kw + kx) * c * filters..][..c * filters];
            for f in 0..filters {
                out.extend((0..c).map(|ch| src[ch * filters + f]));
            }
        }
    }
    Buffer(out)
}

fn input_grad_phases(
    e: DxEngine,
    dy: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    plan: &[(PhaseAxis, PhaseAxis)],
) -> Vec<f32> {
    // Each phase's result: its values `(n, rows, cols, c)` or `None` for a phase no tap reaches.
    let mut results: Vec<Option<(Buffer, usize, usize)>> = Vec::with_capacity(plan.len());
    for &(ay, ax) in plan {
        if ay.taps == 0 || ax.taps == 0 {
            results.push(None);
            continue;
        }
        let k = phase_kernel(kernel, g, filters, (ay, ax));
        if ay.taps == 1 && ax.taps == 1 {
            // One tap (pad 0): a plain matmul over `dy`'s pixels, which cover the phase's first
            // `oh x ow` positions; the others (if any) read only padding.
            let mut out = buffer::overwritten(g.n * g.oh * g.ow * g.c);
            let m = g.n * g.oh * g.ow;
            matmul(
                dy,
                Transpose::No,
                &k,
                Transpose::No,
                &mut out,
                m,
                filters,
                g.c,
                false,
            );
            results.push(Some((Buffer(out), g.oh, g.ow)));
            continue;
        }
        let pg = Conv2dGeometry {
            n: g.n,
            h: g.oh,
            w: g.ow,
            c: filters,
            kh: ay.taps,
            kw: ax.taps,
            sh: 1,
            sw: 1,
            oh: ay.len,
            ow: ax.len,
            pad_top: ay.pad,
            pad_left: ax.pad,
        };
        let dy = &dy[..g.n * g.oh * g.ow * filters];
        let out = match e {
            DxEngine::PhasesGemm => super::conv::conv2d_forward_im2col(dy, &pg, &k, g.c, &[]),
            DxEngine::PhasesWinograd if winograd::applicable(&pg) => {
                winograd::conv2d(dy, &pg, &k, g.c, &[])
            }
            DxEngine::PhasesWinograd if winograd_1d::scheme(&pg).is_some() => {
                winograd_1d::conv2d(dy, &pg, &k, g.c, &[])
            }
            _ => conv2d_direct(dy, &pg, &k, g.c, &[]),
        };
        results.push(Some((Buffer(out), ay.len, ax.len)));
    }
    if let [Some((_, rows, cols))] = results.as_slice() {
        if (*rows, *cols) == (g.h, g.w) {
            return results
                .pop()
                .flatten()
                .map(|mut r| std::mem::take(&mut r.0 .0))
                .unwrap_or_default();
        }
    }
    // Interleave the phases into `dx`, one input row at a time.
    let (rs, cs) = (g.sh.min(g.h), g.sw.min(g.w));
    let c = g.c;
    let row_len = g.w * c;
    let fill = |start: usize, dst: &mut [MaybeUninit<f32>]| {
        for (i, drow) in dst.chunks_exact_mut(row_len).enumerate() {
            let row = start / row_len + i;
            let (img, iy) = (row / g.h, row % g.h);
            let (ry, py) = (iy % g.sh, iy / g.sh);
            for (ix, d) in drow.chunks_exact_mut(c).enumerate() {
                let (rx, px) = (ix % g.sw, ix / g.sw);
                let src = match &results[ry * cs + rx] {
                    Some((v, rows, cols)) if py < *rows && px < *cols => {
                        Some(&v[((img * rows + py) * cols + px) * c..][..c])
                    }
                    _ => None,
                };
                match src {
                    Some(s) => d.iter_mut().zip(s).for_each(|(d, &s)| {
                        d.write(s);
                    }),
                    None => d.iter_mut().for_each(|d| {
                        d.write(0.0);
                    }),
                }
            }
        }
    };
    debug_assert_eq!(results.len(), rs * cs);
    let n = g.n * g.h * row_len;
    let block = (super::PAR_THRESHOLD / row_len.max(1)).max(1) * row_len;
    // SAFETY: blocks are whole rows of `row_len` values (`block` is a multiple of it and so is
    // `n`), and `fill` writes every value of every row it is given.
    unsafe { super::build_vec(n, block, fill) }
}

// ---------------------------------------------------------------------------------------------
// Kernel gradient by gemm.

/// Adds the kernel gradient of a spatial convolution to `dk` (HWIO): `dk[j][f] += sum_p
/// patches[p][j] * dy[p][f]` over every output pixel `p` of the batch. Computed transposed, as
/// `dy^T (filters x pixels) * patches (pixels x plen)`, so the patch matrix is the packed `B`
/// operand formed block by block straight from `x` (no im2col buffer: that copy and its
/// re-read cost 2-4x the arithmetic on InceptionV3's stem), split over pixels across threads.
fn kernel_grad_gemm(x: &[f32], g: &Conv2dGeometry, filters: usize, dy: &[f32], dk: &mut [f32]) {
    use super::sgemm::{sgemm_split_k, Patches, View};
    let plen = g.patch_len();
    let pixels = g.n * g.oh * g.ow;
    // Overwritten by the product.
    let mut t = Buffer(buffer::overwritten(filters * plen));
    let a = View {
        data: dy,
        rs: 1,
        cs: filters,
    };
    let b = Patches { x, g };
    sgemm_split_k(
        super::isa::active(),
        filters,
        plen,
        pixels,
        a,
        &b,
        &mut t,
        false,
    );
    for (j, row) in dk[..plen * filters].chunks_exact_mut(filters).enumerate() {
        for (f, d) in row.iter_mut().enumerate() {
            *d += t[f * plen + j];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel gradient by direct accumulation.

/// A level's entry point and tile height.
///
/// # Safety
/// Implementations may use CPU features; [`Simd::chunk`] enables them and is only called for a
/// level the CPU supports; the vector operations are only inlined into it.
#[cfg(target_arch = "x86_64")]
unsafe trait Simd: super::simd::Vector + Sync {
    /// Patch columns per register tile (the tile is `ROWS x 2L`).
    const ROWS: usize;
    /// Runs [`direct_dk::chunk_body`] with this level's features enabled.
    ///
    /// # Safety
    /// The CPU supports the level; the job satisfies `chunk_body`'s contract.
    unsafe fn chunk(job: &direct_dk::Job, p0: usize, p1: usize, acc: &mut [f32], buf: &mut [f32]);
}

#[cfg(target_arch = "x86_64")]
mod direct_dk {
    use super::{Conv2dGeometry, Simd};
    use rayon::prelude::*;

    /// Pixels whose patch rows are formed at once, at most (fewer for long patch rows, so the
    /// buffer stays within [`RUN_FLOATS`]).
    const RUN: usize = 128;
    /// Patch-buffer size aimed at (32 KiB: L1).
    const RUN_FLOATS: usize = 8192;
    /// At most this many pixel groups (each with its own partial kernel gradient).
    const GROUPS: usize = 32;
    /// Pixels per group at least (below, fewer groups).
    const GROUP_MIN: usize = 2048;

    /// What every chunk needs.
    pub(super) struct Job<'a> {
        pub x: &'a [f32],
        pub g: &'a Conv2dGeometry,
        pub dy: &'a [f32],
        pub filters: usize,
        /// Patch columns padded to whole tiles: `row_blocks * rows`.
        pub plen_pad: usize,
        /// Patch columns per tile (<= `S::ROWS`) and how many tiles cover a patch row.
        pub rows: usize,
        pub row_blocks: usize,
    }

    pub(super) fn run<S: Simd>(
        x: &[f32],
        g: &Conv2dGeometry,
        filters: usize,
        dy: &[f32],
        dk: &mut [f32],
    ) {
        let plen = g.patch_len();
        let pixels = g.n * g.oh * g.ow;
        if plen == 0 || filters == 0 || pixels == 0 {
            return;
        }
        let width = 2 * S::L;
        let fblocks = filters.div_ceil(width);
        let row_blocks = plen.div_ceil(S::ROWS);
        let rows = plen.div_ceil(row_blocks);
        let plen_pad = rows * row_blocks;
        let job = Job {
            x,
            g,
            dy,
            filters,
            plen_pad,
            rows,
            row_blocks,
        };
        let part = fblocks * plen_pad * width;
        let groups = (pixels / GROUP_MIN).clamp(1, GROUPS);
        let mut partial = vec![0.0f32; groups * part];
        let work = |(i, acc): (usize, &mut [f32])| {
            let (p0, p1) = (i * pixels / groups, (i + 1) * pixels / groups);
            let mut buf = vec![0.0f32; RUN * plen_pad + RUN * width];
            let run = (RUN_FLOATS / plen_pad).clamp(8, RUN);
            let mut p = p0;
            while p < p1 {
                let q = (p + run).min(p1);
                // SAFETY: `S` is the level `isa::active` chose (the caller matched on it), never
                // wider than the CPU; `job`, the range and the buffers satisfy `chunk_body`.
                unsafe { S::chunk(&job, p, q, acc, &mut buf) };
                p = q;
            }
        };
        if groups > 1 {
            partial.par_chunks_mut(part).enumerate().for_each(work);
        } else {
            work((0, &mut partial));
        }
        let (first, rest) = partial.split_at_mut(part);
        for p in rest.chunks_exact(part) {
            first.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        for (j, row) in dk[..plen * filters].chunks_exact_mut(filters).enumerate() {
            for (f, d) in row.iter_mut().enumerate() {
                let (b, l) = (f / width, f % width);
                *d += first[(b * plen_pad + j) * width + l];
            }
        }
    }

    /// Fills the patch rows of pixels `p0..p0 + npix` into `patch` (rows of `plen_pad` values):
    /// tap by tap over each run of pixels within one output row, the padding (and the columns
    /// past `plen`) zero. `C` is the channel count, or 0 for "read it from the geometry".
    #[inline(always)]
    fn fill_patches<const C: usize>(job: &Job, p0: usize, npix: usize, patch: &mut [f32]) {
        let g = job.g;
        let c = if C == 0 { g.c } else { C };
        let pp = job.plen_pad;
        let plen = g.patch_len();
        let per_img = g.oh * g.ow;
        let mut i = 0;
        while i < npix {
            let q = p0 + i;
            let (img, rem) = (q / per_img, q % per_img);
            let (oy, ox0) = (rem / g.ow, rem % g.ow);
            let seg = (g.ow - ox0).min(npix - i);
            let rows = &mut patch[i * pp..(i + seg) * pp];
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(oy, ky) else {
                    for row in rows.chunks_exact_mut(pp) {
                        row[ky * g.kw * c..(ky + 1) * g.kw * c].fill(0.0);
                    }
                    continue;
                };
                let xrow = &job.x[(img * g.h + iy) * g.w * c..][..g.w * c];
                for kx in 0..g.kw {
                    let col = (ky * g.kw + kx) * c;
                    // Outputs whose tap `kx` lands inside the row: 0 <= ox*sw + kx - pad < w,
                    // as positions `t` in this run of the row.
                    let lo = g.pad_left.saturating_sub(kx).div_ceil(g.sw);
                    let hi = (g.w + g.pad_left).saturating_sub(kx).div_ceil(g.sw);
                    let tlo = lo.saturating_sub(ox0).min(seg);
                    let thi = hi.saturating_sub(ox0).clamp(tlo, seg);
                    for (t, row) in rows.chunks_exact_mut(pp).enumerate() {
                        if t < tlo || t >= thi {
                            row[col..col + c].fill(0.0);
                        }
                    }
                    if tlo == thi {
                        continue;
                    }
                    let ix0 = (ox0 + tlo) * g.sw + kx - g.pad_left;
                    let srcs = xrow[ix0 * c..].chunks(g.sw * c);
                    let dsts = rows[tlo * pp..thi * pp].chunks_exact_mut(pp);
                    for (row, src) in dsts.zip(srcs) {
                        if C == 0 {
                            row[col..col + c].copy_from_slice(&src[..c]);
                        } else {
                            row[col..col + C].copy_from_slice(&src[..C]);
                        }
                    }
                }
            }
            for row in rows.chunks_exact_mut(pp) {
                row[plen..].fill(0.0);
            }
            i += seg;
        }
    }

    /// Accumulates pixels `p0..p1` (at most `RUN`) into `acc` (`[filter block][plen_pad][2L]`).
    ///
    /// # Safety
    /// The CPU supports `S`. `job.x`, `job.dy` hold the geometry's input and gradient (checked by
    /// the caller), `p1 - p0 <= RUN`, `p1 <= pixels`, `acc` holds `fblocks * plen_pad * 2L` and
    /// `buf` `RUN * (plen_pad + 2L)` values.
    #[inline(always)]
    pub(super) unsafe fn chunk_body<S: Simd>(
        job: &Job,
        p0: usize,
        p1: usize,
        acc: &mut [f32],
        buf: &mut [f32],
    ) {
        let g = job.g;
        let (c, f, pp) = (g.c, job.filters, job.plen_pad);
        let width = 2 * S::L;
        let npix = p1 - p0;
        let (patch, dbuf) = buf.split_at_mut(RUN * pp);
        // The patch rows of the run (zero in the padding and in the padded columns), with the
        // channel count a constant for the few-channel layers this engine is for: a
        // runtime-length copy of 1-3 values per tap is a library call, and made the fill cost
        // more than the arithmetic.
        match c {
            1 => fill_patches::<1>(job, p0, npix, patch),
            2 => fill_patches::<2>(job, p0, npix, patch),
            3 => fill_patches::<3>(job, p0, npix, patch),
            4 => fill_patches::<4>(job, p0, npix, patch),
            8 => fill_patches::<8>(job, p0, npix, patch),
            _ => fill_patches::<0>(job, p0, npix, patch),
        }
        let fblocks = f.div_ceil(width);
        for b in 0..fblocks {
            let f0 = b * width;
            let fw = width.min(f - f0);
            // dy of the run for this filter block: in place when whole, else zero-padded.
            let (dptr, dstride) = if fw == width {
                (job.dy[p0 * f + f0..].as_ptr(), f)
            } else {
                for (i, d) in dbuf.chunks_exact_mut(width).take(npix).enumerate() {
                    d[..fw].copy_from_slice(&job.dy[(p0 + i) * f + f0..][..fw]);
                    d[fw..].fill(0.0);
                }
                (dbuf.as_ptr(), width)
            };
            for rb in 0..job.row_blocks {
                let j0 = rb * job.rows;
                let a = &mut acc[(b * pp + j0) * width..][..job.rows * width];
                // SAFETY: the patch buffer holds npix rows of `pp >= j0 + rows` values; `dptr`
                // addresses npix pixels at stride `dstride` with `width` values each (whole
                // blocks lie inside `dy`: f0 + width <= f; the partial one is in `dbuf`); `a`
                // holds `rows * width` values.
                unsafe {
                    super::dispatch_rows::<S>(
                        job.rows,
                        patch[j0..].as_ptr(),
                        pp,
                        dptr,
                        dstride,
                        npix,
                        a.as_mut_ptr(),
                    )
                };
            }
        }
    }
}

/// Runs [`dk_tile`] with `rows` (1..=12) as a constant.
///
/// # Safety
/// As [`dk_tile`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dispatch_rows<S: Simd>(
    rows: usize,
    patch: *const f32,
    pstride: usize,
    dy: *const f32,
    dstride: usize,
    npix: usize,
    acc: *mut f32,
) {
    macro_rules! arms {
        ($($r:literal)*) => {
            match rows {
                // SAFETY: forwarded from this function's contract.
                $($r => unsafe { dk_tile::<S, $r>(patch, pstride, dy, dstride, npix, acc) },)*
                _ => unreachable!("tile rows are 1..=12"),
            }
        };
    }
    arms!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// The register tile: patch columns `0..R` (at `patch + p * pstride + r`) x `2L` filters (at
/// `dy + p * dstride`), summed over `npix` pixels and added into `acc` (`R x 2L`, row-major).
///
/// # Safety
/// The CPU supports `S`; the pointers are valid for those reads and writes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dk_tile<S: Simd, const R: usize>(
    patch: *const f32,
    pstride: usize,
    dy: *const f32,
    dstride: usize,
    npix: usize,
    acc: *mut f32,
) {
    // SAFETY: per the contract.
    unsafe {
        let mut a = [[S::zero(); 2]; R];
        let (mut pp, mut dp) = (patch, dy);
        for _ in 0..npix {
            let d0 = S::load(dp);
            let d1 = S::load(dp.add(S::L));
            for (r, row) in a.iter_mut().enumerate() {
                let v = S::splat(pp.add(r));
                row[0] = S::fma(v, d0, row[0]);
                row[1] = S::fma(v, d1, row[1]);
            }
            pp = pp.add(pstride);
            dp = dp.add(dstride);
        }
        for (r, row) in a.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let q = acc.add(r * 2 * S::L + v * S::L);
                S::store(q, S::add(S::load(q), x));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::direct_dk::{chunk_body, Job};
    use super::Simd;
    pub(super) use crate::tensor::simd::{Avx2, Avx512};

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn chunk_avx512(job: &Job, p0: usize, p1: usize, acc: &mut [f32], buf: &mut [f32]) {
        // SAFETY: forwarded from `Simd::chunk`'s contract.
        unsafe { chunk_body::<Avx512>(job, p0, p1, acc, buf) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn chunk_avx2(job: &Job, p0: usize, p1: usize, acc: &mut [f32], buf: &mut [f32]) {
        // SAFETY: forwarded from `Simd::chunk`'s contract.
        unsafe { chunk_body::<Avx2>(job, p0, p1, acc, buf) }
    }

    // SAFETY: the intrinsics need avx512f, enabled by `chunk_avx512`, the only function they
    // are inlined into; callers check the CPU.
    unsafe impl Simd for Avx512 {
        const ROWS: usize = 12;
        unsafe fn chunk(job: &Job, p0: usize, p1: usize, acc: &mut [f32], buf: &mut [f32]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { chunk_avx512(job, p0, p1, acc, buf) }
        }
    }

    // SAFETY: the intrinsics need avx2 and fma, enabled by `chunk_avx2`, the only function they
    // are inlined into; callers check the CPU.
    unsafe impl Simd for Avx2 {
        const ROWS: usize = 6;
        unsafe fn chunk(job: &Job, p0: usize, p1: usize, acc: &mut [f32], buf: &mut [f32]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { chunk_avx2(job, p0, p1, acc, buf) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::conv::Padding;
    use crate::tensor::random;

    fn check(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>), start: f64) {
        assert_eq!(got.len(), want.0.len(), "{what}: length");
        for (i, &v) in got.iter().enumerate() {
            let w = want.0[i] + start;
            let err = (v as f64 - w).abs();
            assert!(
                err <= 1e-5 * (want.1[i] + start.abs()) + 1e-30,
                "{what}[{i}]: {v} vs {w}"
            );
        }
    }

    /// (input NHWC, kernel, strides, padding, filters): odd sizes; strides 1, 2, 3 and mixed;
    /// both paddings; kernels even, odd, rectangular and larger than the stride or not; channel
    /// counts around the vector widths; geometries with phases no tap reaches (1x1/2), with a
    /// one-tap phase longer than `dy` (2x2/2 valid on an odd input) and with a phase that needs
    /// negative padding (3x3/3 same, col2im).
    type Case = ([usize; 4], (usize, usize), (usize, usize), Padding, usize);
    const CASES: [Case; 20] = [
        ([2, 9, 11, 5], (3, 3), (1, 1), Padding::Same, 17),
        // 3x3 stride 1, valid: the input gradient is a full convolution (phase padding 2).
        ([2, 10, 9, 6], (3, 3), (1, 1), Padding::Valid, 11),
        ([2, 9, 7, 12], (3, 3), (2, 2), Padding::Same, 12),
        ([1, 11, 10, 9], (3, 3), (2, 2), Padding::Valid, 20),
        ([2, 10, 9, 4], (5, 5), (2, 1), Padding::Valid, 8),
        ([1, 9, 13, 33], (2, 2), (2, 2), Padding::Valid, 7),
        ([2, 7, 8, 10], (1, 1), (2, 2), Padding::Valid, 9),
        ([1, 11, 10, 6], (3, 3), (3, 3), Padding::Same, 11),
        ([1, 12, 9, 16], (4, 3), (3, 2), Padding::Same, 40),
        ([2, 9, 8, 7], (1, 7), (1, 1), Padding::Same, 10),
        ([1, 11, 6, 5], (7, 1), (1, 1), Padding::Valid, 9),
        ([2, 5, 7, 6], (3, 1), (1, 1), Padding::Same, 3),
        // Wide enough that `input_grad` picks the 1-D Winograd phase.
        ([1, 17, 16, 130], (7, 1), (1, 1), Padding::Same, 128),
        ([1, 13, 12, 130], (3, 3), (2, 2), Padding::Valid, 19),
        ([1, 7, 9, 3], (3, 3), (1, 1), Padding::Same, 33),
        ([2, 15, 13, 1], (3, 3), (1, 1), Padding::Same, 32),
        ([1, 21, 19, 3], (3, 3), (2, 2), Padding::Valid, 35),
        ([3, 9, 11, 8], (5, 5), (1, 1), Padding::Same, 70),
        ([2, 8, 9, 5], (7, 7), (2, 2), Padding::Same, 16),
        // Enough pixels for the kernel gradient to split into several groups.
        ([4, 40, 33, 2], (3, 3), (1, 1), Padding::Same, 13),
    ];

    /// Every input-gradient and kernel-gradient engine, forced to every ISA this CPU runs,
    /// against the f64 definition within 1e-5 relative to the sum of |terms|; the kernel
    /// gradient accumulates onto a non-zero start.
    fn every_engine_matches_f64_reference_on_every_isa(levels: Vec<Isa>) {
        let mut r = random::rng(Some(31));
        for (shape, ks, s, p, f) in CASES {
            let g = Conv2dGeometry::new(&shape, ks, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let k = random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0);
            let dy = random::uniform(&mut r, g.n * g.oh * g.ow * f, -1.0, 1.0);
            let (dx_want, dk_want) = crate::tensor::conv::reference::backward(&x, &g, &k, f, &dy);
            for level in levels.clone() {
                isa::with_forced(level, || {
                    let tag = format!("{level} {shape:?} {ks:?} {s:?} {p:?} f={f}");
                    for e in DxEngine::ALL {
                        let dx = input_grad_with(e, &dy, &g, &k, f);
                        check(&format!("{tag} {e:?} dx"), &dx, &dx_want, 0.0);
                    }
                    check(
                        &format!("{tag} auto dx"),
                        &input_grad(&dy, &g, &k, f),
                        &dx_want,
                        0.0,
                    );
                    for e in DkEngine::ALL {
                        let mut dk = vec![0.25f32; k.len()];
                        kernel_grad_with(e, &x, &g, f, &dy, &mut dk);
                        check(&format!("{tag} {e:?} dk"), &dk, &dk_want, 0.25);
                    }
                });
            }
        }
    }
    crate::level_tests!(every_engine_matches_f64_reference_on_every_isa);

    /// The 1-D Winograd phase runs where `winograd_1d` is preferred forward, 3x3 as before.
    fn winograd_dx_choice(levels: Vec<Isa>) {
        let g =
            |shape: [usize; 4], k| Conv2dGeometry::new(&shape, k, (1, 1), Padding::Same).unwrap();
        for level in levels.clone() {
            let fast = level != Isa::Portable;
            let wide = g([1, 17, 16, 130], (7, 1));
            assert_eq!(prefer_winograd_dx(level, &wide, 128), fast, "{level}");
            assert_eq!(
                isa::with_forced(level, || winograd_1d::prefers(
                    &Conv2dGeometry { c: 128, ..wide },
                    130
                )),
                fast
            );
            assert!(!prefer_winograd_dx(level, &g([2, 9, 8, 7], (1, 7)), 10));
            assert!(!prefer_winograd_dx(level, &g([1, 8, 8, 384], (1, 3)), 384));
        }
    }
    crate::level_tests!(winograd_dx_choice);

    /// The phase plan: which geometries decompose, and that the phases cover the input.
    #[test]
    fn phase_plan_covers_the_input_once() {
        for (shape, ks, s, p, f) in CASES {
            let g = Conv2dGeometry::new(&shape, ks, s, p).unwrap();
            let Some(plan) = phase_plan(&g, f) else {
                // Only a stride above the kernel's reach with padding needs col2im here.
                assert_eq!((ks, s), ((3, 3), (3, 3)), "{shape:?} {ks:?} {s:?}");
                continue;
            };
            let rows: usize = plan.iter().step_by(g.sw.min(g.w)).map(|p| p.0.len).sum();
            let cols: usize = plan.iter().take(g.sw.min(g.w)).map(|p| p.1.len).sum();
            assert_eq!((rows, cols), (g.h, g.w), "{shape:?} {ks:?} {s:?}");
            let taps: usize = plan.iter().map(|p| p.0.taps * p.1.taps).sum();
            assert_eq!(taps, g.kh * g.kw, "{shape:?} {ks:?} {s:?}: every tap once");
        }
    }

    /// The kernel gradient does not depend on the thread count (fixed pixel groups).
    #[test]
    #[cfg_attr(
        not(target_arch = "x86_64"),
        ignore = "the direct engine is x86-64's: elsewhere DkEngine::Direct runs the split-k \
                  gemm, whose partial sums are as many as the threads"
    )]
    fn direct_kernel_grad_is_the_same_on_any_thread_count() {
        let g = Conv2dGeometry::new(&[8, 41, 37, 3], (3, 3), (2, 2), Padding::Same).unwrap();
        let mut r = random::rng(Some(5));
        let x = random::uniform(&mut r, 8 * 41 * 37 * 3, -1.0, 1.0);
        let dy = random::uniform(&mut r, g.n * g.oh * g.ow * 24, -1.0, 1.0);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let mut dk = vec![0.0f32; g.patch_len() * 24];
                    kernel_grad_with(DkEngine::Direct, &x, &g, 24, &dy, &mut dk);
                    dk
                })
        };
        assert_eq!(run(1), run(3));
    }
}
