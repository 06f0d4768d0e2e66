//! Layers: every layer has the same shape — a config (Keras field names), `build` from the input
//! shape, `forward`, `backward`, and the weights it owns.
//!
//! One file per layer family, as in Keras (`layers/core/dense.py` ...).

/// The window options every convolution shares (`strides`, `padding`, `activation`, `use_bias`,
/// `seed`), written once; the struct has fields of those names.
macro_rules! conv_options {
    ($t:ty) => {
        impl $t {
            /// The same stride along both axes. A stride (or kernel size) of 0 is refused with
            /// [`Error::InvalidConfig`](crate::Error) when the layer is built.
            pub fn strides(mut self, s: usize) -> Self {
                self.strides = (s, s);
                self
            }
            /// `(rows, columns)` strides.
            pub fn strides2(mut self, s: (usize, usize)) -> Self {
                self.strides = s;
                self
            }
            pub fn padding(mut self, p: crate::tensor::Padding) -> Self {
                self.padding = p;
                self
            }
            pub fn activation(mut self, f: ActivationFn) -> Self {
                self.activation = f;
                self
            }
            pub fn use_bias(mut self, b: bool) -> Self {
                self.use_bias = b;
                self
            }
            /// Seeds the kernel initializer.
            pub fn seed(mut self, seed: u64) -> Self {
                self.seed = Some(seed);
                self
            }
        }
    };
}

pub(crate) mod activation;
mod activation_layers;
mod batch_normalization;
mod conv1d;
mod conv2d;
mod conv2d_transpose;
mod custom_scale;
mod dense;
mod depthwise_conv2d;
mod dropout;
mod embedding;
mod input;
mod layer_normalization;
mod layer_scale;
mod merging;
pub(crate) mod naming;
mod noise;
mod normalization;
mod one_d;
pub mod op_nodes;
mod pooling;
pub mod preprocessing;
pub mod registry;
// After `registry` rather than in alphabetical order: keeps merges of new layer files clean.
pub mod custom;
mod relu;
mod rescaling;
mod reshape;
mod reshaping;
mod scalar_op;
mod separable_conv2d;
mod stochastic_depth;
mod weight;
mod window;
mod zero_padding;

pub use activation::{Activation, ActivationFn};
pub use activation_layers::{Identity, LeakyReLU, PReLU, Softmax, ELU};
pub use batch_normalization::BatchNormalization;
pub use conv1d::Conv1D;
pub use conv2d::Conv2D;
pub use conv2d_transpose::Conv2DTranspose;
pub use custom_scale::CustomScaleLayer;
pub use dense::Dense;
pub use depthwise_conv2d::DepthwiseConv2D;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use input::{Input, InputLayer};
pub use layer_normalization::{GroupNormalization, LayerNormalization, UnitNormalization};
pub use layer_scale::LayerScale;
pub use merging::{Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract};
pub use naming::clear_session;
pub use noise::{GaussianDropout, GaussianNoise, SpatialDropout2D};
pub use normalization::Normalization;
pub use one_d::{AveragePooling1D, MaxPooling1D, ZeroPadding1D};
pub use pooling::{
    AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D,
    GlobalMaxPooling2D, MaxPooling2D,
};
pub use preprocessing::{
    CenterCrop, Factor, FillMode, FlipMode, RandomBrightness, RandomContrast, RandomCrop,
    RandomFlip, RandomRotation, RandomTranslation, RandomZoom, Resizing,
};
pub use relu::ReLU;
pub use rescaling::Rescaling;
pub use reshape::Reshape;
pub use reshaping::{Cropping2D, Flatten, Permute, RepeatVector, UpSampling2D};
pub use scalar_op::{ScalarOp, ScalarOpKind};
pub use separable_conv2d::SeparableConv2D;
pub use stochastic_depth::StochasticDepth;
pub use weight::{Initializer, Weight, WeightKind};
pub use zero_padding::ZeroPadding2D;

use crate::error::{fmt_batch_shape, Error, Result};
use crate::models::Model;
use crate::tensor::Tensor;
use rand::rngs::SmallRng;

