//! `Conv1D` over `(None, steps, channels)` sequences: a Conv2D on `(steps, 1)` images. Keras's
//! kernel `(k, in / groups, filters)` is laid out as the Conv2D kernel `(k, 1, in / groups,
//! filters)`, so `tensor::conv`'s kernels (per group: `tensor::grouped_conv`) run on the data as
//! stored.
//!
//! `padding="causal"` (left padding of `dilation * (k - 1)`, Keras's `_compute_causal_padding`)
//! and `dilation_rate > 1` run on an explicitly padded copy of the input. A dilated convolution
//! is computed without a dilated kernel: the padded sequence of length `R * d` is viewed as an
//! `(R, d)` image, on which a `(k, 1)` convolution at row stride 1 computes, at image position
//! `(r, j)`, the sum over `i < k` of `w[i] * x[(r + i) * d + j]`: the dilated convolution's output
//! at step `r * d + j`. (Keras refuses `strides > 1` with `dilation_rate > 1`, so rows are never
//! strided when `d > 1`.)

use super::registry::LayerEntry;
use super::window::geometry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::grouped_conv::{grouped_conv2d_backward, grouped_conv2d_forward};
use crate::tensor::{conv_output_len, random, Conv2dGeometry, Padding, Tensor};
use serde_json::{json, Value};

const KERNEL: usize = 0;
const BIAS: usize = 1;

/// A 1-D convolution. Weights: `kernel (k, in / groups, filters)` glorot-uniform, `bias
/// (filters)` zeros.
pub struct Conv1D {
    base: LayerBase,
    filters: usize,
    kernel_size: usize,
    stride: usize,
    padding: Padding,
    /// Keras's `padding="causal"` (then `padding` is unused).
    causal: bool,
    dilation: usize,
    groups: usize,
    activation: ActivationFn,
    use_bias: bool,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<(Tensor, Tensor)>,
}

impl Conv1D {
    pub fn new(filters: usize, kernel_size: usize) -> Conv1D {
        Conv1D {
            base: LayerBase::new(CONV1D.class_name),
            filters,
            kernel_size,
            stride: 1,
            padding: Padding::Valid,
            causal: false,
            dilation: 1,
            groups: 1,
            activation: ActivationFn::Linear,
            use_bias: true,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
        }
    }
    pub fn strides(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self.causal = false;
        self
    }
    /// Keras's `padding="causal"`: `dilation_rate * (kernel_size - 1)` zeros before the
    /// sequence, none after, so output step `t` sees input steps up to `t` only.
    pub fn causal(mut self) -> Self {
        self.causal = true;
        self
    }
    /// Keras's `dilation_rate`: the kernel taps are this many steps apart. Keras (and frostnet,
    /// at build) refuses it above 1 together with `strides > 1`.
    pub fn dilation_rate(mut self, d: usize) -> Self {
        self.dilation = d;
        self
    }
    /// Keras's `groups`: must divide both the input channels and `filters` (checked at build);
    /// the kernel is `(k, in / groups, filters)`.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn activation(mut self, f: ActivationFn) -> Self {
        self.activation = f;
        self
    }
    pub fn use_bias(mut self, b: bool) -> Self {
        self.use_bias = b;
        self
    }
    /// Seeds the kernel initializer.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Whether the input is padded explicitly (causal padding or dilation) rather than by the
    /// convolution's own `valid` / `same` geometry.
    fn explicit(&self) -> bool {
        self.causal || self.dilation > 1
    }

    /// Zeros `(before, after)` the sequence for the explicit path: causal, or TensorFlow's
    /// `valid` / `same` rule with the dilated kernel's extent `d * (k - 1) + 1`.
    fn pads(&self, steps: usize) -> (usize, usize) {
        let extent = self.dilation * (self.kernel_size - 1) + 1;
        if self.causal {
            return (extent - 1, 0);
        }
        match self.padding {
            Padding::Valid => (0, 0),
            Padding::Same => {
                let out = steps.div_ceil(self.stride);
                let total = ((out - 1) * self.stride + extent).saturating_sub(steps);
                (total / 2, total - total / 2)
            }
        }
    }

    /// Output steps for `steps` input steps; `None` when the (dilated) window does not fit.
    fn output_len(&self, steps: usize) -> Option<usize> {
        if !self.explicit() {
            return conv_output_len(steps, self.kernel_size, self.stride, self.padding);
        }
        let (l, r) = self.pads(steps);
        let extent = self.dilation * (self.kernel_size - 1) + 1;
        let padded = steps + l + r;
        (padded >= extent).then(|| (padded - extent) / self.stride + 1)
    }

    /// How one forward input is convolved.
    fn plan(&self, x: &Tensor) -> Result<Plan> {
        let [n, steps, c] = *x.shape() else {
            return Err(incompatible(
                &self.base.name,
                "(None, steps, channels)",
                &Vec::new(),
            ));
        };
        let out = self
            .output_len(steps)
            .ok_or_else(|| Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: format!(
                    "at least {} steps",
                    self.dilation * (self.kernel_size - 1) + 1
                ),
                got: crate::error::fmt_dims(x.shape()),
            })?;
        if !self.explicit() {
            let view = Tensor::zeros(&[0]).reshape(&[0, steps, 1, c])?;
            let g = geometry(
                &self.base.name,
                &view,
                (self.kernel_size, 1),
                (self.stride, 1),
                self.padding,
            )?;
            return Ok(Plan {
                g: Conv2dGeometry { n, ..g },
                before: 0,
                steps,
                out,
            });
        }
        let (l, r) = self.pads(steps);
        let d = self.dilation;
        let rows = (steps + l + r).div_ceil(d);
        let view = Tensor::zeros(&[0]).reshape(&[0, rows, d, c])?;
        let g = geometry(
            &self.base.name,
            &view,
            (self.kernel_size, 1),
            (self.stride, 1),
            Padding::Valid,
        )?;
        Ok(Plan {
            g: Conv2dGeometry { n, ..g },
            before: l,
            steps,
            out,
        })
    }
}

