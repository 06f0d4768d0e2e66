//! Dense f32 tensors, row-major, images in NHWC (Keras's layout, so Keras weights load without
//! transposes), and the kernels the layers are built from.

pub(crate) mod broadcast;
pub mod buffer;
pub mod conv;
pub mod conv_backward;
pub mod depthwise;
pub mod direct_conv;
pub(crate) mod elementwise;
pub mod grouped_conv;
pub mod isa;
mod matmul;
pub mod norm;
pub mod pool;
pub mod random;
mod simd;
// Matmul uses it on x86-64 only (elsewhere `gemm`); the convolution kernel gradient everywhere.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod sgemm;
pub mod winograd;
pub mod winograd_1d;

pub use conv::{conv_output_len, same_padding, Conv2dGeometry, Padding};
pub(crate) use elementwise::{map_with_codes, scale_by_codes};
pub use matmul::{matmul, matmul_with, Transpose};

use crate::error::{fmt_dims, Error, Result};
use buffer::Buffer;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// Work below this many elements is not worth splitting across threads.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

/// A dense, row-major `f32` tensor.
///
/// Cloning is cheap: clones share their values until one of them is written through
/// [`data_mut`](Self::data_mut), which copies them first if they are still shared (see
/// [`buffer`] for why: layers keep their inputs for the backward pass without copying them).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Buffer>,
}

