//! 2-D convolution over NHWC tensors by im2col + gemm (or the direct kernel in `direct_conv` for
//! few input channels), with TensorFlow's padding rules.
//!
//! The kernel layout is Keras's HWIO `(kh, kw, in, out)`, which flattened row-major is exactly the
//! `(kh*kw*in) x out` matrix that multiplies an im2col matrix whose columns run `(kh, kw, c)`. So
//! Keras kernels are used as stored. A 1x1, stride-1 convolution needs no im2col at all: NHWC input
//! already is the `(n*h*w) x c` matrix.

use super::isa;
use super::matmul::{matmul, matmul_then, RowsFn, Transpose};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Keras's padding modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    #[default]
    Valid,
    Same,
}

impl Padding {
    pub fn as_str(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }
}

/// Output length along one axis (TensorFlow's rule).
pub fn conv_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Option<usize> {
    match padding {
        Padding::Same => Some(input.div_ceil(stride)),
        Padding::Valid => (input >= kernel).then(|| (input - kernel) / stride + 1),
    }
}

/// Padding before one axis for `same`: TensorFlow puts the odd pixel *after*, so the padding is
/// asymmetric for even kernels or strided convolutions.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> usize {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    total / 2
}

/// Everything needed to index one convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub oh: usize,
    pub ow: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Conv2dGeometry {
    /// Geometry for an NHWC input; `None` if the window does not fit (`valid` on a small input).
    pub fn new(
        input: &[usize],
        kernel: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Option<Conv2dGeometry> {
        let [n, h, w, c] = *input else { return None };
        let oh = conv_output_len(h, kernel.0, strides.0, padding)?;
        let ow = conv_output_len(w, kernel.1, strides.1, padding)?;
        let (pad_top, pad_left) = match padding {
            Padding::Valid => (0, 0),
            Padding::Same => (
                same_padding(h, kernel.0, strides.0),
                same_padding(w, kernel.1, strides.1),
            ),
        };
        Some(Conv2dGeometry {
            n,
            h,
            w,
            c,
            kh: kernel.0,
            kw: kernel.1,
            sh: strides.0,
            sw: strides.1,
            oh,
            ow,
            pad_top,
            pad_left,
        })
    }

    /// Columns of the im2col matrix.
    pub fn patch_len(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Whether the convolution is a plain matmul over the NHWC input.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1
    }

    /// Input row/column for output position `o` and kernel offset `k`, or `None` in the padding.
    #[inline]
    pub fn in_row(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.sh + k)
            .checked_sub(self.pad_top)
            .filter(|&r| r < self.h)
    }
    #[inline]
    pub fn in_col(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.sw + k)
            .checked_sub(self.pad_left)
            .filter(|&c| c < self.w)
    }

    /// How many images to process at once so the im2col buffer stays near 16 MiB.
    fn chunk_images(&self) -> usize {
        let per_image = self.oh * self.ow * self.patch_len() * 4;
        (16 << 20) / per_image.max(1)
    }
}

/// Fills `col` ((images*oh*ow) x patch_len) with the patches of `images` starting at `first`.
fn im2col(x: &[f32], g: &Conv2dGeometry, first: usize, images: usize, col: &mut [f32]) {
    let plen = g.patch_len();
    let img_len = g.h * g.w * g.c;
    col[..images * g.oh * g.ow * plen]
        .par_chunks_mut(g.ow * plen)
        .enumerate()
        .for_each(|(row, out)| {
            let img = first + row / g.oh;
            let oy = row % g.oh;
            let src = &x[img * img_len..(img + 1) * img_len];
            for ox in 0..g.ow {
                let patch = &mut out[ox * plen..(ox + 1) * plen];
                for ky in 0..g.kh {
                    let seg = &mut patch[ky * g.kw * g.c..(ky + 1) * g.kw * g.c];
                    let Some(iy) = g.in_row(oy, ky) else {
                        seg.fill(0.0);
                        continue;
                    };
                    for kx in 0..g.kw {
                        let dst = &mut seg[kx * g.c..(kx + 1) * g.c];
                        match g.in_col(ox, kx) {
                            Some(ix) => {
                                let o = (iy * g.w + ix) * g.c;
                                dst.copy_from_slice(&src[o..o + g.c]);
                            }
                            None => dst.fill(0.0),
                        }
                    }
                }
            }
        });
}