/// A per-sample shape (the batch axis excluded); `None` is an axis of unknown size, printed as
/// Keras prints it (`(None, None, None, 3)`).
pub type Shape = Vec<Option<usize>>;

/// Turns concrete dims into a [`Shape`].
pub fn shape_of(dims: &[usize]) -> Shape {
    dims.iter().map(|&d| Some(d)).collect()
}

/// Whether a layer computes as in training or as in inference. Separate from `trainable`:
/// Dropout depends on the mode only; BatchNormalization uses batch statistics only when the mode is
/// `Train` *and* the layer is trainable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Infer,
}

/// What a forward call needs besides its inputs.
pub struct ForwardCtx {
    pub mode: Mode,
    /// Whether this call will be followed by `backward`, so the layer must keep what it needs.
    /// False for a frozen prefix: it costs a forward pass and nothing else.
    pub keep: bool,
    /// Per input, whether a gradient will be asked for it (nested models plan with it).
    pub input_needs_grad: Vec<bool>,
    pub rng: SmallRng,
}

impl ForwardCtx {
    /// An inference context (no backward will follow).
    pub fn infer() -> ForwardCtx {
        ForwardCtx {
            mode: Mode::Infer,
            keep: false,
            input_needs_grad: Vec::new(),
            rng: crate::tensor::random::rng(Some(0)),
        }
    }
}

/// State every layer shares.
#[derive(Clone, Debug)]
pub struct LayerBase {
    pub(crate) name: String,
    pub(crate) trainable: bool,
    pub(crate) weights: Vec<Weight>,
    /// Keras's `input_shape=` argument, for the first layer of a Sequential.
    pub(crate) input_shape: Option<Shape>,
    pub(crate) built: bool,
    /// The counter base of a default name, so an explicit name can give it back.
    pub(crate) default_base: Option<String>,
    /// Regularizers and constraints (Keras's `kernel_regularizer=`, ...), see
    /// [`regularizers`](crate::regularizers).
    pub(crate) rules: crate::regularizers::WeightRules,
}

impl LayerBase {
    /// A base with the next default name for `class`.
    pub fn new(class: &str) -> LayerBase {
        let base = naming::snake_case(class);
        LayerBase {
            name: naming::unique_name(&base),
            default_base: Some(base),
            trainable: true,
            weights: Vec::new(),
            input_shape: None,
            built: false,
            rules: Default::default(),
        }
    }

    /// A base with an explicit name (consumes no default-name counter).
    pub fn with_name(name: &str) -> LayerBase {
        LayerBase {
            name: name.to_string(),
            default_base: None,
            trainable: true,
            weights: Vec::new(),
            input_shape: None,
            built: false,
            rules: Default::default(),
        }
    }

    /// Adds a weight whose flag follows the layer's current `trainable` (the built-in layers'
    /// form: they compute the initial value themselves). Weights keep the order they were added.
    pub fn add_weight(&mut self, name: &str, value: Tensor, kind: WeightKind) {
        let w = Weight::new(name, value, kind, self.trainable);
        self.weights.push(w);
    }

