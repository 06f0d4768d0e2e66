//! 2-D pooling kernels over NHWC tensors, with TensorFlow's window placement.
//!
//! Windows are indexed with the same [`Conv2dGeometry`] as convolution, so `same` padding is
//! TensorFlow's (the odd pixel goes after). Padded positions never take part: max pooling ignores
//! them and average pooling divides by the number of real inputs in the window, as Keras/TF do.
//!
//! Forward passes split the output rows across rayon threads; backward passes split the images,
//! because overlapping windows (InceptionV3's 3x3 stride 2) scatter into shared input pixels of one
//! image but never across images.

use super::conv::Conv2dGeometry;
use super::isa;
use super::PAR_THRESHOLD;
use rayon::prelude::*;

/// Input rows `[start, end)` that window row `oy` covers (padding excluded).
fn rows(g: &Conv2dGeometry, oy: usize) -> (usize, usize) {
    let start = (oy * g.sh).saturating_sub(g.pad_top);
    let end = (oy * g.sh + g.kh).saturating_sub(g.pad_top).min(g.h);
    (start, end)
}

/// Input columns `[start, end)` that window column `ox` covers (padding excluded).
fn cols(g: &Conv2dGeometry, ox: usize) -> (usize, usize) {
    let start = (ox * g.sw).saturating_sub(g.pad_left);
    let end = (ox * g.sw + g.kw).saturating_sub(g.pad_left).min(g.w);
    (start, end)
}

/// Runs `f(row_index, row)` over `chunk`-sized rows of `out`, in parallel when the work is large,
/// compiled for the caller's instruction set ([`isa::vectorized`]: give `f` `#[inline(always)]`).
fn for_rows(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if chunk == 0 {
        return;
    }
    let level = isa::active();
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, r)| {
            isa::vectorized(
                level,
                #[inline(always)]
                || f(i, r),
            )
        });
    } else {
        // A `for` loop: `for_each` goes through `Iterator::fold`, which LLVM left out of line
        // (compiled without the vector features).
        isa::vectorized(
            level,
            #[inline(always)]
            || {
                for (i, r) in out.chunks_mut(chunk).enumerate() {
                    f(i, r)
                }
            },
        );
    }
}

