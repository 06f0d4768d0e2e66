//! `CustomScaleLayer`: `inputs[0] + inputs[1] * scale`, the scaled residual connection of
//! InceptionResNetV2 (Szegedy et al. scale each block's residual by 0.1-0.3 to keep training
//! stable). Keras defines it in `keras.applications.inception_resnet_v2` rather than
//! `keras.layers`, and saves it with that module, which [`Layer::keras_module`] reproduces so
//! Keras can load what frostnet writes.

use super::registry::LayerEntry;
use super::{check_runtime_shape, expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{fmt_batch_shape, Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

/// Adds its second input, scaled by `scale`, to its first; no weights. Both inputs have the same
/// shape (as every InceptionResNetV2 block calls it).
pub struct CustomScaleLayer {
    base: LayerBase,
    scale: f32,
    in_shape: Shape,
    /// Set by a forward pass that keeps for backward (backward needs nothing else).
    cache: Option<()>,
}

impl CustomScaleLayer {
    pub fn new(scale: f32) -> CustomScaleLayer {
        CustomScaleLayer {
            base: LayerBase::new(CUSTOM_SCALE_LAYER.class_name),
            scale,
            in_shape: Vec::new(),
            cache: None,
        }
    }
    /// The factor applied to the second input.
    pub fn scale(&self) -> f32 {
        self.scale
    }
}

impl Layer for CustomScaleLayer {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        CUSTOM_SCALE_LAYER.class_name
    }
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "keras.src.applications.inception_resnet_v2",
            CUSTOM_SCALE_LAYER.class_name,
        ))
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = expect_inputs(&self.base.name, inputs, 2)?;
        if s[0] != s[1] {
            return Err(Error::ShapeMismatch {
                context: format!("layer '{}' (CustomScaleLayer inputs)", self.base.name),
                left: fmt_batch_shape(&s[0]),
                right: fmt_batch_shape(&s[1]),
            });
        }
        self.in_shape = s[0].clone();
        self.base.built = true;
        Ok(s[0].clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        if inputs.len() != 2 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}' expects 2 inputs, got {}",
                self.base.name,
                inputs.len()
            )));
        }
        for x in inputs {
            check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        }
        if inputs[0].shape() != inputs[1].shape() {
            return Err(Error::ShapeMismatch {
                context: format!("layer '{}': input batches", self.base.name),
                left: crate::error::fmt_dims(inputs[0].shape()),
                right: crate::error::fmt_dims(inputs[1].shape()),
            });
        }
        let mut y = inputs[0].clone();
        let s = self.scale;
        y.data_mut()
            .iter_mut()
            .zip(inputs[1].data())
            .for_each(|(y, r)| *y += r * s);
        self.cache = ctx.keep.then_some(());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        take_cache(&mut self.cache, &self.base.name)?;
        let d0 = need_dx
            .first()
            .copied()
            .unwrap_or(true)
            .then(|| grad.clone());
        let d1 = need_dx.get(1).copied().unwrap_or(true).then(|| {
            let mut d = grad.clone();
            d.data_mut().iter_mut().for_each(|v| *v *= self.scale);
            d
        });
        Ok(vec![d0, d1])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "scale": self.scale})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `CustomScaleLayer`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const CUSTOM_SCALE_LAYER: LayerEntry = LayerEntry {
    class_name: "CustomScaleLayer",
    from_config: custom_scale_from_config,
};

fn custom_scale_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    if o.get("scale").is_none() {
        return Err(o.err("'scale' is missing"));
    }
    let scale = o.float("scale", 1.0)?;
    Ok(Box::new(CustomScaleLayer::new(scale)))
}
