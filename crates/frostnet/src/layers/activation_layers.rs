//! The activation layers with their own options or weights: `LeakyReLU`, `ELU`, `PReLU` (a
//! learned slope per position, optionally shared over axes), `Softmax` (over the last axis) and
//! `Identity`. (`ReLU` is in `relu.rs`, `Activation` in `activation.rs`.)

use super::activation::{elu, softmax_row, ActivationFn};
use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase,
    Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::{Tensor, PAR_THRESHOLD};
use rayon::prelude::*;
use serde_json::{json, Value};

/// `y = f(x)` elementwise, in parallel for large tensors.
fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
    let mut y = x.clone();
    if y.len() >= PAR_THRESHOLD {
        y.data_mut().par_iter_mut().for_each(|v| *v = f(*v));
    } else {
        y.data_mut().iter_mut().for_each(|v| *v = f(*v));
    }
    y
}

/// `dx = grad * f'(x)` elementwise.
fn chain(grad: &Tensor, x: &Tensor, df: impl Fn(f32) -> f32) -> Tensor {
    let mut dx = grad.clone();
    dx.data_mut()
        .iter_mut()
        .zip(x.data())
        .for_each(|(d, &x)| *d *= df(x));
    dx
}

// ---------------------------------------------------------------------------------------------

/// `x` for `x > 0`, `negative_slope * x` otherwise (Keras 3's default slope is 0.3).
pub struct LeakyReLU {
    base: LayerBase,
    negative_slope: f32,
    cache: Option<Tensor>,
}

impl Default for LeakyReLU {
    fn default() -> Self {
        Self::new(0.3)
    }
}

impl LeakyReLU {
    pub fn new(negative_slope: f32) -> LeakyReLU {
        LeakyReLU {
            base: LayerBase::new(LEAKY_RELU.class_name),
            negative_slope,
            cache: None,
        }
    }
}

impl Layer for LeakyReLU {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        LEAKY_RELU.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if self.negative_slope.is_nan() || self.negative_slope < 0.0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': negative_slope must be a non-negative number, got {}",
                self.base.name, self.negative_slope
            )));
        }
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let a = self.negative_slope;
        let y = map(inputs[0], |v| if v > 0.0 { v } else { a * v });
        self.cache = ctx.keep.then(|| inputs[0].clone());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = take_cache(&mut self.cache, &self.base.name)?;
        let a = self.negative_slope;
        Ok(vec![Some(chain(
            grad,
            &x,
            |v| if v > 0.0 { 1.0 } else { a },
        ))])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "negative_slope": self.negative_slope})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn leaky_relu_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    // tf-keras called the slope `alpha`.
    let slope = match o.get("negative_slope") {
        Some(_) => o.float("negative_slope", 0.3)?,
        None => o.float("alpha", 0.3)?,
    };
    Ok(Box::new(LeakyReLU::new(slope)))
}

/// `LeakyReLU`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const LEAKY_RELU: LayerEntry = LayerEntry {
    class_name: "LeakyReLU",
    from_config: leaky_relu_from_config,
};

// ---------------------------------------------------------------------------------------------

/// `x` for `x > 0`, `alpha * (exp(x) - 1)` otherwise.
#[allow(clippy::upper_case_acronyms)] // Keras's class name.
pub struct ELU {
    base: LayerBase,
    alpha: f32,
    cache: Option<Tensor>,
}

impl Default for ELU {
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl ELU {
    pub fn new(alpha: f32) -> ELU {
        ELU {
            base: LayerBase::new(ELU_ENTRY.class_name),
            alpha,
            cache: None,
        }
    }
}

impl Layer for ELU {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        ELU_ENTRY.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let a = self.alpha;
        let y = map(inputs[0], |v| elu(v, a));
        self.cache = ctx.keep.then(|| inputs[0].clone());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = take_cache(&mut self.cache, &self.base.name)?;
        let a = self.alpha;
        Ok(vec![Some(chain(grad, &x, |v| {
            if v > 0.0 {
                1.0
            } else {
                a * v.exp()
            }
        }))])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "alpha": self.alpha})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn elu_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(ELU::new(o.float("alpha", 1.0)?)))
}

