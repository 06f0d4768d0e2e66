//! `Conv2DTranspose` over NHWC images: the transpose (input gradient) of the Conv2D that maps its
//! output back to its input, as TensorFlow's `conv2d_transpose` is. The kernel is Keras's
//! `(kh, kw, filters, in_channels)`, which is exactly that Conv2D's HWIO kernel, so the conv
//! kernels of `tensor::conv` are reused: forward is that Conv2D's input gradient, backward is its
//! forward pass (for the input gradient) and its kernel gradient.

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::conv::{conv2d_backward, conv2d_forward};
use crate::tensor::{random, Conv2dGeometry, Padding, Tensor};
use serde_json::json;

const KERNEL: usize = 0;
const BIAS: usize = 1;

/// Output length of a transposed convolution along one axis: Keras's
/// `compute_conv_transpose_output_length` (`deconv_output_length`), with or without
/// `output_padding`.
fn transpose_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    output_padding: Option<usize>,
) -> usize {
    match (output_padding, padding) {
        (None, Padding::Same) => input * stride,
        (None, Padding::Valid) => input * stride + kernel.saturating_sub(stride),
        (Some(op), padding) => {
            let pad = if padding == Padding::Same {
                kernel / 2
            } else {
                0
            };
            // (input - 1) * stride + kernel - 2 * pad + op, never below 0 (input >= 1 here;
            // an empty axis gives an empty output).
            ((input.max(1) - 1) * stride + kernel + op).saturating_sub(2 * pad)
                * usize::from(input > 0)
        }
    }
}

/// A transposed 2-D convolution ("deconvolution"). Weights: `kernel (kh, kw, filters, in)`
/// glorot-uniform, `bias (filters)` zeros.
pub struct Conv2DTranspose {
    base: LayerBase,
    filters: usize,
    kernel_size: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
    activation: ActivationFn,
    use_bias: bool,
    /// Keras's `output_padding`: extra rows and columns at the end of the output (each less than
    /// its stride); `None` is Keras's default rule.
    output_padding: Option<(usize, usize)>,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<(Tensor, Tensor)>,
}

impl Conv2DTranspose {
    /// Keras's `output_padding=(rows, columns)`: the output size becomes
    /// `(input - 1) * stride + kernel - 2 * pad + output_padding` (`pad` = `kernel // 2` for
    /// `same`, 0 for `valid`). Each value must be less than its stride; a value that is not, or
    /// whose output size TensorFlow's convolution could not have come from, is refused with
    /// [`Error::InvalidConfig`] / [`Error::IncompatibleShape`] at build.
    pub fn output_padding(mut self, p: (usize, usize)) -> Self {
        self.output_padding = Some(p);
        self
    }

    /// Output `(height, width)` for an input `(h, w)`.
    fn out_len(&self, h: usize, w: usize) -> (usize, usize) {
        let (kh, kw) = self.kernel_size;
        let (sh, sw) = self.strides;
        let op = self.output_padding;
        (
            transpose_len(h, kh, sh, self.padding, op.map(|p| p.0)),
            transpose_len(w, kw, sw, self.padding, op.map(|p| p.1)),
        )
    }

    /// `filters` outputs with a square `kernel_size` window.
    pub fn new(filters: usize, kernel_size: usize) -> Conv2DTranspose {
        Conv2DTranspose::with_kernel(filters, (kernel_size, kernel_size))
    }
    /// A rectangular window.
    pub fn with_kernel(filters: usize, kernel_size: (usize, usize)) -> Conv2DTranspose {
        Conv2DTranspose {
            base: LayerBase::new(CONV2D_TRANSPOSE.class_name),
            filters,
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            activation: ActivationFn::Linear,
            use_bias: true,
            output_padding: None,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
        }
    }

    /// The geometry of the Conv2D this layer transposes: from this layer's output `(n, oh, ow,
    /// filters)` to its input `(n, h, w, c)`.
    fn geometry(&self, x: &Tensor) -> Result<Conv2dGeometry> {
        let [n, h, w, _] = *x.shape() else {
            return Err(Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: "(batch, height, width, channels)".into(),
                got: crate::error::fmt_dims(x.shape()),
            });
        };
        let (kh, kw) = self.kernel_size;
        let (oh, ow) = self.out_len(h, w);
        let out = [n, oh, ow, self.filters];
        // TensorFlow computes the output as the input gradient of the Conv2D from an output of
        // this size; that Conv2D must map it back to the input's size (with `output_padding`
        // and an even kernel under `same`, it may not: TensorFlow refuses such a call too).
        Conv2dGeometry::new(&out, self.kernel_size, self.strides, self.padding)
            .filter(|g| (g.oh, g.ow) == (h, w))
            .ok_or_else(|| Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: format!(
                    "an input whose {oh}x{ow} output a {kh}x{kw} window with strides {:?} and \
                     '{}' padding maps back to it",
                    self.strides,
                    self.padding.as_str()
                ),
                got: crate::error::fmt_dims(x.shape()),
            })
    }
}

conv_options!(Conv2DTranspose);