    /// Keras's `self.add_weight(name, shape, initializer, trainable)` for custom layers; `kind`
    /// says whether the weight can ever train (`Param`) or is a statistic the layer updates by
    /// its own rule (`State`, never trained, like BN's moving mean). The weight trains iff it is
    /// a `Param`, `trainable` is set and the layer is not frozen.
    ///
    /// As in Keras, weights created trainable come before the others in [`Layer::weights`] (and
    /// in saved files), each group in creation order, so a file Keras writes for the same class
    /// lines up. Returns the new weight's index in the layer's weights; a second weight of the
    /// same name is an error.
    pub fn add_weight_init(
        &mut self,
        name: &str,
        shape: &[usize],
        initializer: Initializer,
        kind: WeightKind,
        trainable: bool,
    ) -> Result<usize> {
        if self.weights.iter().any(|w| w.name() == name) {
            return Err(Error::InvalidConfig(format!(
                "layer '{}' already has a weight named '{name}'",
                self.name
            )));
        }
        let value = initializer.tensor(shape)?;
        let trains = kind == WeightKind::Param && trainable;
        let w = Weight::new(name, value, kind, trainable && self.trainable);
        let at = if trains {
            // After the last weight created trainable, before the non-trainable ones.
            self.weights
                .iter()
                .rposition(|w| w.created_trainable())
                .map_or(0, |i| i + 1)
        } else {
            self.weights.len()
        };
        let mut w = w;
        w.mark_created_trainable(trains);
        self.weights.insert(at, w);
        Ok(at)
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The layer's own `trainable` flag (see [`Layer::set_trainable`] to change it and its
    /// weights together).
    pub fn trainable(&self) -> bool {
        self.trainable
    }
    /// Whether `build` has created the weights. A custom layer sets it at the end of its first
    /// `build` (with [`set_built`](Self::set_built)), so that [`Layer::is_built`] is right and a
    /// second `build` does not create the weights again.
    pub fn built(&self) -> bool {
        self.built
    }
    pub fn set_built(&mut self, built: bool) {
        self.built = built;
    }
    /// The layer's regularizers and constraints.
    pub fn rules(&self) -> &crate::regularizers::WeightRules {
        &self.rules
    }
    /// The weights in order.
    pub fn weights(&self) -> &[Weight] {
        &self.weights
    }
    pub fn weights_mut(&mut self) -> &mut [Weight] {
        &mut self.weights
    }
    /// The weight called `name`, or an error naming the layer.
    pub fn weight(&self, name: &str) -> Result<&Weight> {
        let i = self.weight_index(name)?;
        Ok(&self.weights[i])
    }
    pub fn weight_mut(&mut self, name: &str) -> Result<&mut Weight> {
        let i = self.weight_index(name)?;
        Ok(&mut self.weights[i])
    }
    /// The index of the weight called `name`.
    pub fn weight_index(&self, name: &str) -> Result<usize> {
        self.weights
            .iter()
            .position(|w| w.name() == name)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "layer '{}' has no weight named '{name}'",
                    self.name
                ))
            })
    }

    /// The weight at `i`'s value (layers know their own weight order).
    pub(crate) fn w(&self, i: usize) -> &Tensor {
        self.weights[i].value()
    }

    /// Whether weight `i` wants a gradient now (it is trainable: a `Param` with its flag set).
    /// A hand-written `backward` computes a weight's gradient only when this holds.
    pub fn wants_grad(&self, i: usize) -> bool {
        self.weights.get(i).is_some_and(|w| w.is_trainable())
    }

    /// Stores the gradient of weight `i` (for the optimizer).
    ///
    /// # Panics
    /// If `i` is not a weight index of this layer (a bug in the layer, never user input).
    pub fn set_grad(&mut self, i: usize, g: Tensor) {
        self.weights[i].grad = Some(g);
    }
}

/// Mult-adds of a kernel applied once at every output position (all dimensions of `output` but
/// the last, the channels the kernel's last axis produces): Dense, Conv1D/2D, DepthwiseConv2D.
pub(crate) fn mult_adds_per_position(output: &Shape, kernel_len: usize) -> Option<u64> {
    let (_, positions) = output.split_last()?;
    positions
        .iter()
        .try_fold(kernel_len as u64, |acc, d| Some(acc * (*d)? as u64))
}

/// The interface every layer implements.
///
/// A custom layer either writes its forward pass from [ops](crate::ops) (an
/// [`OpsLayer`](crate::ops::OpsLayer) wrapped in [`Autodiff`](crate::ops::Autodiff)) and gets
/// `backward` derived, or implements this trait with a hand-written `backward` where that is
/// faster, as the built-in layers do. Either way it creates its weights with
/// [`LayerBase::add_weight_init`], marks itself built, and
/// [`gradient_check`](crate::testing::gradient_check) verifies it in one call. Its class is
/// registered by name ([`register_layer`](custom::register_layer)) so that saved models
/// containing it load again.
pub trait Layer: Send + Sync {
    fn base(&self) -> &LayerBase;
    fn base_mut(&mut self) -> &mut LayerBase;
    /// Keras's class name (`"Dense"`), shown in summaries and saved configs.
    fn class_name(&self) -> &str;

    /// Checks the input shapes, creates the weights on the first call, and returns the output shape.
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape>;