/// `ELU`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const ELU_ENTRY: LayerEntry = LayerEntry {
    class_name: "ELU",
    from_config: elu_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Softmax over the last axis (Keras's default `axis=-1`).
pub struct Softmax {
    base: LayerBase,
    shape: Shape,
    out: Option<Tensor>,
}

impl Default for Softmax {
    fn default() -> Self {
        Self::new()
    }
}

impl Softmax {
    pub fn new() -> Softmax {
        Softmax {
            base: LayerBase::new(SOFTMAX.class_name),
            shape: Vec::new(),
            out: None,
        }
    }
}

impl Layer for Softmax {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        SOFTMAX.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if s.is_empty() {
            return Err(incompatible(&self.base.name, "at least one axis", s));
        }
        self.shape = s.clone();
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_runtime_shape(&self.base.name, &self.shape, inputs[0])?;
        let mut y = inputs[0].clone();
        let row = *y.shape().last().unwrap_or(&1);
        y.data_mut().chunks_mut(row.max(1)).for_each(softmax_row);
        self.out = ctx.keep.then(|| y.clone());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let y = take_cache(&mut self.out, &self.base.name)?;
        let mut dx = grad.clone();
        let row = *y.shape().last().unwrap_or(&1);
        ActivationFn::Softmax.backward(y.data(), dx.data_mut(), row);
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "axis": -1})
    }
    fn clear_cache(&mut self) {
        self.out = None;
    }
}

fn softmax_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let rank = inputs.first().map_or(0, |s| s.len() as i64 + 1);
    let last = |v: &Value| v.as_i64().is_some_and(|a| a == -1 || a == rank - 1);
    let ok = match o.get("axis") {
        None => true,
        Some(Value::Array(a)) => a.len() == 1 && last(&a[0]),
        Some(v) => last(v),
    };
    if !ok {
        return Err(o.err(format!(
            "axis {} is not implemented (only the last axis)",
            o.get("axis").expect("checked")
        )));
    }
    Ok(Box::new(Softmax::new()))
}

/// `Softmax`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const SOFTMAX: LayerEntry = LayerEntry {
    class_name: "Softmax",
    from_config: softmax_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Passes its input through unchanged (Keras's placeholder layer).
pub struct Identity {
    base: LayerBase,
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

impl Identity {
    pub fn new() -> Identity {
        Identity {
            base: LayerBase::new(IDENTITY.class_name),
        }
    }
}

impl Layer for Identity {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        IDENTITY.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        Ok(inputs[0].clone())
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone())])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable})
    }
}

fn identity_from_config(_o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Identity::new()))
}

/// `Identity`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const IDENTITY: LayerEntry = LayerEntry {
    class_name: "Identity",
    from_config: identity_from_config,
};

// ---------------------------------------------------------------------------------------------

const ALPHA: usize = 0;

/// `x` for `x > 0`, `alpha * x` otherwise, with a learned `alpha` per position of the per-sample
/// shape, shared (size 1) along `shared_axes` (counted with the batch axis, as in Keras).
/// `alpha` starts at zeros (Keras's default `alpha_initializer`).
pub struct PReLU {
    base: LayerBase,
    shared_axes: Vec<usize>,
    in_shape: Shape,
    cache: Option<Tensor>,
}

impl Default for PReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl PReLU {
    pub fn new() -> PReLU {
        PReLU {
            base: LayerBase::new(PRELU.class_name),
            shared_axes: Vec::new(),
            in_shape: Vec::new(),
            cache: None,
        }
    }
    /// Axes (1 = the first per-sample axis) along which one `alpha` is shared, e.g. `[1, 2]` for
    /// one slope per channel of an image.
    pub fn shared_axes(mut self, axes: &[usize]) -> Self {
        self.shared_axes = axes.to_vec();
        self
    }

    /// The flat index into `alpha` of each per-sample position is computed with these strides
    /// (0 along shared axes).
    fn alpha_strides(&self, dims: &[usize]) -> Vec<usize> {
        let a = self.base.w(ALPHA).shape();
        let mut st = vec![0; dims.len()];
        let mut acc = 1;
        for i in (0..dims.len()).rev() {
            st[i] = if a[i] == 1 { 0 } else { acc };
            acc *= a[i];
        }
        st
    }