/// One per-channel step of a convolution's output epilogue. The steps run in order over each block
/// of output rows (a row is one pixel's `filters` values) right after the matmul wrote the block,
/// so bias, an inference BatchNormalization and an activation cost no extra pass over memory.
/// Each step performs exactly the f32 operations of the separate layer it replaces, so a fused
/// forward pass is bit-identical to the unfused one.
#[derive(Clone, Copy)]
pub enum EpilogueStep<'a> {
    /// `y[c] += bias[c]` (a convolution's bias).
    Bias(&'a [f32]),
    /// `y[c] = y[c] * scale[c] + shift[c]` (BatchNormalization with fixed statistics).
    Affine { scale: &'a [f32], shift: &'a [f32] },
    /// `y = max(y, 0)`, exactly Keras's `relu` activation (the common case gets a vectorised
    /// loop of its own instead of a call through `Map`).
    Relu,
    /// A function over whole rows, in place (an activation; softmax needs whole rows).
    Map(&'a (dyn Fn(&mut [f32]) + Sync)),
}

impl std::fmt::Debug for EpilogueStep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpilogueStep::Bias(b) => write!(f, "Bias({})", b.len()),
            EpilogueStep::Affine { scale, .. } => write!(f, "Affine({})", scale.len()),
            EpilogueStep::Relu => f.write_str("Relu"),
            EpilogueStep::Map(_) => f.write_str("Map"),
        }
    }
}

/// Values per epilogue block: small enough (64 KiB) to stay in L1/L2 between steps.
const EPILOGUE_BLOCK: usize = 16384;

/// Applies `steps` to `out` (rows of `filters` values), in parallel over blocks of whole rows.
pub fn apply_epilogue(out: &mut [f32], filters: usize, steps: &[EpilogueStep]) {
    if steps.is_empty() || filters == 0 {
        return;
    }
    let block = (EPILOGUE_BLOCK / filters).max(1) * filters;
    if out.len() > block {
        out.par_chunks_mut(block)
            .for_each(|b| apply_epilogue_serial(b, filters, steps));
    } else {
        apply_epilogue_serial(out, filters, steps);
    }
}

/// [`apply_epilogue`] on the calling thread (for kernels already running inside a parallel task).
pub(crate) fn apply_epilogue_serial(out: &mut [f32], filters: usize, steps: &[EpilogueStep]) {
    if steps.is_empty() || filters == 0 {
        return;
    }
    let block = (EPILOGUE_BLOCK / filters).max(1) * filters;
    isa::vectorized(
        isa::active(),
        #[inline(always)]
        || {
            for blk in out.chunks_mut(block) {
                for step in steps {
                    match *step {
                        EpilogueStep::Bias(b) => blk
                            .chunks_exact_mut(filters)
                            .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b)),
                        EpilogueStep::Affine { scale, shift } => {
                            for r in blk.chunks_exact_mut(filters) {
                                r.iter_mut()
                                    .zip(scale.iter().zip(shift))
                                    .for_each(|(v, (a, b))| *v = *v * a + b);
                            }
                        }
                        EpilogueStep::Relu => blk.iter_mut().for_each(|v| *v = v.max(0.0)),
                        EpilogueStep::Map(f) => f(blk),
                    }
                }
            }
        },
    )
}

/// The epilogue's steps on `seg`, the part of one output row that starts at channel `j0`: per
/// value the same f32 operations, in the same order, as [`apply_epilogue_serial`] on whole rows.
/// Steps must not include `Map` (whole rows only).
#[inline(always)]
fn epilogue_segment(seg: &mut [f32], j0: usize, steps: &[EpilogueStep]) {
    let cols = j0..j0 + seg.len();
    for step in steps {
        match *step {
            EpilogueStep::Bias(b) => seg
                .iter_mut()
                .zip(&b[cols.clone()])
                .for_each(|(v, b)| *v += b),
            EpilogueStep::Affine { scale, shift } => seg
                .iter_mut()
                .zip(scale[cols.clone()].iter().zip(&shift[cols.clone()]))
                .for_each(|(v, (a, b))| *v = *v * a + b),
            EpilogueStep::Relu => seg.iter_mut().for_each(|v| *v = v.max(0.0)),
            EpilogueStep::Map(_) => unreachable!("Map steps need whole rows"),
        }
    }
}

/// Forward convolution: `x` NHWC, `kernel` HWIO with `filters` outputs, then `epilogue` applied to
/// each chunk of output while it is hot. Returns NHWC output data. Few-input-channel spatial
/// kernels run the direct kernel ([`super::direct_conv`]), the rest im2col + matmul.
pub fn conv2d_forward(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    let mut once = KernelCache::default();
    run_engine(x, g, (kernel, filters, epilogue), &mut once, 0, false)
}

