//! Winograd F(2x2, 3x3) forward convolution for 3x3, stride-1 layers.
//!
//! Each 2x2 block of output pixels ("tile") is computed from the 4x4 input block under it as
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`: 16 element-wise products per channel pair instead of 36
//! multiply-adds, i.e. 2.25x fewer multiplications than the direct definition. Summed over input
//! channels, the 16 element-wise products become 16 independent matrix products
//! `M[ξ] (tiles x filters) = V[ξ] (tiles x c) · U[ξ] (c x filters)`, run through the packed
//! [`super::matmul`] kernels at the calling thread's instruction-set level.
//!
//! Layout: the input transform reads NHWC 4x4 blocks (channels contiguous, padding read as a shared
//! zero row) and writes `V` as `[16][tiles][c]`; the output transform reads `M` as
//! `[16][tiles][filters]` and writes NHWC output, after which the convolution's epilogue (bias,
//! BatchNormalization's affine, activation) runs over the block while it is in cache. The work is
//! cut into chunks of whole tile rows (a chunk writes a contiguous range of output rows), one
//! rayon task each; partial edge tiles (odd output sizes) are computed whole and only their
//! in-range pixels are stored.
//!
//! The kernel transform `U = G g Gᵀ` runs per call, in f64 and rounded once: it costs
//! `16 * c * filters` values, under 1% of the convolution's work on every layer this is used for.
//!
//! Accuracy: the transforms only add, subtract and halve (no large constants, unlike F(4x4, 3x3)),
//! so the result stays within a few f32 rounding steps of the definition; the tests compare
//! against an f64 reference at 1e-5 relative.

use super::conv::{apply_epilogue_serial, Conv2dGeometry, EpilogueStep};
use super::isa;
use super::matmul::{matmul_with, Transpose};
use rayon::prelude::*;

/// Whether Winograd is the faster choice for this geometry. Measured with CPU time, interleaved
/// against the engine that runs otherwise (the direct kernel for all of these but the last),
/// InceptionV3's 3x3 stride-1 layers at batch 1, 4 and 8, 2 threads, AVX-512 and forced AVX2
/// (speedup of winograd over the current engine, range over batches and runs):
///
/// | layer                  | AVX-512   | AVX2      |
/// |------------------------|-----------|-----------|
/// | 32->32 149x149 valid   | 0.92-1.01 | 1.15-1.20 |
/// | 32->64 147x147 same    | 1.14-1.31 | 1.25-1.38 |
/// | 80->192 73x73 valid    | 1.42-1.92 | 1.49-1.76 |
/// | 64->96 35x35 same      | 0.91-1.38 | 1.21-1.45 |
/// | 96->96 35x35 same      | 0.99-1.52 | 1.36-1.53 |
/// | 448->384 8x8 (im2col)  | 0.45-0.98 | 0.4-0.6   |
///
/// So: only 3x3 stride 1, 64..=192 filters (32..=192 below AVX-512: 32->32 gains nothing on
/// AVX-512, where the direct kernel's wider registers keep up), 32..=128 input channels and at
/// least 1024 output pixels in the batch (fewer make too few tiles to pay for transforming the
/// kernel and packing 16 matrices): the measured range, nothing extrapolated. The pixel count is
/// the batch's, not one image's: cnn_train's 14x14 32->64 layer at batch 64 (12,544 pixels) ran
/// 5.0 -> 3.7 ms CPU (AVX-512) and 5.6 -> 4.0 (AVX2) on Zen 4 (`frostnet-bench profile
/// cnn_train`); InceptionV3 has no 3x3 stride-1 layer below 35x35 in this channel range.
/// Decided by the calling thread's [`isa::active`] level, like the kernels themselves; never at
/// the portable level, which was not measured.
///
/// When the caller keeps the transformed kernel between calls (`kept`: a `Conv2D` layer, see
/// `conv::KernelCache`), the wide layers win too: InceptionV3's 448->384 3x3 at 8x8 (2 threads,
/// CPU ms, `frostnet-bench kernels`, engine `layer`, im2col -> Winograd) 16.1-16.4 -> 9.5-11.0 at
/// batch 8 and 2.2 -> 1.6-2.2 at batch 1 on AVX-512, 18.7-22.4 -> 10.9-12.3 at batch 8 on AVX2
/// (batch 1 within noise). Transforming that kernel on every call instead cost as much as the
/// products saved (batch 8: 14-17 ms) or three times more (batch 1: 6-13 ms), hence the flag.
/// Wider layers only raise the products' share against the per-tile transforms, so the range is
/// 384..=512 input channels and 256..=512 filters.
pub fn prefers(g: &Conv2dGeometry, filters: usize, kept: bool) -> bool {
    let min_filters = match isa::active() {
        isa::Isa::Avx512 => 64,
        isa::Isa::Avx2 => 32,
        // Not measured against the portable direct kernel (or, off x86, `gemm`'s kernels).
        isa::Isa::Portable => return false,
    };
    let narrow = (min_filters..=192).contains(&filters)
        && (32..=128).contains(&g.c)
        && g.n * g.oh * g.ow >= 1024;
    let wide = kept && (384..=512).contains(&g.c) && (256..=512).contains(&filters);
    applicable(g) && (narrow || wide)
}

