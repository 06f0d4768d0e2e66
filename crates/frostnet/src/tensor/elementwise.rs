//! Elementwise kernels: activations, their derivatives and optimizer updates, split into blocks
//! across threads when large and compiled for the CPU's vector width.
//!
//! Why: these loops are memory-bound and short, but there are many of them. Written in the
//! layers as `iter_mut().for_each(..)` with the function behind a pointer (or simply in a
//! release build's baseline SSE2), mlp_train's ReLU derivative ran one element and one call at a
//! time and its Adam update 4 floats wide: together 12% of the step's CPU time (perf, Zen 4).
//! Every closure given here must be `#[inline(always)]`-able (a closure or an
//! `#[inline(always)]` function, not a `fn` pointer) for [`isa::vectorized`] to widen it. No
//! float operation changes, so results are bit-identical at every level and thread count.

use super::{buffer, isa, PAR_THRESHOLD};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel block (64 KB of `f32`: large enough to amortize a task, small enough
/// to share out).
const BLOCK: usize = 1 << 14;

/// `x = f(x)` for every element.
pub(crate) fn map_in_place(x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let level = isa::active();
    let run = |x: &mut [f32]| {
        isa::vectorized(
            level,
            #[inline(always)]
            || {
                for v in x.iter_mut() {
                    *v = f(*v);
                }
            },
        )
    };
    if x.len() >= PAR_THRESHOLD {
        x.par_chunks_mut(BLOCK).for_each(run);
    } else {
        run(x);
    }
}

/// `x = f(x, s)` for every element of `x` and the element of `s` beside it (`s` as long as `x`).
pub(crate) fn zip_map_in_place(x: &mut [f32], s: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert_eq!(x.len(), s.len(), "zip_map_in_place: lengths differ");
    let level = isa::active();
    let run = |(x, s): (&mut [f32], &[f32])| {
        isa::vectorized(
            level,
            #[inline(always)]
            || {
                for (v, &s) in x.iter_mut().zip(s) {
                    *v = f(*v, s);
                }
            },
        )
    };
    if x.len() >= PAR_THRESHOLD {
        x.par_chunks_mut(BLOCK)
            .zip(s.par_chunks(BLOCK))
            .for_each(run);
    } else {
        run((x, s));
    }
}

/// Adam's (and AdamW's) update of one weight: the moments `m`, `v` and the value `x` from the
/// gradient `g`, with `alpha` the bias-corrected learning rate. The arithmetic is Keras's, in
/// its order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_update(
    x: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    alpha: f32,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
) {
    let n = x.len();
    assert!(
        m.len() == n && v.len() == n && g.len() == n,
        "adam_update: lengths differ"
    );
    let level = isa::active();
    type Block<'a> = (((&'a mut [f32], &'a mut [f32]), &'a mut [f32]), &'a [f32]);
    let run = |(((x, m), v), g): Block| {
        isa::vectorized(
            level,
            #[inline(always)]
            || {
                for (((x, m), v), &g) in x.iter_mut().zip(m).zip(v).zip(g) {
                    *m += (g - *m) * (1.0 - beta_1);
                    *v += (g * g - *v) * (1.0 - beta_2);
                    *x -= alpha * *m / (v.sqrt() + epsilon);
                }
            },
        )
    };
    // Splitting changes no result (elementwise); serial, InceptionV3's 22M-parameter update
    // kept one thread idle for ~25 ms per step.
    if n >= PAR_THRESHOLD {
        x.par_chunks_mut(BLOCK)
            .zip(m.par_chunks_mut(BLOCK))
            .zip(v.par_chunks_mut(BLOCK))
            .zip(g.par_chunks(BLOCK))
            .for_each(run);
    } else {
        run((((x, m), v), g));
    }
}

/// `y = f(x)` elementwise into a new vector, with, when `keep_codes`, a one-byte code per element
/// from the same pass (`f` returns `(value, code)`). An activation whose derivative takes a few
/// values (ReLU: 0 or 1) keeps these codes for its backward pass instead of a copy of a
/// full-precision tensor: a quarter of the memory and no extra pass.
pub(crate) fn map_with_codes(
    x: &[f32],
    keep_codes: bool,
    f: impl Fn(f32) -> (f32, u8) + Sync,
) -> (Vec<f32>, Option<buffer::Pooled<u8>>) {
    let par = x.len() >= PAR_THRESHOLD;
    if keep_codes {
        let n = x.len();
        let mut codes = buffer::Pooled::overwritten(n);
        let mut y = buffer::take(n);
        type Block<'a> = ((&'a [f32], &'a mut [MaybeUninit<f32>]), &'a mut [u8]);
        // At the CPU's vector width (see `isa::vectorized`).
        let level = isa::active();
        let run = |((xb, yb), cb): Block| {
            isa::vectorized(
                level,
                #[inline(always)]
                || {
                    for ((x, y), c) in xb.iter().zip(yb.iter_mut()).zip(cb.iter_mut()) {
                        let (v, code) = f(*x);
                        y.write(v);
                        *c = code;
                    }
                },
            )
        };
        let ys = &mut y.spare_capacity_mut()[..n];
        if par {
            x.par_chunks(BLOCK)
                .zip(ys.par_chunks_mut(BLOCK))
                .zip(codes.par_chunks_mut(BLOCK))
                .for_each(run);
        } else {
            run(((x, ys), &mut codes[..]));
        }
        // SAFETY: the capacity is at least `n`; the chunks of `x`, `ys` and `codes` split `0..n`
        // at the same offsets, and `run` writes every element of each `ys` chunk.
        unsafe { y.set_len(n) };
        (y, Some(codes))
    } else if par {
        let mut y = buffer::take(x.len());
        x.par_iter().map(|&v| f(v).0).collect_into_vec(&mut y);
        (y, None)
    } else {
        (x.iter().map(|&v| f(v).0).collect(), None)
    }
}