/// What an engine derives from a convolution kernel before it runs (Winograd's transformed
/// kernel, the direct kernel's packed blocks), kept by the layer between calls and derived again
/// only when the kernel's [`version`](crate::layers::Weight::version) differs from the one it was
/// made from. A frozen base's kernels never change, and transforming InceptionV3's 448->384
/// kernel (16 x 448 x 384 values, in f64) cost as much as a third of that convolution at batch 8:
/// with the transform kept, Winograd beats im2col on that layer too (see
/// [`super::winograd::prefers`]).
///
/// The im2col / pointwise engine's kernel and the Winograd engines' transformed planes are also
/// kept packed for the matmul (`B`'s layout at the calling thread's level), from the second call
/// that sees the same version on: a trainable layer's kernel changes every step, so packing it
/// ahead would be a copy for nothing, while a frozen base calls with one version for good. At
/// batch 1 a layer's weights are most of what it reads, and the per-call path either packs them
/// (a pass over them, per Winograd chunk) or reads them in place, one 64-byte line per kernel
/// row. InceptionV3 at batch 1 (`inception_infer`, Zen 4 AVX2, 2 threads, 14 interleaved pairs
/// of 15-rep runs): median step 86.3 -> 82.6 ms, 10 of 14 pairs faster; the price is a second
/// copy of those weights (peak RSS 274 -> 383 MiB; 330 since Winograd's transformed copy is
/// freed once its packed form exists, see `winograd_planes`).
#[derive(Default)]
pub struct KernelCache {
    /// Winograd's transformed kernel (2-D or 1-D: a layer's kernel shape picks one for good).
    winograd: Option<(u64, Vec<f32>)>,
    /// The direct kernel's packed blocks.
    direct: super::direct_conv::Packed,
    /// The im2col engine's kernel packed for the matmul.
    gemm: PackedSlot,
    /// Winograd's transformed planes packed for the matmul.
    planes: PackedSlot,
    /// The version the last call saw (packing waits for a second call with the same one).
    seen: Option<u64>,
}

/// A packed kernel's slot: the values, under the version and level they were packed for.
type PackedSlot = Option<((u64, isa::Isa), Vec<f32>)>;

/// `planes` row-major `k x n` matrices stored back to back in what `b` returns (a kernel, or a
/// transformed kernel's planes), each packed for [`super::matmul::matmul_packed_then`] at the
/// calling thread's level and kept in `slot`, unless this is the first call with `version`
/// (`seen` remembers the last version; see [`KernelCache`]). `b` is called only to pack.
#[cfg(target_arch = "x86_64")]
fn packed_planes<'c, 'b>(
    slot: &'c mut PackedSlot,
    seen: &mut Option<u64>,
    version: u64,
    b: impl FnOnce() -> &'b [f32],
    (planes, k, n): (usize, usize, usize),
) -> Option<(isa::Isa, &'c [f32])> {
    use super::matmul::{pack_rhs, packed_rhs_len};
    let level = isa::active();
    let per = packed_rhs_len(level, k, n);
    let key = (version, level);
    let ready = slot
        .as_ref()
        .is_some_and(|(k2, v)| *k2 == key && v.len() == planes * per);
    if !ready && *seen != Some(version) {
        // A new version: what was packed is stale (freed, not kept for a kernel that may never
        // stand still).
        *seen = Some(version);
        *slot = None;
        return None;
    }
    let packed = kept(slot, key, planes * per, |dst| {
        let b = b();
        for (p, d) in dst.chunks_exact_mut(per).enumerate() {
            pack_rhs(level, &b[p * k * n..(p + 1) * k * n], k, n, d);
        }
    });
    Some((level, packed))
}

/// Nothing is packed ahead where the matmul is the `gemm` crate's.
#[cfg(not(target_arch = "x86_64"))]
fn packed_planes<'c, 'b>(
    _slot: &'c mut PackedSlot,
    _seen: &mut Option<u64>,
    _version: u64,
    _b: impl FnOnce() -> &'b [f32],
    _dims: (usize, usize, usize),
) -> Option<(isa::Isa, &'c [f32])> {
    None
}

/// The planes a Winograd engine multiplies by (`dims` = planes, `c`, `f`): transformed by
/// `transform` and kept in `cache`, or, from the second call with `version` on, packed for the
/// matmul. Once packed, the transformed copy is freed: a frozen layer keeps two forms of its
/// kernel (HWIO and packed), not three (peak RSS of InceptionV3 at batch 1: 378-384 -> 326-339
/// MiB). A new version or level is transformed again from the HWIO kernel.
fn winograd_planes<'c>(
    cache: &'c mut KernelCache,
    version: u64,
    (planes, c, f): (usize, usize, usize),
    transform: impl Fn(&mut [f32]),
) -> super::winograd::Planes<'c> {
    use super::winograd::Planes;
    let KernelCache {
        winograd,
        planes: slot,
        seen,
        ..
    } = cache;
    let len = planes * c * f;
    let (w, t) = (&mut *winograd, &transform);
    // Moving `w` in makes the closure `FnOnce`, so the values may outlive its call.
    let transformed = move || {
        let w = w;
        kept(w, version, len, t)
    };
    match packed_planes(slot, seen, version, transformed, (planes, c, f)) {
        Some((level, packed)) => {
            *winograd = None;
            Planes::Packed(level, packed)
        }
        None => Planes::Transformed(kept(winograd, version, len, &transform)),
    }
}

