//! `Conv2D` over NHWC images, kernel in Keras's HWIO layout.

use super::depthwise_conv2d::{depthwise_backward, depthwise_forward};
use super::registry::LayerEntry;
use super::window::{geometry, windowed_output};
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::conv::{apply_epilogue, conv2d_forward_cached, EpilogueStep, KernelCache};
use crate::tensor::grouped_conv::{grouped_conv2d_backward, grouped_conv2d_forward};
use crate::tensor::{random, Conv2dGeometry, Padding, Tensor};
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
    /// Keras's `groups`: input channels and filters split into this many blocks, filter block
    /// `i` seeing input block `i` only. Must divide both (checked at build). The depthwise case
    /// (ConvNeXt's `groups=projection_dim`: one spatial filter per channel) runs the depthwise
    /// kernel; other groupings run `tensor::grouped_conv`.
    groups: usize,
    /// Keras's `kernel_initializer="he_normal"` (NASNet's convolutions) instead of the
    /// glorot-uniform default.
    he_normal: bool,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<(Tensor, Tensor)>,
    /// The engine's form of the kernel, rebuilt when the kernel's version changes.
    prepared: KernelCache,
}

impl Conv2D {
    /// `filters` outputs with a square `kernel_size` window.
    pub fn new(filters: usize, kernel_size: usize) -> Conv2D {
        Conv2D::with_kernel(filters, (kernel_size, kernel_size))
    }
    /// A rectangular window, e.g. InceptionV3's `(1, 7)`.
    pub fn with_kernel(filters: usize, kernel_size: (usize, usize)) -> Conv2D {
        Conv2D {
            base: LayerBase::new(CONV2D.class_name),
            filters,
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            activation: ActivationFn::Linear,
            use_bias: true,
            groups: 1,
            he_normal: false,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
            prepared: KernelCache::default(),
        }
    }

    /// Keras's `groups`: any number dividing both the input channels and `filters`, with the
    /// kernel in Keras's `(kh, kw, in / groups, filters)` layout. A value that does not divide
    /// them (or 0) is refused with [`Error::InvalidConfig`] when the layer is built.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Keras's `kernel_initializer="he_normal"`: a normal distribution truncated at two standard
    /// deviations, scaled so that the variance is `2 / fan_in` (as `keras.initializers.HeNormal`),
    /// instead of glorot-uniform. Matters only for fresh weights (training from scratch).
    pub fn he_normal(mut self) -> Self {
        self.he_normal = true;
        self
    }

    /// Whether the depthwise kernel computes this grouping: one input channel and one filter per
    /// group.
    fn is_depthwise(&self, channels: usize) -> bool {
        self.groups > 1 && self.groups == channels && self.filters == channels
    }

    fn geometry(&self, x: &Tensor) -> Result<Conv2dGeometry> {
        geometry(
            &self.base.name,
            x,
            self.kernel_size,
            self.strides,
            self.padding,
        )
    }
}

conv_options!(Conv2D);

impl Conv2D {
    /// Whether the layer maps each pixel on its own, linearly (1x1 window, stride 1, no groups,
    /// no activation): it then commutes with an average pooling before it (see
    /// `Model::plan_fusion`).
    pub(crate) fn is_pointwise_linear(&self) -> bool {
        self.kernel_size == (1, 1)
            && self.strides == (1, 1)
            && self.groups == 1
            && self.activation == ActivationFn::Linear
    }

    /// The inference forward pass with `extra` epilogue steps after the layer's own bias and
    /// activation: the executor's fusion of a following BatchNormalization and activation
    /// (models/model.rs). Keeps no cache, so only for nodes no backward pass goes through.
    pub(crate) fn forward_fused(&mut self, x: &Tensor, extra: &[EpilogueStep]) -> Result<Tensor> {
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        self.cache = None;
        self.run(x, extra, true)
    }

