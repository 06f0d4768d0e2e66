//! Layers that only change a tensor's shape.

use super::{
    check_runtime_shape, expect_inputs, incompatible, ForwardCtx, Layer, LayerBase, Shape,
};
use crate::error::Result;
use crate::tensor::Tensor;
use serde_json::json;

/// Flattens each sample to one axis (`(None, 28, 28, 1)` -> `(None, 784)`), in row-major order, as
/// Keras does for channels-last data.
pub struct Flatten {
    base: LayerBase,
    in_shape: Shape,
    in_dims: Vec<usize>,
}

impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

impl Flatten {
    pub fn new() -> Flatten {
        Flatten {
            base: LayerBase::new("Flatten"),
            in_shape: Vec::new(),
            in_dims: Vec::new(),
        }
    }
}

impl Layer for Flatten {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Flatten"
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if s.is_empty() {
            return Err(incompatible(
                &self.base.name,
                "at least one axis besides the batch",
                s,
            ));
        }
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(vec![s.iter().try_fold(1usize, |a, d| d.map(|d| a * d))])
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        self.in_dims = x.shape().to_vec();
        x.clone().reshape(&[x.batch(), x.sample_len()])
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone().reshape(&self.in_dims)?)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "data_format": "channels_last"})
    }
}