/// The values in `slot` if they were made under `key` and have `len` values; otherwise `fill`
/// makes them (into `len` values, reusing the slot's vector) and they are kept under `key`.
/// `fill` must write every value: it gets the old ones, not zeros (a trainable layer refills
/// its kernel every step, and zeroing 16 x 448 x 384 values first would be a pass for nothing).
/// Long-lived, so a plain vector, not a pooled buffer (which it would pin).
pub(crate) fn kept<K: PartialEq>(
    slot: &mut Option<(K, Vec<f32>)>,
    key: K,
    len: usize,
    fill: impl FnOnce(&mut [f32]),
) -> &[f32] {
    if !slot
        .as_ref()
        .is_some_and(|(k, v)| *k == key && v.len() == len)
    {
        let mut v = slot.take().map(|(_, v)| v).unwrap_or_default();
        v.resize(len, 0.0);
        fill(&mut v);
        *slot = Some((key, v));
    }
    slot.as_ref().map_or(&[], |(_, v)| v)
}

/// [`conv2d_forward`] keeping what the engine derives from `kernel` in `cache`, valid while the
/// kernel's version is `version` (which the caller changes whenever the kernel may have).
pub fn conv2d_forward_cached(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
    cache: &mut KernelCache,
    version: u64,
) -> Vec<f32> {
    run_engine(x, g, (kernel, filters, epilogue), cache, version, true)
}

/// The engine for this geometry, with `cache` for what it derives from the kernel; `kept` says
/// whether `cache` outlives the call (see [`super::winograd::prefers`]).
fn run_engine(
    x: &[f32],
    g: &Conv2dGeometry,
    (kernel, filters, epilogue): (&[f32], usize, &[EpilogueStep]),
    cache: &mut KernelCache,
    version: u64,
    kept: bool,
) -> Vec<f32> {
    let (c, f) = (g.c, filters);
    if super::winograd::prefers(g, filters, kept) {
        let u = winograd_planes(cache, version, (16, c, f), |u| {
            super::winograd::transform_kernel_into(kernel, c, f, u)
        });
        return super::winograd::conv2d_kept(x, g, u, filters, epilogue);
    }
    if let Some((s, _)) =
        super::winograd_1d::scheme(g).filter(|_| super::winograd_1d::prefers(g, filters))
    {
        let u = winograd_planes(cache, version, (s.planes(), c, f), |u| {
            super::winograd_1d::transform_kernel_into(s, kernel, c, f, u)
        });
        return super::winograd_1d::conv2d_kept(x, g, u, filters, epilogue);
    }
    if super::direct_conv::prefers_direct(g, filters) {
        let packed = &mut cache.direct;
        return super::direct_conv::conv2d_direct_kept(
            x, g, kernel, filters, epilogue, packed, version,
        );
    }
    let packed = if kept {
        let dims = (1, g.patch_len(), filters);
        packed_planes(&mut cache.gemm, &mut cache.seen, version, || kernel, dims)
    } else {
        None
    };
    im2col_engine(x, g, kernel, packed, filters, epilogue)
}

/// [`conv2d_forward`] by im2col + matmul (a plain matmul for pointwise kernels), whatever the
/// geometry.
pub fn conv2d_forward_im2col(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    im2col_engine(x, g, kernel, None, filters, epilogue)
}

