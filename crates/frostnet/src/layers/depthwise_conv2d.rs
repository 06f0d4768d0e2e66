//! `DepthwiseConv2D`: one spatial filter per input channel (times `depth_multiplier`), the
//! building block of MobileNet. Kernel in Keras's layout `(kh, kw, in, depth_multiplier)`; output
//! channel `c * depth_multiplier + m` comes from input channel `c`.
//!
//! There is no gemm here: each output sums only `kh * kw` products per channel; the numeric
//! kernels (channel-vectorized, parallel over rows) live in `tensor::depthwise`.

use super::registry::LayerEntry;
use super::window::{geometry, windowed_output};
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::{depthwise, random, Conv2dGeometry, Padding, Tensor};
use serde_json::json;

const KERNEL: usize = 0;
const BIAS: usize = 1;

/// Depthwise convolution forward: `x` NHWC with `g.c` channels, kernel `(kh, kw, c, dm)`. Returns
/// `(n, oh, ow, c * dm)` data.
pub(crate) fn depthwise_forward(x: &[f32], g: &Conv2dGeometry, k: &[f32], dm: usize) -> Vec<f32> {
    depthwise::depthwise_forward(x, g, k, dm)
}

/// Depthwise convolution backward: the kernel gradient (when asked) and the input gradient (when
/// asked), from the output gradient `dy` of shape `(n, oh, ow, c * dm)`.
pub(crate) fn depthwise_backward(
    x: &[f32],
    g: &Conv2dGeometry,
    k: &[f32],
    dm: usize,
    dy: &[f32],
    need_dk: bool,
    need_dx: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let dk = need_dk.then(|| depthwise::depthwise_kernel_grad(x, g, dy, dm));
    let dx = need_dx.then(|| depthwise::depthwise_input_grad(dy, g, k, dm));
    (dk, dx)
}

/// A depthwise 2-D convolution. Weights: `kernel (kh, kw, in, depth_multiplier)` glorot-uniform
/// and `bias (in * depth_multiplier)` zeros, Keras 3's names.
pub struct DepthwiseConv2D {
    base: LayerBase,
    kernel_size: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
    depth_multiplier: usize,
    activation: ActivationFn,
    use_bias: bool,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<(Tensor, Tensor)>,
}

impl DepthwiseConv2D {
    /// A square `kernel_size` window, depth multiplier 1.
    pub fn new(kernel_size: usize) -> DepthwiseConv2D {
        DepthwiseConv2D::with_kernel((kernel_size, kernel_size))
    }
    pub fn with_kernel(kernel_size: (usize, usize)) -> DepthwiseConv2D {
        DepthwiseConv2D {
            base: LayerBase::new(DEPTHWISE_CONV2D.class_name),
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            depth_multiplier: 1,
            activation: ActivationFn::Linear,
            use_bias: true,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
        }
    }
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }
}

conv_options!(DepthwiseConv2D);

impl Layer for DepthwiseConv2D {
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
        &[("depthwise", "kernel"), ("bias", "bias")]
    }
    fn class_name(&self) -> &str {
        DEPTHWISE_CONV2D.class_name
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let dm = self.depth_multiplier;
        if dm == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': depth_multiplier must be positive",
                self.base.name
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
            // Keras's fans for a (kh, kw, in, dm) kernel: receptive field times the last two axes.
            let k = random::glorot_uniform(&mut rng, kh * kw * c * dm, kh * kw * c, kh * kw * dm);
            self.base.add_weight(
                "kernel",
                Tensor::from_vec(&[kh, kw, c, dm], k)?,
                WeightKind::Param,
            );
            if self.use_bias {
                self.base
                    .add_weight("bias", Tensor::zeros(&[c * dm]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(vec![oh, ow, Some(c * dm)])
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let g = geometry(
            &self.base.name,
            x,
            self.kernel_size,
            self.strides,
            self.padding,
        )?;
        let oc = g.c * self.depth_multiplier;
        let mut y = depthwise_forward(
            x.data(),
            &g,
            self.base.w(KERNEL).data(),
            self.depth_multiplier,
        );
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.chunks_mut(oc)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        let pre = self.activation.pre_activation(&y, ctx.keep);
        self.activation.apply(&mut y, oc);
        let y = Tensor::from_vec(&[g.n, g.oh, g.ow, oc], y)?;
        if ctx.keep {
            self.cache = Some((x.clone(), self.activation.kept(pre, &y)));
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        let g = geometry(
            &self.base.name,
            &x,
            self.kernel_size,
            self.strides,
            self.padding,
        )?;
        let oc = g.c * self.depth_multiplier;
        let mut dy = grad.clone();
        self.activation.backward(y.data(), dy.data_mut(), oc);
        if self.use_bias && self.base.wants_grad(BIAS) {
            let mut db = vec![0.0f32; oc];
            dy.data()
                .chunks(oc)
                .for_each(|r| db.iter_mut().zip(r).for_each(|(a, b)| *a += b));
            self.base.set_grad(BIAS, Tensor::from_vec(&[oc], db)?);
        }
        let (dk, dx) = depthwise_backward(
            x.data(),
            &g,
            self.base.w(KERNEL).data(),
            self.depth_multiplier,
            dy.data(),
            self.base.wants_grad(KERNEL),
            need_dx.first().copied().unwrap_or(false),
        );
        if let Some(dk) = dk {
            let shape = self.base.w(KERNEL).shape().to_vec();
            self.base.set_grad(KERNEL, Tensor::from_vec(&shape, dk)?);
        }
        Ok(vec![dx
            .map(|d| Tensor::from_vec(x.shape(), d))
            .transpose()?])
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "kernel_size": [self.kernel_size.0, self.kernel_size.1],
            "strides": [self.strides.0, self.strides.1],
            "padding": self.padding.as_str(),
            "depth_multiplier": self.depth_multiplier,
            "data_format": "channels_last",
            "dilation_rate": [1, 1],
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
        })
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `DepthwiseConv2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const DEPTHWISE_CONV2D: LayerEntry = LayerEntry {
    class_name: "DepthwiseConv2D",
    from_config: depthwise_conv2d_from_config,
};

fn depthwise_conv2d_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.conv_common()?;
    let k = o.pair("kernel_size", None)?;
    let dm = o.size("depth_multiplier", Some(1))?;
    o.budget((k.0 * k.1) as u64 * last_dim(inputs) * dm as u64)?;
    Ok(Box::new(
        DepthwiseConv2D::with_kernel(k)
            .strides2(o.pair("strides", Some((1, 1)))?)
            .padding(o.padding()?)
            .depth_multiplier(dm)
            .activation(o.activation()?)
            .use_bias(o.boolean("use_bias", true)?),
    ))
}
