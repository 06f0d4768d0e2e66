//! `Conv2D` over NHWC images, kernel in Keras's HWIO layout.

use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::tensor::conv::{conv2d_backward, conv2d_forward};
use crate::tensor::{conv_output_len, random, Conv2dGeometry, Padding, Tensor};
use serde_json::json;

const KERNEL: usize = 0;
const BIAS: usize = 1;

/// A 2-D convolution. Weights: `kernel (kh, kw, in, filters)` glorot-uniform, `bias (filters)`
/// zeros. `same` padding follows TensorFlow (the odd pixel goes after).
pub struct Conv2D {
    base: LayerBase,
    filters: usize,
    kernel_size: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
    activation: ActivationFn,
    use_bias: bool,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<(Tensor, Tensor)>,
}

impl Conv2D {
    /// `filters` outputs with a square `kernel_size` window.
    pub fn new(filters: usize, kernel_size: usize) -> Conv2D {
        Conv2D::with_kernel(filters, (kernel_size, kernel_size))
    }
    /// A rectangular window, e.g. InceptionV3's `(1, 7)`.
    pub fn with_kernel(filters: usize, kernel_size: (usize, usize)) -> Conv2D {
        Conv2D {
            base: LayerBase::new("Conv2D"),
            filters,
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            activation: ActivationFn::Linear,
            use_bias: true,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
        }
    }

    fn geometry(&self, x: &Tensor) -> Result<Conv2dGeometry> {
        Conv2dGeometry::new(x.shape(), self.kernel_size, self.strides, self.padding).ok_or_else(
            || Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: format!(
                    "an NHWC image at least {}x{}",
                    self.kernel_size.0, self.kernel_size.1
                ),
                got: crate::error::fmt_dims(x.shape()),
            },
        )
    }
}

conv_options!(Conv2D);

impl Layer for Conv2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Conv2D"
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        // Keras raises in the constructor; ours cannot fail, so the layer is refused when it is
        // added to a model (built), before any size is divided by a zero stride.
        let (k, st) = (self.kernel_size, self.strides);
        if self.filters == 0 || k.0 == 0 || k.1 == 0 || st.0 == 0 || st.1 == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': filters ({}), kernel_size {k:?} and strides {st:?} must be positive",
                self.base.name, self.filters
            )));
        }
        let [h, w, Some(c)] = s[..] else {
            return Err(incompatible(
                &self.base.name,
                "(None, height, width, channels)",
                s,
            ));
        };
        let (kh, kw) = self.kernel_size;
        let out_len = |len: Option<usize>, k, st| -> Result<Option<usize>> {
            match len {
                None => Ok(None),
                Some(l) => conv_output_len(l, k, st, self.padding)
                    .map(Some)
                    .ok_or_else(|| {
                        incompatible(
                            &self.base.name,
                            format!("spatial size at least {kh}x{kw}"),
                            s,
                        )
                    }),
            }
        };
        let oh = out_len(h, kh, self.strides.0)?;
        let ow = out_len(w, kw, self.strides.1)?;
        if self.base.built {
            if self.base.w(KERNEL).shape()[2] != c {
                return Err(incompatible(
                    &self.base.name,
                    "the channel count it was built with",
                    s,
                ));
            }
        } else {
            let mut rng = random::rng(self.seed);
            let n = kh * kw * c * self.filters;
            let k = random::glorot_uniform(&mut rng, n, kh * kw * c, kh * kw * self.filters);
            self.base.add_weight(
                "kernel",
                Tensor::from_vec(&[kh, kw, c, self.filters], k)?,
                WeightKind::Param,
            );
            if self.use_bias {
                self.base
                    .add_weight("bias", Tensor::zeros(&[self.filters]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(vec![oh, ow, Some(self.filters)])
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let g = self.geometry(x)?;
        let f = self.filters;
        let mut y = conv2d_forward(x.data(), &g, self.base.w(KERNEL).data(), f);
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.chunks_mut(f)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        self.activation.apply(&mut y, f);
        let y = Tensor::from_vec(&[g.n, g.oh, g.ow, f], y)?;
        if ctx.keep {
            self.cache = Some((x.clone(), y.clone()));
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        let g = self.geometry(&x)?;
        let f = self.filters;
        let mut dy = grad.clone();
        self.activation.backward(y.data(), dy.data_mut(), f);
        if self.use_bias && self.base.wants_grad(BIAS) {
            let mut db = vec![0.0f32; f];
            dy.data()
                .chunks(f)
                .for_each(|r| db.iter_mut().zip(r).for_each(|(a, b)| *a += b));
            self.base.set_grad(BIAS, Tensor::from_vec(&[f], db)?);
        }
        let mut dk = self
            .base
            .wants_grad(KERNEL)
            .then(|| Tensor::zeros(self.base.w(KERNEL).shape()));
        let dx = conv2d_backward(
            x.data(),
            &g,
            self.base.w(KERNEL).data(),
            f,
            dy.data(),
            dk.as_mut().map(|t| t.data_mut()),
            need_dx.first().copied().unwrap_or(false),
        );
        if let Some(dk) = dk {
            self.base.set_grad(KERNEL, dk);
        }
        Ok(vec![dx
            .map(|d| Tensor::from_vec(x.shape(), d))
            .transpose()?])
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "filters": self.filters,
            "kernel_size": [self.kernel_size.0, self.kernel_size.1],
            "strides": [self.strides.0, self.strides.1],
            "padding": self.padding.as_str(),
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
        })
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
}