/// [`conv2d_forward_im2col`], reading the kernel from `packed` (the level it was packed at, and
/// the values) when given.
fn im2col_engine(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    packed: Option<(isa::Isa, &[f32])>,
    filters: usize,
    epilogue: &[EpilogueStep],
) -> Vec<f32> {
    for step in epilogue {
        match *step {
            EpilogueStep::Bias(b) => assert_eq!(b.len(), filters, "bias length"),
            EpilogueStep::Affine { scale, shift } => {
                assert!(
                    scale.len() == filters && shift.len() == filters,
                    "affine length"
                )
            }
            EpilogueStep::Relu | EpilogueStep::Map(_) => {}
        }
    }
    let rows_per_img = g.oh * g.ow;
    // Every value is stored by the matmul (which zeroes its output when the depth is 0).
    let mut out = super::buffer::overwritten(g.n * rows_per_img * filters);
    let plen = g.patch_len();
    // The product, then the epilogue: inside the matmul on each finished tile when every step
    // works on parts of rows, else as a pass over the output.
    let level = isa::active();
    let fusable = !epilogue.iter().any(|s| matches!(s, EpilogueStep::Map(_)));
    let then = |j0: usize, seg: &mut [f32]| {
        isa::vectorized(
            level,
            #[inline(always)]
            || epilogue_segment(seg, j0, epilogue),
        )
    };
    let fused = (fusable && !epilogue.is_empty()).then_some(&then as &RowsFn);
    let product = |a: &[f32], dst: &mut [f32], m: usize| {
        match packed {
            #[cfg(target_arch = "x86_64")]
            Some((level, p)) => {
                super::matmul::matmul_packed_then(level, a, p, dst, m, plen, filters, fused)
            }
            _ => matmul_then(
                a,
                Transpose::No,
                kernel,
                Transpose::No,
                dst,
                m,
                plen,
                filters,
                fused,
            ),
        }
        if fused.is_none() {
            apply_epilogue(dst, filters, epilogue);
        }
    };
    if g.is_pointwise() {
        product(x, &mut out, g.n * rows_per_img);
        return out;
    }
    let chunk = g.chunk_images().clamp(1, g.n.max(1));
    let mut col = super::buffer::Buffer(super::buffer::overwritten(chunk * rows_per_img * plen));
    let mut first = 0;
    while first < g.n {
        let imgs = chunk.min(g.n - first);
        im2col(x, g, first, imgs, &mut col);
        let m = imgs * rows_per_img;
        let dst = &mut out[first * rows_per_img * filters..(first + imgs) * rows_per_img * filters];
        product(&col, dst, m);
        first += imgs;
    }
    out
}

/// Backward convolution. Adds the kernel gradient into `dkernel` when given, and returns the input
/// gradient when `need_dx`. `x` is the forward input; im2col is recomputed rather than stored, so a
/// training step keeps only the layer inputs alive.
pub fn conv2d_backward(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    dy: &[f32],
    dkernel: Option<&mut [f32]>,
    need_dx: bool,
) -> Option<Vec<f32>> {
    let rows_per_img = g.oh * g.ow;
    let plen = g.patch_len();
    if g.is_pointwise() {
        // Stored whole by the matmul below (which zeroes its output when the depth is 0).
        let mut dx = need_dx.then(|| super::buffer::overwritten(g.n * g.h * g.w * g.c));
        if let Some(dk) = dkernel {
            matmul(
                x,
                Transpose::Yes,
                dy,
                Transpose::No,
                dk,
                plen,
                g.n * rows_per_img,
                filters,
                true,
            );
        }
        if let Some(dx) = dx.as_mut() {
            matmul(
                dy,
                Transpose::No,
                kernel,
                Transpose::Yes,
                dx,
                g.n * rows_per_img,
                filters,
                plen,
                false,
            );
        }
        return dx;
    }
    // Spatial kernels: each gradient by the engine measured fastest for the geometry (see
    // `conv_backward`).
    let dx = need_dx.then(|| super::conv_backward::input_grad(dy, g, kernel, filters));
    if let Some(dk) = dkernel {
        super::conv_backward::kernel_grad(x, g, filters, dy, dk);
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    #[test]
    fn same_padding_is_tensorflows() {
        // 5 wide, kernel 3, stride 2: out 3, total pad 2 -> 1 before, 1 after.
        assert_eq!(same_padding(5, 3, 2), 1);
        // 4 wide, kernel 3, stride 2: out 2, total pad 1 -> 0 before, 1 after (asymmetric).
        assert_eq!(same_padding(4, 3, 2), 0);
        assert_eq!(conv_output_len(299, 3, 2, Padding::Valid), Some(149));
        assert_eq!(conv_output_len(2, 3, 1, Padding::Valid), None);
    }

    #[test]
    fn im2col_gemm_matches_direct_convolution() {
        let mut r = random::rng(Some(7));
        let cases = [
            ([2, 5, 5, 3], (3, 3), (1, 1), Padding::Same, 4),
            ([1, 6, 7, 2], (3, 3), (2, 2), Padding::Same, 5),
            ([3, 7, 6, 1], (2, 3), (2, 1), Padding::Valid, 3),
            ([2, 4, 4, 5], (1, 1), (1, 1), Padding::Valid, 6),
            ([1, 8, 8, 3], (1, 7), (1, 1), Padding::Same, 2),
            ([2, 9, 9, 2], (5, 5), (3, 3), Padding::Same, 3),
        ];
        for (shape, k, s, p, f) in cases {
            let g = Conv2dGeometry::new(&shape, k, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let kern = random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0);
            let got = conv2d_forward_im2col(&x, &g, &kern, f, &[]);
            let want = reference::forward(&x, &g, &kern, f);
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() < 1e-4,
                    "{shape:?} {k:?} {s:?} {p:?}: {a} vs {b}"
                );
            }
        }
    }

    /// The epilogue (bias, BN affine, ReLU) in the convolution's output pass equals the
    /// definition computed in f64, on odd sizes, pointwise and im2col paths, with every ISA.
    fn fused_epilogue_matches_f64_reference(levels: Vec<crate::tensor::isa::Isa>) {
        let mut r = random::rng(Some(11));
        let cases = [
            ([2, 7, 5, 3], (3, 3), (2, 1), Padding::Same, 5),
            ([3, 5, 6, 7], (1, 1), (1, 1), Padding::Valid, 9),
            ([1, 9, 8, 2], (3, 1), (1, 2), Padding::Valid, 3),
            // Wider than one register tile: the fused steps see row parts starting at j0 > 0.
            ([2, 6, 5, 4], (1, 1), (1, 1), Padding::Valid, 70),
            ([1, 7, 6, 3], (3, 3), (1, 1), Padding::Same, 70),
        ];
        for (shape, k, s, p, f) in cases {
            let g = Conv2dGeometry::new(&shape, k, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let kern = random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0);
            let bias = random::uniform(&mut r, f, -0.5, 0.5);
            let scale = random::uniform(&mut r, f, 0.5, 2.0);
            let shift = random::uniform(&mut r, f, -0.5, 0.5);
            let relu = |v: &mut [f32]| v.iter_mut().for_each(|v| *v = v.max(0.0));
            let affine = EpilogueStep::Affine {
                scale: &scale,
                shift: &shift,
            };
            // `Relu` runs on each finished tile inside the matmul; `Map` (whole rows) after it.
            let fused = [EpilogueStep::Bias(&bias), affine, EpilogueStep::Relu];
            let after = [EpilogueStep::Bias(&bias), affine, EpilogueStep::Map(&relu)];
            let want = reference::bias_affine_relu(
                &reference::forward(&x, &g, &kern, f),
                &bias,
                &scale,
                &shift,
            );
            type Engine = fn(&[f32], &Conv2dGeometry, &[f32], usize, &[EpilogueStep]) -> Vec<f32>;
            let engines: [(&str, Engine); 2] = [
                ("im2col", conv2d_forward_im2col),
                ("direct", crate::tensor::direct_conv::conv2d_direct),
            ];
            for isa in levels.clone() {
                for (name, engine) in engines {
                    let run = |steps: &[EpilogueStep]| {
                        crate::tensor::isa::with_forced(isa, || engine(&x, &g, &kern, f, steps))
                    };
                    let got = run(&fused);
                    assert_eq!(got.len(), want.len());
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()) * 10.0,
                            "{isa} {name} {shape:?} {k:?}: {a} vs {b}"
                        );
                    }
                    // Each value takes the same f32 operations either way.
                    assert_eq!(run(&after), got, "{isa} {name} {shape:?} {k:?}");
                }
            }
        }
    }
    crate::level_tests!(fused_epilogue_matches_f64_reference);
}