    /// Computes the output. Keeps what `backward` needs when `ctx.keep`.
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor>;

    /// Given the gradient of the loss with respect to the output, stores gradients for the layer's
    /// trainable weights (and only those) and returns the input gradients asked for in `need_dx`.
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>>;

    /// The layer's configuration with Keras's field names.
    fn config(&self) -> serde_json::Value;

    /// Drops anything kept for backward.
    fn clear_cache(&mut self) {}

    /// The weights Keras's `<arg>_regularizer` / `<arg>_constraint` arguments name, as
    /// `(arg, weight name)` pairs (`("kernel", "kernel")`, `("depthwise", "depthwise_kernel")`);
    /// empty for a layer without such arguments (every layer has `activity_regularizer`).
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// `(module, registered_name)` Keras saves for a class outside `keras.layers` (so Keras finds
    /// it again), as `CustomScaleLayer` of `keras.applications.inception_resnet_v2`; `None` for
    /// the `keras.layers` classes.
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// For a Keras op node ([`op_nodes`]): the `args` of its call as Keras writes them, given the
    /// keras tensors of its inputs in order (constants go between them); `None` for layers.
    fn op_call_args(&self, tensors: Vec<serde_json::Value>) -> Option<serde_json::Value> {
        let _ = tensors;
        None
    }

    fn name(&self) -> &str {
        &self.base().name
    }
    /// Whether this is a model's input (`InputLayer`), which holds a place rather than computing.
    fn is_input(&self) -> bool {
        false
    }
    /// How a summary names this layer's non-trainable state, and what one layer holds of it
    /// (e.g. `("BatchNormalization moving statistics", " (2 x channels each)")`).
    fn state_description(&self) -> (String, &'static str) {
        (format!("{} state", self.class_name()), "")
    }
    fn is_trainable(&self) -> bool {
        self.base().trainable
    }
    /// Sets `trainable` on the layer and its weights (and, for models, recursively), as Keras 3.
    fn set_trainable(&mut self, trainable: bool) {
        let b = self.base_mut();
        b.trainable = trainable;
        b.weights.iter_mut().for_each(|w| w.set_flag(trainable));
    }
    /// All weights, in Keras's order.
    fn weights(&self) -> Vec<&Weight> {
        self.base().weights.iter().collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.base_mut().weights.iter_mut().collect()
    }
    /// Keras 3's rule: a layer whose own flag is off reports no trainable weights.
    fn trainable_weights(&self) -> Vec<&Weight> {
        if !self.is_trainable() {
            return Vec::new();
        }
        self.weights()
            .into_iter()
            .filter(|w| w.is_trainable())
            .collect()
    }
    /// Keras 3's rule: a frozen layer reports all its weights as non-trainable.
    fn non_trainable_weights(&self) -> Vec<&Weight> {
        if !self.is_trainable() {
            return self.weights();
        }
        self.weights()
            .into_iter()
            .filter(|w| !w.is_trainable())
            .collect()
    }
    fn count_params(&self) -> usize {
        self.weights().iter().map(|w| w.len()).sum()
    }
    fn is_built(&self) -> bool {
        self.base().built
    }
    /// The `input_shape` given at construction, if any.
    fn declared_input_shape(&self) -> Option<&Shape> {
        self.base().input_shape.as_ref()
    }
    /// Multiply-accumulate operations per sample to compute an output of `output` shape: the
    /// products of weights with activations (bias additions, activations and normalisation are
    /// not counted, as in torchinfo's "Mult-Adds"). `Some(0)` for layers without such products,
    /// `None` when a dimension is unknown. Shown by [`Model::summary_extras`](crate::Model).
    fn mult_adds(&self, output: &Shape) -> Option<u64> {
        let _ = output;
        Some(0)
    }
    /// Bytes this layer keeps from a forward pass for its backward pass, given the element counts
    /// of its inputs and its output (for the summary's memory estimate). The default, a copy of
    /// every input and of the output, is what Dense and the convolutions keep; layers that keep
    /// less (a shape, a mask, indices) say so in their own file.
    fn kept_for_backward(&self, inputs: &[u64], output: u64) -> u64 {
        (inputs.iter().sum::<u64>() + output) * 4
    }
    /// `Some` for models used as layers.
    fn as_model(&self) -> Option<&Model> {
        None
    }
    fn as_model_mut(&mut self) -> Option<&mut Model> {
        None
    }
    /// The concrete layer, for layers the executor fuses (a convolution with a following
    /// BatchNormalization and activation, and an average pooling before it; models/model.rs);
    /// `None` for all others.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }

