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
    offset: f32,
    /// Set by a forward pass that keeps for backward (backward needs nothing else).
    cache: Option<()>,
}

impl Rescaling {
    pub fn new(scale: f32) -> Rescaling {
        Rescaling {
            base: LayerBase::new(RESCALING.class_name),
            scale,
            offset: 0.0,
            cache: None,
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
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let (s, o) = (self.scale, self.offset);
        y.data_mut().iter_mut().for_each(|v| *v = *v * s + o);
        self.cache = ctx.keep.then_some(());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        take_cache(&mut self.cache, &self.base.name)?;
        let mut dx = grad.clone();
        dx.data_mut().iter_mut().for_each(|v| *v *= self.scale);
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "scale": self.scale, "offset": self.offset})
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
    let scale = o.float("scale", 1.0)?;
    Ok(Box::new(
        Rescaling::new(scale).offset(o.float("offset", 0.0)?),
    ))
}
