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
    mask: Option<Vec<f32>>,
}

impl Dropout {
    /// `rate` must lie in `[0, 1)`; [`Layer::build`] reports it otherwise.
    pub fn new(rate: f32) -> Dropout {
        Dropout {
            base: LayerBase::new(DROPOUT.class_name),
            rate,
            mask: None,
        }
    }
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
        let mask: Vec<f32> = (0..y.len())
            .map(|_| {
                if ctx.rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
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
        json!({"name": self.base.name, "trainable": self.base.trainable, "rate": self.rate})
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
    o.require("noise_shape", &[Value::Null])?;
    let rate = o.float("rate", 0.0)?;
    if !(0.0..1.0).contains(&rate) {
        return Err(o.err(format!("rate {rate} is not in [0, 1)")));
    }
    Ok(Box::new(Dropout::new(rate)))
}
