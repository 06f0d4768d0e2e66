//! `Sequential`: a model built as a chain of layers, one `add` at a time.

use super::model::{Model, ModelKind, Node};
use crate::error::{Error, Result};
use crate::layers::{naming, InputLayer, Layer};

/// Builds a chain-shaped [`Model`], as `keras.Sequential`.
///
/// ```
/// use frostnet::{Sequential, layers::{Input, Dense, BatchNormalization, LayerOptions}};
/// let mut model = Sequential::new();
/// model.add(Input::new(&[100]))?;
/// model.add(Dense::new(10).trainable(false))?;
/// model.add(BatchNormalization::new())?;
/// assert_eq!(model.layers().len(), 2); // the input layer is not listed, as in Keras
/// # Ok::<(), frostnet::Error>(())
/// ```
pub struct Sequential;

impl Sequential {
    /// An empty Sequential model named `sequential` (`sequential_1`, ... after the first).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Model {
        Sequential::named(&naming::unique_name("sequential"))
    }

    /// An empty Sequential model with a given name.
    pub fn named(name: &str) -> Model {
        Model::from_parts(
            name.to_string(),
            ModelKind::Sequential,
            Vec::new(),
            Vec::new(),
            Vec::new(),
        )
    }
}

impl Model {
    /// Appends a layer to a Sequential model. The first layer is an `Input`, or any layer given
    /// an `input_shape`; each layer is built on the spot, so an incompatible layer is reported here,
    /// naming it and both shapes, and the model is left unchanged.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<()> {
        self.add_boxed(Box::new(layer))
    }

    /// [`add`](Self::add) for a boxed layer.
    pub fn add_boxed(&mut self, mut layer: Box<dyn Layer>) -> Result<()> {
        if self.kind != ModelKind::Sequential {
            return Err(Error::InvalidConfig(format!(
                "add() is for Sequential models; '{}' is Functional",
                self.base.name
            )));
        }
        if self.nodes.iter().any(|n| n.layer.name() == layer.name()) {
            return Err(Error::DuplicateLayerName {
                model: self.base.name.clone(),
                name: layer.name().to_string(),
            });
        }
        if self.nodes.is_empty() {
            if layer.is_input() {
                let shape = layer.build(&[])?;
                self.nodes.push(Node {
                    layer,
                    inbound: Vec::new(),
                    output_shape: shape,
                });
                self.inputs = vec![0];
                self.outputs = vec![0];
                return Ok(());
            }
            let Some(shape) = layer.declared_input_shape().cloned() else {
                return Err(Error::InvalidConfig(format!(
                    "Sequential model '{}' needs an input shape: add Input::new(shape) first, or give \
                     layer '{}' an input_shape",
                    self.base.name,
                    layer.name()
                )));
            };
            let input = InputLayer::new(shape.clone());
            self.nodes.push(Node {
                layer: Box::new(input),
                inbound: Vec::new(),
                output_shape: shape,
            });
            self.inputs = vec![0];
        } else if layer.is_input() {
            return Err(Error::InvalidConfig(format!(
                "Sequential model '{}' already has an input; an Input can only come first",
                self.base.name
            )));
        }
        let last = self.nodes.len() - 1;
        let out = layer.build(&[self.nodes[last].output_shape.clone()])?;
        self.nodes.push(Node {
            layer,
            inbound: vec![last],
            output_shape: out,
        });
        self.outputs = vec![self.nodes.len() - 1];
        Ok(())
    }

    /// Removes the last layer of a Sequential model and returns it (Keras's `pop`).
    pub fn pop(&mut self) -> Result<Box<dyn Layer>> {
        if self.kind != ModelKind::Sequential || self.nodes.len() <= self.inputs.len() {
            return Err(Error::InvalidConfig(format!(
                "model '{}' has no layer to pop",
                self.base.name
            )));
        }
        let node = self.nodes.pop().expect("checked above");
        self.outputs = vec![self.nodes.len() - 1];
        Ok(node.layer)
    }
}
