//! `Dropout`: zeroes a fraction of its inputs in training mode and scales the rest by
//! `1 / (1 - rate)`. Depends on the mode only, never on `trainable` (as in Keras).

use super::registry::LayerEntry;
use super::{expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Mode, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use rand::Rng;
use serde_json::{json, Value};

pub struct Dropout {
    base: LayerBase,
    rate: f32,
    /// Keras's `noise_shape` (with the batch axis; `None` takes the input's size): the mask is
    /// drawn at this shape and broadcast, so EfficientNet's `(None, 1, 1, 1)` drops whole
    /// samples.
    noise_shape: Option<Vec<Option<usize>>>,
    mask: Option<Vec<f32>>,
}

impl Dropout {
    /// `rate` must lie in `[0, 1)`; [`Layer::build`] reports it otherwise.
    pub fn new(rate: f32) -> Dropout {
        Dropout {
            base: LayerBase::new(DROPOUT.class_name),
            rate,
            noise_shape: None,
            mask: None,
        }
    }
    /// Keras's `noise_shape`, batch axis included; each entry is `None` (the input's size) or
    /// 1 or the input's size.
    pub fn noise_shape(mut self, shape: &[Option<usize>]) -> Self {
        self.noise_shape = Some(shape.to_vec());
        self
    }
}

/// Keras's broadcast of a `noise_shape` mask: for each input element, the index of its mask
/// entry (0 stride on the axes where the noise shape is 1).
fn noise_index(shape: &[usize], noise: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut s = 1;
    for a in (0..shape.len()).rev() {
        if noise[a] != 1 {
            strides[a] = s;
        }
        s *= noise[a];
    }
    let n: usize = shape.iter().product();
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..n {
        idx.push(pos.iter().zip(&strides).map(|(p, s)| p * s).sum());
        for a in (0..shape.len()).rev() {
            pos[a] += 1;
            if pos[a] < shape[a] {
                break;
            }
            pos[a] = 0;
        }
    }
    idx
}

impl Layer for Dropout {
    /// The mask (one f32 per value).
    fn kept_for_backward(&self, _inputs: &[u64], output: u64) -> u64 {
        output * 4
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        DROPOUT.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': dropout rate must be in [0, 1), got {}",
                self.base.name, self.rate
            )));
        }
        if let Some(ns) = &self.noise_shape {
            let full: Vec<Option<usize>> = std::iter::once(None).chain(s.iter().copied()).collect();
            let fits = ns.len() == full.len()
                && ns.iter().zip(&full).all(|(n, d)| match (n, d) {
                    (None, _) | (Some(1), _) => true,
                    (Some(n), Some(d)) => n == d,
                    (Some(_), None) => false,
                });
            if !fits {
                return Err(Error::InvalidConfig(format!(
                    "layer '{}': noise_shape {ns:?} does not broadcast to the input shape {full:?}",
                    self.base.name
                )));
            }
        }
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        if ctx.mode == Mode::Infer || self.rate == 0.0 {
            self.mask = ctx.keep.then(|| vec![1.0; y.len()]);
            return Ok(y);
        }
        let keep = 1.0 - self.rate;
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    if ctx.rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mask: Vec<f32> = match &self.noise_shape {
            None => draw(y.len()),
            Some(ns) => {
                let shape = y.shape().to_vec();
                let noise: Vec<usize> = ns
                    .iter()
                    .zip(&shape)
                    .map(|(n, &d)| n.unwrap_or(d))
                    .collect();
                let small = draw(noise.iter().product());
                noise_index(&shape, &noise)
                    .into_iter()
                    .map(|i| small[i])
                    .collect()
            }
        };
        y.data_mut()
            .iter_mut()
            .zip(&mask)
            .for_each(|(v, m)| *v *= m);
        self.mask = ctx.keep.then_some(mask);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mask = take_cache(&mut self.mask, &self.base.name)?;
        let mut dx = grad.clone();
        dx.data_mut()
            .iter_mut()
            .zip(&mask)
            .for_each(|(v, m)| *v *= m);
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "rate": self.rate,
               "noise_shape": self.noise_shape})
    }
    fn clear_cache(&mut self) {
        self.mask = None;
    }
}

// Keras config reading.

/// `Dropout`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const DROPOUT: LayerEntry = LayerEntry {
    class_name: "Dropout",
    from_config: dropout_from_config,
};

fn dropout_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let rate = o.float("rate", 0.0)?;
    if !(0.0..1.0).contains(&rate) {
        return Err(o.err(format!("rate {rate} is not in [0, 1)")));
    }
    let layer = Dropout::new(rate);
    Ok(Box::new(match o.get("noise_shape") {
        None | Some(Value::Null) => layer,
        Some(Value::Array(dims)) => {
            let dims = dims
                .iter()
                .map(|d| match d {
                    Value::Null => Ok(None),
                    d => d.as_u64().map(|d| Some(d as usize)).ok_or_else(|| {
                        o.err(format!("noise_shape entry {d} is not a size or null"))
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            layer.noise_shape(&dims)
        }
        Some(other) => return Err(o.err(format!("noise_shape {other} is not a list"))),
    }))
}
