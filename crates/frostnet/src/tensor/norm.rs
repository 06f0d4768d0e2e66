//! Per-channel normalisation kernels over rows of `c` channels (BatchNormalization over the last
//! axis), each one pass over memory where the arithmetic allows it.
//!
//! Statistics use one pass: each block of rows is summed in f32 around a shift (the block's first
//! row, so the squares are of deviations of the size of the spread, not of the mean), giving the
//! block's mean and sum of squared deviations exactly in f64; blocks are merged with Chan et al.'s
//! pairwise update. This is as accurate as the two-pass (mean, then squared deviations) method for
//! data far from zero, and reads the activation once instead of twice.

use super::{build_vec, isa, PAR_THRESHOLD};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows per parallel task: enough work per task (about 16K values) to amortise scheduling and
/// few enough rows that per-block f32 sums stay accurate.
pub(crate) fn block_rows(c: usize) -> usize {
    (16384 / c.max(1)).max(1)
}

/// `(rows, mean, m2)` of one block: count, per-channel mean and sum of squared deviations.
type Stats = (f64, Vec<f64>, Vec<f64>);

#[inline(always)]
fn block_stats(x: &[f32], c: usize) -> Stats {
    let rows = x.len() / c;
    let shift = &x[..c];
    let mut s1 = vec![0.0f32; c];
    let mut s2 = vec![0.0f32; c];
    for r in x.chunks_exact(c) {
        for j in 0..c {
            let d = r[j] - shift[j];
            s1[j] += d;
            s2[j] += d * d;
        }
    }
    let n = rows as f64;
    let mean = (0..c).map(|j| shift[j] as f64 + s1[j] as f64 / n).collect();
    let m2 = (0..c)
        .map(|j| (s2[j] as f64 - (s1[j] as f64) * (s1[j] as f64) / n).max(0.0))
        .collect();
    (n, mean, m2)
}

/// Chan et al.'s merge of two blocks' statistics.
fn merge(a: Stats, b: Stats) -> Stats {
    if a.0 == 0.0 {
        return b;
    }
    if b.0 == 0.0 {
        return a;
    }
    let (na, mut ma, mut qa) = a;
    let (nb, mb, qb) = b;
    let n = na + nb;
    for j in 0..ma.len() {
        let d = mb[j] - ma[j];
        ma[j] += d * nb / n;
        qa[j] += qb[j] + d * d * na * nb / n;
    }
    (n, ma, qa)
}

/// Per-channel mean and biased variance over all rows of `x` (rows of `c` values), in one pass.
pub fn channel_moments(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    if c == 0 || x.len() < c {
        return (vec![0.0; c], vec![0.0; c]);
    }
    let block = block_rows(c) * c;
    let x = &x[..x.len() / c * c];
    let empty = || (0.0, vec![0.0; c], vec![0.0; c]);
    // Every block's loop at the CPU's vector width (see `isa::vectorized`), here and below.
    let level = isa::active();
    let stats = |b: &[f32]| {
        isa::vectorized(
            level,
            #[inline(always)]
            || block_stats(b, c),
        )
    };
    let (n, mean, m2) = if x.len() >= PAR_THRESHOLD {
        x.par_chunks(block).map(stats).reduce(empty, merge)
    } else {
        x.chunks(block).map(stats).fold(empty(), merge)
    };
    (
        mean.iter().map(|&m| m as f32).collect(),
        m2.iter().map(|&q| (q / n) as f32).collect(),
    )
}

/// The standardised input `xhat = (x - mean) * inv_std` of a BatchNormalization that used batch
/// statistics, computed where the backward kernels read it instead of being stored by the
/// forward pass: the same f32 operations, so the same values, for one less activation-sized
/// write per layer and training step (and no activation-sized buffer held until backward:
/// the layer keeps its input, which it shares with whoever produced it).
#[derive(Clone, Copy)]
pub struct Standardised<'a> {
    pub x: &'a [f32],
    pub mean: &'a [f32],
    pub inv_std: &'a [f32],
}

impl Standardised<'_> {
    /// Panics unless this covers `n` values of `c` channels (a caller bug).
    fn check(&self, n: usize, c: usize) {
        assert!(
            self.x.len() == n && self.mean.len() == c && self.inv_std.len() == c,
            "xhat's input or statistics differ in length from dy"
        );
    }

    /// `xhat` of value `i`, channel `j`.
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        (self.x[i] - self.mean[j]) * self.inv_std[j]
    }
}

