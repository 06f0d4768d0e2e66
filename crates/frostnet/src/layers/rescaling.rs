//! `Rescaling`: `y = x * scale + offset`, the preprocessing step that maps pixel values into the
//! range a network was trained on (`1/255`, or `1/127.5` with offset `-1` for MobileNet).

use super::registry::LayerEntry;
use super::{expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

/// Multiplies by `scale` and adds `offset`; no weights.
pub struct Rescaling {
    base: LayerBase,
    scale: f32,
    /// A per-channel scale (Keras's list `scale`, broadcast on the last axis), in place of
    /// `scale`.
    channel_scale: Option<Vec<f32>>,
    offset: f32,
    /// Set by a forward pass that keeps for backward (backward needs nothing else).
    cache: Option<()>,
}

impl Rescaling {
    pub fn new(scale: f32) -> Rescaling {
        Rescaling {
            base: LayerBase::new(RESCALING.class_name),
            scale,
            channel_scale: None,
            offset: 0.0,
            cache: None,
        }
    }
    /// One scale per entry of the last axis (Keras's `Rescaling([s0, s1, ...])`, which
    /// EfficientNet uses to divide by the ImageNet standard deviation).
    pub fn per_channel(scale: &[f32]) -> Rescaling {
        let mut r = Rescaling::new(1.0);
        r.channel_scale = Some(scale.to_vec());
        r
    }
    /// Multiplies `v` in place by the scale of each element (flat index modulo the channels).
    fn scale_in_place(&self, v: &mut [f32]) {
        match &self.channel_scale {
            None => v.iter_mut().for_each(|v| *v *= self.scale),
            Some(cs) => v
                .chunks_mut(cs.len())
                .for_each(|row| row.iter_mut().zip(cs).for_each(|(v, s)| *v *= s)),
        }
    }
    pub fn offset(mut self, offset: f32) -> Self {
        self.offset = offset;
        self
    }
}

impl Layer for Rescaling {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RESCALING.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if let Some(cs) = &self.channel_scale {
            if cs.is_empty() || s.last().copied().flatten().is_some_and(|c| c != cs.len()) {
                return Err(crate::error::Error::InvalidConfig(format!(
                    "layer '{}': {} per-channel scales do not broadcast to the input shape {s:?}",
                    self.base.name,
                    cs.len()
                )));
            }
        }
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let o = self.offset;
        self.scale_in_place(y.data_mut());
        y.data_mut().iter_mut().for_each(|v| *v += o);
        self.cache = ctx.keep.then_some(());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        take_cache(&mut self.cache, &self.base.name)?;
        let mut dx = grad.clone();
        self.scale_in_place(dx.data_mut());
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "scale": self.channel_scale.as_ref().map_or(json!(self.scale), |c| json!(c)),
               "offset": self.offset})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `Rescaling`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const RESCALING: LayerEntry = LayerEntry {
    class_name: "Rescaling",
    from_config: rescaling_from_config,
};

fn rescaling_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let offset = o.float("offset", 0.0)?;
    if let Some(serde_json::Value::Array(list)) = o.get("scale") {
        let scale = list
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|v| v as f32)
                    .ok_or_else(|| o.err(format!("scale entry {v} is not a number")))
            })
            .collect::<Result<Vec<f32>>>()?;
        return Ok(Box::new(Rescaling::per_channel(&scale).offset(offset)));
    }
    let scale = o.float("scale", 1.0)?;
    Ok(Box::new(Rescaling::new(scale).offset(offset)))
}