    /// Current weight values, in Keras's `get_weights()` order.
    fn get_weights(&self) -> Vec<Tensor> {
        self.weights().iter().map(|w| w.value().clone()).collect()
    }
    /// Sets all weights from arrays in Keras's order; checks count and every shape first, so a
    /// failed call changes nothing.
    fn set_weights(&mut self, values: Vec<Tensor>) -> Result<()> {
        let name = self.name().to_string();
        let mut ws = self.weights_mut();
        if ws.len() != values.len() {
            return Err(Error::WeightCount {
                target: format!("layer '{name}'"),
                expected: ws.len(),
                got: values.len(),
            });
        }
        for (w, v) in ws.iter().zip(&values) {
            if w.shape() != v.shape() {
                return Err(Error::WeightShape {
                    weight: format!("{name}/{}", w.name()),
                    expected: crate::error::fmt_dims(w.shape()),
                    got: crate::error::fmt_dims(v.shape()),
                });
            }
        }
        for (w, v) in ws.iter_mut().zip(values) {
            w.assign(v)?;
        }
        Ok(())
    }
}

/// Keras-style construction options shared by every layer: `.named()`, `.trainable()`,
/// `.input_shape()`.
pub trait LayerOptions: Layer + Sized {
    /// Gives the layer an explicit name instead of the next default one.
    fn named(mut self, name: &str) -> Self {
        let b = self.base_mut();
        if let Some(base) = b.default_base.take() {
            naming::release(&base, &b.name);
        }
        b.name = name.to_string();
        self
    }
    /// `trainable=False` at construction: the weights are created frozen.
    fn trainable(mut self, trainable: bool) -> Self {
        self.set_trainable(trainable);
        self
    }
    /// Keras's `input_shape=` argument (the batch axis excluded).
    fn input_shape(mut self, shape: &[usize]) -> Self {
        self.base_mut().input_shape = Some(shape_of(shape));
        self
    }
}

impl<L: Layer + Sized> LayerOptions for L {}

/// Checks the number of inputs a layer got.
pub(crate) fn expect_inputs<'a>(layer: &str, inputs: &'a [Shape], n: usize) -> Result<&'a [Shape]> {
    if inputs.len() != n {
        return Err(Error::InvalidConfig(format!(
            "layer '{layer}' expects {n} input(s), got {}",
            inputs.len()
        )));
    }
    Ok(inputs)
}

/// The error for an input of the wrong shape.
pub(crate) fn incompatible(layer: &str, expected: impl Into<String>, got: &Shape) -> Error {
    Error::IncompatibleShape {
        layer: layer.to_string(),
        expected: expected.into(),
        got: fmt_batch_shape(got),
    }
}

/// Checks at run time that a tensor matches the shape the layer was built for.
pub(crate) fn check_runtime_shape(layer: &str, built: &Shape, t: &Tensor) -> Result<()> {
    let dims = &t.shape()[1.min(t.shape().len())..];
    let ok = t.shape().len() == built.len() + 1
        && built
            .iter()
            .zip(dims)
            .all(|(b, d)| b.is_none_or(|b| b == *d));
    if ok {
        Ok(())
    } else {
        Err(Error::IncompatibleShape {
            layer: layer.to_string(),
            expected: fmt_batch_shape(built),
            got: crate::error::fmt_dims(t.shape()),
        })
    }
}

/// A cache slot: what a layer kept from forward for backward.
pub(crate) fn take_cache<T>(slot: &mut Option<T>, layer: &str) -> Result<T> {
    slot.take().ok_or_else(|| {
        Error::State(format!(
            "layer '{layer}': backward called without a forward pass that kept its inputs"
        ))
    })
}
