//! `ZeroPadding2D`: adds rows and columns of zeros around NHWC images (MobileNet's and ResNet's
//! explicit padding before strided convolutions).

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase,
    Shape,
};
use crate::error::Result;
use crate::saving::keras_config::{Opts, MAX_DIM};
use crate::tensor::{Tensor, PAR_THRESHOLD};
use rayon::prelude::*;
use serde_json::{json, Value};

/// Pads height and width with zeros: `((top, bottom), (left, right))`, Keras's `padding`.
pub struct ZeroPadding2D {
    base: LayerBase,
    padding: ((usize, usize), (usize, usize)),
    in_shape: Shape,
    /// Input dims, kept for backward.
    cache: Option<Vec<usize>>,
}

impl Default for ZeroPadding2D {
    /// Keras's default `padding=(1, 1)`.
    fn default() -> Self {
        Self::new(1)
    }
}

impl ZeroPadding2D {
    /// The same padding on all four sides.
    pub fn new(p: usize) -> ZeroPadding2D {
        ZeroPadding2D::with_padding(((p, p), (p, p)))
    }
    /// `(height, width)` padding, symmetric on each axis.
    pub fn symmetric(h: usize, w: usize) -> ZeroPadding2D {
        ZeroPadding2D::with_padding(((h, h), (w, w)))
    }
    /// `((top, bottom), (left, right))`.
    pub fn with_padding(padding: ((usize, usize), (usize, usize))) -> ZeroPadding2D {
        ZeroPadding2D {
            base: LayerBase::new(ZERO_PADDING2D.class_name),
            padding,
            in_shape: Vec::new(),
            cache: None,
        }
    }
}

impl Layer for ZeroPadding2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        ZERO_PADDING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let [h, w, c] = s[..] else {
            return Err(incompatible(
                &self.base.name,
                "(None, height, width, channels)",
                s,
            ));
        };
        let ((t, b), (l, r)) = self.padding;
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(vec![h.map(|h| h + t + b), w.map(|w| w + l + r), c])
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let [n, h, w, c] = x.shape()[..] else {
            return Err(incompatible(
                &self.base.name,
                "an NHWC tensor",
                &self.in_shape,
            ));
        };
        let ((t, b), (l, r)) = self.padding;
        let (oh, ow) = (h + t + b, w + l + r);
        let mut y = vec![0.0f32; n * oh * ow * c];
        // One output row at a time: copy the input row into the middle.
        let fill = |row: usize, dst: &mut [f32]| {
            let (img, oy) = (row / oh, row % oh);
            if oy < t || oy >= t + h {
                return;
            }
            let src = ((img * h + oy - t) * w) * c;
            dst[l * c..(l + w) * c].copy_from_slice(&x.data()[src..src + w * c]);
        };
        if ow * c > 0 {
            if y.len() >= PAR_THRESHOLD {
                y.par_chunks_mut(ow * c)
                    .enumerate()
                    .for_each(|(i, d)| fill(i, d));
            } else {
                y.chunks_mut(ow * c)
                    .enumerate()
                    .for_each(|(i, d)| fill(i, d));
            }
        }
        self.cache = ctx.keep.then(|| x.shape().to_vec());
        Tensor::from_vec(&[n, oh, ow, c], y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        let (n, h, w, c) = (dims[0], dims[1], dims[2], dims[3]);
        let ((t, b), (l, r)) = self.padding;
        let (oh, ow) = (h + t + b, w + l + r);
        let mut dx = vec![0.0f32; n * h * w * c];
        if w * c > 0 {
            dx.chunks_mut(w * c).enumerate().for_each(|(row, d)| {
                let (img, iy) = (row / h, row % h);
                let src = ((img * oh + iy + t) * ow + l) * c;
                d.copy_from_slice(&grad.data()[src..src + w * c]);
            });
        }
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        let ((t, b), (l, r)) = self.padding;
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "padding": [[t, b], [l, r]], "data_format": "channels_last"})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `ZeroPadding2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const ZERO_PADDING2D: LayerEntry = LayerEntry {
    class_name: "ZeroPadding2D",
    from_config: zero_padding2d_from_config,
};

fn zero_padding2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    let n = |v: &Value| match v.as_u64() {
        Some(n) if n <= MAX_DIM => Ok(n as usize),
        _ => Err(o.err(format!("padding {v} is not a size"))),
    };
    let p = match o.get("padding") {
        None => ((1, 1), (1, 1)),
        Some(Value::Array(a)) if a.len() == 2 => match (&a[0], &a[1]) {
            (Value::Array(h), Value::Array(w)) if h.len() == 2 && w.len() == 2 => {
                ((n(&h[0])?, n(&h[1])?), (n(&w[0])?, n(&w[1])?))
            }
            (h, w) => {
                let (h, w) = (n(h)?, n(w)?);
                ((h, h), (w, w))
            }
        },
        Some(v) => {
            let p = n(v)?;
            ((p, p), (p, p))
        }
    };
    Ok(Box::new(ZeroPadding2D::with_padding(p)))
}