/// One forward input's convolution: the geometry of the image the kernels run on, and for the
/// explicit path, where the sequence sits in it and how many of its output positions are steps.
struct Plan {
    g: Conv2dGeometry,
    /// Zeros before the sequence in the padded copy (0 without one).
    before: usize,
    steps: usize,
    /// Output steps (the first `out` of the image's `oh * ow` positions, per sample).
    out: usize,
}

impl Plan {
    fn is_view(&self) -> bool {
        self.g.h == self.steps && self.g.w == 1 && self.before == 0
    }
    /// The input as the image the kernels run on (padded with zeros unless a plain view).
    fn image<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.is_view() {
            return std::borrow::Cow::Borrowed(x);
        }
        let g = &self.g;
        let len = g.h * g.w * g.c;
        let mut buf = vec![0.0f32; g.n * len];
        for (dst, src) in buf
            .chunks_exact_mut(len)
            .zip(x.chunks_exact(self.steps * g.c))
        {
            dst[self.before * g.c..(self.before + self.steps) * g.c].copy_from_slice(src);
        }
        std::borrow::Cow::Owned(buf)
    }
    /// Per-sample rows of `width` values: the first `out` of the image's `oh * ow` positions.
    fn crop_output(&self, y: Vec<f32>, width: usize) -> Vec<f32> {
        let per = self.g.oh * self.g.ow;
        if per == self.out {
            return y;
        }
        y.chunks_exact(per * width)
            .flat_map(|s| s[..self.out * width].iter().copied())
            .collect()
    }
    /// An output gradient as the image output's gradient (zeros at the unused positions).
    fn pad_output_grad(&self, dy: &[f32], width: usize) -> Vec<f32> {
        let per = self.g.oh * self.g.ow;
        let mut out = vec![0.0f32; self.g.n * per * width];
        for (dst, src) in out
            .chunks_exact_mut(per * width)
            .zip(dy.chunks_exact(self.out * width))
        {
            dst[..self.out * width].copy_from_slice(src);
        }
        out
    }
    /// The input gradient from the image's: the sequence's steps only.
    fn crop_input_grad(&self, dx: Vec<f32>) -> Vec<f32> {
        if self.is_view() {
            return dx;
        }
        let g = &self.g;
        let len = g.h * g.w * g.c;
        dx.chunks_exact(len)
            .flat_map(|s| {
                s[self.before * g.c..(self.before + self.steps) * g.c]
                    .iter()
                    .copied()
            })
            .collect()
    }
}