/// Whether [`conv2d`] can compute this geometry at all: a 3x3 kernel at stride 1.
pub fn applicable(g: &Conv2dGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.oh > 0 && g.ow > 0
}

/// Values of `V` and `M` one chunk aims for (per transform position, times 16): a chunk's
/// scratch stays a few MB, while each of its matrix products has enough rows to run near the
/// kernels' speed and to amortise packing `U`.
const CHUNK_VALUES: usize = 1 << 16;

/// Forward convolution by Winograd F(2x2, 3x3): `x` NHWC, `kernel` HWIO `(3, 3, c, filters)`,
/// then `epilogue` over each chunk of output. Returns NHWC output data.
///
/// # Panics
/// If the geometry is not [`applicable`], or `x` / `kernel` are shorter than `g` and `filters`
/// imply (caller bugs).
pub fn conv2d(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    conv2d_with(
        x,
        g,
        &transform_kernel(kernel, g.c, filters),
        filters,
        epilogue,
    )
}

/// [`conv2d`] with the kernel already transformed by [`transform_kernel`]: a layer whose kernel
/// has not changed since the last call keeps `u` (see `conv::KernelCache`).
///
/// # Panics
/// If the geometry is not [`applicable`], or `x` / `u` are shorter than `g` and `filters` imply
/// (caller bugs).
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
    assert!(applicable(g), "winograd: needs a 3x3 stride-1 geometry");
    let (c, f) = (g.c, filters);
    assert!(
        x.len() >= g.n * g.h * g.w * c && u.holds(16 * c * f),
        "winograd: input or transformed kernel too short"
    );
    let isa = isa::active();
    let mut out = super::buffer::overwritten(g.n * g.oh * g.ow * f);
    if out.is_empty() {
        return out;
    }
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let chunks = tile_row_chunks(&mut out, g, f, 2, tw);
    let zeros = vec![0.0f32; c];
    chunks.into_par_iter().for_each(|(r0, r1, dst)| {
        isa::vectorized(
            isa,
            #[inline(always)]
            || {
                let tiles = (r1 - r0) * tw;
                let mut v = super::buffer::Buffer(super::buffer::overwritten(16 * tiles * c));
                let mut m = super::buffer::Buffer(super::buffer::overwritten(16 * tiles * f));
                let mut tmp = vec![0.0f32; 16 * c];
                for r in r0..r1 {
                    let (img, ty) = (r / th, r % th);
                    let src = &x[img * g.h * g.w * c..(img + 1) * g.h * g.w * c];
                    for tx in 0..tw {
                        let t = (r - r0) * tw + tx;
                        input_tile(src, g, ty, tx, &zeros, &mut tmp, &mut v, tiles, t);
                    }
                }
                plane_products(isa, &v, u, &mut m, (tiles, c, f));
                drop(v);
                let mut s = vec![0.0f32; 8 * f];
                let mut y = vec![0.0f32; 4 * f];
                let first_row = (r0 / th) * g.oh + 2 * (r0 % th);
                for r in r0..r1 {
                    let (img, ty) = (r / th, r % th);
                    for tx in 0..tw {
                        let t = (r - r0) * tw + tx;
                        output_tile(&m, tiles, t, f, &mut s, &mut y);
                        for dy in 0..2 {
                            let oy = 2 * ty + dy;
                            if oy >= g.oh {
                                continue;
                            }
                            let row = img * g.oh + oy - first_row;
                            for dx in 0..2 {
                                let ox = 2 * tx + dx;
                                if ox < g.ow {
                                    let at = (row * g.ow + ox) * f;
                                    dst[at..at + f].copy_from_slice(&y[(dy * 2 + dx) * f..][..f]);
                                }
                            }
                        }
                    }
                }
                apply_epilogue_serial(dst, f, epilogue);
            },
        )
    });
    out
}

