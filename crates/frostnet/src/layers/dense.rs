//! `Dense`: `y = activation(x · kernel + bias)` over the last axis.

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ActivationFn, ForwardCtx, Layer,
    LayerBase, Shape, WeightKind,
};
use crate::error::Result;
use crate::saving::keras_config::{options::last_dim, Opts};
use crate::tensor::{matmul, random, Tensor, Transpose};
use serde_json::json;

const KERNEL: usize = 0;
const BIAS: usize = 1;

/// A fully connected layer. Weights: `kernel (in, units)` initialised glorot-uniform, `bias (units)`
/// initialised to zeros (Keras's defaults).
pub struct Dense {
    base: LayerBase,
    units: usize,
    activation: ActivationFn,
    use_bias: bool,
    seed: Option<u64>,
    in_shape: Shape,
    cache: Option<(Tensor, Tensor)>,
}

impl Dense {
    /// `units` outputs. `units = 0` is refused with [`Error::InvalidConfig`](crate::Error) when
    /// the layer is built (added to a model that knows its input shape), not here.
    pub fn new(units: usize) -> Dense {
        Dense {
            base: LayerBase::new(DENSE.class_name),
            units,
            activation: ActivationFn::Linear,
            use_bias: true,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
        }
    }
    pub fn activation(mut self, f: ActivationFn) -> Dense {
        self.activation = f;
        self
    }
    pub fn use_bias(mut self, b: bool) -> Dense {
        self.use_bias = b;
        self
    }
    /// Seeds the kernel initializer.
    pub fn seed(mut self, seed: u64) -> Dense {
        self.seed = Some(seed);
        self
    }
    pub fn units(&self) -> usize {
        self.units
    }
}

impl Layer for Dense {
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
        DENSE.class_name
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        // Keras raises in the constructor; `new` cannot fail, so the layer is refused when it is
        // added to a model (built).
        if self.units == 0 {
            return Err(crate::Error::InvalidConfig(format!(
                "layer '{}': units must be positive, got 0",
                self.base.name
            )));
        }
        let Some(&Some(fan_in)) = s.last() else {
            return Err(incompatible(&self.base.name, "a known last axis", s));
        };
        if self.base.built {
            let k = self.base.w(KERNEL).shape()[0];
            if k != fan_in {
                return Err(incompatible(&self.base.name, format!("(..., {k})"), s));
            }
        } else {
            let mut rng = random::rng(self.seed);
            let kernel = random::glorot_uniform(&mut rng, fan_in * self.units, fan_in, self.units);
            self.base.add_weight(
                "kernel",
                Tensor::from_vec(&[fan_in, self.units], kernel)?,
                WeightKind::Param,
            );
            if self.use_bias {
                self.base
                    .add_weight("bias", Tensor::zeros(&[self.units]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        let mut out = s.clone();
        *out.last_mut().expect("checked above") = Some(self.units);
        Ok(out)
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let fan_in = *x.shape().last().expect("rank checked");
        let rows = x.len() / fan_in;
        let mut out_shape = x.shape().to_vec();
        *out_shape.last_mut().expect("rank checked") = self.units;
        // Every value is written: the bias rows below, or the product (not accumulated).
        let mut y = Tensor::overwritten(&out_shape);
        let u = self.units;
        if self.use_bias {
            let b = self.base.w(BIAS).data();
            y.data_mut()
                .chunks_mut(u)
                .for_each(|r| r.copy_from_slice(b));
        }
        matmul(
            x.data(),
            Transpose::No,
            self.base.w(KERNEL).data(),
            Transpose::No,
            y.data_mut(),
            rows,
            fan_in,
            u,
            self.use_bias,
        );
        let pre = self.activation.pre_activation(y.data(), ctx.keep);
        self.activation.apply(y.data_mut(), u);
        if ctx.keep {
            self.cache = Some((x.clone(), self.activation.kept(pre, &y)));
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        let u = self.units;
        let fan_in = *x.shape().last().expect("rank checked");
        let rows = x.len() / fan_in;
        let mut g = grad.clone();
        self.activation.backward(y.data(), g.data_mut(), u);
        if self.base.wants_grad(KERNEL) {
            let mut dk = Tensor::overwritten(&[fan_in, u]);
            matmul(
                x.data(),
                Transpose::Yes,
                g.data(),
                Transpose::No,
                dk.data_mut(),
                fan_in,
                rows,
                u,
                false,
            );
            self.base.set_grad(KERNEL, dk);
        }
        if self.use_bias && self.base.wants_grad(BIAS) {
            let mut db = vec![0.0f32; u];
            g.data()
                .chunks(u)
                .for_each(|r| db.iter_mut().zip(r).for_each(|(a, b)| *a += b));
            self.base.set_grad(BIAS, Tensor::from_vec(&[u], db)?);
        }
        let dx = if need_dx.first().copied().unwrap_or(false) {
            let mut dx = Tensor::overwritten(x.shape());
            matmul(
                g.data(),
                Transpose::No,
                self.base.w(KERNEL).data(),
                Transpose::Yes,
                dx.data_mut(),
                rows,
                u,
                fan_in,
                false,
            );
            Some(dx)
        } else {
            None
        };
        Ok(vec![dx])
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "units": self.units,
            "activation": self.activation.as_str(),
            "use_bias": self.use_bias,
        })
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `Dense`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const DENSE: LayerEntry = LayerEntry {
    class_name: "Dense",
    from_config: dense_from_config,
};

fn dense_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let units = o.size("units", None)?;
    o.budget(last_dim(inputs) * units as u64)?;
    Ok(Box::new(
        Dense::new(units)
            .activation(o.activation()?)
            .use_bias(o.boolean("use_bias", true)?),
    ))
}
