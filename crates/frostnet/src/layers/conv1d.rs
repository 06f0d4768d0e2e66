//! `Conv1D` over `(None, steps, channels)` sequences: a Conv2D on `(steps, 1)` images. Keras's
//! kernel `(k, in, filters)` is laid out as the Conv2D kernel `(k, 1, in, filters)`, so
//! `tensor::conv`'s kernels run on the data as stored.

use super::registry::LayerEntry;
use super::window::geometry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::conv::{conv2d_backward, conv2d_forward};
use crate::tensor::{conv_output_len, random, Conv2dGeometry, Padding, Tensor};
use serde_json::{json, Value};

const KERNEL: usize = 0;
const BIAS: usize = 1;

/// A 1-D convolution. Weights: `kernel (k, in, filters)` glorot-uniform, `bias (filters)` zeros.
pub struct Conv1D {
    base: LayerBase,
    filters: usize,
    kernel_size: usize,
    stride: usize,
    padding: Padding,
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

    /// The `(n, steps, 1, c)` view's geometry.
    fn geometry(&self, x: &Tensor) -> Result<Conv2dGeometry> {
        let [n, steps, c] = *x.shape() else {
            return Err(incompatible(
                &self.base.name,
                "(None, steps, channels)",
                &Vec::new(),
            ));
        };
        let view = Tensor::zeros(&[0]).reshape(&[0, steps, 1, c])?;
        let g = geometry(
            &self.base.name,
            &view,
            (self.kernel_size, 1),
            (self.stride, 1),
            self.padding,
        )?;
        Ok(Conv2dGeometry { n, ..g })
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
        if k == 0 || self.stride == 0 || f == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': filters, kernel_size and strides must be positive",
                self.base.name
            )));
        }
        let [steps, Some(c)] = s[..] else {
            return Err(incompatible(&self.base.name, "(None, steps, channels)", s));
        };
        let out =
            match steps {
                None => None,
                Some(n) => Some(conv_output_len(n, k, self.stride, self.padding).ok_or_else(
                    || incompatible(&self.base.name, format!("at least {k} steps"), s),
                )?),
            };
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
        let g = self.geometry(x)?;
        let f = self.filters;
        let mut y = conv2d_forward(x.data(), &g, self.base.w(KERNEL).data(), f, &[]);
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.chunks_mut(f)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        let pre = self.activation.pre_activation(&y, ctx.keep);
        self.activation.apply(&mut y, f);
        let y = Tensor::from_vec(&[g.n, g.oh, f], y)?;
        if ctx.keep {
            self.cache = Some((x.clone(), self.activation.kept(pre, &y)));
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
    fn config(&self) -> Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "filters": self.filters,
            "kernel_size": [self.kernel_size],
            "strides": [self.stride],
            "padding": self.padding.as_str(),
            "data_format": "channels_last",
            "dilation_rate": [1],
            "groups": 1,
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
        })
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn conv1d_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.conv_common()?;
    let filters = o.size("filters", None)?;
    let (k, _) = o.pair("kernel_size", None)?;
    let (s, _) = o.pair("strides", Some((1, 1)))?;
    o.budget(k as u64 * last_dim(inputs) * filters as u64)?;
    Ok(Box::new(
        Conv1D::new(filters, k)
            .strides(s)
            .padding(o.padding()?)
            .activation(o.activation()?)
            .use_bias(o.boolean("use_bias", true)?),
    ))
}

/// `Conv1D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const CONV1D: LayerEntry = LayerEntry {
    class_name: "Conv1D",
    from_config: conv1d_from_config,
};