impl Layer for Conv1D {
    fn mult_adds(&self, output: &Shape) -> Option<u64> {
        super::mult_adds_per_position(output, self.base.weights().first()?.len())
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
        CONV1D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let (k, f) = (self.kernel_size, self.filters);
        if k == 0 || self.stride == 0 || f == 0 || self.dilation == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': filters, kernel_size, strides and dilation_rate must be positive",
                self.base.name
            )));
        }
        if self.stride > 1 && self.dilation > 1 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': strides > 1 is not supported with dilation_rate > 1 (as in Keras); \
                 got strides={} and dilation_rate={}",
                self.base.name, self.stride, self.dilation
            )));
        }
        let [steps, Some(c)] = s[..] else {
            return Err(incompatible(&self.base.name, "(None, steps, channels)", s));
        };
        super::conv2d::check_groups(&self.base.name, self.groups, c, f)?;
        let extent = self.dilation * (k - 1) + 1;
        let out = match steps {
            None => None,
            Some(n) => Some(self.output_len(n).ok_or_else(|| {
                incompatible(&self.base.name, format!("at least {extent} steps"), s)
            })?),
        };
        let c = c / self.groups;
        if self.base.built {
            if self.base.w(KERNEL).shape()[1] != c {
                return Err(incompatible(
                    &self.base.name,
                    "the channel count it was built with",
                    s,
                ));
            }
        } else {
            let mut rng = random::rng(self.seed);
            let kernel = random::glorot_uniform(&mut rng, k * c * f, k * c, k * f);
            self.base.add_weight(
                "kernel",
                Tensor::from_vec(&[k, c, f], kernel)?,
                WeightKind::Param,
            );
            if self.use_bias {
                self.base
                    .add_weight("bias", Tensor::zeros(&[f]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(vec![out, Some(f)])
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let p = self.plan(x)?;
        let f = self.filters;
        let image = p.image(x.data());
        let k = self.base.w(KERNEL).data();
        let y = grouped_conv2d_forward(&image, &p.g, k, f, self.groups);
        let mut y = p.crop_output(y, f);
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.chunks_mut(f)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        let pre = self.activation.pre_activation(&y, ctx.keep);
        self.activation.apply(&mut y, f);
        let y = Tensor::from_vec(&[p.g.n, p.out, f], y)?;
        if ctx.keep {
            self.cache = Some((x.clone(), self.activation.kept(pre, &y)));
        }
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        let p = self.plan(&x)?;
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
        let image = p.image(x.data());
        let dy_image = p.pad_output_grad(dy.data(), f);
        let dx = grouped_conv2d_backward(
            &image,
            &p.g,
            self.base.w(KERNEL).data(),
            f,
            self.groups,
            &dy_image,
            dk.as_mut().map(|t| t.data_mut()),
            need_dx.first().copied().unwrap_or(false),
        )
        .map(|d| p.crop_input_grad(d));
        if let Some(dk) = dk {
            self.base.set_grad(KERNEL, dk);
        }
        Ok(vec![dx
            .map(|d| Tensor::from_vec(x.shape(), d))
            .transpose()?])
    }
    fn config(&self) -> Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "filters": self.filters,
            "kernel_size": [self.kernel_size],
            "strides": [self.stride],
            "padding": if self.causal { "causal" } else { self.padding.as_str() },
            "data_format": "channels_last",
            "dilation_rate": [self.dilation],
            "groups": self.groups,
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
        })
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn conv1d_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    let filters = o.size("filters", None)?;
    let (k, _) = o.pair("kernel_size", None)?;
    let (s, _) = o.pair("strides", Some((1, 1)))?;
    let (d, _) = o.pair("dilation_rate", Some((1, 1)))?;
    let groups = o.size("groups", Some(1))?;
    o.budget(k as u64 * (last_dim(inputs) / groups as u64) * filters as u64)?;
    let conv = Conv1D::new(filters, k)
        .strides(s)
        .dilation_rate(d)
        .groups(groups)
        .activation(o.activation()?)
        .use_bias(o.boolean("use_bias", true)?);
    let conv = if o.string("padding", "valid")? == "causal" {
        conv.causal()
    } else {
        conv.padding(o.padding()?)
    };
    Ok(Box::new(conv))
}

/// `Conv1D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const CONV1D: LayerEntry = LayerEntry {
    class_name: "Conv1D",
    from_config: conv1d_from_config,
};
