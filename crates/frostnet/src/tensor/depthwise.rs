//! Depthwise 2-D convolution kernels over NHWC tensors (MobileNet's building block): forward,
//! input gradient and kernel gradient.
//!
//! The kernel is Keras's `(kh, kw, c, depth_multiplier)`; output channel `ch * dm + m` comes from
//! input channel `ch`. Each output sums only `kh * kw` products per channel, so there is no gemm;
//! the channels, contiguous in NHWC, are the vector axis.
//!
//! With depth multiplier 1 on AVX-512 or AVX2+FMA the kernels of the `simd` module run
//! (`std::arch` intrinsics, see there): register tiles of 4 pixels x 2 vectors of channels for
//! the forward pass and the input gradient, `kw` taps x 2 vectors accumulated over a row of
//! pixels for the kernel gradient. Elsewhere (the portable level, `depth_multiplier > 1`, kernel
//! gradients of kernels wider than 7) the loops below run: each walks a pixel's channels in
//! blocks of [`BLOCK`] with the block's accumulators kept across the window's taps, as fixed-size
//! arrays for LLVM to vectorize, compiled once per instruction set.
//!
//! Measured with `CONV_BWD_ONLY=dw frostnet-bench conv-bwd` (CPU ms per call, 2 threads,
//! MobileNetV2 / EfficientNetB0 layers at 224x224, `same`; loops -> intrinsics, AVX-512):
//!
//! | layer | batch | forward | input gradient | kernel gradient |
//! |---|---|---|---|---|
//! | 3x3 112x112x32 /1 | 8 | 5.65 -> 1.88 | 6.32 -> 2.59 | 4.85 -> 2.70 |
//! | 3x3 112x112x96 /2 | 8 | 5.84 -> 3.97 | 15.6 -> 7.61 | 8.50 -> 4.46 |
//! | 3x3 56x56x144 /1 | 8 | 5.78 -> 2.05 | 6.82 -> 2.14 | 6.57 -> 2.45 |
//! | 3x3 14x14x576 /1 | 1 | 0.173 -> 0.046 | 0.187 -> 0.046 | 0.191 -> 0.061 |
//! | 3x3 7x7x960 /1 | 8 | 0.598 -> 0.169 | 0.634 -> 0.176 | 0.726 -> 0.244 |
//! | 5x5 56x56x144 /2 | 8 | 3.08 -> 1.83 | 5.63 -> 2.99 | 3.71 -> 1.94 |
//! | 5x5 28x28x240 /1 | 8 | 5.33 -> 1.41 | 5.94 -> 1.33 | 6.01 -> 1.40 |
//! | 5x5 14x14x672 /1 | 1 | 0.455 -> 0.133 | 0.514 -> 0.131 | 0.579 -> 0.149 |
//! | 5x5 7x7x1152 /1 | 8 | 1.37 -> 0.72 | 1.54 -> 0.75 | 2.20 -> 1.04 |
//!
//! The loops ran at 7-16 GFLOP per CPU-second on every level alike (AVX-512 no faster than the
//! portable SSE build: LLVM did not keep the blocks in wide registers), the intrinsics at 22-62
//! (AVX2 20-46); the slowest remaining rows, the stride-2 layers at batch 8, read a 38 MB input.
//!
//! `depth_multiplier > 1` (rare: MobileNets use 1) takes a plain per-channel loop.
//!
//! Work is split over rows (images x output rows, or images x input rows for the input
//! gradient), in parallel above [`PAR_THRESHOLD`]. The kernel gradient sums fixed groups of rows
//! into partial kernels added in a fixed order, so its result does not depend on the thread count
//! or on scheduling.

use super::conv::Conv2dGeometry;
use super::isa::{self, Isa};
use super::PAR_THRESHOLD;
use rayon::prelude::*;

/// Channels per register block: one zmm, two ymm, four xmm.
const BLOCK: usize = 16;

/// Row groups the kernel gradient is split into (at most): enough for any thread count this
/// library targets, few enough that the partial kernels stay small.
const DK_GROUPS: usize = 32;

/// Kernel taps `[k0, k1)` along one axis that land inside the input for output position `o`; the
/// input index of tap `k` is `o * stride + k - pad`.
#[inline(always)]
fn taps(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = o * stride;
    let k0 = pad.saturating_sub(start);
    let k1 = (len + pad).saturating_sub(start).min(k);
    (k0, k1.max(k0))
}

/// Output positions `[o0, o1)` along one axis whose window covers input position `i`; the tap is
/// `i + pad - o * stride`.
#[inline(always)]
fn outs(i: usize, stride: usize, pad: usize, k: usize, olen: usize) -> (usize, usize) {
    let p = i + pad;
    let o0 = (p + 1).saturating_sub(k).div_ceil(stride);
    let o1 = (p / stride + 1).min(olen);
    (o0, o1.max(o0))
}

/// `c + a * b`, fused when the instruction set has FMA (`F`); without it `mul_add` would be a
/// slow library call.
#[inline(always)]
fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        c + a * b
    }
}