    /// Calls `f(position in sample, position in alpha)` for one sample's positions.
    fn visit(&self, dims: &[usize], f: impl FnMut(usize, usize)) {
        super::normalization::visit(dims, &self.alpha_strides(dims), f);
    }
}

impl Layer for PReLU {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[("alpha", "alpha")]
    }
    fn class_name(&self) -> &str {
        PRELU.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if let Some(&bad) = self.shared_axes.iter().find(|&&a| a == 0 || a > s.len()) {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': shared axis {bad} is not a per-sample axis of an input of rank {}",
                self.base.name,
                s.len() + 1
            )));
        }
        let mut alpha = Vec::with_capacity(s.len());
        for (i, d) in s.iter().enumerate() {
            if self.shared_axes.contains(&(i + 1)) {
                alpha.push(1);
            } else {
                alpha.push(d.ok_or_else(|| {
                    incompatible(
                        &self.base.name,
                        "known sizes on every axis that is not shared",
                        s,
                    )
                })?);
            }
        }
        if self.base.built {
            if self.base.w(ALPHA).shape() != alpha.as_slice() {
                return Err(incompatible(
                    &self.base.name,
                    "the shape it was built with",
                    s,
                ));
            }
        } else {
            self.base
                .add_weight("alpha", Tensor::zeros(&alpha), WeightKind::Param);
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let dims = &x.shape()[1..];
        let per = x.sample_len();
        let a = self.base.w(ALPHA).data();
        let mut y = x.clone();
        if per > 0 {
            for sample in y.data_mut().chunks_mut(per) {
                self.visit(dims, |p, at| {
                    if sample[p] <= 0.0 {
                        sample[p] *= a[at];
                    }
                });
            }
        }
        self.cache = ctx.keep.then(|| x.clone());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = take_cache(&mut self.cache, &self.base.name)?;
        let dims = x.shape()[1..].to_vec();
        let per = x.sample_len();
        let a = self.base.w(ALPHA).clone();
        if self.base.wants_grad(ALPHA) {
            let mut da = Tensor::zeros(a.shape());
            if per > 0 {
                for (xs, gs) in x.data().chunks(per).zip(grad.data().chunks(per)) {
                    let d = da.data_mut();
                    self.visit(&dims, |p, at| d[at] += gs[p] * xs[p].min(0.0));
                }
            }
            self.base.set_grad(ALPHA, da);
        }
        let dx = need_dx.first().copied().unwrap_or(false).then(|| {
            let mut dx = grad.clone();
            if per > 0 {
                for (ds, xs) in dx.data_mut().chunks_mut(per).zip(x.data().chunks(per)) {
                    self.visit(&dims, |p, at| {
                        if xs[p] <= 0.0 {
                            ds[p] *= a.data()[at];
                        }
                    });
                }
            }
            dx
        });
        Ok(vec![dx])
    }
    fn config(&self) -> Value {
        let shared: Value = if self.shared_axes.is_empty() {
            Value::Null
        } else {
            json!(self.shared_axes)
        };
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "alpha_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                     "config": {}, "registered_name": null},
               "alpha_regularizer": null, "alpha_constraint": null, "shared_axes": shared})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn prelu_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let rank = inputs.first().map_or(1, |s| s.len() + 1);
    let axis = |v: &Value| match v.as_i64() {
        Some(a) if a >= 1 && (a as usize) < rank => Ok(a as usize),
        Some(a) if a < 0 && (-a as usize) < rank => Ok((rank as i64 + a) as usize),
        _ => Err(o.err(format!("shared axis {v} is not a per-sample axis"))),
    };
    let shared = match o.get("shared_axes") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(axis).collect::<Result<Vec<_>>>()?,
        Some(v) => vec![axis(v)?],
    };
    Ok(Box::new(PReLU::new().shared_axes(&shared)))
}

/// `PReLU`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const PRELU: LayerEntry = LayerEntry {
    class_name: "PReLU",
    from_config: prelu_from_config,
};
