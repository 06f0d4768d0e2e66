//! The table of layer classes frostnet can read from a Keras config.
//!
//! Each layer's own file holds its Keras class name and its config reader (a `LayerEntry`
//! constant next to the layer), and writes its config in [`Layer::config`]; this table only lists
//! them. Adding a layer touches its own file and one line here. Lookup goes through [`find`], so
//! user-registered classes (custom layers) can later join the built-in ones without changing the
//! readers.

use super::{
    activation, activation_layers, batch_normalization, conv1d, conv2d, conv2d_transpose, dense,
    depthwise_conv2d, dropout, embedding, input, layer_normalization, merging, noise,
    normalization, one_d, pooling, preprocessing, relu, rescaling, reshape, reshaping,
    separable_conv2d, zero_padding, Layer, Shape,
};
use crate::error::Result;
use crate::saving::keras_config::Opts;

/// Builds a layer from its Keras config options; `inputs` are the shapes it will be called on
/// (for refusing weights too large to allocate before anything is built).
pub(crate) type FromConfig = fn(&Opts, &[Shape]) -> Result<Box<dyn Layer>>;

/// One layer class: its Keras class name and how to read its config.
#[derive(Clone, Copy)]
pub(crate) struct LayerEntry {
    pub(crate) class_name: &'static str,
    pub(crate) from_config: FromConfig,
}

/// Every built-in layer class.
static BUILTIN: &[LayerEntry] = &[
    input::INPUT_LAYER,
    dense::DENSE,
    conv1d::CONV1D,
    conv2d::CONV2D,
    conv2d_transpose::CONV2D_TRANSPOSE,
    super::custom_scale::CUSTOM_SCALE_LAYER,
    depthwise_conv2d::DEPTHWISE_CONV2D,
    separable_conv2d::SEPARABLE_CONV2D,
    batch_normalization::BATCH_NORMALIZATION,
    activation::ACTIVATION,
    relu::RELU,
    activation_layers::LEAKY_RELU,
    activation_layers::PRELU,
    activation_layers::ELU_ENTRY,
    activation_layers::SOFTMAX,
    activation_layers::IDENTITY,
    dropout::DROPOUT,
    noise::GAUSSIAN_NOISE,
    noise::GAUSSIAN_DROPOUT,
    noise::SPATIAL_DROPOUT2D,
    normalization::NORMALIZATION,
    layer_normalization::LAYER_NORMALIZATION,
    layer_normalization::UNIT_NORMALIZATION,
    layer_normalization::GROUP_NORMALIZATION,
    embedding::EMBEDDING,
    reshaping::FLATTEN,
    reshaping::PERMUTE,
    reshaping::REPEAT_VECTOR,
    reshaping::UP_SAMPLING2D,
    reshaping::CROPPING2D,
    reshape::RESHAPE,
    rescaling::RESCALING,
    zero_padding::ZERO_PADDING2D,
    pooling::MAX_POOLING2D,
    pooling::AVERAGE_POOLING2D,
    pooling::GLOBAL_AVERAGE_POOLING2D,
    pooling::GLOBAL_MAX_POOLING2D,
    pooling::GLOBAL_AVERAGE_POOLING1D,
    pooling::GLOBAL_MAX_POOLING1D,
    one_d::MAX_POOLING1D,
    one_d::AVERAGE_POOLING1D,
    one_d::ZERO_PADDING1D,
    merging::CONCATENATE,
    merging::ADD,
    merging::SUBTRACT,
    merging::MULTIPLY,
    merging::AVERAGE,
    merging::MAXIMUM,
    merging::MINIMUM,
    preprocessing::RESIZING,
    preprocessing::CENTER_CROP,
    preprocessing::RANDOM_FLIP,
    preprocessing::RANDOM_ROTATION,
    preprocessing::RANDOM_ZOOM,
    preprocessing::RANDOM_TRANSLATION,
    preprocessing::RANDOM_CONTRAST,
    preprocessing::RANDOM_BRIGHTNESS,
    preprocessing::RANDOM_CROP,
    super::layer_scale::LAYER_SCALE,
    super::stochastic_depth::STOCHASTIC_DEPTH,
];

/// Every Keras op-node class (`keras.src.ops.*`, see [`op_nodes`](super::op_nodes)): a separate
/// table because `Add` and `Multiply` name both ops and merge layers.
static OPS: &[LayerEntry] = &[
    super::op_nodes::add::ADD,
    super::op_nodes::subtract::SUBTRACT,
    super::op_nodes::multiply::MULTIPLY,
    super::op_nodes::divide::DIVIDE,
    super::op_nodes::true_divide::TRUE_DIVIDE,
    super::op_nodes::mean::MEAN,
    super::op_nodes::sum::SUM,
    super::op_nodes::maximum::MAXIMUM,
    super::op_nodes::minimum::MINIMUM,
    super::op_nodes::power::POWER,
    super::op_nodes::negative::NEGATIVE,
    super::op_nodes::absolute::ABSOLUTE,
    super::op_nodes::square::SQUARE,
    super::op_nodes::sqrt::SQRT,
    super::op_nodes::exp::EXP,
];

/// The entry for a Keras op-node class of module `keras.src.ops.*`, if frostnet knows it.
pub(crate) fn find_op(class_name: &str) -> Option<&'static LayerEntry> {
    OPS.iter().find(|e| e.class_name == class_name)
}

/// The Keras op-node class names frostnet can load, in registry order.
pub fn op_class_names() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|e| e.class_name)
}

/// The entry for a Keras class name, if frostnet knows the class.
pub(crate) fn find(class_name: &str) -> Option<&'static LayerEntry> {
    BUILTIN
        .iter()
        .find(|e| e.class_name == class_name)
        .or_else(|| super::custom::is_registered(class_name).then_some(&super::custom::ENTRY))
}

/// Whether `class_name` is a built-in layer class.
pub(crate) fn builtin(class_name: &str) -> bool {
    BUILTIN.iter().any(|e| e.class_name == class_name)
        || matches!(class_name, "Sequential" | "Functional" | "Model")
}

/// Why a Keras class that no registry entry can ever read is refused, for an error message that
/// says more than "unknown".
pub(crate) fn refusal(class_name: &str) -> Option<&'static str> {
    match class_name {
        "Lambda" => Some(
            "a Lambda layer's function is Python code (marshalled bytecode), which frostnet \
             cannot load; rebuild the model with built-in layers instead",
        ),
        _ => None,
    }
}

/// The Keras class names frostnet can load, in registry order.
pub fn class_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|e| e.class_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_unique() {
        let mut names: Vec<&str> = class_names().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