impl Tensor {
    /// The tensor of `shape` over `data`, whose length the caller has checked.
    fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Arc::new(Buffer(data)),
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::new(shape.to_vec(), buffer::zeroed(shape.iter().product()))
    }

    /// A tensor whose every value the caller is about to overwrite (a matmul's output): its
    /// buffer comes from the pool unfilled (see [`buffer::overwritten`]), so nothing is
    /// zeroed only to be written again.
    pub(crate) fn overwritten(shape: &[usize]) -> Tensor {
        Tensor::new(shape.to_vec(), buffer::overwritten(shape.iter().product()))
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Uniform samples in `[0, 1)` (`keras.random.uniform(shape)`), from `seed` or, with `None`,
    /// from the process-wide seed sequence (repeatable for a given order of calls).
    ///
    /// ```
    /// use frostnet::Tensor;
    /// let x = Tensor::rand(&[2, 3], 7);
    /// assert_eq!(x, Tensor::rand(&[2, 3], 7));
    /// assert!(x.data().iter().all(|v| (0.0..1.0).contains(v)));
    /// ```
    pub fn rand(shape: &[usize], seed: impl Into<Option<u64>>) -> Tensor {
        let mut rng = random::rng(seed.into());
        let data = random::uniform(&mut rng, shape.iter().product(), 0.0, 1.0);
        Tensor::new(shape.to_vec(), data)
    }

    /// Uniform samples in `[low, high)` (`keras.random.uniform(shape, minval, maxval)`); an
    /// empty or non-finite range is an error, as in Keras.
    pub fn uniform(
        shape: &[usize],
        low: f32,
        high: f32,
        seed: impl Into<Option<u64>>,
    ) -> Result<Tensor> {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(Error::InvalidConfig(format!(
                "Tensor::uniform: need finite low < high, got [{low}, {high})"
            )));
        }
        let mut rng = random::rng(seed.into());
        let n = shape.iter().product();
        Ok(Tensor::new(
            shape.to_vec(),
            random::uniform(&mut rng, n, low, high),
        ))
    }

    /// Standard normal samples (`keras.random.normal(shape)`, `torch.randn`).
    pub fn randn(shape: &[usize], seed: impl Into<Option<u64>>) -> Tensor {
        let mut rng = random::rng(seed.into());
        let data = random::standard_normal(&mut rng, shape.iter().product());
        Tensor::new(shape.to_vec(), data)
    }

    /// A tensor filled with one value.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        let mut data = buffer::take(shape.iter().product());
        data.resize(shape.iter().product(), value);
        Tensor::new(shape.to_vec(), data)
    }

    /// Wraps `data` as a tensor of `shape`; fails if the lengths disagree.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::ShapeMismatch {
                context: "Tensor::from_vec".into(),
                left: fmt_dims(shape),
                right: format!("{} values", data.len()),
            });
        }
        Ok(Tensor::new(shape.to_vec(), data))
    }

    /// A scalar-free 1-D tensor from a slice.
    pub fn from_slice(data: &[f32]) -> Tensor {
        Tensor::new(vec![data.len()], buffer::copy_of(data))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[f32] {
        &self.data.0
    }
    /// The values, for writing; copied first if another clone of this tensor still shares them.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut Arc::make_mut(&mut self.data).0
    }
    /// The values as a vector: moved out when this tensor is their only owner, else copied.
    pub fn into_data(self) -> Vec<f32> {
        match Arc::try_unwrap(self.data) {
            Ok(mut b) => std::mem::take(&mut b.0),
            Err(shared) => buffer::copy_of(&shared.0),
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data().len()
    }
    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
    /// Size of the leading (batch) axis.
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// Elements per sample: the product of all axes but the first.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::ShapeMismatch {
                context: "reshape".into(),
                left: fmt_dims(&self.shape),
                right: fmt_dims(shape),
            });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Rows `start..end` of the leading axis, copied.
    ///
    /// # Panics
    /// If `start > end` or `end` exceeds the batch, like slice indexing.
    pub fn slice_batch(&self, start: usize, end: usize) -> Tensor {
        let s = self.sample_len();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Tensor::new(shape, buffer::copy_of(&self.data()[start * s..end * s]))
    }

    /// Gathers rows of the leading axis by index (used for shuffled batches).
    ///
    /// # Panics
    /// If an index is not below the batch size, like slice indexing.
    pub fn gather_batch(&self, rows: &[usize]) -> Tensor {
        let s = self.sample_len();
        let mut data = buffer::take(rows.len() * s);
        for &r in rows {
            data.extend_from_slice(&self.data()[r * s..(r + 1) * s]);
        }
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        Tensor::new(shape, data)
    }

    /// Concatenates tensors along the leading axis. An empty list, a 0-d tensor or mismatched
    /// per-sample shapes are [`Error::Data`] / [`Error::ShapeMismatch`].
    pub fn concat_batch(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::Data("nothing to concatenate".into()))?;
        let mut data = buffer::take(parts.iter().map(Tensor::len).sum());
        let mut n = 0;
        for p in parts {
            if p.shape.is_empty() {
                return Err(Error::Data(
                    "concatenating batches: a 0-d tensor has no batch axis".into(),
                ));
            }
            if p.shape[1..] != first.shape[1..] {
                return Err(Error::ShapeMismatch {
                    context: "concatenating batches".into(),
                    left: fmt_dims(&first.shape),
                    right: fmt_dims(&p.shape),
                });
            }
            n += p.batch();
            data.extend_from_slice(p.data());
        }
        let mut shape = first.shape.clone();
        shape[0] = n;
        Ok(Tensor::new(shape, data))
    }

    /// Largest absolute elementwise difference; `f32::INFINITY` if shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// `self += other` elementwise; the shapes must be equal.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        if self.shape != other.shape {
            return Err(Error::ShapeMismatch {
                context: "adding tensors".into(),
                left: fmt_dims(&self.shape),
                right: fmt_dims(&other.shape),
            });
        }
        // The executor sums a tensor's gradients with this (InceptionV3's block inputs get four
        // each): across threads when large, since serially the other thread sits idle.
        let (dst, src) = (Arc::make_mut(&mut self.data), other.data());
        if src.len() >= PAR_THRESHOLD {
            use rayon::prelude::*;
            dst.0
                .par_iter_mut()
                .zip(src.par_iter())
                .with_min_len(1 << 12)
                .for_each(|(a, b)| *a += b);
        } else {
            dst.0.iter_mut().zip(src).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }

    /// Whether any element is NaN or infinite.
    pub fn has_non_finite(&self) -> bool {
        self.data().iter().any(|v| !v.is_finite())
    }
}

/// A vector of `n` values written block by block (`block` values each, the last one shorter) by
/// `f(first_index, block)`, in parallel when large, with no zero-fill before (the callers
/// overwrite every value anyway).
///
/// # Safety
/// `f` must initialise every element of each block it is given.
pub(crate) unsafe fn build_vec(
    n: usize,
    block: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = buffer::take(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    let block = block.max(1);
    if n >= PAR_THRESHOLD {
        spare
            .par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, b)| f(i * block, b));
    } else {
        spare
            .chunks_mut(block)
            .enumerate()
            .for_each(|(i, b)| f(i * block, b));
    }
    // SAFETY: the capacity is at least `n`, and the caller's contract is that `f` initialised
    // every element of every block; the blocks cover `0..n` exactly.
    unsafe { v.set_len(n) };
    v
}