/// Max pooling. Returns the output and, when `keep_argmax`, for every output element the index
/// (within its image) of the input element that won, so backward can route the gradient there.
/// Ties go to the first element in row-major window order, as TensorFlow's CPU kernel does.
pub fn max_pool2d_forward(
    x: &[f32],
    g: &Conv2dGeometry,
    keep_argmax: bool,
) -> (Vec<f32>, Option<super::buffer::Pooled<u32>>) {
    let c = g.c;
    let out_row = g.ow * c;
    // Each output starts at -inf below.
    let mut out = super::buffer::overwritten(g.n * g.oh * out_row);
    // Every output's index is written below.
    let mut arg = keep_argmax.then(|| super::buffer::Pooled::overwritten(out.len()));
    // A function, not a closure, so that it can be `#[inline(always)]` into the vectorized
    // callers below.
    #[inline(always)]
    fn kernel(x: &[f32], g: &Conv2dGeometry, row: usize, o: &mut [f32], a: Option<&mut [u32]>) {
        let (c, img_len) = (g.c, g.h * g.w * g.c);
        let (img, oy) = (row / g.oh, row % g.oh);
        let src = &x[img * img_len..(img + 1) * img_len];
        let (r0, r1) = rows(g, oy);
        let mut a = a;
        for ox in 0..g.ow {
            let (c0, c1) = cols(g, ox);
            let dst = &mut o[ox * c..(ox + 1) * c];
            dst.fill(f32::NEG_INFINITY);
            let best = a.as_deref_mut().map(|a| &mut a[ox * c..(ox + 1) * c]);
            match best {
                None => {
                    // Branch-free running maximum (vectorised); `>` lets NaN never win, as in TF.
                    for iy in r0..r1 {
                        for ix in c0..c1 {
                            let base = (iy * g.w + ix) * c;
                            dst.iter_mut()
                                .zip(&src[base..base + c])
                                .for_each(|(d, &v)| *d = if v > *d { v } else { *d });
                        }
                    }
                }
                Some(best) => {
                    // The same running maximum carrying its index, still branch-free: a strict
                    // `>` keeps the first maximum (TF's tie rule), and a window with no value
                    // above -inf (NaN never wins) routes its gradient to its first element.
                    // The hot loop keeps the winning pixel (one value per tap for all
                    // channels), then the pixel becomes the element index `pixel * c + channel`.
                    let first = (r0 * g.w + c0) as u32;
                    let best = &mut best[..c];
                    best.fill(first);
                    for iy in r0..r1 {
                        for ix in c0..c1 {
                            let pix = iy * g.w + ix;
                            let (v, d) = (&src[pix * c..][..c], &mut dst[..c]);
                            let pix = pix as u32;
                            for ((d, b), &x) in d.iter_mut().zip(best.iter_mut()).zip(v) {
                                let gt = x > *d;
                                // The index by mask arithmetic: as two selects, LLVM made them
                                // conditional scalar stores.
                                let m = (gt as u32).wrapping_neg();
                                *b = (pix & m) | (*b & !m);
                                *d = if gt { x } else { *d };
                            }
                        }
                    }
                    for (ch, b) in best.iter_mut().enumerate() {
                        *b = *b * c as u32 + ch as u32;
                    }
                }
            }
        }
    }
    let level = isa::active();
    match arg.as_mut() {
        Some(arg) if out.len() >= PAR_THRESHOLD => out
            .par_chunks_mut(out_row)
            .zip(arg.par_chunks_mut(out_row))
            .enumerate()
            .for_each(|(row, (o, a))| {
                isa::vectorized(
                    level,
                    #[inline(always)]
                    || kernel(x, g, row, o, Some(a)),
                )
            }),
        Some(arg) => isa::vectorized(
            level,
            #[inline(always)]
            || {
                let rows = out.chunks_mut(out_row).zip(arg.chunks_mut(out_row));
                for (row, (o, a)) in rows.enumerate() {
                    kernel(x, g, row, o, Some(a))
                }
            },
        ),
        None => for_rows(
            &mut out,
            out_row,
            #[inline(always)]
            |row, o| kernel(x, g, row, o, None),
        ),
    }
    (out, arg)
}

/// Max pooling backward: each output gradient goes to the input element that won its window
/// (added, since overlapping windows can share a winner).
pub fn max_pool2d_backward(dy: &[f32], argmax: &[u32], g: &Conv2dGeometry) -> Vec<f32> {
    let img_len = g.h * g.w * g.c;
    let out_len = g.oh * g.ow * g.c;
    let mut dx = super::buffer::zeroed(g.n * img_len);
    for_rows(
        &mut dx,
        img_len,
        #[inline(always)]
        |img, d| {
            let range = img * out_len..(img + 1) * out_len;
            for (&a, &v) in argmax[range.clone()].iter().zip(&dy[range]) {
                d[a as usize] += v;
            }
        },
    );
    dx
}

/// Average pooling; each window is divided by its count of real (unpadded) inputs.
pub fn avg_pool2d_forward(x: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let c = g.c;
    let out_row = g.ow * c;
    let mut out = super::buffer::overwritten(g.n * g.oh * out_row);
    let img_len = g.h * g.w * c;
    for_rows(
        &mut out,
        out_row,
        #[inline(always)]
        |row, o| {
            let (img, oy) = (row / g.oh, row % g.oh);
            let src = &x[img * img_len..(img + 1) * img_len];
            let (r0, r1) = rows(g, oy);
            for ox in 0..g.ow {
                let (c0, c1) = cols(g, ox);
                let dst = &mut o[ox * c..(ox + 1) * c];
                dst.fill(0.0);
                for iy in r0..r1 {
                    for ix in c0..c1 {
                        let base = (iy * g.w + ix) * c;
                        dst.iter_mut()
                            .zip(&src[base..base + c])
                            .for_each(|(d, v)| *d += v);
                    }
                }
                let count = ((r1 - r0) * (c1 - c0)).max(1) as f32;
                dst.iter_mut().for_each(|d| *d /= count);
            }
        },
    );
    out
}