/// `acc[i] += a[i] * b[i]` over one block; full blocks have a constant length LLVM unrolls into
/// vector registers.
#[inline(always)]
fn block_madd<const F: bool>(acc: &mut [f32; BLOCK], a: &[f32], b: &[f32], nb: usize) {
    if nb == BLOCK {
        let a: &[f32; BLOCK] = a[..BLOCK].try_into().expect("a full block");
        let b: &[f32; BLOCK] = b[..BLOCK].try_into().expect("a full block");
        for ((s, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *s = madd::<F>(a, b, *s);
        }
    } else {
        for ((s, &a), &b) in acc[..nb].iter_mut().zip(&a[..nb]).zip(&b[..nb]) {
            *s = madd::<F>(a, b, *s);
        }
    }
}

/// Forward for one output row `row` (image `row / oh`, output row `row % oh`).
#[inline(always)]
fn forward_row<const F: bool>(
    x: &[f32],
    g: &Conv2dGeometry,
    k: &[f32],
    dm: usize,
    row: usize,
    out: &mut [f32],
) {
    let (c, oc) = (g.c, g.c * dm);
    let img_len = g.h * g.w * c;
    let (img, oy) = (row / g.oh, row % g.oh);
    let src = &x[img * img_len..(img + 1) * img_len];
    let (ky0, ky1) = taps(oy, g.sh, g.pad_top, g.kh, g.h);
    for ox in 0..g.ow {
        let (kx0, kx1) = taps(ox, g.sw, g.pad_left, g.kw, g.w);
        let dst = &mut out[ox * oc..(ox + 1) * oc];
        let pixel = |ky: usize, kx: usize| {
            let (iy, ix) = (oy * g.sh + ky - g.pad_top, ox * g.sw + kx - g.pad_left);
            (iy * g.w + ix) * c
        };
        if dm == 1 {
            for j0 in (0..oc).step_by(BLOCK) {
                let nb = (oc - j0).min(BLOCK);
                let mut acc = [0.0f32; BLOCK];
                for ky in ky0..ky1 {
                    for kx in kx0..kx1 {
                        let xs = &src[pixel(ky, kx) + j0..][..nb];
                        let ks = &k[(ky * g.kw + kx) * oc + j0..][..nb];
                        block_madd::<F>(&mut acc, xs, ks, nb);
                    }
                }
                dst[j0..j0 + nb].copy_from_slice(&acc[..nb]);
            }
        } else {
            dst.fill(0.0);
            for ky in ky0..ky1 {
                for kx in kx0..kx1 {
                    let xs = &src[pixel(ky, kx)..][..c];
                    let ks = &k[(ky * g.kw + kx) * oc..][..oc];
                    for (ch, &xv) in xs.iter().enumerate() {
                        for m in 0..dm {
                            let j = ch * dm + m;
                            dst[j] = madd::<F>(xv, ks[j], dst[j]);
                        }
                    }
                }
            }
        }
    }
}

/// Input gradient for one input row `row` (image `row / h`, input row `row % h`), gathered from
/// every output whose window covers it, so rows are independent.
#[inline(always)]
fn input_grad_row<const F: bool>(
    dy: &[f32],
    g: &Conv2dGeometry,
    k: &[f32],
    dm: usize,
    row: usize,
    out: &mut [f32],
) {
    let (c, oc) = (g.c, g.c * dm);
    let out_img = g.oh * g.ow * oc;
    let (img, iy) = (row / g.h, row % g.h);
    let gy = &dy[img * out_img..(img + 1) * out_img];
    let (oy0, oy1) = outs(iy, g.sh, g.pad_top, g.kh, g.oh);
    for ix in 0..g.w {
        let (ox0, ox1) = outs(ix, g.sw, g.pad_left, g.kw, g.ow);
        let dst = &mut out[ix * c..(ix + 1) * c];
        // (offset of the output pixel in `gy`, offset of the tap in `k`)
        let at = |oy: usize, ox: usize| {
            let (ky, kx) = (iy + g.pad_top - oy * g.sh, ix + g.pad_left - ox * g.sw);
            ((oy * g.ow + ox) * oc, (ky * g.kw + kx) * oc)
        };
        if dm == 1 {
            for j0 in (0..c).step_by(BLOCK) {
                let nb = (c - j0).min(BLOCK);
                let mut acc = [0.0f32; BLOCK];
                for oy in oy0..oy1 {
                    for ox in ox0..ox1 {
                        let (o, t) = at(oy, ox);
                        block_madd::<F>(&mut acc, &k[t + j0..][..nb], &gy[o + j0..][..nb], nb);
                    }
                }
                dst[j0..j0 + nb].copy_from_slice(&acc[..nb]);
            }
        } else {
            dst.fill(0.0);
            for oy in oy0..oy1 {
                for ox in ox0..ox1 {
                    let (o, t) = at(oy, ox);
                    let (ks, ds) = (&k[t..][..oc], &gy[o..][..oc]);
                    for (ch, dv) in dst.iter_mut().enumerate() {
                        for m in 0..dm {
                            let j = ch * dm + m;
                            *dv = madd::<F>(ks[j], ds[j], *dv);
                        }
                    }
                }
            }
        }
    }
}

/// Adds the kernel gradient of output rows `rows` (over images x output rows) into `acc`
/// (`kh * kw * c * dm`).
#[inline(always)]
fn kernel_grad_rows<const F: bool>(
    x: &[f32],
    g: &Conv2dGeometry,
    dy: &[f32],
    dm: usize,
    rows: (usize, usize),
    acc: &mut [f32],
) {
    let (c, oc) = (g.c, g.c * dm);
    let img_len = g.h * g.w * c;
    let out_img = g.oh * g.ow * oc;
    for row in rows.0..rows.1 {
        let (img, oy) = (row / g.oh, row % g.oh);
        let src = &x[img * img_len..(img + 1) * img_len];
        let gy = &dy[img * out_img..(img + 1) * out_img];
        let (ky0, ky1) = taps(oy, g.sh, g.pad_top, g.kh, g.h);
        for ky in ky0..ky1 {
            let iy = oy * g.sh + ky - g.pad_top;
            for kx in 0..g.kw {
                // Outputs `ox` whose tap `kx` lands inside the row: 0 <= ox*sw + kx - pad < w.
                let ox0 = g.pad_left.saturating_sub(kx).div_ceil(g.sw);
                let ox1 = (g.w + g.pad_left)
                    .saturating_sub(kx)
                    .div_ceil(g.sw)
                    .min(g.ow);
                let tap = &mut acc[(ky * g.kw + kx) * oc..][..oc];
                let px = |ox: usize| (iy * g.w + ox * g.sw + kx - g.pad_left) * c;
                if dm == 1 {
                    for j0 in (0..oc).step_by(BLOCK) {
                        let nb = (oc - j0).min(BLOCK);
                        let mut a = [0.0f32; BLOCK];
                        a[..nb].copy_from_slice(&tap[j0..j0 + nb]);
                        for ox in ox0..ox1 {
                            let xs = &src[px(ox) + j0..][..nb];
                            let ds = &gy[ox * oc + oy * g.ow * oc + j0..][..nb];
                            block_madd::<F>(&mut a, xs, ds, nb);
                        }
                        tap[j0..j0 + nb].copy_from_slice(&a[..nb]);
                    }
                } else {
                    for ox in ox0..ox1 {
                        let xs = &src[px(ox)..][..c];
                        let ds = &gy[(oy * g.ow + ox) * oc..][..oc];
                        for (ch, &xv) in xs.iter().enumerate() {
                            for m in 0..dm {
                                let j = ch * dm + m;
                                tap[j] = madd::<F>(xv, ds[j], tap[j]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Defines `$name(isa, args..)`, which runs `$body::<F>(args..)` compiled for `isa`.
macro_rules! per_isa {
    ($name:ident => $body:ident ( $($arg:ident : $ty:ty),* )) => {
        fn $name(isa: Isa, $($arg: $ty),*) {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => {
                    #[target_feature(enable = "avx512f,avx2,fma")]
                    unsafe fn wide($($arg: $ty),*) {
                        $body::<true>($($arg),*)
                    }
                    // SAFETY: `isa` comes from `isa::active`, which never exceeds what
                    // `isa::detected` found on this CPU, so avx512f, avx2 and fma are present.
                    unsafe { wide($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn wide($($arg: $ty),*) {
                        $body::<true>($($arg),*)
                    }
                    // SAFETY: as above: the CPU was detected to have avx2 and fma.
                    unsafe { wide($($arg),*) }
                }
                _ => $body::<false>($($arg),*),
            }
        }
    };
}

per_isa!(forward_row_isa => forward_row(
    x: &[f32], g: &Conv2dGeometry, k: &[f32], dm: usize, row: usize, out: &mut [f32]
));
per_isa!(input_grad_row_isa => input_grad_row(
    dy: &[f32], g: &Conv2dGeometry, k: &[f32], dm: usize, row: usize, out: &mut [f32]
));
per_isa!(kernel_grad_rows_isa => kernel_grad_rows(
    x: &[f32], g: &Conv2dGeometry, dy: &[f32], dm: usize, rows: (usize, usize), acc: &mut [f32]
));

/// Runs `f(row_index, row)` over `chunk`-sized rows of `out`, in parallel when the work is large.
fn for_rows(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if chunk == 0 {
        return;
    }
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(chunk).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// Depthwise convolution forward: `x` NHWC with `g.c` channels, `kernel` `(kh, kw, c, dm)`.
/// Returns the `(n, oh, ow, c * dm)` output, without bias or activation.
///
/// # Panics
/// If `x` or `kernel` is shorter than `g` and `dm` imply (a caller bug).
pub fn depthwise_forward(x: &[f32], g: &Conv2dGeometry, kernel: &[f32], dm: usize) -> Vec<f32> {
    let isa = isa::active();
    let row_len = g.ow * g.c * dm;
    let mut out = super::buffer::zeroed(g.n * g.oh * row_len);
    for_rows(&mut out, row_len, |row, o| {
        #[cfg(target_arch = "x86_64")]
        if simd::serves(isa, dm) {
            return simd::forward_row(isa, x, g, kernel, row, o);
        }
        forward_row_isa(isa, x, g, kernel, dm, row, o)
    });
    out
}

/// Depthwise convolution input gradient from the output gradient `dy` `(n, oh, ow, c * dm)`:
/// returns `(n, h, w, c)`.
///
/// # Panics
/// If `dy` or `kernel` is shorter than `g` and `dm` imply (a caller bug).
pub fn depthwise_input_grad(dy: &[f32], g: &Conv2dGeometry, kernel: &[f32], dm: usize) -> Vec<f32> {
    let isa = isa::active();
    let row_len = g.w * g.c;
    let mut dx = super::buffer::zeroed(g.n * g.h * row_len);
    for_rows(&mut dx, row_len, |row, d| {
        #[cfg(target_arch = "x86_64")]
        if simd::serves(isa, dm) {
            return simd::input_grad_row(isa, dy, g, kernel, row, d);
        }
        input_grad_row_isa(isa, dy, g, kernel, dm, row, d)
    });
    dx
}

/// Depthwise convolution kernel gradient from the input `x` and the output gradient `dy`:
/// returns `(kh, kw, c, dm)`, summed over the batch. Deterministic: the same for any thread count.
///
/// # Panics
/// If `x` or `dy` is shorter than `g` and `dm` imply (a caller bug).
pub fn depthwise_kernel_grad(x: &[f32], g: &Conv2dGeometry, dy: &[f32], dm: usize) -> Vec<f32> {
    let isa = isa::active();
    let klen = g.kh * g.kw * g.c * dm;
    let rows = g.n * g.oh;
    let groups = rows.clamp(1, DK_GROUPS);
    let span = |i: usize| (i * rows / groups, (i + 1) * rows / groups);
    let mut partial = vec![0.0f32; groups * klen];
    if klen == 0 {
        return partial;
    }
    let run = |i: usize, acc: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if simd::serves(isa, dm) && simd::kernel_grad_rows(isa, x, g, dy, span(i), acc) {
            return;
        }
        kernel_grad_rows_isa(isa, x, g, dy, dm, span(i), acc)
    };
    if rows * g.ow * g.c * dm >= PAR_THRESHOLD {
        partial
            .par_chunks_mut(klen)
            .enumerate()
            .for_each(|(i, a)| run(i, a));
    } else {
        partial
            .chunks_mut(klen)
            .enumerate()
            .for_each(|(i, a)| run(i, a));
    }
    let (first, rest) = partial.split_at_mut(klen);
    for p in rest.chunks(klen) {
        first.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    partial.truncate(klen);
    partial
}

/// The depth-multiplier-1 kernels with `std::arch` intrinsics (AVX-512F or AVX2+FMA).
///
/// Forward and input gradient: a tile of `PX` pixels x two vectors of channels accumulates in
/// registers over the pixel's taps, each kernel vector loaded once per tap for the whole tile;
/// the tile's taps are a list of (input pointer, kernel pointer) pairs built once and reused for
/// every channel block. Interior pixels go four at a time (for the input gradient: four pixels of
/// one stride phase, which read consecutive output-gradient pixels through the same taps);
/// border pixels one at a time with only their valid taps. Kernel gradient: for each output
/// row and kernel row, the `kw` taps x two vectors of channels accumulate over the row's pixels
/// (one gradient load feeds `kw` fused multiply-adds). Channels past the last whole vector run
/// scalar (with FMA).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{outs, taps, Conv2dGeometry, Isa};
    use crate::tensor::simd::{Avx2, Avx512, Vector};

    /// Pixels per interior tile.
    const PX: usize = 4;

    /// Whether these kernels serve `isa` and this geometry (depth multiplier 1; the kernel
    /// gradient also needs `kw <= 7`).
    pub(super) fn serves(isa: Isa, dm: usize) -> bool {
        dm == 1 && matches!(isa, Isa::Avx512 | Isa::Avx2)
    }

    /// One tap of a tile: the input (or output-gradient) pixel of the tile's first pixel, and
    /// the kernel tap, both at channel 0.
    type Tap = (*const f32, *const f32);

    /// Channel block `j..j + NV*L` of a tile: `out[p] = sum over taps in[p] * k`, where pixel `p`
    /// of a tap is at `tap.0 + p * in_stride` and output pixel `p` at `out + p * out_stride`.
    ///
    /// # Safety
    /// The CPU supports `S`; for every tap and `p < PXN`, `tap.0 + p * in_stride + j` and
    /// `tap.1 + j` are valid for `NV * L` reads, `out + p * out_stride + j` for as many writes.
    #[inline(always)]
    unsafe fn block<S: Vector, const PXN: usize, const NV: usize>(
        taps: &[Tap],
        in_stride: usize,
        out: *mut f32,
        out_stride: usize,
        j: usize,
    ) {
        // SAFETY: per the contract.
        unsafe {
            let mut acc = [[S::zero(); NV]; PXN];
            for &(ip, kp) in taps {
                let mut kv = [S::zero(); NV];
                for (v, kv) in kv.iter_mut().enumerate() {
                    *kv = S::load(kp.add(j + v * S::L));
                }
                for (p, row) in acc.iter_mut().enumerate() {
                    for v in 0..NV {
                        let xv = S::load(ip.add(p * in_stride + j + v * S::L));
                        row[v] = S::fma(xv, kv[v], row[v]);
                    }
                }
            }
            for (p, row) in acc.iter().enumerate() {
                for (v, &a) in row.iter().enumerate() {
                    S::store(out.add(p * out_stride + j + v * S::L), a);
                }
            }
        }
    }

    /// Every channel of a tile: vector blocks, then the remaining channels scalar.
    ///
    /// # Safety
    /// As [`block`], for channels `0..c`.
    #[inline(always)]
    unsafe fn tile<S: Vector, const PXN: usize>(
        taps: &[Tap],
        in_stride: usize,
        out: *mut f32,
        out_stride: usize,
        c: usize,
    ) {
        // SAFETY: every block and scalar access stays below channel `c`.
        unsafe {
            let mut j = 0;
            while j + 2 * S::L <= c {
                block::<S, PXN, 2>(taps, in_stride, out, out_stride, j);
                j += 2 * S::L;
            }
            if j + S::L <= c {
                block::<S, PXN, 1>(taps, in_stride, out, out_stride, j);
                j += S::L;
            }
            for p in 0..PXN {
                for ch in j..c {
                    let mut s = 0.0f32;
                    for &(ip, kp) in taps {
                        s = (*ip.add(p * in_stride + ch)).mul_add(*kp.add(ch), s);
                    }
                    *out.add(p * out_stride + ch) = s;
                }
            }
        }
    }

    /// Forward output row `row` (image `row / oh`, output row `row % oh`) into `out`.
    ///
    /// # Safety
    /// The CPU supports `S`.
    #[inline(always)]
    unsafe fn forward_body<S: Vector>(
        x: &[f32],
        g: &Conv2dGeometry,
        k: &[f32],
        row: usize,
        out: &mut [f32],
    ) {
        let c = g.c;
        let img_len = g.h * g.w * c;
        let (img, oy) = (row / g.oh, row % g.oh);
        let src = &x[img * img_len..(img + 1) * img_len];
        let k = &k[..g.kh * g.kw * c];
        let out = &mut out[..g.ow * c];
        if c == 0 {
            return;
        }
        let (ky0, ky1) = taps(oy, g.sh, g.pad_top, g.kh, g.h);
        // Interior outputs: every horizontal tap inside the row.
        let a = g.pad_left.div_ceil(g.sw);
        let b = match (g.w + g.pad_left).checked_sub(g.kw) {
            Some(r) => (r / g.sw + 1).min(g.ow),
            None => 0,
        };
        let mut list: Vec<Tap> = Vec::with_capacity(g.kh * g.kw);
        let mut ox = 0;
        while ox < g.ow {
            let full = ox >= a && ox + PX <= b;
            let (kx0, kx1) = if full {
                (0, g.kw)
            } else {
                taps(ox, g.sw, g.pad_left, g.kw, g.w)
            };
            list.clear();
            for ky in ky0..ky1 {
                let iy = oy * g.sh + ky - g.pad_top;
                for kx in kx0..kx1 {
                    let ix = ox * g.sw + kx - g.pad_left;
                    list.push((
                        src[(iy * g.w + ix) * c..].as_ptr(),
                        k[(ky * g.kw + kx) * c..].as_ptr(),
                    ));
                }
            }
            let dst = out[ox * c..].as_mut_ptr();
            // SAFETY: tap pixels are inside `src` (iy < h, ix < w by `taps`), with `c` channels
            // each; a full tile's pixel p < PX is output ox + p < b, whose taps are inside the
            // row too, at + p * sw * c; kernel taps hold `c` values; output pixels ox + p < ow
            // hold `c` values in `out`.
            unsafe {
                if full {
                    tile::<S, PX>(&list, g.sw * c, dst, c, c);
                } else {
                    tile::<S, 1>(&list, 0, dst, c, c);
                }
            }
            ox += if full { PX } else { 1 };
        }
    }

    /// Input-gradient row `row` (image `row / h`, input row `row % h`) into `out`.
    ///
    /// # Safety
    /// The CPU supports `S`.
    #[inline(always)]
    unsafe fn input_grad_body<S: Vector>(
        dy: &[f32],
        g: &Conv2dGeometry,
        k: &[f32],
        row: usize,
        out: &mut [f32],
    ) {
        let c = g.c;
        let out_img = g.oh * g.ow * c;
        let (img, iy) = (row / g.h, row % g.h);
        let gy = &dy[img * out_img..(img + 1) * out_img];
        let k = &k[..g.kh * g.kw * c];
        let out = &mut out[..g.w * c];
        if c == 0 {
            return;
        }
        let (oy0, oy1) = outs(iy, g.sh, g.pad_top, g.kh, g.oh);
        let mut list: Vec<Tap> = Vec::with_capacity(g.kh * g.kw);
        for rx in 0..g.sw.min(g.w) {
            let mut ix = rx;
            while ix < g.w {
                let (ox0, ox1) = outs(ix, g.sw, g.pad_left, g.kw, g.ow);
                // PX pixels of this phase form a tile when each reads the next output pixels
                // through the same taps.
                let last = ix + (PX - 1) * g.sw;
                let full = last < g.w
                    && ox1 > ox0
                    && outs(last, g.sw, g.pad_left, g.kw, g.ow) == (ox0 + PX - 1, ox1 + PX - 1);
                list.clear();
                for oy in oy0..oy1 {
                    let ky = iy + g.pad_top - oy * g.sh;
                    for ox in ox0..ox1 {
                        let kx = ix + g.pad_left - ox * g.sw;
                        list.push((
                            gy[(oy * g.ow + ox) * c..].as_ptr(),
                            k[(ky * g.kw + kx) * c..].as_ptr(),
                        ));
                    }
                }
                let dst = out[ix * c..].as_mut_ptr();
                // SAFETY: tap pixels (oy < oh, ox < ow by `outs`) are inside `gy` with `c`
                // channels; a full tile's pixel p reads output ox + p < ox1 + p <= ow (checked
                // through `outs` of its last pixel), at + p * c; its output is input pixel
                // ix + p * sw <= last < w, at + p * sw * c; kernel taps hold `c` values.
                unsafe {
                    if full {
                        tile::<S, PX>(&list, c, dst, g.sw * c, c);
                    } else {
                        tile::<S, 1>(&list, 0, dst, c, c);
                    }
                }
                ix += if full { PX * g.sw } else { g.sw };
            }
        }
    }

    /// Kernel-gradient block: channels `j..j + NV*L` of the `KW` taps of one kernel row, summed
    /// over one output row's pixels and added into `acc` (the kernel row, `KW * c` values).
    ///
    /// # Safety
    /// The CPU supports `S`; `xrow` is the input row (`w * c`), `drow` the output-gradient row
    /// (`ow * c`), `j + NV * L <= c`.
    #[inline(always)]
    unsafe fn dk_block<S: Vector, const KW: usize, const NV: usize>(
        g: &Conv2dGeometry,
        xrow: &[f32],
        drow: &[f32],
        j: usize,
        acc: &mut [f32],
    ) {
        let c = g.c;
        assert!(xrow.len() >= g.w * c && drow.len() >= g.ow * c && acc.len() >= KW * c);
        // SAFETY: `ox < ow` and `ix < w` (taps inside the row only), channels below `c`.
        unsafe {
            let mut a = [[S::zero(); NV]; KW];
            for ox in 0..g.ow {
                let (kx0, kx1) = taps(ox, g.sw, g.pad_left, KW, g.w);
                let mut d = [S::zero(); NV];
                for (v, d) in d.iter_mut().enumerate() {
                    *d = S::load(drow.as_ptr().add(ox * c + j + v * S::L));
                }
                for (kx, row) in a.iter_mut().enumerate() {
                    if kx >= kx0 && kx < kx1 {
                        let ix = ox * g.sw + kx - g.pad_left;
                        for v in 0..NV {
                            let xv = S::load(xrow.as_ptr().add(ix * c + j + v * S::L));
                            row[v] = S::fma(xv, d[v], row[v]);
                        }
                    }
                }
            }
            for (kx, row) in a.iter().enumerate() {
                for (v, &s) in row.iter().enumerate() {
                    let p = acc.as_mut_ptr().add(kx * c + j + v * S::L);
                    S::store(p, S::add(S::load(p), s));
                }
            }
        }
    }

    /// Kernel gradient of output rows `rows` added into `acc` (`kh * KW * c`).
    ///
    /// # Safety
    /// The CPU supports `S`; `g.kw == KW`.
    #[inline(always)]
    unsafe fn kernel_grad_body<S: Vector, const KW: usize>(
        x: &[f32],
        g: &Conv2dGeometry,
        dy: &[f32],
        rows: (usize, usize),
        acc: &mut [f32],
    ) {
        let c = g.c;
        let img_len = g.h * g.w * c;
        let out_img = g.oh * g.ow * c;
        for row in rows.0..rows.1 {
            let (img, oy) = (row / g.oh, row % g.oh);
            let (ky0, ky1) = taps(oy, g.sh, g.pad_top, g.kh, g.h);
            let drow = &dy[img * out_img + oy * g.ow * c..][..g.ow * c];
            for ky in ky0..ky1 {
                let iy = oy * g.sh + ky - g.pad_top;
                let xrow = &x[img * img_len + iy * g.w * c..][..g.w * c];
                let kacc = &mut acc[ky * KW * c..(ky + 1) * KW * c];
                let mut j = 0;
                // SAFETY: the blocks stay below channel `c`; the rows have the lengths
                // `dk_block` needs (sliced above).
                unsafe {
                    while j + 2 * S::L <= c {
                        dk_block::<S, KW, 2>(g, xrow, drow, j, kacc);
                        j += 2 * S::L;
                    }
                    if j + S::L <= c {
                        dk_block::<S, KW, 1>(g, xrow, drow, j, kacc);
                        j += S::L;
                    }
                }
                for ox in 0..g.ow {
                    let (kx0, kx1) = taps(ox, g.sw, g.pad_left, KW, g.w);
                    for kx in kx0..kx1 {
                        let ix = ox * g.sw + kx - g.pad_left;
                        for ch in j..c {
                            kacc[kx * c + ch] =
                                xrow[ix * c + ch].mul_add(drow[ox * c + ch], kacc[kx * c + ch]);
                        }
                    }
                }
            }
        }
    }

    /// Defines `$name(isa, ..)`: `$body::<Avx512>` or `$body::<Avx2>` compiled with the
    /// level's features.
    macro_rules! entry {
        ($name:ident => $body:ident $(<$kw:ident>)? ( $($arg:ident : $ty:ty),* )) => {
            pub(super) fn $name$(<const $kw: usize>)?(isa: Isa, $($arg: $ty),*) {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide$(<const $kw: usize>)?($($arg: $ty),*) {
                    // SAFETY: the features are enabled here.
                    unsafe { $body::<Avx512 $(, $kw)?>($($arg),*) }
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow$(<const $kw: usize>)?($($arg: $ty),*) {
                    // SAFETY: the features are enabled here.
                    unsafe { $body::<Avx2 $(, $kw)?>($($arg),*) }
                }
                match isa {
                    // SAFETY: `isa` comes from `isa::active`, never wider than the CPU.
                    Isa::Avx512 => unsafe { wide$(::<$kw>)?($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => unsafe { narrow$(::<$kw>)?($($arg),*) },
                    _ => unreachable!("simd::serves checked the level"),
                }
            }
        };
    }

    entry!(forward_row => forward_body(
        x: &[f32], g: &Conv2dGeometry, k: &[f32], row: usize, out: &mut [f32]
    ));
    entry!(input_grad_row => input_grad_body(
        dy: &[f32], g: &Conv2dGeometry, k: &[f32], row: usize, out: &mut [f32]
    ));
    entry!(kernel_grad_rows_kw => kernel_grad_body<KW>(
        x: &[f32], g: &Conv2dGeometry, dy: &[f32], rows: (usize, usize), acc: &mut [f32]
    ));

    /// The kernel gradient of rows `rows` into `acc`, or `false` (nothing done) for kernels
    /// wider than 7.
    pub(super) fn kernel_grad_rows(
        isa: Isa,
        x: &[f32],
        g: &Conv2dGeometry,
        dy: &[f32],
        rows: (usize, usize),
        acc: &mut [f32],
    ) -> bool {
        match g.kw {
            1 => kernel_grad_rows_kw::<1>(isa, x, g, dy, rows, acc),
            2 => kernel_grad_rows_kw::<2>(isa, x, g, dy, rows, acc),
            3 => kernel_grad_rows_kw::<3>(isa, x, g, dy, rows, acc),
            4 => kernel_grad_rows_kw::<4>(isa, x, g, dy, rows, acc),
            5 => kernel_grad_rows_kw::<5>(isa, x, g, dy, rows, acc),
            6 => kernel_grad_rows_kw::<6>(isa, x, g, dy, rows, acc),
            7 => kernel_grad_rows_kw::<7>(isa, x, g, dy, rows, acc),
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Padding;

    /// `x[i]` in [-1, 1), from a fixed hash so the tests need no RNG.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let h = (i.wrapping_add(seed << 32))
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(29)
                    .wrapping_mul(0xBF58_476D_1CE4_E5B9);
                ((h >> 40) as f64 / (1u64 << 23) as f64 - 1.0) as f32
            })
            .collect()
    }

    /// Plain f64 reference: every (image, output pixel, tap, channel, multiplier) product, routed
    /// to the forward output, the input gradient and the kernel gradient. Each result comes with
    /// the sum of the absolute values of its terms, the scale its rounding error is relative to.
    #[allow(clippy::type_complexity)]
    fn reference(
        x: &[f32],
        g: &Conv2dGeometry,
        k: &[f32],
        dm: usize,
        dy: &[f32],
    ) -> [(Vec<f64>, Vec<f64>); 3] {
        let oc = g.c * dm;
        let mut y = (
            vec![0.0; g.n * g.oh * g.ow * oc],
            vec![0.0; g.n * g.oh * g.ow * oc],
        );
        let mut dx = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let mut dk = (vec![0.0; k.len()], vec![0.0; k.len()]);
        for n in 0..g.n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky) as isize - g.pad_top as isize;
                            let ix = (ox * g.sw + kx) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            for ch in 0..g.c {
                                for m in 0..dm {
                                    let xi = ((n * g.h + iy) * g.w + ix) * g.c + ch;
                                    let ki = ((ky * g.kw + kx) * g.c + ch) * dm + m;
                                    let yi = ((n * g.oh + oy) * g.ow + ox) * oc + ch * dm + m;
                                    let (xv, kv, dv) = (x[xi] as f64, k[ki] as f64, dy[yi] as f64);
                                    y.0[yi] += xv * kv;
                                    y.1[yi] += (xv * kv).abs();
                                    dx.0[xi] += kv * dv;
                                    dx.1[xi] += (kv * dv).abs();
                                    dk.0[ki] += xv * dv;
                                    dk.1[ki] += (xv * dv).abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dk]
    }

    fn assert_close(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>)) {
        assert_eq!(got.len(), want.0.len(), "{what}: length");
        for (i, (&g, (&w, &s))) in got.iter().zip(want.0.iter().zip(&want.1)).enumerate() {
            let err = (g as f64 - w).abs();
            assert!(
                err <= 1e-5 * s.max(1e-30),
                "{what}[{i}]: got {g}, want {w} (error {err:e}, term scale {s})"
            );
        }
    }

    fn matches_f64_reference_at_every_isa(levels: Vec<Isa>) {
        // (n, h, w, c, kernel, strides, padding, dm): odd sizes, channel counts around and
        // between the 16-wide blocks, strides 1 and 2, both paddings, multipliers 1 and 2.
        let cases = [
            (2, 7, 9, 3, (3, 3), (1, 1), Padding::Same, 1),
            (1, 9, 7, 17, (3, 3), (2, 2), Padding::Same, 1),
            (3, 8, 10, 35, (3, 3), (2, 2), Padding::Valid, 1),
            (1, 11, 6, 16, (5, 3), (1, 2), Padding::Same, 1),
            (2, 6, 7, 5, (3, 3), (1, 1), Padding::Valid, 2),
            (1, 9, 9, 19, (3, 2), (2, 1), Padding::Same, 2),
            (2, 5, 4, 33, (1, 1), (2, 2), Padding::Valid, 1),
            (1, 2, 3, 7, (3, 3), (1, 1), Padding::Same, 1),
            // Wide enough rows for the intrinsics kernels' 4-pixel tiles (stride-2 phases too),
            // channel counts with whole 32/16/8-wide blocks plus a scalar rest, 5x5 and 7x7
            // kernels, and a kernel wider than 7 (kernel gradient falls back to the loops).
            (2, 13, 19, 37, (3, 3), (2, 2), Padding::Same, 1),
            (1, 15, 17, 20, (5, 5), (2, 2), Padding::Same, 1),
            (1, 12, 11, 40, (5, 5), (1, 1), Padding::Valid, 1),
            (1, 9, 12, 9, (7, 7), (1, 1), Padding::Same, 1),
            (1, 10, 12, 16, (3, 8), (1, 1), Padding::Same, 1),
            (1, 11, 23, 56, (3, 3), (1, 3), Padding::Valid, 1),
            // Large enough to take the parallel paths.
            (2, 23, 21, 48, (3, 3), (1, 1), Padding::Same, 1),
            (2, 23, 21, 24, (3, 3), (2, 2), Padding::Same, 2),
        ];
        for (case, &(n, h, w, c, ks, st, pad, dm)) in cases.iter().enumerate() {
            let g = Conv2dGeometry::new(&[n, h, w, c], ks, st, pad).unwrap();
            let x = values(n * h * w * c, 1 + case as u64);
            let k = values(ks.0 * ks.1 * c * dm, 100 + case as u64);
            let dy = values(n * g.oh * g.ow * c * dm, 200 + case as u64);
            let [y_ref, dx_ref, dk_ref] = reference(&x, &g, &k, dm, &dy);
            for level in levels.clone() {
                isa::with_forced(level, || {
                    let tag = format!("case {case} {level}");
                    assert_close(
                        &format!("{tag} y"),
                        &depthwise_forward(&x, &g, &k, dm),
                        &y_ref,
                    );
                    let dx = depthwise_input_grad(&dy, &g, &k, dm);
                    assert_close(&format!("{tag} dx"), &dx, &dx_ref);
                    let dk = depthwise_kernel_grad(&x, &g, &dy, dm);
                    assert_close(&format!("{tag} dk"), &dk, &dk_ref);
                });
            }
        }
    }
    crate::level_tests!(matches_f64_reference_at_every_isa);

    #[test]
    fn kernel_grad_is_the_same_on_any_thread_count() {
        let g = Conv2dGeometry::new(&[4, 19, 17, 40], (3, 3), (1, 1), Padding::Same).unwrap();
        let x = values(4 * 19 * 17 * 40, 7);
        let dy = values(4 * g.oh * g.ow * 40, 8);
        let serial = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| depthwise_kernel_grad(&x, &g, &dy, 1));
        let parallel = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| depthwise_kernel_grad(&x, &g, &dy, 1));
        assert_eq!(serial, parallel);
    }
}