    fn run(&mut self, x: &Tensor, extra: &[EpilogueStep], activate: bool) -> Result<Tensor> {
        let g = self.geometry(x)?;
        let f = self.filters;
        let act = self.activation;
        let act_fn = move |v: &mut [f32]| act.apply(v, f);
        let mut steps = Vec::with_capacity(2 + extra.len());
        if self.use_bias {
            steps.push(EpilogueStep::Bias(self.base.w(BIAS).data()));
        }
        match act {
            _ if !activate => {}
            ActivationFn::Linear => {}
            ActivationFn::Relu => steps.push(EpilogueStep::Relu),
            _ => steps.push(EpilogueStep::Map(&act_fn)),
        }
        steps.extend_from_slice(extra);
        let y = if self.is_depthwise(g.c) {
            // One filter per channel: the depthwise kernel `(kh, kw, c, 1)` has the same
            // memory layout as this `(kh, kw, 1, c)` one.
            let mut y = depthwise_forward(x.data(), &g, self.base.w(KERNEL).data(), 1);
            apply_epilogue(&mut y, f, &steps);
            y
        } else if self.groups > 1 {
            let k = self.base.w(KERNEL).data();
            let mut y = grouped_conv2d_forward(x.data(), &g, k, f, self.groups);
            apply_epilogue(&mut y, f, &steps);
            y
        } else {
            let kernel = &self.base.weights()[KERNEL];
            let (k, version) = (kernel.value().data(), kernel.version());
            conv2d_forward_cached(x.data(), &g, k, f, &steps, &mut self.prepared, version)
        };
        Tensor::from_vec(&[g.n, g.oh, g.ow, f], y)
    }
}

impl Layer for Conv2D {
    fn mult_adds(&self, output: &Shape) -> Option<u64> {
        super::mult_adds_per_position(output, self.base.weights().first()?.len())
    }
    /// The input, and the output only for an activation whose backward needs it.
    fn kept_for_backward(&self, inputs: &[u64], output: u64) -> u64 {
        let out = if self.activation == ActivationFn::Linear {
            0
        } else {
            output
        };
        (inputs.iter().sum::<u64>() + out) * 4
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
        CONV2D.class_name
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        // Keras raises in the constructor; ours cannot fail, so the layer is refused when it is
        // added to a model (built). Zero kernel sizes and strides are refused by the geometry.
        if self.filters == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': filters ({}) must be positive",
                self.base.name, self.filters
            )));
        }
        let (oh, ow, c) = windowed_output(
            &self.base.name,
            s,
            self.kernel_size,
            self.strides,
            self.padding,
        )?;
        let (kh, kw) = self.kernel_size;
        check_groups(&self.base.name, self.groups, c, self.filters)?;
        let c = c / self.groups;
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
            let k = if self.he_normal {
                he_normal(&mut rng, n, kh * kw * c)
            } else {
                random::glorot_uniform(&mut rng, n, kh * kw * c, kh * kw * self.filters)
            };
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
        // An activation whose derivative needs the pre-activation values runs after the output
        // pass when a backward pass will follow, so that those values can be kept.
        let split = ctx.keep && self.activation.saves_input();
        let mut y = self.run(x, &[], !split)?;
        let pre = self.activation.pre_activation(y.data(), ctx.keep);
        if pre.is_some() {
            self.activation.apply(y.data_mut(), self.filters);
        }
        if ctx.keep {
            // A linear activation's backward needs nothing from the forward pass: no copy of y.
            let kept = if self.activation == ActivationFn::Linear {
                Tensor::zeros(&[0])
            } else {
                self.activation.kept(pre, &y)
            };
            self.cache = Some((x.clone(), kept));
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        let g = self.geometry(&x)?;
        let f = self.filters;
        let activated;
        let dy = if self.activation == ActivationFn::Linear {
            grad
        } else {
            let mut d = grad.clone();
            self.activation.backward(y.data(), d.data_mut(), f);
            activated = d;
            &activated
        };
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
        let need = need_dx.first().copied().unwrap_or(false);
        let dx = if self.is_depthwise(g.c) {
            let (k_grad, dx) = depthwise_backward(
                x.data(),
                &g,
                self.base.w(KERNEL).data(),
                1,
                dy.data(),
                dk.is_some(),
                need,
            );
            if let (Some(dk), Some(k_grad)) = (dk.as_mut(), k_grad) {
                dk.data_mut().copy_from_slice(&k_grad);
            }
            dx
        } else {
            grouped_conv2d_backward(
                x.data(),
                &g,
                self.base.w(KERNEL).data(),
                f,
                self.groups,
                dy.data(),
                dk.as_mut().map(|t| t.data_mut()),
                need,
            )
        };
        if let Some(dk) = dk {
            self.base.set_grad(KERNEL, dk);
        }
        Ok(vec![dx
            .map(|d| Tensor::from_vec(x.shape(), d))
            .transpose()?])
    }

    fn config(&self) -> serde_json::Value {
        let mut cfg = json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "filters": self.filters,
            "kernel_size": [self.kernel_size.0, self.kernel_size.1],
            "strides": [self.strides.0, self.strides.1],
            "padding": self.padding.as_str(),
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
            "groups": self.groups,
        });
        // Only a non-default initializer is written (Keras's default is glorot-uniform), so
        // that NASNet's convolutions keep theirs through a Keras file.
        if self.he_normal {
            cfg["kernel_initializer"] = json!({"module": "keras.initializers",
                "class_name": "HeNormal", "config": {"seed": null}, "registered_name": null});
        }
        cfg
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

