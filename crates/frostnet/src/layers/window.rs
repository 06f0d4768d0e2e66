//! Window geometry shared by every convolution and pooling layer: the output size of a window
//! sliding over an NHWC image (TensorFlow's `valid`/`same` rules, from `tensor::conv`), with typed
//! errors naming the layer for a bad config or an input smaller than the window. Written once
//! here so that Conv2D, DepthwiseConv2D, SeparableConv2D and the poolings agree.

use super::{incompatible, Shape};
use crate::error::{Error, Result};
use crate::tensor::{conv_output_len, Conv2dGeometry, Padding, Tensor};

/// Output `(height, width, in_channels)` of a windowed layer on an NHWC per-sample shape whose
/// channel count must be known (convolutions size their kernels by it).
pub(crate) fn windowed_output(
    layer: &str,
    s: &Shape,
    kernel: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<(Option<usize>, Option<usize>, usize)> {
    let (h, w, c) = windowed_any(layer, s, kernel, strides, padding)?;
    let c = c.ok_or_else(|| incompatible(layer, "(None, height, width, channels)", s))?;
    Ok((h, w, c))
}

/// Output `(height, width, channels)` of a windowed layer on an NHWC per-sample shape; the
/// channel count may be unknown (poolings keep it as it is).
pub(crate) fn windowed_any(
    layer: &str,
    s: &Shape,
    kernel: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<(Option<usize>, Option<usize>, Option<usize>)> {
    let (kh, kw) = kernel;
    if kh == 0 || kw == 0 || strides.0 == 0 || strides.1 == 0 {
        return Err(Error::InvalidConfig(format!(
            "layer '{layer}': kernel_size {kernel:?} and strides {strides:?} must be positive"
        )));
    }
    let [h, w, c] = s[..] else {
        return Err(incompatible(layer, "(None, height, width, channels)", s));
    };
    let out = |len: Option<usize>, k, st| -> Result<Option<usize>> {
        len.map(|l| {
            conv_output_len(l, k, st, padding)
                .ok_or_else(|| incompatible(layer, format!("spatial size at least {kh}x{kw}"), s))
        })
        .transpose()
    };
    Ok((out(h, kh, strides.0)?, out(w, kw, strides.1)?, c))
}

/// The geometry of a forward input, with a typed error for an input smaller than the window.
pub(crate) fn geometry(
    layer: &str,
    x: &Tensor,
    kernel: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<Conv2dGeometry> {
    Conv2dGeometry::new(x.shape(), kernel, strides, padding).ok_or_else(|| {
        Error::IncompatibleShape {
            layer: layer.to_string(),
            expected: format!("an NHWC image at least {}x{}", kernel.0, kernel.1),
            got: crate::error::fmt_dims(x.shape()),
        }
    })
}