#[cfg(test)]
mod kept_tests {
    use super::*;
    use crate::tensor::isa::{self, Isa};
    use crate::tensor::random;

    /// A layer's kernel is packed for the matmul from the second call with one version on, and
    /// the packed kernel gives the bits of an unpacked call (the same operations in the same
    /// order): im2col, pointwise, and both Winograd engines' planes, at every level this CPU
    /// runs; a new version is not packed until it is seen twice.
    fn kept_packed_kernels_give_the_same_bits(levels: Vec<Isa>) {
        let mut r = random::rng(Some(31));
        let cases = [
            (
                "pointwise",
                [1, 9, 8, 67],
                (1, 1),
                (1, 1),
                Padding::Valid,
                70,
            ),
            ("im2col", [2, 9, 7, 193], (3, 3), (2, 2), Padding::Same, 40),
            (
                "winograd",
                [1, 33, 35, 33],
                (3, 3),
                (1, 1),
                Padding::Same,
                65,
            ),
            (
                "winograd_1d",
                [1, 17, 17, 130],
                (1, 7),
                (1, 1),
                Padding::Same,
                129,
            ),
        ];
        for (name, shape, k, s, p, f) in cases {
            let g = Conv2dGeometry::new(&shape, k, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let kernels =
                [1u64, 2].map(|v| (v, random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0)));
            let bias = random::uniform(&mut r, f, -0.5, 0.5);
            let steps = [EpilogueStep::Bias(&bias), EpilogueStep::Relu];
            for level in levels.clone() {
                isa::with_forced(level, || {
                    let mut cache = KernelCache::default();
                    for (version, kern) in &kernels {
                        // A first call never packs: the unpacked result of this engine.
                        let want = conv2d_forward_cached(
                            &x,
                            &g,
                            kern,
                            f,
                            &steps,
                            &mut KernelCache::default(),
                            *version,
                        );
                        for call in 0..3 {
                            let got = conv2d_forward_cached(
                                &x, &g, kern, f, &steps, &mut cache, *version,
                            );
                            assert!(
                                got.iter()
                                    .zip(&want)
                                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{level} {name} version {version} call {call}"
                            );
                            // Winograd never runs at the portable level: the direct engine
                            // takes those shapes there, with its own packing.
                            let slot = match (name.starts_with("winograd"), level) {
                                (true, Isa::Portable) => None,
                                (true, _) => Some(&cache.planes),
                                (false, _) => Some(&cache.gemm),
                            };
                            if let Some(slot) = slot {
                                let packed = call > 0 && cfg!(target_arch = "x86_64");
                                assert_eq!(
                                    slot.is_some(),
                                    packed,
                                    "{level} {name} version {version} call {call}: packed?"
                                );
                                // Once packed, Winograd's transformed copy is freed.
                                if name.starts_with("winograd") {
                                    assert_eq!(cache.winograd.is_some(), !packed, "{level} {name}");
                                }
                            }
                        }
                    }
                    // Another level on the same cache: the planes packed at this one cannot
                    // serve it, and their transformed source was freed, so it transforms anew.
                    if level == Isa::Avx512 {
                        let (version, kern) = &kernels[1];
                        let run = |cache: &mut KernelCache| {
                            isa::with_forced(Isa::Avx2, || {
                                conv2d_forward_cached(&x, &g, kern, f, &steps, cache, *version)
                            })
                        };
                        let want = run(&mut KernelCache::default());
                        for call in 0..2 {
                            let got = run(&mut cache);
                            assert!(
                                got.iter()
                                    .zip(&want)
                                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{name}: avx2 call {call} after avx512 packing"
                            );
                        }
                    }
                });
            }
        }
    }
    crate::level_tests!(kept_packed_kernels_give_the_same_bits);
}

