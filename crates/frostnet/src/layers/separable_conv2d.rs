//! `SeparableConv2D`: a depthwise convolution followed by a 1x1 (pointwise) convolution, with one
//! bias and one activation at the end (Xception). Far fewer weights than a full `Conv2D`.

use super::depthwise_conv2d::{depthwise_backward, depthwise_forward};
use super::registry::LayerEntry;
use super::window::{geometry, windowed_output};
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::{matmul, random, Padding, Tensor, Transpose};
use serde_json::json;

const DEPTHWISE: usize = 0;
const POINTWISE: usize = 1;
const BIAS: usize = 2;

/// What forward keeps: the input, the depthwise output, and the layer output.
struct Cache {
    x: Tensor,
    mid: Tensor,
    y: Tensor,
}

/// Weights in Keras 3's order: `depthwise_kernel (kh, kw, in, depth_multiplier)`,
/// `pointwise_kernel (1, 1, in * depth_multiplier, filters)`, `bias (filters)`.
pub struct SeparableConv2D {
    base: LayerBase,
    filters: usize,
    kernel_size: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
    depth_multiplier: usize,
    activation: ActivationFn,
    use_bias: bool,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<Cache>,
}

impl SeparableConv2D {
    pub fn new(filters: usize, kernel_size: usize) -> SeparableConv2D {
        SeparableConv2D::with_kernel(filters, (kernel_size, kernel_size))
    }
    pub fn with_kernel(filters: usize, kernel_size: (usize, usize)) -> SeparableConv2D {
        SeparableConv2D {
            base: LayerBase::new(SEPARABLE_CONV2D.class_name),
            filters,
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

conv_options!(SeparableConv2D);

impl Layer for SeparableConv2D {
    /// The depthwise and the pointwise kernel, both at every output position (the depthwise
    /// stride already applies).
    fn mult_adds(&self, output: &Shape) -> Option<u64> {
        let depthwise = super::mult_adds_per_position(output, self.base.weights().first()?.len())?;
        Some(depthwise + super::mult_adds_per_position(output, self.base.weights().get(1)?.len())?)
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("depthwise", "depthwise_kernel"),
            ("pointwise", "pointwise_kernel"),
            ("bias", "bias"),
        ]
    }
    fn class_name(&self) -> &str {
        SEPARABLE_CONV2D.class_name
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let dm = self.depth_multiplier;
        if dm == 0 || self.filters == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': filters and depth_multiplier must be positive",
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
        let f = self.filters;
        if self.base.built {
            if self.base.w(DEPTHWISE).shape()[2] != c {
                return Err(incompatible(
                    &self.base.name,
                    "the channel count it was built with",
                    s,
                ));
            }
        } else {
            let mut rng = random::rng(self.seed);
            let dk = random::glorot_uniform(&mut rng, kh * kw * c * dm, kh * kw * c, kh * kw * dm);
            let pk = random::glorot_uniform(&mut rng, c * dm * f, c * dm, f);
            self.base.add_weight(
                "depthwise_kernel",
                Tensor::from_vec(&[kh, kw, c, dm], dk)?,
                WeightKind::Param,
            );
            self.base.add_weight(
                "pointwise_kernel",
                Tensor::from_vec(&[1, 1, c * dm, f], pk)?,
                WeightKind::Param,
            );
            if self.use_bias {
                self.base
                    .add_weight("bias", Tensor::zeros(&[f]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(vec![oh, ow, Some(f)])
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
        let (dm, f) = (self.depth_multiplier, self.filters);
        let mc = g.c * dm;
        let rows = g.n * g.oh * g.ow;
        let mid = depthwise_forward(x.data(), &g, self.base.w(DEPTHWISE).data(), dm);
        let mut y = vec![0.0f32; rows * f];
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.chunks_mut(f).for_each(|r| r.copy_from_slice(b));
        }
        matmul(
            &mid,
            Transpose::No,
            self.base.w(POINTWISE).data(),
            Transpose::No,
            &mut y,
            rows,
            mc,
            f,
            self.use_bias,
        );
        let pre = self.activation.pre_activation(&y, ctx.keep);
        self.activation.apply(&mut y, f);
        let y = Tensor::from_vec(&[g.n, g.oh, g.ow, f], y)?;
        if ctx.keep {
            self.cache = Some(Cache {
                x: x.clone(),
                mid: Tensor::from_vec(&[g.n, g.oh, g.ow, mc], mid)?,
                y: self.activation.kept(pre, &y),
            });
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let Cache { x, mid, y } = take_cache(&mut self.cache, &self.base.name)?;
        let g = geometry(
            &self.base.name,
            &x,
            self.kernel_size,
            self.strides,
            self.padding,
        )?;
        let (dm, f) = (self.depth_multiplier, self.filters);
        let mc = g.c * dm;
        let rows = g.n * g.oh * g.ow;
        let mut dy = grad.clone();
        self.activation.backward(y.data(), dy.data_mut(), f);
        if self.use_bias && self.base.wants_grad(BIAS) {
            let mut db = vec![0.0f32; f];
            dy.data()
                .chunks(f)
                .for_each(|r| db.iter_mut().zip(r).for_each(|(a, b)| *a += b));
            self.base.set_grad(BIAS, Tensor::from_vec(&[f], db)?);
        }
        if self.base.wants_grad(POINTWISE) {
            let mut dp = Tensor::zeros(&[1, 1, mc, f]);
            matmul(
                mid.data(),
                Transpose::Yes,
                dy.data(),
                Transpose::No,
                dp.data_mut(),
                mc,
                rows,
                f,
                false,
            );
            self.base.set_grad(POINTWISE, dp);
        }
        let want_dk = self.base.wants_grad(DEPTHWISE);
        let want_dx = need_dx.first().copied().unwrap_or(false);
        if !want_dk && !want_dx {
            return Ok(vec![None]);
        }
        let mut dmid = vec![0.0f32; rows * mc];
        matmul(
            dy.data(),
            Transpose::No,
            self.base.w(POINTWISE).data(),
            Transpose::Yes,
            &mut dmid,
            rows,
            f,
            mc,
            false,
        );
        let (dk, dx) = depthwise_backward(
            x.data(),
            &g,
            self.base.w(DEPTHWISE).data(),
            dm,
            &dmid,
            want_dk,
            want_dx,
        );
        if let Some(dk) = dk {
            let shape = self.base.w(DEPTHWISE).shape().to_vec();
            self.base.set_grad(DEPTHWISE, Tensor::from_vec(&shape, dk)?);
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

/// `SeparableConv2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const SEPARABLE_CONV2D: LayerEntry = LayerEntry {
    class_name: "SeparableConv2D",
    from_config: separable_conv2d_from_config,
};

fn separable_conv2d_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.conv_common()?;
    let cin = last_dim(inputs);
    let filters = o.size("filters", None)?;
    let k = o.pair("kernel_size", None)?;
    let dm = o.size("depth_multiplier", Some(1))?;
    o.budget((k.0 * k.1) as u64 * cin * dm as u64 + cin * dm as u64 * filters as u64)?;
    Ok(Box::new(
        SeparableConv2D::with_kernel(filters, k)
            .strides2(o.pair("strides", Some((1, 1)))?)
            .padding(o.padding()?)
            .depth_multiplier(dm)
            .activation(o.activation()?)
            .use_bias(o.boolean("use_bias", true)?),
    ))
}
