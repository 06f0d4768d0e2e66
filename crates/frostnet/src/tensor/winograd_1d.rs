//! One-dimensional Winograd forward convolution for `1 x r` and `r x 1` stride-1 kernels
//! (InceptionV3's 1x7, 7x1, 1x3 and 3x1 layers).
//!
//! A tile is `m` neighbouring output pixels along the kernel's axis; it is computed from the
//! `m + r - 1` input pixels under it as `y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]`, one element-wise product per
//! "plane" instead of `m * r` multiply-adds. Summed over input channels, plane `p` becomes the
//! matrix product `M[p] (tiles x filters) = V[p] (tiles x c) · U[p] (c x filters)`, run through
//! the packed [`super::matmul`] kernels, as in the 2-D [`super::winograd`] (whose chunking and
//! layout this module shares: `V` is `[plane][tile][c]`, `M` `[plane][tile][filters]`, output NHWC
//! with the epilogue run over each chunk while it is in cache).
//!
//! The algorithms ([`Scheme`]) are chosen for f32 accuracy, not the fewest planes. F(2, 7) in one
//! piece needs 8 interpolation points (0, ±1, ±2, ±½, ∞) and its input transform multiplies by up
//! to 5.25: emulated in f32 over 192 channels its worst error was 1.1-1.5e-5 of max(1, |y|), past
//! the 1e-5 every fast path is held to. Splitting the 7 taps into 4 + 3 and running F(2, 4)
//! (points 0, ±1, 2, ∞) and F(2, 3) (0, ±1, ∞) side by side costs 9 planes instead of 8 (1.56x
//! fewer multiplications than the direct 14, not 1.75x) and stays at 6e-6 with coefficients no
//! larger than 3 (3 + 3 + 1 taps by F(3, 3) is 1.62x at the same error but 13 planes, each a
//! smaller product). 1x3 uses F(2, 3): 1.5x, 5e-6 at 384 channels.
//! (`tools/winograd_1d_error.py` reproduces these numbers.)
//!
//! The kernel transform `U = G g` runs in f64 and is rounded once; a layer keeps it while its
//! kernel's version stands (see `conv::KernelCache`).

use super::conv::{apply_epilogue_serial, Conv2dGeometry, EpilogueStep};
use super::isa;
use super::winograd::{plane_products, tile_row_chunks, Planes};
use rayon::prelude::*;

/// A 1-D Winograd algorithm for `m` outputs of an `r`-tap correlation,
/// `y[i] = Σ_k g[k] d[i + k]`, as exact rational matrices.
pub struct Scheme {
    /// Outputs per tile.
    m: usize,
    /// `Aᵀ`: `m` rows of one weight per plane.
    at: &'static [&'static [f32]],
    /// `G`: one row of `r` tap weights per plane (applied in f64).
    g: &'static [&'static [f64]],
    /// `Bᵀ`: one row of `m + r - 1` input weights per plane.
    bt: &'static [&'static [f32]],
}