/// A transformed kernel's planes (`[plane][c][f]`) as the products read them.
#[derive(Clone, Copy)]
pub(crate) enum Planes<'a> {
    /// As the transform writes them.
    Transformed(&'a [f32]),
    /// Each plane packed for the matmul at this level, back to back: the form
    /// `conv::KernelCache` keeps (and then the only one) for a kernel that stands. Built on
    /// x86-64 only: elsewhere the matmul is the `gemm` crate's, which takes no packed operand.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Packed(isa::Isa, &'a [f32]),
}

impl Planes<'_> {
    /// Whether a transformed kernel of `len` values is all here (packed planes are checked
    /// plane by plane by the products that read them).
    pub(crate) fn holds(&self, len: usize) -> bool {
        match self {
            Planes::Transformed(u) => u.len() >= len,
            Planes::Packed(..) => true,
        }
    }
}

/// `M[p] (tiles x f) = V[p] (tiles x c) · U[p] (c x f)` for every plane `p` of `v` / `u` / `m`
/// (`[plane][tiles][c]`, `[plane][c][f]`, `[plane][tiles][f]`), on the calling thread: the
/// chunks already share the work out. Packed planes give the same values as transformed ones
/// (the same operations), without the products packing `U` per chunk or reading it in place.
///
/// # Panics
/// If `u` is packed at another level than `isa` (the caller packs and runs at the thread's
/// active level, in one call), or on a target where the matmul takes no packed operand.
pub(crate) fn plane_products(
    isa: isa::Isa,
    v: &[f32],
    u: Planes,
    m: &mut [f32],
    (tiles, c, f): (usize, usize, usize),
) {
    super::matmul::serially(|| match u {
        #[cfg(target_arch = "x86_64")]
        Planes::Packed(level, packed) => {
            assert_eq!(level, isa, "winograd: planes packed at another level");
            let per = super::matmul::packed_rhs_len(isa, c, f);
            for (p, m) in m.chunks_exact_mut(tiles * f).enumerate() {
                super::matmul::matmul_packed_then(
                    isa,
                    &v[p * tiles * c..(p + 1) * tiles * c],
                    &packed[p * per..(p + 1) * per],
                    m,
                    tiles,
                    c,
                    f,
                    None,
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Planes::Packed(..) => unreachable!("planes are packed for the x86-64 matmul only"),
        Planes::Transformed(u) => {
            for (p, m) in m.chunks_exact_mut(tiles * f).enumerate() {
                matmul_with(
                    isa,
                    &v[p * tiles * c..(p + 1) * tiles * c],
                    Transpose::No,
                    &u[p * c * f..(p + 1) * c * f],
                    Transpose::No,
                    m,
                    tiles,
                    c,
                    f,
                    false,
                );
            }
        }
    });
}

/// Cuts NHWC output `out` (`g.n * g.oh` rows of `g.ow * f` values) into chunks of whole tile
/// rows, `(first tile row, end tile row, the chunk's output rows)`: a tile row covers `mh`
/// output rows of each image with `tw` tiles. A chunk aims for [`CHUNK_VALUES`] per transform
/// position, and there are at least 2 chunks per thread when there is enough work.
pub(crate) fn tile_row_chunks<'a>(
    out: &'a mut [f32],
    g: &Conv2dGeometry,
    f: usize,
    mh: usize,
    tw: usize,
) -> Vec<(usize, usize, &'a mut [f32])> {
    let th = g.oh.div_ceil(mh);
    let tile_rows = g.n * th;
    let threads = rayon::current_num_threads().max(1);
    let by_size = (CHUNK_VALUES / (tw * (g.c + f)).max(1)).max(1);
    let by_threads = tile_rows.div_ceil(2 * threads).max(1);
    let rows_per_chunk = by_size.min(by_threads);
    let out_row = |r: usize| (r / th) * g.oh + (mh * (r % th)).min(g.oh);
    let mut chunks = Vec::with_capacity(tile_rows.div_ceil(rows_per_chunk));
    let mut rest = out;
    let mut r0 = 0;
    while r0 < tile_rows {
        let r1 = (r0 + rows_per_chunk).min(tile_rows);
        let rows = out_row(r1) - out_row(r0);
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(rows * g.ow * f);
        rest = tail;
        chunks.push((r0, r1, mine));
        r0 = r1;
    }
    chunks
}

/// `U[ξ] = (G g Gᵀ)[ξ]` for every (input channel, filter) pair, as `[16][c][filters]`, computed
/// in f64 (separably, vectorised over filters) and rounded once.
fn transform_kernel(kernel: &[f32], c: usize, f: usize) -> super::buffer::Buffer {
    let mut u = super::buffer::Buffer(super::buffer::overwritten(16 * c * f));
    transform_kernel_into(kernel, c, f, &mut u);
    u
}

/// [`transform_kernel`] into `u` (`16 * c * f` values, every one written).
pub(crate) fn transform_kernel_into(kernel: &[f32], c: usize, f: usize, u: &mut [f32]) {
    assert!(kernel.len() >= 9 * c * f, "winograd: kernel too short");
    let cf = c * f;
    if cf == 0 {
        return;
    }
    // A task per range of input channels, writing those channels' rows of all 16 planes of `U`
    // directly (a training step transforms every kernel again: no per-channel vectors).
    let per = c.div_ceil(4 * rayon::current_num_threads().max(1));
    let mut planes: Vec<_> = u
        .chunks_exact_mut(cf)
        .map(|p| p.chunks_mut(per * f))
        .collect();
    let tasks: Vec<(usize, Vec<&mut [f32]>)> = (0..c.div_ceil(per))
        .map(|t| {
            (
                t * per,
                planes.iter_mut().filter_map(Iterator::next).collect(),
            )
        })
        .collect();
    tasks.into_par_iter().for_each(|(c0, mut dst)| {
        // Per input channel: the 9 kernel rows of `f` values, then `G g` (4 x 3 rows), then
        // `(G g) Gᵀ` (4 x 4 rows). G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
        let mut gg = vec![0.0f64; 12 * f];
        for ci in c0..(c0 + per).min(c) {
            let k = |a: usize, b: usize| &kernel[(a * 3 + b) * cf + ci * f..][..f];
            for b in 0..3 {
                let (k0, k1, k2) = (k(0, b), k(1, b), k(2, b));
                for j in 0..f {
                    let (x0, x1, x2) = (k0[j] as f64, k1[j] as f64, k2[j] as f64);
                    gg[b * f + j] = x0;
                    gg[(3 + b) * f + j] = 0.5 * (x0 + x1 + x2);
                    gg[(6 + b) * f + j] = 0.5 * (x0 - x1 + x2);
                    gg[(9 + b) * f + j] = x2;
                }
            }
            let at = (ci - c0) * f;
            for i in 0..4 {
                let row = &gg[i * 3 * f..(i + 1) * 3 * f];
                let (t0, t1, t2) = (&row[..f], &row[f..2 * f], &row[2 * f..]);
                let [o0, o1, o2, o3] = &mut dst[4 * i..4 * i + 4] else {
                    unreachable!("16 planes")
                };
                for j in 0..f {
                    let (x0, x1, x2) = (t0[j], t1[j], t2[j]);
                    o0[at + j] = x0 as f32;
                    o1[at + j] = (0.5 * (x0 + x1 + x2)) as f32;
                    o2[at + j] = (0.5 * (x0 - x1 + x2)) as f32;
                    o3[at + j] = x2 as f32;
                }
            }
        }
    });
}

#[inline(always)]
fn sub(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x - y;
    }
}

#[inline(always)]
fn add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}