#[cfg(test)]
mod backward_tests {
    use super::*;
    use crate::tensor::isa::{self, Isa};
    use crate::tensor::random;

    /// Input and kernel gradients against the f64 definition on odd sizes: stride 1 (the direct
    /// input-gradient path when the channels suit it, im2col otherwise), strided, both paddings,
    /// even and rectangular kernels, pointwise; every ISA this CPU runs; kernel gradient
    /// accumulated onto a non-zero start. Tolerance 1e-5 relative to the sum of |terms|.
    fn backward_matches_f64_reference_on_every_isa(levels: Vec<Isa>) {
        let mut r = random::rng(Some(23));
        let cases = [
            ([2, 9, 11, 5], (3, 3), (1, 1), Padding::Same, 17),
            ([1, 8, 7, 3], (3, 3), (1, 1), Padding::Valid, 9),
            ([2, 7, 9, 6], (2, 4), (1, 1), Padding::Same, 33),
            ([1, 9, 8, 7], (1, 7), (1, 1), Padding::Same, 10),
            ([2, 9, 7, 4], (3, 3), (2, 2), Padding::Same, 12),
            ([1, 10, 9, 3], (5, 5), (2, 1), Padding::Valid, 8),
            ([3, 5, 6, 7], (1, 1), (1, 1), Padding::Valid, 9),
            ([1, 6, 7, 130], (3, 3), (1, 1), Padding::Same, 11),
            ([1, 5, 6, 3], (3, 3), (1, 1), Padding::Same, 130),
            // Enough pixels (depth) for the kernel gradient to split across threads.
            ([2, 20, 19, 6], (3, 3), (1, 1), Padding::Same, 20),
        ];
        for (shape, ks, s, p, f) in cases {
            let g = Conv2dGeometry::new(&shape, ks, s, p).unwrap();
            let x = random::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
            let k = random::uniform(&mut r, g.patch_len() * f, -1.0, 1.0);
            let dy = random::uniform(&mut r, g.n * g.oh * g.ow * f, -1.0, 1.0);
            let ((dx_want, dx_scale), (dk_want, dk_scale)) =
                reference::backward(&x, &g, &k, f, &dy);
            for level in levels.clone() {
                isa::with_forced(level, || {
                    let mut dk = vec![0.25f32; k.len()];
                    let dx = conv2d_backward(&x, &g, &k, f, &dy, Some(&mut dk), true).unwrap();
                    let dx_only = conv2d_backward(&x, &g, &k, f, &dy, None, true).unwrap();
                    assert_eq!(dx, dx_only, "{level} {shape:?}: dx alone differs");
                    for i in 0..dx.len() {
                        let err = (dx[i] as f64 - dx_want[i]).abs();
                        assert!(
                            err <= 1e-5 * dx_scale[i] + 1e-30,
                            "{level} {shape:?} {ks:?} {s:?} {p:?} dx[{i}]: {} vs {}",
                            dx[i],
                            dx_want[i]
                        );
                    }
                    for i in 0..dk.len() {
                        let want = dk_want[i] + 0.25;
                        let err = (dk[i] as f64 - want).abs();
                        assert!(
                            err <= 1e-5 * (dk_scale[i] + 0.25),
                            "{level} {shape:?} {ks:?} {s:?} {p:?} dk[{i}]: {} vs {want}",
                            dk[i]
                        );
                    }
                });
            }
        }
    }
    crate::level_tests!(backward_matches_f64_reference_on_every_isa);
}