/// `dx = dy * table[code]` elementwise: the backward pass of [`map_with_codes`], where
/// `table[code]` is the derivative the forward pass classified each element into. The product is
/// the same f32 operation as `dy * f'(x)`, so results are bit-identical to computing `f'`.
///
/// Tables have at most three entries (ReLU's 0, 1 and negative slope): the entry is chosen with
/// two compares instead of an indexed load, so the loop vectorizes (an indexed load kept it one
/// element at a time: ReLU's backward ran at 1 ns per value on cnn_train).
pub(crate) fn scale_by_codes(dy: &[f32], codes: &[u8], table: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), codes.len(), "gradient and codes differ in length");
    assert!(
        (1..=3).contains(&table.len()),
        "scale_by_codes: 1 to 3 derivatives"
    );
    // Codes never exceed the table's last index, so padding with the last entry changes nothing.
    let t = [0, 1, 2].map(|i| table[i.min(table.len() - 1)]);
    let mut out = buffer::overwritten(dy.len());
    let level = isa::active();
    let run = |((o, d), c): ((&mut [f32], &[f32]), &[u8])| {
        isa::vectorized(
            level,
            #[inline(always)]
            || {
                for ((o, &d), &c) in o.iter_mut().zip(d).zip(c) {
                    *o = d * if c == 0 {
                        t[0]
                    } else if c == 1 {
                        t[1]
                    } else {
                        t[2]
                    };
                }
            },
        )
    };
    if dy.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(BLOCK)
            .zip(dy.par_chunks(BLOCK))
            .zip(codes.par_chunks(BLOCK))
            .for_each(run);
    } else {
        run(((&mut out, dy), codes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::isa::{with_forced, Isa};

    /// Every level, serial and parallel sizes: the same bits as the plain scalar loop.
    fn equal_to_scalar_loops_at_every_level(levels: Vec<Isa>) {
        for n in [1usize, 17, 1000, PAR_THRESHOLD + 37] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 97) as f32 - 40.0) / 9.0)
                .collect();
            for isa in levels.clone() {
                with_forced(isa, || {
                    let mut x = a.clone();
                    map_in_place(&mut x, |v| v.max(0.0) * 0.5);
                    let want: Vec<f32> = a.iter().map(|v| v.max(0.0) * 0.5).collect();
                    assert_eq!(x, want, "{isa} n={n}");

                    let mut x = a.clone();
                    zip_map_in_place(&mut x, &b, |d, s| d * if s <= 0.0 { 0.0 } else { 1.0 });
                    let want: Vec<f32> = a
                        .iter()
                        .zip(&b)
                        .map(|(d, s)| d * if *s <= 0.0 { 0.0 } else { 1.0 })
                        .collect();
                    assert_eq!(x, want, "{isa} n={n}");

                    let codes: Vec<u8> = (0..n).map(|i| (i * 7 % 3) as u8).collect();
                    let table = [0.0, 1.0, -0.25];
                    let want: Vec<f32> = a
                        .iter()
                        .zip(&codes)
                        .map(|(d, &c)| d * table[c as usize])
                        .collect();
                    assert_eq!(scale_by_codes(&a, &codes, &table), want, "{isa} n={n}");
                    let two: Vec<u8> = codes.iter().map(|c| c % 2).collect();
                    let want: Vec<f32> = a
                        .iter()
                        .zip(&two)
                        .map(|(d, &c)| d * table[c as usize])
                        .collect();
                    assert_eq!(scale_by_codes(&a, &two, &table[..2]), want, "{isa} n={n}");

                    let (mut x, mut m, mut v) = (a.clone(), b.clone(), vec![0.5f32; n]);
                    adam_update(&mut x, &mut m, &mut v, &b, 1e-3, 0.9, 0.999, 1e-7);
                    for i in 0..n {
                        // The moment starts at `b` and the gradient is `b` too.
                        let (m0, g) = (b[i], b[i]);
                        let mi = m0 + (g - m0) * (1.0 - 0.9f32);
                        let vi = 0.5 + (b[i] * b[i] - 0.5) * (1.0 - 0.999f32);
                        let xi = a[i] - 1e-3 * mi / (vi.sqrt() + 1e-7);
                        assert_eq!((x[i], m[i], v[i]), (xi, mi, vi), "{isa} n={n} i={i}");
                    }
                })
            }
        }
    }
    crate::level_tests!(equal_to_scalar_loops_at_every_level);
}