/// Writes `Bᵀ d B` of tile `(ty, tx)` into `v[ξ][t][..]`, `tmp` holding `Bᵀ d` (16 x c).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_tile(
    src: &[f32],
    g: &Conv2dGeometry,
    ty: usize,
    tx: usize,
    zeros: &[f32],
    tmp: &mut [f32],
    v: &mut [f32],
    tiles: usize,
    t: usize,
) {
    let c = g.c;
    let pix = |a: usize, b: usize| -> &[f32] {
        let iy = (2 * ty + a).checked_sub(g.pad_top).filter(|&r| r < g.h);
        let ix = (2 * tx + b).checked_sub(g.pad_left).filter(|&r| r < g.w);
        match (iy, ix) {
            (Some(iy), Some(ix)) => &src[(iy * g.w + ix) * c..][..c],
            _ => zeros,
        }
    };
    // Bᵀ d: row 0 = d0 - d2, row 1 = d1 + d2, row 2 = d2 - d1, row 3 = d1 - d3.
    for b in 0..4 {
        let (d0, d1, d2, d3) = (pix(0, b), pix(1, b), pix(2, b), pix(3, b));
        sub(&mut tmp[b * c..][..c], d0, d2);
        add(&mut tmp[(4 + b) * c..][..c], d1, d2);
        sub(&mut tmp[(8 + b) * c..][..c], d2, d1);
        sub(&mut tmp[(12 + b) * c..][..c], d1, d3);
    }
    // (Bᵀ d) B, the same combinations along columns.
    for a in 0..4 {
        let row = &tmp[a * 4 * c..(a + 1) * 4 * c];
        let (t0, t1, t2, t3) = (&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..]);
        let at = |j: usize| ((a * 4 + j) * tiles + t) * c;
        sub(&mut v[at(0)..][..c], t0, t2);
        add(&mut v[at(1)..][..c], t1, t2);
        sub(&mut v[at(2)..][..c], t2, t1);
        sub(&mut v[at(3)..][..c], t1, t3);
    }
}

