//! Depthwise 2-D convolution kernels over NHWC tensors (MobileNet's building block): forward,
//! input gradient and kernel gradient.
//!
//! The kernel is Keras's `(kh, kw, c, depth_multiplier)`; output channel `ch * dm + m` comes from
//! input channel `ch`. Each output sums only `kh * kw` products per channel, so there is no gemm:
//! the work is memory-bound and the channels, contiguous in NHWC, are the vector axis. Every
//! kernel walks a pixel's channels in blocks of [`BLOCK`] with the block's accumulators in
//! registers across all of the window's taps (one load and one store per output instead of one
//! per tap), as fixed-size arrays that LLVM vectorizes. The block bodies are compiled once per
//! instruction set (AVX-512, AVX2+FMA with fused multiply-adds; the compile target's SIMD with
//! multiply then add) and picked by [`isa::active`] on the calling thread.
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
    let run = |i: usize, acc: &mut [f32]| kernel_grad_rows_isa(isa, x, g, dy, dm, span(i), acc);
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

    #[test]
    fn matches_f64_reference_at_every_isa() {
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
            for level in Isa::supported() {
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