/// The inputs side by side along `axis`. The caller has checked that they agree on every other
/// axis (Concatenate's forward names the layer in that error). Each output row (one index over
/// the axes before `axis`) is the inputs' contiguous blocks side by side, written straight into
/// an unfilled buffer.
pub(crate) fn concatenate(inputs: &[&Tensor], axis: usize) -> Tensor {
    let dims0 = inputs[0].shape();
    let outer: usize = dims0[..axis].iter().product();
    let inner: usize = dims0[axis + 1..].iter().product();
    // Per input, the contiguous block it contributes to each outer index.
    let blocks: Vec<usize> = inputs.iter().map(|x| x.shape()[axis] * inner).collect();
    let row: usize = blocks.iter().sum();
    let mut out_dims = dims0.to_vec();
    out_dims[axis] = inputs.iter().map(|x| x.shape()[axis]).sum();
    let fill = |first: usize, dst: &mut [MaybeUninit<f32>]| {
        for (r, dst) in dst.chunks_exact_mut(row).enumerate() {
            let o = first / row + r;
            let mut at = 0;
            for (x, &b) in inputs.iter().zip(&blocks) {
                let src = &x.data()[o * b..(o + 1) * b];
                dst[at..at + b].iter_mut().zip(src).for_each(|(d, &v)| {
                    d.write(v);
                });
                at += b;
            }
        }
    };
    let data = if let Some(per_block) = 16384usize.checked_div(row) {
        // Whole rows per block (about 16K values), so every block is a multiple of `row`.
        let block = per_block.max(1) * row;
        // SAFETY: `outer * row` values in blocks of whole rows; `fill` writes each row's
        // `row = sum(blocks)` values, every input block side by side, so all are written.
        unsafe { build_vec(outer * row, block, fill) }
    } else {
        Vec::new()
    };
    Tensor::new(out_dims, data)
}

/// The inverse of [`concatenate`] for one input (Concatenate's backward): the `b` values at
/// `offset` in each row of `row` values of `src`, written in parallel when large (serially, the
/// other thread sat idle through InceptionV3's eleven block gradients).
pub(crate) fn concatenated_part(src: &[f32], row: usize, offset: usize, b: usize) -> Vec<f32> {
    if b == 0 || row == 0 {
        return Vec::new();
    }
    let outer = src.len() / row;
    let fill = |first: usize, dst: &mut [MaybeUninit<f32>]| {
        for (r, d) in dst.chunks_exact_mut(b).enumerate() {
            let o = first / b + r;
            d.iter_mut()
                .zip(&src[o * row + offset..][..b])
                .for_each(|(d, &v)| {
                    d.write(v);
                });
        }
    };
    // SAFETY: `outer * b` values in blocks of whole rows of `b` (the block is a multiple of `b`,
    // and so is the total); `fill` writes every value of each row.
    unsafe { build_vec(outer * b, (16384 / b).max(1) * b, fill) }
}

/// Conversions to and from `ndarray`, behind the `ndarray` feature, so arrays users already have
/// train without copying code of their own.
#[cfg(feature = "ndarray")]
mod ndarray_interop {
    use super::Tensor;
    use crate::error::{Error, Result};

    impl TryFrom<ndarray::ArrayD<f32>> for Tensor {
        type Error = Error;
        fn try_from(a: ndarray::ArrayD<f32>) -> Result<Tensor> {
            let shape = a.shape().to_vec();
            let data = if a.is_standard_layout() {
                a.into_raw_vec_and_offset().0
            } else {
                a.iter().copied().collect()
            };
            Tensor::from_vec(&shape, data)
        }
    }

    impl From<&Tensor> for ndarray::ArrayD<f32> {
        fn from(t: &Tensor) -> ndarray::ArrayD<f32> {
            ndarray::ArrayD::from_shape_vec(t.shape(), t.data().to_vec())
                .expect("a tensor's shape matches its data")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_through_ndarray_including_non_standard_layout() {
            let a = ndarray::Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32).into_dyn();
            let t = Tensor::try_from(a.clone()).unwrap();
            assert_eq!(t.shape(), [2, 3]);
            assert_eq!(ndarray::ArrayD::from(&t), a);
            let transposed = a.reversed_axes();
            let t = Tensor::try_from(transposed).unwrap();
            assert_eq!(t.shape(), [3, 2]);
            assert_eq!(t.data(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        }
    }
}