/// A ReLU that BatchNormalization applies in its own passes: the executor's fusion of a plain
/// ReLU after it (models/model.rs), which then never forms the BN's output nor keeps anything
/// for its backward pass. Each form is the one of the layer it stands in for, so results are
/// bit-identical to running that layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedRelu {
    /// `Activation("relu")`: `v.max(0)`.
    Max,
    /// `ReLU()` with its defaults: `v` where `v > 0`, else `0`.
    Positive,
}

/// BatchNormalization's forward map `y = x * scale + shift` per channel, then `relu` if given.
pub fn bn_forward(
    x: &[f32],
    c: usize,
    scale: &[f32],
    shift: &[f32],
    relu: Option<FusedRelu>,
) -> Vec<f32> {
    assert!(c > 0 && x.len().is_multiple_of(c) && scale.len() == c && shift.len() == c);
    match relu {
        None => bn_forward_then(x, c, scale, shift, |v| v),
        Some(FusedRelu::Max) => bn_forward_then(x, c, scale, shift, |v| v.max(0.0)),
        Some(FusedRelu::Positive) => {
            bn_forward_then(x, c, scale, shift, |v| if v > 0.0 { v } else { 0.0 })
        }
    }
}

#[inline(always)]
fn bn_forward_then(
    x: &[f32],
    c: usize,
    scale: &[f32],
    shift: &[f32],
    then: impl Fn(f32) -> f32 + Sync,
) -> Vec<f32> {
    let block = block_rows(c) * c;
    let level = isa::active();
    let map = |o: usize, yb: &mut [MaybeUninit<f32>]| {
        isa::vectorized(
            level,
            #[inline(always)]
            || {
                for (xr, yr) in x[o..o + yb.len()]
                    .chunks_exact(c)
                    .zip(yb.chunks_exact_mut(c))
                {
                    for j in 0..c {
                        yr[j].write(then(xr[j] * scale[j] + shift[j]));
                    }
                }
            },
        )
    };
    // SAFETY: blocks are whole rows (`block` is a multiple of `c`, `x.len()` too), and `map`
    // writes every value of every row.
    unsafe { build_vec(x.len(), block, map) }
}

/// The backward half of a [`FusedRelu`]: `dy` arrives for the ReLU's output, and each value is
/// multiplied by the ReLU's derivative, 1 where `x * scale + shift > 0` (recomputed from the
/// BN's input, so nothing was kept for it) and 0 elsewhere, exactly as the ReLU layer's own
/// backward pass multiplies.
#[derive(Clone, Copy)]
pub struct ReluGate<'a> {
    pub x: &'a [f32],
    pub scale: &'a [f32],
    pub shift: &'a [f32],
}

impl ReluGate<'_> {
    /// `dy` of value `i`, channel `j`, through the ReLU.
    #[inline(always)]
    fn apply(&self, dy: f32, i: usize, j: usize) -> f32 {
        dy * if self.x[i] * self.scale[j] + self.shift[j] > 0.0 {
            1.0
        } else {
            0.0
        }
    }

    /// The gate for values `o..o + len`.
    fn block(&self, o: usize, len: usize) -> Self {
        ReluGate {
            x: &self.x[o..o + len],
            ..*self
        }
    }

    /// Panics unless this covers `n` values of `c` channels (a caller bug).
    fn check(&self, n: usize, c: usize) {
        assert!(
            self.x.len() == n && self.scale.len() == c && self.shift.len() == c,
            "the ReLU gate's input or affine map differ in length from dy"
        );
    }
}

/// Per-channel `(sum dy, sum dy * xhat)` over all rows, in one pass (f32 within a block, f64
/// across blocks), `dy` first through `gate` if given. `xhat` is skipped (second sums zero) when
/// `None`.
pub fn bn_backward_sums(
    dy: &[f32],
    xhat: Option<Standardised>,
    c: usize,
    gate: Option<ReluGate>,
) -> (Vec<f64>, Vec<f64>) {
    let block = block_rows(c) * c;
    let level = isa::active();
    let partial = |(o, gb): (usize, &[f32])| {
        isa::vectorized(
            level,
            #[inline(always)]
            || match gate {
                None => sums_of_block(o * block, gb, xhat, c, |g, _, _| g),
                Some(gate) => {
                    let gate = gate.block(o * block, gb.len());
                    sums_of_block(o * block, gb, xhat, c, |g, i, j| gate.apply(g, i, j))
                }
            },
        )
    };
    let add = |mut a: (Vec<f64>, Vec<f64>), b: (Vec<f64>, Vec<f64>)| {
        a.0.iter_mut().zip(&b.0).for_each(|(p, q)| *p += q);
        a.1.iter_mut().zip(&b.1).for_each(|(p, q)| *p += q);
        a
    };
    let zero = || (vec![0.0; c], vec![0.0; c]);
    if let Some(h) = xhat {
        h.check(dy.len(), c);
    }
    if let Some(gate) = gate {
        gate.check(dy.len(), c);
    }
    if dy.len() >= PAR_THRESHOLD {
        dy.par_chunks(block)
            .enumerate()
            .map(partial)
            .reduce(zero, add)
    } else {
        dy.chunks(block).enumerate().map(partial).fold(zero(), add)
    }
}