/// `Aᵀ M A` of tile `t` into `y` (`[2][2][f]`), `s` holding `Aᵀ M` (8 x f).
#[inline(always)]
fn output_tile(m: &[f32], tiles: usize, t: usize, f: usize, s: &mut [f32], y: &mut [f32]) {
    let mp = |p: usize| &m[(p * tiles + t) * f..][..f];
    // Aᵀ M: row 0 = m0 + m1 + m2, row 1 = m1 - m2 - m3.
    for b in 0..4 {
        let (m0, m1, m2, m3) = (mp(b), mp(4 + b), mp(8 + b), mp(12 + b));
        let (s0, s1) = s.split_at_mut(4 * f);
        let (s0, s1) = (&mut s0[b * f..][..f], &mut s1[b * f..][..f]);
        for j in 0..f {
            s0[j] = m0[j] + m1[j] + m2[j];
            s1[j] = m1[j] - m2[j] - m3[j];
        }
    }
    for a in 0..2 {
        let row = &s[a * 4 * f..(a + 1) * 4 * f];
        let (s0, s1, s2, s3) = (&row[..f], &row[f..2 * f], &row[2 * f..3 * f], &row[3 * f..]);
        let (y0, y1) = y[a * 2 * f..(a + 1) * 2 * f].split_at_mut(f);
        for j in 0..f {
            y0[j] = s0[j] + s1[j] + s2[j];
            y1[j] = s1[j] - s2[j] - s3[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::conv::reference::normalish;
    use crate::tensor::conv::{conv2d_forward_cached, KernelCache, Padding};
    use crate::tensor::isa::Isa;

    /// Max |winograd - f64| / max(1, |ref|) over odd sizes, both paddings, batch 2, with an
    /// epilogue (bias, affine, ReLU), at every ISA the CPU runs; inputs N(0, 1) and post-ReLU,
    /// He-initialised kernels.
    fn matches_f64_reference_on_odd_sizes_and_every_isa(levels: Vec<Isa>) {
        let cases = [
            ([2, 7, 9, 5], Padding::Same, 6),
            ([2, 7, 9, 5], Padding::Valid, 6),
            ([1, 8, 8, 67], Padding::Same, 33),
            ([2, 13, 11, 96], Padding::Valid, 40),
            ([1, 5, 3, 3], Padding::Same, 17),
            ([3, 3, 3, 2], Padding::Valid, 3),
            ([1, 9, 10, 448], Padding::Same, 48),
            // Shapes `prefers` picks, so `conv2d_forward` (the dispatch) is checked too.
            ([1, 33, 35, 33], Padding::Same, 65),
            ([2, 35, 34, 40], Padding::Valid, 64),
            // A wide layer, which only a layer keeping its transformed kernel sends here.
            ([1, 7, 9, 385], Padding::Same, 257),
        ];
        for (seed, (shape, pad, f)) in cases.into_iter().enumerate() {
            let g = Conv2dGeometry::new(&shape, (3, 3), (1, 1), pad).unwrap();
            for relu_input in [false, true] {
                let mut x = normalish(shape.iter().product(), seed as u64);
                if relu_input {
                    x.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                let he = (2.0 / (9.0 * g.c as f32)).sqrt();
                let k: Vec<f32> = normalish(9 * g.c * f, 100 + seed as u64)
                    .iter()
                    .map(|v| v * he)
                    .collect();
                let bias = normalish(f, 7);
                let scale = normalish(f, 8);
                let shift = normalish(f, 9);
                let relu = |r: &mut [f32]| r.iter_mut().for_each(|v| *v = v.max(0.0));
                let steps = [
                    EpilogueStep::Bias(&bias),
                    EpilogueStep::Affine {
                        scale: &scale,
                        shift: &shift,
                    },
                    EpilogueStep::Map(&relu),
                ];
                let raw = crate::tensor::conv::reference::forward(&x, &g, &k, f);
                let want =
                    crate::tensor::conv::reference::bias_affine_relu(&raw, &bias, &scale, &shift);
                for level in levels.clone() {
                    let (plain, fused) = isa::with_forced(level, || {
                        (conv2d(&x, &g, &k, f, &[]), conv2d(&x, &g, &k, f, &steps))
                    });
                    let dispatched = isa::with_forced(level, || {
                        prefers(&g, f, false)
                            .then(|| crate::tensor::conv::conv2d_forward(&x, &g, &k, f, &steps))
                    });
                    if let Some(dispatched) = dispatched {
                        assert_eq!(dispatched, fused, "conv2d_forward runs winograd");
                    }
                    // A layer's dispatch, which keeps the transformed kernel: the second call
                    // reuses it.
                    if isa::with_forced(level, || prefers(&g, f, true)) {
                        let mut cache = KernelCache::default();
                        for _ in 0..2 {
                            let kept = isa::with_forced(level, || {
                                conv2d_forward_cached(&x, &g, &k, f, &steps, &mut cache, 7)
                            });
                            assert_eq!(kept, fused, "conv2d_forward_cached runs winograd");
                        }
                    }
                    let err = crate::tensor::conv::reference::max_rel_err;
                    let (e1, e2) = (err(&plain, &raw), err(&fused, &want));
                    eprintln!("{shape:?} {pad:?} f={f} relu_in={relu_input} {level}: max rel err {e1:.2e} (plain), {e2:.2e} (fused)");
                    assert!(
                        e1 <= 1e-5 && e2 <= 1e-5,
                        "{shape:?} {pad:?} f={f} {level}: rel err {e1:e} (plain), {e2:e} (fused)"
                    );
                }
            }
        }
    }
    crate::level_tests!(matches_f64_reference_on_odd_sizes_and_every_isa);

    fn prefers_only_3x3_stride_1(levels: Vec<Isa>) {
        let g = |k: (usize, usize), s: usize| {
            Conv2dGeometry::new(&[1, 35, 35, 64], k, (s, s), Padding::Same).unwrap()
        };
        let tiny = Conv2dGeometry::new(&[1, 4, 4, 64], (3, 3), (1, 1), Padding::Same).unwrap();
        for level in levels.clone() {
            let at = |g: &Conv2dGeometry, f| isa::with_forced(level, || prefers(g, f, false));
            assert!(!at(&g((3, 3), 2), 96));
            assert!(!at(&g((1, 7), 1), 96));
            assert!(!at(&g((5, 5), 1), 96));
            assert!(!at(&tiny, 96));
            assert_eq!(at(&g((3, 3), 1), 96), level != Isa::Portable, "{level}");
            // 32 filters only at AVX2 (on AVX-512 the direct kernel keeps up).
            assert_eq!(at(&g((3, 3), 1), 32), level == Isa::Avx2, "{level}");
            // 448 -> 384 (InceptionV3's 8x8 layers) only with the transformed kernel kept.
            let wide = Conv2dGeometry::new(&[1, 8, 8, 448], (3, 3), (1, 1), Padding::Same).unwrap();
            assert!(!at(&wide, 384));
            let kept = isa::with_forced(level, || prefers(&wide, 384, true));
            assert_eq!(kept, level != Isa::Portable, "{level}");
        }
    }
    crate::level_tests!(prefers_only_3x3_stride_1);
}
