//! Activation functions, and the `Activation` layer that applies one.

use super::{check_runtime_shape, expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{Error, Result};
use crate::tensor::{Tensor, PAR_THRESHOLD};
use rayon::prelude::*;
use serde_json::json;

/// The activations Keras layers accept by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ActivationFn {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    /// Softmax over the last axis.
    Softmax,
}

impl ActivationFn {
    /// Keras's name (`"relu"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationFn::Linear => "linear",
            ActivationFn::Relu => "relu",
            ActivationFn::Sigmoid => "sigmoid",
            ActivationFn::Tanh => "tanh",
            ActivationFn::Softmax => "softmax",
        }
    }

    /// Parses Keras's name.
    pub fn parse(name: &str) -> Result<ActivationFn> {
        Ok(match name {
            "linear" | "None" => ActivationFn::Linear,
            "relu" => ActivationFn::Relu,
            "sigmoid" => ActivationFn::Sigmoid,
            "tanh" => ActivationFn::Tanh,
            "softmax" => ActivationFn::Softmax,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown activation '{other}'"
                )))
            }
        })
    }

    /// Applies the activation in place; `row` is the length of the last axis (for softmax).
    pub fn apply(self, x: &mut [f32], row: usize) {
        let par = x.len() >= PAR_THRESHOLD;
        let map = |x: &mut [f32], f: fn(f32) -> f32| {
            if par {
                x.par_iter_mut().for_each(|v| *v = f(*v));
            } else {
                x.iter_mut().for_each(|v| *v = f(*v));
            }
        };
        match self {
            ActivationFn::Linear => {}
            ActivationFn::Relu => map(x, |v| v.max(0.0)),
            ActivationFn::Sigmoid => map(x, |v| 1.0 / (1.0 + (-v).exp())),
            ActivationFn::Tanh => map(x, f32::tanh),
            ActivationFn::Softmax => x.chunks_mut(row.max(1)).for_each(softmax_row),
        }
    }

    /// Turns `dy` (gradient w.r.t. the activation's output `y`) into the gradient w.r.t. its
    /// input, in place. Every supported activation's derivative is a function of its output.
    pub fn backward(self, y: &[f32], dy: &mut [f32], row: usize) {
        match self {
            ActivationFn::Linear => {}
            ActivationFn::Relu => dy.iter_mut().zip(y).for_each(|(d, &y)| {
                if y <= 0.0 {
                    *d = 0.0
                }
            }),
            ActivationFn::Sigmoid => dy.iter_mut().zip(y).for_each(|(d, &y)| *d *= y * (1.0 - y)),
            ActivationFn::Tanh => dy.iter_mut().zip(y).for_each(|(d, &y)| *d *= 1.0 - y * y),
            ActivationFn::Softmax => {
                let row = row.max(1);
                dy.chunks_mut(row).zip(y.chunks(row)).for_each(|(d, y)| {
                    let dot: f32 = d.iter().zip(y).map(|(a, b)| a * b).sum();
                    d.iter_mut().zip(y).for_each(|(d, &y)| *d = y * (*d - dot));
                })
            }
        }
    }
}

/// Numerically stable softmax of one row.
pub(crate) fn softmax_row(r: &mut [f32]) {
    let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in r.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    r.iter_mut().for_each(|v| *v /= s);
}

/// Applies an activation function as a layer of its own (Keras's `Activation`).
pub struct Activation {
    base: LayerBase,
    f: ActivationFn,
    shape: Shape,
    out: Option<Tensor>,
}

impl Activation {
    pub fn new(f: ActivationFn) -> Activation {
        Activation {
            base: LayerBase::new("Activation"),
            f,
            shape: Vec::new(),
            out: None,
        }
    }
    pub fn function(&self) -> ActivationFn {
        self.f
    }
}

impl Layer for Activation {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Activation"
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        self.shape = s.clone();
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_runtime_shape(&self.base.name, &self.shape, inputs[0])?;
        let mut y = inputs[0].clone();
        let row = *y.shape().last().unwrap_or(&1);
        self.f.apply(y.data_mut(), row);
        self.out = ctx.keep.then(|| y.clone());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let y = take_cache(&mut self.out, &self.base.name)?;
        let mut dx = grad.clone();
        let row = *y.shape().last().unwrap_or(&1);
        self.f.backward(y.data(), dx.data_mut(), row);
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "activation": self.f.as_str()})
    }
    fn clear_cache(&mut self) {
        self.out = None;
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}