/// One block's `(sum dy, sum dy * xhat)` for [`bn_backward_sums`]: `gb` is `dy` from value `o`,
/// each value read as `dy(value, index in the block, channel)`.
#[inline(always)]
fn sums_of_block(
    o: usize,
    gb: &[f32],
    xhat: Option<Standardised>,
    c: usize,
    dy: impl Fn(f32, usize, usize) -> f32,
) -> (Vec<f64>, Vec<f64>) {
    let mut s = vec![0.0f32; c];
    let mut sh = vec![0.0f32; c];
    match xhat {
        Some(h) => {
            let h = Standardised {
                x: &h.x[o..o + gb.len()],
                ..h
            };
            for (r, g) in gb.chunks_exact(c).enumerate() {
                for j in 0..c {
                    let g = dy(g[j], r * c + j, j);
                    s[j] += g;
                    sh[j] += g * h.at(r * c + j, j);
                }
            }
        }
        None => {
            for (r, g) in gb.chunks_exact(c).enumerate() {
                for j in 0..c {
                    s[j] += dy(g[j], r * c + j, j);
                }
            }
        }
    }
    let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    (f(s), f(sh))
}

/// BatchNormalization's input gradient: `k * (dy - mean_dy - xhat * mean_dy_xhat)` per channel
/// when batch statistics normalised (`through_stats = Some((xhat, mean_dy, mean_dy_xhat))`), else
/// `k * dy`; `dy` first through `gate` if given.
pub fn bn_backward_dx(
    dy: &[f32],
    c: usize,
    k: &[f32],
    through_stats: Option<(Standardised, &[f32], &[f32])>,
    gate: Option<ReluGate>,
) -> Vec<f32> {
    assert!(c > 0 && dy.len().is_multiple_of(c) && k.len() == c);
    let block = block_rows(c) * c;
    let level = isa::active();
    let f = |o: usize, db: &mut [MaybeUninit<f32>]| {
        isa::vectorized(
            level,
            #[inline(always)]
            || match gate {
                None => dx_of_block(o, db, dy, c, k, through_stats, |g, _, _| g),
                Some(gate) => {
                    let gate = gate.block(o, db.len());
                    dx_of_block(o, db, dy, c, k, through_stats, |g, i, j| {
                        gate.apply(g, i, j)
                    })
                }
            },
        )
    };
    if let Some((xhat, mdy, mdyh)) = through_stats {
        xhat.check(dy.len(), c);
        assert!(mdy.len() == c && mdyh.len() == c);
    }
    if let Some(gate) = gate {
        gate.check(dy.len(), c);
    }
    // SAFETY: blocks are whole rows of `c` (both `block` and `dy.len()` are multiples of `c`) and
    // `f` writes every value of every row.
    unsafe { build_vec(dy.len(), block, f) }
}