/// The definitions the convolution kernels' tests compare against (conv, direct, Winograd,
/// backward engines).
#[cfg(test)]
pub(crate) mod reference {
    use super::Conv2dGeometry;

    /// Deterministic N(0, 1)-ish values (sum of uniforms), so the test needs no RNG state.
    pub(crate) fn normalish(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                let mut acc = 0.0f32;
                for _ in 0..4 {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                }
                acc * 1.732
            })
            .collect()
    }

    /// Max `|got - want| / max(1, |want|)`, after checking the lengths agree.
    pub(crate) fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(a, b)| (*a as f64 - b).abs() / b.abs().max(1.0))
            .fold(0.0f64, f64::max)
    }

    /// `max((y + bias) * scale + shift, 0)` per channel of `y` (rows of `bias.len()` values): the
    /// fused epilogue Bias, Affine, relu by definition, in f64.
    pub(crate) fn bias_affine_relu(
        y: &[f64],
        bias: &[f32],
        scale: &[f32],
        shift: &[f32],
    ) -> Vec<f64> {
        let f = bias.len();
        y.iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i % f;
                ((v + bias[c] as f64) * scale[c] as f64 + shift[c] as f64).max(0.0)
            })
            .collect()
    }

    /// Convolution by definition, in f64 (`x` NHWC, `k` HWIO with `f` outputs).
    pub(crate) fn forward(x: &[f32], g: &Conv2dGeometry, k: &[f32], f: usize) -> Vec<f64> {
        grouped_forward(x, g, k, f, 1)
    }

    /// Grouped convolution by definition, in f64: output channel `o` of group `o / (f / groups)`
    /// sums that group's `g.c / groups` input channels (`k` is `(kh, kw, c / groups, f)`).
    pub(crate) fn grouped_forward(
        x: &[f32],
        g: &Conv2dGeometry,
        k: &[f32],
        f: usize,
        groups: usize,
    ) -> Vec<f64> {
        let (cg, fg) = (g.c / groups, f / groups);
        let mut out = vec![0.0f64; g.n * g.oh * g.ow * f];
        for n in 0..g.n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for o in 0..f {
                        let c0 = o / fg * cg;
                        let mut s = 0.0f64;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let (Some(iy), Some(ix)) = (g.in_row(oy, ky), g.in_col(ox, kx))
                                else {
                                    continue;
                                };
                                for c in 0..cg {
                                    let xv = x[((n * g.h + iy) * g.w + ix) * g.c + c0 + c];
                                    let kv = k[((ky * g.kw + kx) * cg + c) * f + o];
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

    /// The gradients by definition, in f64: `dx[n,iy,ix,c] = sum dy[n,oy,ox,f] k[ky,kx,c,f]` and
    /// `dk[ky,kx,c,f] = sum x[n,iy,ix,c] dy[n,oy,ox,f]` over every output pixel whose window
    /// covers the input pixel. Also returns the same sums over absolute values (error scale).
    #[allow(clippy::type_complexity)]
    pub(crate) fn backward(
        x: &[f32],
        g: &Conv2dGeometry,
        k: &[f32],
        f: usize,
        dy: &[f32],
    ) -> ((Vec<f64>, Vec<f64>), (Vec<f64>, Vec<f64>)) {
        let mut dx = vec![0.0f64; x.len()];
        let mut dxa = vec![0.0f64; x.len()];
        let mut dk = vec![0.0f64; k.len()];
        let mut dka = vec![0.0f64; k.len()];
        for n in 0..g.n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let (Some(iy), Some(ix)) = (g.in_row(oy, ky), g.in_col(ox, kx)) else {
                                continue;
                            };
                            for c in 0..g.c {
                                let xi = ((n * g.h + iy) * g.w + ix) * g.c + c;
                                for o in 0..f {
                                    let d = dy[((n * g.oh + oy) * g.ow + ox) * f + o] as f64;
                                    let ki = ((ky * g.kw + kx) * g.c + c) * f + o;
                                    dx[xi] += d * k[ki] as f64;
                                    dxa[xi] += (d * k[ki] as f64).abs();
                                    dk[ki] += d * x[xi] as f64;
                                    dka[ki] += (d * x[xi] as f64).abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        ((dx, dxa), (dk, dka))
    }
}