/// Average pooling backward: each output gradient is shared equally by the real inputs of its
/// window.
pub fn avg_pool2d_backward(dy: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let c = g.c;
    let img_len = g.h * g.w * c;
    let out_len = g.oh * g.ow * c;
    let mut dx = super::buffer::zeroed(g.n * img_len);
    for_rows(
        &mut dx,
        img_len,
        #[inline(always)]
        |img, d| {
            let src = &dy[img * out_len..(img + 1) * out_len];
            for oy in 0..g.oh {
                let (r0, r1) = rows(g, oy);
                for ox in 0..g.ow {
                    let (c0, c1) = cols(g, ox);
                    let count = ((r1 - r0) * (c1 - c0)).max(1) as f32;
                    let gy = &src[(oy * g.ow + ox) * c..(oy * g.ow + ox + 1) * c];
                    for iy in r0..r1 {
                        for ix in c0..c1 {
                            let base = (iy * g.w + ix) * c;
                            d[base..base + c]
                                .iter_mut()
                                .zip(gy)
                                .for_each(|(d, g)| *d += g / count);
                        }
                    }
                }
            }
        },
    );
    dx
}

/// Global average over the spatial positions: `x` is `(n, positions, c)`, the result `(n, c)`.
pub fn global_avg_pool_forward(x: &[f32], n: usize, positions: usize, c: usize) -> Vec<f32> {
    let mut out = super::buffer::zeroed(n * c);
    let inv = 1.0 / positions.max(1) as f32;
    let kernel = |img: usize, o: &mut [f32]| {
        let src = &x[img * positions * c..(img + 1) * positions * c];
        // Accumulate in f64: a 299x299 image sums ~90k values per channel.
        let mut acc = vec![0.0f64; c];
        for p in src.chunks(c) {
            acc.iter_mut().zip(p).for_each(|(a, &v)| *a += v as f64);
        }
        o.iter_mut()
            .zip(&acc)
            .for_each(|(o, &a)| *o = (a * inv as f64) as f32);
    };
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(c.max(1))
            .enumerate()
            .for_each(|(i, o)| kernel(i, o));
    } else {
        out.chunks_mut(c.max(1))
            .enumerate()
            .for_each(|(i, o)| kernel(i, o));
    }
    out
}

/// Global average backward: every position receives `dy / positions`.
pub fn global_avg_pool_backward(dy: &[f32], n: usize, positions: usize, c: usize) -> Vec<f32> {
    let mut dx = super::buffer::zeroed(n * positions * c);
    let inv = 1.0 / positions.max(1) as f32;
    for_rows(
        &mut dx,
        c.max(1),
        #[inline(always)]
        |row, d| {
            let img = row / positions.max(1);
            d.iter_mut()
                .zip(&dy[img * c..(img + 1) * c])
                .for_each(|(d, g)| *d = g * inv);
        },
    );
    dx
}

/// Global max over the spatial positions, with the winning position per `(image, channel)` when
/// `keep_argmax` (first maximum wins).
pub fn global_max_pool_forward(
    x: &[f32],
    n: usize,
    positions: usize,
    c: usize,
    keep_argmax: bool,
) -> (Vec<f32>, Option<Vec<u32>>) {
    let mut out = vec![f32::NEG_INFINITY; n * c];
    let mut arg = vec![0u32; n * c];
    for img in 0..n {
        let src = &x[img * positions * c..(img + 1) * positions * c];
        let o = &mut out[img * c..(img + 1) * c];
        let a = &mut arg[img * c..(img + 1) * c];
        for (p, row) in src.chunks(c.max(1)).enumerate() {
            for ch in 0..c {
                if row[ch] > o[ch] {
                    o[ch] = row[ch];
                    a[ch] = p as u32;
                }
            }
        }
    }
    (out, keep_argmax.then_some(arg))
}