// Keras config reading.

/// `Conv2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const CONV2D: LayerEntry = LayerEntry {
    class_name: "Conv2D",
    from_config: conv2d_from_config,
};

fn conv2d_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    o.require("dilation_rate", &[json!([1, 1]), json!(1), json!([1])])?;
    let groups = o.size("groups", Some(1))?.max(1);
    let filters = o.size("filters", None)?;
    let k = o.pair("kernel_size", None)?;
    o.budget((k.0 * k.1) as u64 * (last_dim(inputs) / groups as u64) * filters as u64)?;
    let conv = Conv2D::with_kernel(filters, k);
    let he = o
        .get("kernel_initializer")
        .and_then(|v| v.get("class_name"))
        == Some(&json!("HeNormal"));
    let conv = if he { conv.he_normal() } else { conv };
    Ok(Box::new(
        conv.groups(groups)
            .strides2(o.pair("strides", Some((1, 1)))?)
            .padding(o.padding()?)
            .activation(o.activation()?)
            .use_bias(o.boolean("use_bias", true)?),
    ))
}

/// Keras's checks of `groups` (base_conv.py), as a typed error naming the layer.
pub(crate) fn check_groups(
    layer: &str,
    groups: usize,
    channels: usize,
    filters: usize,
) -> Result<()> {
    if groups == 0 || !channels.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
        return Err(Error::InvalidConfig(format!(
            "layer '{layer}': groups={groups} must be positive and divide both the input \
             channels ({channels}) and filters ({filters})"
        )));
    }
    Ok(())
}

/// `keras.initializers.HeNormal`: truncated normal (redrawn beyond two standard deviations) with
/// `stddev = sqrt(2 / fan_in) / 0.87962566103423978` (the correction Keras applies so that the
/// truncated distribution has variance `2 / fan_in`).
pub(crate) fn he_normal(rng: &mut rand::rngs::SmallRng, n: usize, fan_in: usize) -> Vec<f32> {
    let std = (2.0 / fan_in.max(1) as f64).sqrt() / 0.879_625_661_034_239_8;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let draws = random::standard_normal(rng, (n - out.len()).max(16));
        out.extend(
            draws
                .into_iter()
                .filter(|z| z.abs() <= 2.0)
                .map(|z| (z as f64 * std) as f32)
                .take(n - out.len()),
        );
    }
    out
}