impl Layer for Conv2DTranspose {
    /// Every input position scatters the whole kernel, so the count follows the input.
    fn mult_adds(&self, _output: &Shape) -> Option<u64> {
        let mut input = self.in_shape.clone();
        *input.last_mut()? = Some(1);
        super::mult_adds_per_position(&input, self.base.weights().first()?.len())
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[("kernel", "kernel"), ("bias", "bias")]
    }
    fn class_name(&self) -> &str {
        CONV2D_TRANSPOSE.class_name
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let (kh, kw) = self.kernel_size;
        let (sh, sw) = self.strides;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || self.filters == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': filters, kernel_size {:?} and strides {:?} must be positive",
                self.base.name, self.kernel_size, self.strides
            )));
        }
        let [h, w, Some(c)] = s[..] else {
            return Err(incompatible(
                &self.base.name,
                "(None, height, width, channels)",
                s,
            ));
        };
        if let Some((ph, pw)) = self.output_padding {
            if ph >= sh || pw >= sw {
                return Err(Error::InvalidConfig(format!(
                    "layer '{}': output_padding {:?} must be less than strides {:?} on each axis",
                    self.base.name,
                    (ph, pw),
                    self.strides
                )));
            }
        }
        // A known spatial size is checked now (the geometry at run time checks every size).
        let probe = Tensor::zeros(&[0]).reshape(&[0, h.unwrap_or(sh), w.unwrap_or(sw), c])?;
        self.geometry(&probe)?;
        if self.base.built {
            if self.base.w(KERNEL).shape()[3] != c {
                return Err(incompatible(
                    &self.base.name,
                    "the channel count it was built with",
                    s,
                ));
            }
        } else {
            let mut rng = random::rng(self.seed);
            let f = self.filters;
            // Keras's glorot for this kernel: fan_in = kh*kw*filters, fan_out = kh*kw*in.
            let k = random::glorot_uniform(&mut rng, kh * kw * f * c, kh * kw * f, kh * kw * c);
            self.base.add_weight(
                "kernel",
                Tensor::from_vec(&[kh, kw, f, c], k)?,
                WeightKind::Param,
            );
            if self.use_bias {
                self.base
                    .add_weight("bias", Tensor::zeros(&[f]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(vec![
            h.map(|h| self.out_len(h, 1).0),
            w.map(|w| self.out_len(1, w).1),
            Some(self.filters),
        ])
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let g = self.geometry(x)?;
        let c = x.shape()[3];
        // The transposed Conv2D's input gradient; no kernel gradient is asked, so its forward
        // input (this layer's output, not yet computed) is not read.
        let mut y = conv2d_backward(&[], &g, self.base.w(KERNEL).data(), c, x.data(), None, true)
            .expect("need_dx was set");
        let f = self.filters;
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.chunks_mut(f)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        let pre = self.activation.pre_activation(&y, ctx.keep);
        self.activation.apply(&mut y, f);
        let y = Tensor::from_vec(&[g.n, g.h, g.w, f], y)?;
        if ctx.keep {
            self.cache = Some((x.clone(), self.activation.kept(pre, &y)));
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        let g = self.geometry(&x)?;
        let (f, c) = (self.filters, x.shape()[3]);
        let mut dy = grad.clone();
        self.activation.backward(y.data(), dy.data_mut(), f);
        if self.use_bias && self.base.wants_grad(BIAS) {
            let mut db = vec![0.0f32; f];
            dy.data()
                .chunks(f)
                .for_each(|r| db.iter_mut().zip(r).for_each(|(a, b)| *a += b));
            self.base.set_grad(BIAS, Tensor::from_vec(&[f], db)?);
        }
        if self.base.wants_grad(KERNEL) {
            // The transposed Conv2D's kernel gradient with input dy and output gradient x.
            let mut dk = Tensor::zeros(self.base.w(KERNEL).shape());
            conv2d_backward(
                dy.data(),
                &g,
                self.base.w(KERNEL).data(),
                c,
                x.data(),
                Some(dk.data_mut()),
                false,
            );
            self.base.set_grad(KERNEL, dk);
        }
        let dx = if need_dx.first().copied().unwrap_or(false) {
            let d = conv2d_forward(dy.data(), &g, self.base.w(KERNEL).data(), c, &[]);
            Some(Tensor::from_vec(x.shape(), d)?)
        } else {
            None
        };
        Ok(vec![dx])
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "filters": self.filters,
            "kernel_size": [self.kernel_size.0, self.kernel_size.1],
            "strides": [self.strides.0, self.strides.1],
            "padding": self.padding.as_str(),
            "data_format": "channels_last",
            "dilation_rate": [1, 1],
            "output_padding": self.output_padding.map(|(a, b)| json!([a, b])),
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
        })
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn conv2d_transpose_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.conv_common()?;
    let filters = o.size("filters", None)?;
    let k = o.pair("kernel_size", None)?;
    o.budget((k.0 * k.1) as u64 * last_dim(inputs) * filters as u64)?;
    let layer = Conv2DTranspose::with_kernel(filters, k);
    let layer = match o.get("output_padding") {
        None => layer,
        Some(v) => {
            // An int or a pair of ints, 0 allowed (Keras's `allow_zero=True`).
            let one = |v: &serde_json::Value| {
                v.as_u64()
                    .filter(|&n| n <= crate::saving::keras_config::MAX_DIM)
                    .map(|n| n as usize)
                    .ok_or_else(|| o.err(format!("'output_padding' = {v} is not a size")))
            };
            let p = match v {
                serde_json::Value::Array(a) if a.len() == 2 => (one(&a[0])?, one(&a[1])?),
                serde_json::Value::Array(a) if a.len() == 1 => (one(&a[0])?, one(&a[0])?),
                v => (one(v)?, one(v)?),
            };
            layer.output_padding(p)
        }
    };
    Ok(Box::new(
        layer
            .strides2(o.pair("strides", Some((1, 1)))?)
            .padding(o.padding()?)
            .activation(o.activation()?)
            .use_bias(o.boolean("use_bias", true)?),
    ))
}

/// `Conv2DTranspose`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const CONV2D_TRANSPOSE: LayerEntry = LayerEntry {
    class_name: "Conv2DTranspose",
    from_config: conv2d_transpose_from_config,
};