/// Global max backward: the gradient goes to the winning position of each channel.
pub fn global_max_pool_backward(
    dy: &[f32],
    argmax: &[u32],
    n: usize,
    positions: usize,
    c: usize,
) -> Vec<f32> {
    let mut dx = super::buffer::zeroed(n * positions * c);
    for img in 0..n {
        for ch in 0..c {
            let i = img * c + ch;
            dx[(img * positions + argmax[i] as usize) * c + ch] += dy[i];
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::conv::Padding;

    #[test]
    fn same_average_pooling_counts_only_real_inputs() {
        // 1x3x3x1 of ones, 3x3 window stride 1 same: every output is exactly 1 (TF semantics).
        let g = Conv2dGeometry::new(&[1, 3, 3, 1], (3, 3), (1, 1), Padding::Same).unwrap();
        let y = avg_pool2d_forward(&[1.0; 9], &g);
        assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{y:?}");
        // A corner sees 4 real inputs.
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let y = avg_pool2d_forward(&x, &g);
        assert!((y[0] - (0.0 + 1.0 + 3.0 + 4.0) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn max_pooling_routes_to_argmax() {
        let g = Conv2dGeometry::new(&[1, 4, 4, 1], (2, 2), (2, 2), Padding::Valid).unwrap();
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let (y, arg) = max_pool2d_forward(&x, &g, true);
        assert_eq!(y, vec![5.0, 7.0, 13.0, 15.0]);
        let dx = max_pool2d_backward(&[1.0, 2.0, 3.0, 4.0], &arg.unwrap(), &g);
        assert_eq!((dx[5], dx[7], dx[13], dx[15]), (1.0, 2.0, 3.0, 4.0));
        assert_eq!(dx.iter().sum::<f32>(), 10.0);
    }

    /// Max pooling with argmax against the running-maximum definition (first strict maximum in
    /// row-major window order, NaN never wins, a window with no finite maximum routes to its
    /// first element), on odd sizes, both paddings, strides 1-2, with ties, NaN, -inf and signed
    /// zeros planted; outputs and argmax must agree exactly, and backward routes by them.
    #[test]
    fn max_pooling_with_argmax_matches_running_maximum_definition() {
        let mut r = crate::tensor::random::rng(Some(9));
        let cases = [
            ([2, 7, 9, 3], (3, 3), (2, 2), Padding::Valid),
            ([1, 9, 7, 5], (3, 3), (1, 1), Padding::Same),
            ([3, 5, 6, 2], (2, 2), (2, 2), Padding::Same),
            ([1, 11, 13, 7], (3, 3), (2, 1), Padding::Same),
            ([2, 66, 65, 9], (3, 3), (2, 2), Padding::Valid),
        ];
        for (shape, k, st, p) in cases {
            let g = Conv2dGeometry::new(&shape, k, st, p).unwrap();
            let n: usize = shape.iter().product();
            // Few distinct values, so ties are common.
            let mut x: Vec<f32> = crate::tensor::random::uniform(&mut r, n, -2.0, 2.0)
                .into_iter()
                .map(|v| v.round())
                .collect();
            for (i, v) in x.iter_mut().enumerate() {
                match i % 23 {
                    3 => *v = f32::NAN,
                    7 => *v = f32::NEG_INFINITY,
                    11 => *v = -0.0,
                    _ => {}
                }
            }
            // A whole window of NaN and -inf at the start of the first image.
            for v in &mut x[..g.c * 2] {
                *v = f32::NAN;
            }
            for v in &mut x[g.w * g.c..g.w * g.c + g.c * 2] {
                *v = f32::NEG_INFINITY;
            }
            let (y, arg) = max_pool2d_forward(&x, &g, true);
            let (y_only, _) = max_pool2d_forward(&x, &g, false);
            let arg = arg.unwrap();
            let img_len = g.h * g.w * g.c;
            for img in 0..g.n {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let (r0, r1) = rows(&g, oy);
                        let (c0, c1) = cols(&g, ox);
                        for ch in 0..g.c {
                            let mut m = f32::NEG_INFINITY;
                            let mut best = (r0 * g.w + c0) * g.c + ch;
                            for iy in r0..r1 {
                                for ix in c0..c1 {
                                    let i = (iy * g.w + ix) * g.c + ch;
                                    if x[img * img_len + i] > m {
                                        m = x[img * img_len + i];
                                        best = i;
                                    }
                                }
                            }
                            let o = ((img * g.oh + oy) * g.ow + ox) * g.c + ch;
                            assert_eq!(y[o].to_bits(), m.to_bits(), "{shape:?} value {o}");
                            assert_eq!(y_only[o].to_bits(), m.to_bits());
                            assert_eq!(arg[o] as usize, best, "{shape:?} argmax {o}");
                        }
                    }
                }
            }
        }
    }
}