/// 7 taps: F(2, 4) on taps 0-3 (planes 0-4), F(2, 3) on taps 4-6 (planes 5-8).
const F2_7: Scheme = Scheme {
    m: 2,
    at: &[
        &[1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0],
        &[0.0, 1.0, -1.0, 2.0, 1.0, 0.0, 1.0, -1.0, 1.0],
    ],
    g: &[
        &[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        &[-0.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0],
        &[-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, 0.0, 0.0, 0.0],
        &[1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0, 4.0 / 3.0, 0.0, 0.0, 0.0],
        &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5],
        &[0.0, 0.0, 0.0, 0.0, 0.5, -0.5, 0.5],
        &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ],
    bt: &[
        &[2.0, -1.0, -2.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        &[0.0, -2.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        &[0.0, 2.0, -3.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        &[0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        &[0.0, 2.0, -1.0, -2.0, 1.0, 0.0, 0.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 1.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0],
    ],
};

/// 3 taps: F(2, 3).
const F2_3: Scheme = Scheme {
    m: 2,
    at: &[&[1.0, 1.0, 1.0, 0.0], &[0.0, 1.0, -1.0, 1.0]],
    g: &[
        &[-1.0, 0.0, 0.0],
        &[0.5, 0.5, 0.5],
        &[0.5, -0.5, 0.5],
        &[0.0, 0.0, 1.0],
    ],
    bt: &[
        &[-1.0, 0.0, 1.0, 0.0],
        &[0.0, 1.0, 1.0, 0.0],
        &[0.0, -1.0, 1.0, 0.0],
        &[0.0, -1.0, 0.0, 1.0],
    ],
};

impl Scheme {
    pub(crate) fn planes(&self) -> usize {
        self.g.len()
    }

    fn taps(&self) -> usize {
        self.g[0].len()
    }

    /// Values of the transformed kernel for `c` inputs and `f` filters.
    pub fn kernel_len(&self, c: usize, f: usize) -> usize {
        self.planes() * c * f
    }
}

/// Which axis a tile runs along: `(1, 0)` down the rows (an `r x 1` kernel), `(0, 1)` along them.
type Axis = (usize, usize);

/// The scheme and axis for this geometry: stride 1 and a `1 x 3`, `3 x 1`, `1 x 7` or `7 x 1`
/// kernel; `None` otherwise.
pub fn scheme(g: &Conv2dGeometry) -> Option<(&'static Scheme, Axis)> {
    if g.sh != 1 || g.sw != 1 || g.oh == 0 || g.ow == 0 {
        return None;
    }
    let (r, axis) = match (g.kh, g.kw) {
        (1, r) => (r, (0, 1)),
        (r, 1) => (r, (1, 0)),
        _ => return None,
    };
    match r {
        3 => Some((&F2_3, axis)),
        7 => Some((&F2_7, axis)),
        _ => None,
    }
}

/// Whether this module is the faster choice for the geometry. Measured on Zen 4 (2 threads,
/// `frostnet-bench kernels`, engine `layer` with and without this module, GFLOP per CPU-second of
/// the fastest rep at direct-convolution FLOPs; before -> after):
///
/// | layer (InceptionV3)    | batch | AVX-512         | AVX2            |
/// |------------------------|-------|-----------------|-----------------|
/// | 128->128 1x7 at 17x17  | 8     | 206-209 -> 259-279 | 195-202 -> 230-269 |
/// | 160->160 1x7 at 17x17  | 8     | 202-204 -> 270-276 | 180-198 -> 244-277 |
/// | 192->192 7x1 at 17x17  | 8     | 228-230 -> 280-288 | 202-210 -> 265-277 |
/// | the three at 17x17     | 1     | 199-227 -> 202-269 | 163-197 -> 178-256 |
/// | 384->384 1x3 at 8x8    | 8     | 206-215 -> 164-304 | 165-177 -> 153-250 |
/// | 384->384 1x3 at 8x8    | 1     | 187 -> 186-197  | 174-178 -> 128-183 |
///
/// End to end, `inception_frozen` (batch 8, CPU ms per step, interleaved): 971 -> 872, 870 ->
/// 766, 796 -> 726. So: 128..=384 input channels and filters (the measured range) and at least
/// 256 output pixels in the batch (8x8 at batch 1, 64 pixels, gained nothing). Never at the
/// portable level, like [`super::winograd::prefers`]: off x86 it runs other kernels, unmeasured.
pub fn prefers(g: &Conv2dGeometry, filters: usize) -> bool {
    isa::active() != isa::Isa::Portable
        && scheme(g).is_some()
        && (128..=384).contains(&g.c)
        && (128..=384).contains(&filters)
        && g.n * g.oh * g.ow >= 256
}

/// `U[p] = Σ_k G[p][k] g[k]` for every (input channel, filter) pair, as `[plane][c][f]`, in f64
/// and rounded once, into `u` ([`Scheme::kernel_len`] values, every one written). `kernel` is
/// HWIO with `r` taps along one axis, so tap `k` is `kernel[k * c * f..][..c * f]` either way.
pub(crate) fn transform_kernel_into(s: &Scheme, kernel: &[f32], c: usize, f: usize, u: &mut [f32]) {
    let cf = c * f;
    assert!(
        kernel.len() >= s.taps() * cf && u.len() >= s.kernel_len(c, f),
        "winograd_1d: kernel or its transform too short"
    );
    if cf == 0 {
        return;
    }
    u.par_chunks_mut(cf).zip(s.g).for_each(|(plane, row)| {
        let taps: Vec<(&[f32], f64)> = nonzero(row)
            .map(|(k, w)| (&kernel[k * cf..(k + 1) * cf], w))
            .collect();
        for (i, o) in plane.iter_mut().enumerate() {
            *o = taps.iter().map(|(t, w)| w * t[i] as f64).sum::<f64>() as f32;
        }
    });
}

/// The nonzero weights of a matrix row with their column.
fn nonzero<T: Copy + Default + PartialEq>(row: &[T]) -> impl Iterator<Item = (usize, T)> + '_ {
    row.iter()
        .copied()
        .enumerate()
        .filter(|&(_, w)| w != T::default())
}

/// `dst = Σ w · src` over `terms` (at least one), vectorised over the channel axis.
#[inline(always)]
fn combine(dst: &mut [f32], terms: &[(&[f32], f32)]) {
    let ((first, w0), rest) = terms.split_first().expect("a plane has a nonzero weight");
    for (d, x) in dst.iter_mut().zip(*first) {
        *d = w0 * x;
    }
    for (src, w) in rest {
        for (d, x) in dst.iter_mut().zip(*src) {
            *d += w * x;
        }
    }
}

/// Forward convolution by the geometry's [`scheme`]: `x` NHWC, `kernel` HWIO, then `epilogue`
/// over each chunk of output. Returns NHWC output data.
///
/// # Panics
/// If [`scheme`] has none for the geometry, or `x` / `kernel` are shorter than `g` and `filters`
/// imply (caller bugs).
pub fn conv2d(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    let (s, _) = scheme(g).expect("winograd_1d: needs a 1xr or rx1 stride-1 geometry");
    let mut u = super::buffer::Buffer(super::buffer::overwritten(s.kernel_len(g.c, filters)));
    transform_kernel_into(s, kernel, g.c, filters, &mut u);
    conv2d_with(x, g, &u, filters, epilogue)
}

/// [`conv2d`] with the kernel already transformed by [`transform_kernel_into`].
///
/// # Panics
/// As [`conv2d`], or if `u` is shorter than the scheme's [`Scheme::kernel_len`].
pub fn conv2d_with(
    x: &[f32],
    g: &Conv2dGeometry,
    u: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    conv2d_kept(x, g, Planes::Transformed(u), filters, epilogue)
}

/// [`conv2d_with`] with the transformed kernel in either form (see [`Planes`]).
pub(crate) fn conv2d_kept(
    x: &[f32],
    g: &Conv2dGeometry,
    u: Planes,
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    let (s, (ay, ax)) = scheme(g).expect("winograd_1d: needs a 1xr or rx1 stride-1 geometry");
    let (c, f, m, planes) = (g.c, filters, s.m, s.planes());
    assert!(
        x.len() >= g.n * g.h * g.w * c && u.holds(s.kernel_len(c, f)),
        "winograd_1d: input or transformed kernel too short"
    );
    let isa = isa::active();
    let mut out = super::buffer::overwritten(g.n * g.oh * g.ow * f);
    if out.is_empty() {
        return out;
    }
    // A tile row covers `mh` output rows of one image, with `tw` tiles of `m` pixels.
    let mh = if ay == 1 { m } else { 1 };
    let (th, tw) = (
        g.oh.div_ceil(mh),
        if ax == 1 { g.ow.div_ceil(m) } else { g.ow },
    );
    let bt: Vec<Vec<(usize, f32)>> = s.bt.iter().map(|r| nonzero(r).collect()).collect();
    let at: Vec<Vec<(usize, f32)>> = s.at.iter().map(|r| nonzero(r).collect()).collect();
    let zeros = vec![0.0f32; c];
    let chunks = tile_row_chunks(&mut out, g, f, mh, tw);
    chunks.into_par_iter().for_each(|(r0, r1, dst)| {
        isa::vectorized(
            isa,
            #[inline(always)]
            || {
                let tiles = (r1 - r0) * tw;
                // Tile `t` of the chunk: its image and first output pixel.
                let origin = |t: usize| {
                    let (r, tx) = (r0 + t / tw, t % tw);
                    let (img, ty) = (r / th, r % th);
                    (img, ty * mh, if ax == 1 { tx * m } else { tx })
                };
                let mut v = super::buffer::Buffer(super::buffer::overwritten(planes * tiles * c));
                let len = s.taps() + m - 1;
                let mut d: Vec<&[f32]> = Vec::with_capacity(len);
                let mut terms: Vec<(&[f32], f32)> = Vec::with_capacity(len);
                for t in 0..tiles {
                    let (img, oy, ox) = origin(t);
                    let src = &x[img * g.h * g.w * c..(img + 1) * g.h * g.w * c];
                    d.clear();
                    d.extend((0..len).map(|l| {
                        let iy = (oy + l * ay).checked_sub(g.pad_top).filter(|&r| r < g.h);
                        let ix = (ox + l * ax).checked_sub(g.pad_left).filter(|&r| r < g.w);
                        match (iy, ix) {
                            (Some(iy), Some(ix)) => &src[(iy * g.w + ix) * c..][..c],
                            _ => &zeros[..],
                        }
                    }));
                    for (p, row) in bt.iter().enumerate() {
                        terms.clear();
                        terms.extend(row.iter().map(|&(l, w)| (d[l], w)));
                        combine(&mut v[(p * tiles + t) * c..][..c], &terms);
                    }
                }
                let mut mm = super::buffer::Buffer(super::buffer::overwritten(planes * tiles * f));
                plane_products(isa, &v, u, &mut mm, (tiles, c, f));
                drop(v);
                let first_row = (r0 / th) * g.oh + mh * (r0 % th);
                let mut terms: Vec<(&[f32], f32)> = Vec::with_capacity(planes);
                for t in 0..tiles {
                    let (img, oy, ox) = origin(t);
                    for (i, row) in at.iter().enumerate() {
                        let (oy, ox) = (oy + i * ay, ox + i * ax);
                        if oy >= g.oh || ox >= g.ow {
                            continue;
                        }
                        terms.clear();
                        terms.extend(
                            row.iter()
                                .map(|&(p, w)| (&mm[(p * tiles + t) * f..][..f], w)),
                        );
                        let at = ((img * g.oh + oy - first_row) * g.ow + ox) * f;
                        combine(&mut dst[at..at + f], &terms);
                    }
                }
                apply_epilogue_serial(dst, f, epilogue);
            },
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::conv::reference::{self, normalish};
    use crate::tensor::conv::{conv2d_forward, conv2d_forward_cached, KernelCache, Padding};
    use crate::tensor::isa::Isa;

    /// `Σ_p Aᵀ[i][p] G[p][k] Bᵀ[p][l] = [l == i + k]`: the scheme computes `m` outputs of the
    /// `r`-tap correlation for every kernel and input.
    #[test]
    fn schemes_are_the_correlation() {
        for s in [&F2_3, &F2_7] {
            let (r, len) = (s.taps(), s.taps() + s.m - 1);
            assert!(s.at.iter().all(|row| row.len() == s.planes()));
            assert!(s.bt.len() == s.planes() && s.bt.iter().all(|row| row.len() == len));
            for i in 0..s.m {
                for k in 0..r {
                    for l in 0..len {
                        let sum: f64 = (0..s.planes())
                            .map(|p| s.at[i][p] as f64 * s.g[p][k] * s.bt[p][l] as f64)
                            .sum();
                        let want = if l == i + k { 1.0 } else { 0.0 };
                        assert!((sum - want).abs() < 1e-12, "r={r} i={i} k={k} l={l}: {sum}");
                    }
                }
            }
        }
    }

    /// Max |winograd_1d - f64| / max(1, |ref|) over odd sizes, both axes, both paddings, with an
    /// epilogue (bias, affine, ReLU), at every ISA the CPU runs; inputs N(0, 1) and post-ReLU,
    /// He-initialised kernels.
    fn matches_f64_reference_on_odd_sizes_and_every_isa(levels: Vec<Isa>) {
        let cases = [
            ([2, 7, 9, 5], (1, 7), Padding::Same, 6),
            ([2, 9, 7, 5], (7, 1), Padding::Same, 6),
            ([1, 5, 11, 3], (1, 7), Padding::Valid, 4),
            ([1, 11, 5, 3], (7, 1), Padding::Valid, 4),
            ([2, 3, 5, 33], (1, 3), Padding::Same, 17),
            ([2, 5, 3, 33], (3, 1), Padding::Valid, 17),
            // InceptionV3's shapes (17x17 1x7 / 7x1, 8x8 1x3 / 3x1), wider than one 64-column
            // panel, so `conv2d_forward`'s dispatch runs here too.
            ([1, 17, 17, 129], (1, 7), Padding::Same, 161),
            ([2, 17, 17, 160], (7, 1), Padding::Same, 192),
            ([1, 8, 8, 385], (1, 3), Padding::Same, 383),
            ([4, 8, 8, 384], (3, 1), Padding::Same, 384),
        ];
        for (seed, (shape, ks, pad, f)) in cases.into_iter().enumerate() {
            let g = Conv2dGeometry::new(&shape, ks, (1, 1), pad).unwrap();
            for relu_input in [false, true] {
                let mut x = normalish(shape.iter().product(), seed as u64);
                if relu_input {
                    x.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                let he = (2.0 / (g.patch_len() as f32)).sqrt();
                let k: Vec<f32> = normalish(g.patch_len() * f, 100 + seed as u64)
                    .iter()
                    .map(|v| v * he)
                    .collect();
                let (bias, scale, shift) = (normalish(f, 7), normalish(f, 8), normalish(f, 9));
                let relu = |r: &mut [f32]| r.iter_mut().for_each(|v| *v = v.max(0.0));
                let steps = [
                    EpilogueStep::Bias(&bias),
                    EpilogueStep::Affine {
                        scale: &scale,
                        shift: &shift,
                    },
                    EpilogueStep::Map(&relu),
                ];
                let raw = reference::forward(&x, &g, &k, f);
                let want = reference::bias_affine_relu(&raw, &bias, &scale, &shift);
                for level in levels.clone() {
                    let (plain, fused) = isa::with_forced(level, || {
                        (conv2d(&x, &g, &k, f, &[]), conv2d(&x, &g, &k, f, &steps))
                    });
                    if isa::with_forced(level, || prefers(&g, f)) {
                        let dispatched =
                            isa::with_forced(level, || conv2d_forward(&x, &g, &k, f, &steps));
                        assert_eq!(dispatched, fused, "conv2d_forward runs winograd_1d");
                        // The second call reuses the kept transform.
                        let mut cache = KernelCache::default();
                        for _ in 0..2 {
                            let kept = isa::with_forced(level, || {
                                conv2d_forward_cached(&x, &g, &k, f, &steps, &mut cache, 7)
                            });
                            assert_eq!(kept, fused, "conv2d_forward_cached runs winograd_1d");
                        }
                    }
                    let err = reference::max_rel_err;
                    let (e1, e2) = (err(&plain, &raw), err(&fused, &want));
                    eprintln!("{shape:?} {ks:?} {pad:?} f={f} relu_in={relu_input} {level}: max rel err {e1:.2e} (plain), {e2:.2e} (fused)");
                    assert!(
                        e1 <= 1e-5 && e2 <= 1e-5,
                        "{shape:?} {ks:?} {pad:?} f={f} {level}: rel err {e1:e} (plain), {e2:e} (fused)"
                    );
                }
            }
        }
    }
    crate::level_tests!(matches_f64_reference_on_odd_sizes_and_every_isa);

    #[test]
    fn scheme_only_for_1xr_and_rx1_at_stride_1() {
        let g = |k: (usize, usize), s: usize| {
            Conv2dGeometry::new(&[1, 17, 17, 64], k, (s, s), Padding::Same).unwrap()
        };
        assert!(scheme(&g((1, 7), 1)).is_some_and(|(_, a)| a == (0, 1)));
        assert!(scheme(&g((7, 1), 1)).is_some_and(|(_, a)| a == (1, 0)));
        assert!(scheme(&g((1, 3), 1)).is_some());
        for (k, s) in [
            ((1, 7), 2),
            ((3, 3), 1),
            ((1, 1), 1),
            ((1, 5), 1),
            ((5, 1), 1),
        ] {
            assert!(scheme(&g(k, s)).is_none(), "{k:?} stride {s}");
        }
    }

    fn prefers_the_measured_range(levels: Vec<Isa>) {
        let g =
            |shape: [usize; 4], k| Conv2dGeometry::new(&shape, k, (1, 1), Padding::Same).unwrap();
        for level in levels.clone() {
            let at = |g: &Conv2dGeometry, f| isa::with_forced(level, || prefers(g, f));
            let fast = level != Isa::Portable;
            assert_eq!(at(&g([1, 17, 17, 128], (1, 7)), 128), fast, "{level}");
            assert_eq!(at(&g([8, 17, 17, 192], (7, 1)), 192), fast, "{level}");
            assert_eq!(at(&g([8, 8, 8, 384], (1, 3)), 384), fast, "{level}");
            // 8x8 at batch 1 (64 pixels), too few or too many channels, not a 1-D kernel.
            assert!(!at(&g([1, 8, 8, 384], (1, 3)), 384));
            assert!(!at(&g([8, 17, 17, 64], (1, 7)), 128));
            assert!(!at(&g([8, 17, 17, 128], (1, 7)), 448));
            assert!(!at(&g([8, 17, 17, 128], (3, 3)), 128));
        }
    }
    crate::level_tests!(prefers_the_measured_range);
}