/// One block of [`bn_backward_dx`]: values `o..` of the input gradient into `db`, each value of
/// `dy` read as `gate(value, index in the block, channel)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dx_of_block(
    o: usize,
    db: &mut [MaybeUninit<f32>],
    dy: &[f32],
    c: usize,
    k: &[f32],
    through_stats: Option<(Standardised, &[f32], &[f32])>,
    gate: impl Fn(f32, usize, usize) -> f32,
) {
    let gb = &dy[o..o + db.len()];
    match through_stats {
        Some((xhat, mdy, mdyh)) => {
            let h = Standardised {
                x: &xhat.x[o..o + db.len()],
                ..xhat
            };
            for (r, (d, g)) in db.chunks_exact_mut(c).zip(gb.chunks_exact(c)).enumerate() {
                for j in 0..c {
                    let i = r * c + j;
                    d[j].write(k[j] * (gate(g[j], i, j) - mdy[j] - h.at(i, j) * mdyh[j]));
                }
            }
        }
        None => {
            for (r, (d, g)) in db.chunks_exact_mut(c).zip(gb.chunks_exact(c)).enumerate() {
                for j in 0..c {
                    d[j].write(k[j] * gate(g[j], r * c + j, j));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    fn reference_moments(x: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
        let rows = (x.len() / c) as f64;
        let mut mean = vec![0.0f64; c];
        for r in x.chunks_exact(c) {
            for j in 0..c {
                mean[j] += r[j] as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows);
        let mut var = vec![0.0f64; c];
        for r in x.chunks_exact(c) {
            for j in 0..c {
                var[j] += (r[j] as f64 - mean[j]).powi(2);
            }
        }
        var.iter_mut().for_each(|v| *v /= rows);
        (mean, var)
    }

    /// One-pass moments against the two-pass f64 definition, on odd channel counts, row counts
    /// that leave a short last block, serial and parallel sizes, and data far from zero (mean 50,
    /// spread 1), where a naive sum-of-squares formula loses every digit.
    #[test]
    fn one_pass_moments_match_f64_two_pass() {
        let mut r = random::rng(Some(3));
        for (rows, c, offset) in [
            (7, 3, 0.0f32),
            (1, 5, 1.0),
            (1031, 33, 50.0),
            (4099, 17, -20.0),
            (9001, 7, 0.5),
        ] {
            let x: Vec<f32> = random::uniform(&mut r, rows * c, -1.0, 1.0)
                .into_iter()
                .enumerate()
                .map(|(i, v)| v + offset + (i % c) as f32 * 0.1)
                .collect();
            let (mean, var) = channel_moments(&x, c);
            let (m_want, v_want) = reference_moments(&x, c);
            for j in 0..c {
                let tol = 1e-5 * (1.0 + m_want[j].abs());
                assert!(
                    (mean[j] as f64 - m_want[j]).abs() <= tol,
                    "{rows}x{c} mean[{j}] {} vs {}",
                    mean[j],
                    m_want[j]
                );
                assert!(
                    (var[j] as f64 - v_want[j]).abs() <= 1e-5 * v_want[j] + 1e-12,
                    "{rows}x{c} var[{j}] {} vs {}",
                    var[j],
                    v_want[j]
                );
            }
        }
    }

    /// The fused forward and the backward kernels against their f64 definitions, on odd sizes
    /// (serial and parallel), with `y` bit-identical to the plain per-element map; and the fused
    /// ReLU's forward and gated backward bit-identical to the plain kernels around the ReLU
    /// layers' own arithmetic, with `y = x * scale + shift` straddling 0 and exactly 0 (both
    /// signs) in planted places.
    #[test]
    fn forward_and_backward_kernels_match_f64_definitions() {
        let mut r = random::rng(Some(5));
        for (rows, c) in [(9, 3), (2053, 19), (1, 1), (777, 64)] {
            let n = rows * c;
            let mut x = random::uniform(&mut r, n, -3.0, 3.0);
            let dy = random::uniform(&mut r, n, -1.0, 1.0);
            let scale = random::uniform(&mut r, c, 0.5, 2.0);
            let mut shift = random::uniform(&mut r, c, -1.0, 1.0);
            // Exact zeros of `x * scale + shift`: in channels 0, 3, 6, ... every fourth row holds
            // the value `x0` whose product the shift cancels (`p + -p` is +0); in channels 1, 4,
            // ... the shift is -0 and every fourth row holds -0 (`-0 * s + -0` is -0), the next
            // +0 (`+0 + -0` is +0). Other channels and rows stay random.
            for j in 0..c {
                match j % 3 {
                    0 => {
                        let x0 = x[j];
                        shift[j] = -(x0 * scale[j]);
                        (0..rows).step_by(4).for_each(|row| x[row * c + j] = x0);
                    }
                    1 => {
                        shift[j] = -0.0;
                        (0..rows).step_by(4).for_each(|row| x[row * c + j] = -0.0);
                        (1..rows).step_by(4).for_each(|row| x[row * c + j] = 0.0);
                    }
                    _ => {}
                }
            }
            let mean = random::uniform(&mut r, c, -0.5, 0.5);
            let inv = random::uniform(&mut r, c, 0.5, 1.5);
            let y = bn_forward(&x, c, &scale, &shift, None);
            let std = Standardised {
                x: &x,
                mean: &mean,
                inv_std: &inv,
            };
            let xhat: Vec<f32> = (0..n).map(|i| std.at(i, i % c)).collect();
            for i in 0..n {
                let j = i % c;
                assert_eq!(y[i].to_bits(), (x[i] * scale[j] + shift[j]).to_bits());
                let h = (x[i] as f64 - mean[j] as f64) * inv[j] as f64;
                assert!((xhat[i] as f64 - h).abs() <= 1e-5 * (1.0 + h.abs()));
            }
            let (s, sh) = bn_backward_sums(&dy, Some(std), c, None);
            let (s0, sh0) = bn_backward_sums(&dy, None, c, None);
            for j in 0..c {
                let (mut a, mut b, mut aa, mut ba) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
                for row in 0..rows {
                    let i = row * c + j;
                    a += dy[i] as f64;
                    aa += (dy[i] as f64).abs();
                    b += dy[i] as f64 * xhat[i] as f64;
                    ba += (dy[i] as f64 * xhat[i] as f64).abs();
                }
                assert!((s[j] - a).abs() <= 1e-5 * aa + 1e-12, "sum dy {j}");
                assert!((sh[j] - b).abs() <= 1e-5 * ba + 1e-12, "sum dy xhat {j}");
                assert_eq!(s0[j], s[j]);
                assert_eq!(sh0[j], 0.0);
            }
            let k = random::uniform(&mut r, c, 0.5, 2.0);
            let mdy = random::uniform(&mut r, c, -0.1, 0.1);
            let mdyh = random::uniform(&mut r, c, -0.1, 0.1);
            let dx = bn_backward_dx(&dy, c, &k, Some((std, &mdy, &mdyh)), None);
            let dx_fixed = bn_backward_dx(&dy, c, &k, None, None);
            for i in 0..n {
                let j = i % c;
                let (kk, g, h) = (k[j] as f64, dy[i] as f64, xhat[i] as f64);
                let want = kk * (g - mdy[j] as f64 - h * mdyh[j] as f64);
                let scale = kk * (g.abs() + (mdy[j] as f64).abs() + (h * mdyh[j] as f64).abs());
                assert!((dx[i] as f64 - want).abs() <= 1e-5 * scale + 1e-12);
                assert_eq!(dx_fixed[i].to_bits(), (k[j] * dy[i]).to_bits());
            }

            // The fused ReLU: forward values are the ReLU layers' own of `y`, and the gated
            // backward kernels equal the plain ones run on the ReLU's input gradient (`dy`
            // times the derivative, 1 where `y > 0`, else 0), bit for bit.
            let relu_max = bn_forward(&x, c, &scale, &shift, Some(FusedRelu::Max));
            let relu_pos = bn_forward(&x, c, &scale, &shift, Some(FusedRelu::Positive));
            let (mut cut, mut zeros, mut negative_zeros) = (0, 0, 0);
            for i in 0..n {
                assert_eq!(
                    relu_max[i].to_bits(),
                    y[i].max(0.0).to_bits(),
                    "y = {}",
                    y[i]
                );
                let pos = if y[i] > 0.0 { y[i] } else { 0.0 };
                assert_eq!(relu_pos[i].to_bits(), pos.to_bits(), "y = {}", y[i]);
                cut += usize::from(y[i] <= 0.0);
                zeros += usize::from(y[i] == 0.0);
                negative_zeros += usize::from(y[i].to_bits() == (-0.0f32).to_bits());
            }
            assert!(zeros > 0, "exact zeros planted");
            assert!(c < 2 || negative_zeros > 0, "-0 planted");
            assert!(
                n < 10 || (cut > 0 && cut < n),
                "the ReLU cuts some values, not all"
            );
            let gate = ReluGate {
                x: &x,
                scale: &scale,
                shift: &shift,
            };
            let masked: Vec<f32> = (0..n)
                .map(|i| dy[i] * if y[i] > 0.0 { 1.0 } else { 0.0 })
                .collect();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let (gs, gsh) = bn_backward_sums(&dy, Some(std), c, Some(gate));
            let (ws, wsh) = bn_backward_sums(&masked, Some(std), c, None);
            assert_eq!((bits(&gs), bits(&gsh)), (bits(&ws), bits(&wsh)));
            let (gs0, _) = bn_backward_sums(&dy, None, c, Some(gate));
            assert_eq!(
                bits(&gs0),
                bits(&bn_backward_sums(&masked, None, c, None).0)
            );
            for through in [Some((std, &mdy[..], &mdyh[..])), None] {
                let got = bn_backward_dx(&dy, c, &k, through, Some(gate));
                let want = bn_backward_dx(&masked, c, &k, through, None);
                let b = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(b(&got), b(&want));
            }
        }
    }
}
