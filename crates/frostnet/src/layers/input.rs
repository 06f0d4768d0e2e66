//! The input of a model: `Input::new(&[28, 28, 1])`, Keras's `keras.Input(shape=...)`.

use super::registry::LayerEntry;
use super::{expect_inputs, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

/// The layer at the start of every model graph (`input_layer` in Keras 3).
pub struct InputLayer {
    base: LayerBase,
    shape: Shape,
}

/// Declares a model input of a per-sample shape.
pub struct Input;

impl Input {
    /// An input with every axis known.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(shape: &[usize]) -> InputLayer {
        InputLayer::new(super::shape_of(shape))
    }
    /// An input whose axes may be unknown (`None`), e.g. `[None, None, Some(3)]` for images of any size.
    pub fn with_shape(shape: Shape) -> InputLayer {
        InputLayer::new(shape)
    }
}

impl InputLayer {
    /// Keras's class name, which config readers compare entries with.
    pub(crate) const CLASS: &'static str = "InputLayer";

    pub fn new(shape: Shape) -> InputLayer {
        let mut base = LayerBase::new(INPUT_LAYER.class_name);
        base.built = true;
        base.input_shape = Some(shape.clone());
        InputLayer { base, shape }
    }
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

impl Layer for InputLayer {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        INPUT_LAYER.class_name
    }
    fn is_input(&self) -> bool {
        true
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs(&self.base.name, inputs, 0)?;
        Ok(self.shape.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        Ok(inputs[0].clone())
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone())])
    }
    fn config(&self) -> serde_json::Value {
        let shape: Vec<serde_json::Value> = std::iter::once(serde_json::Value::Null)
            .chain(self.shape.iter().map(|d| json!(d)))
            .collect();
        json!({"name": self.base.name, "batch_shape": shape, "dtype": "float32"})
    }
}

// Keras config reading.

/// `InputLayer`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const INPUT_LAYER: LayerEntry = LayerEntry {
    class_name: InputLayer::CLASS,
    from_config: input_layer_from_config,
};

fn input_layer_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(InputLayer::new(o.input_shape()?)))
}
