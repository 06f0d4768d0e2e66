//! Keras Applications: well-known architectures built layer for layer as Keras builds them, so
//! layer names, order, shapes and parameter counts match Keras exactly (and Keras weights can be
//! loaded by name).

pub mod by_name;
mod convnext;
mod densenet;
pub mod download;
mod efficientnet;
mod efficientnet_v2;
mod imagenet;
mod inception_resnet_v2;
mod inception_v3;
mod keras_weights;
mod mobilenet;
mod mobilenet_v2;
mod mobilenet_v3;
mod nasnet;
mod resnet;
mod resnet50;
pub mod transfer;
mod vgg16;
mod xception;

pub use by_name::{build_by_name, AppSpec, PreprocessMode};
pub use convnext::{convnext_tiny, convnext_tiny_with, ConvNeXtOptions};
pub use densenet::{densenet121, densenet169, densenet201};
pub use efficientnet::{
    efficientnet, efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3,
    efficientnet_b4, efficientnet_b5, efficientnet_b6, efficientnet_b7, EfficientNetOptions,
};
pub use efficientnet_v2::{
    efficientnet_v2, efficientnet_v2_b0, efficientnet_v2_b1, efficientnet_v2_b2,
    efficientnet_v2_b3, efficientnet_v2_s, EfficientNetV2Options,
};
pub use imagenet::{
    decode_predictions, top_k, Application, DecodedPrediction, ImagenetClassIndex,
    BUNDLED_CLASS_INDEX_JSON,
};
pub use inception_resnet_v2::inception_resnet_v2;
pub use inception_v3::inception_v3;
pub use keras_weights::ImagenetFile;
pub use mobilenet::{mobilenet, mobilenet_with, MobileNetOptions};
pub use mobilenet_v2::{mobilenet_v2, MobileNetV2Options};
pub use mobilenet_v3::{
    mobilenet_v3, mobilenet_v3_large, mobilenet_v3_small, MobileNetV3Options, MobileNetV3Size,
};
pub use nasnet::nasnet_mobile;
pub use resnet::{resnet101, resnet101_v2, resnet152, resnet152_v2, resnet50_v2};
pub use resnet50::{resnet50, ResNet50Options};
pub use vgg16::{vgg16, Vgg16Options};
pub use xception::xception;

use crate::error::{Error, Result};
use crate::layers::{ActivationFn, Layer, LayerOptions, Shape};

/// Global pooling on top of a headless model (Keras's `pooling="avg"` / `"max"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Avg,
    Max,
}

/// The arguments every `keras.applications` constructor shares.
#[derive(Clone, Debug)]
pub struct ApplicationOptions {
    /// Whether to include the classifier on top.
    pub include_top: bool,
    /// Global pooling when `include_top` is false; `None` leaves the 4-D feature map.
    pub pooling: Option<Pooling>,
    /// Number of classes of the classifier.
    pub classes: usize,
    /// Per-sample `(height, width, channels)`; `None` axes are unknown. Defaults to the model's
    /// ImageNet size with the top and `(None, None, 3)` without.
    pub input_shape: Option<[Option<usize>; 3]>,
    /// Activation of the `predictions` layer (Keras's `classifier_activation`).
    pub classifier_activation: ActivationFn,
    /// A Keras weights file to load (Keras's `weights=PATH`): the official keras-applications
    /// legacy `.h5` files (with or without top), a Keras 3 `.weights.h5`, or any Keras model file
    /// of the same architecture; or `"imagenet"`: the file Keras downloads, from the same URL,
    /// cached in `$KERAS_HOME/models` (see [`download`]). `None` keeps the random
    /// initialisation.
    pub weights: Option<String>,
}

/// `keras.applications.InceptionV3`'s arguments.
pub type InceptionV3Options = ApplicationOptions;

impl Default for ApplicationOptions {
    /// Keras's defaults, except `weights=None`.
    fn default() -> Self {
        ApplicationOptions {
            include_top: true,
            pooling: None,
            classes: 1000,
            input_shape: None,
            classifier_activation: ActivationFn::Softmax,
            weights: None,
        }
    }
}

fn fmt_shape(s: &[Option<usize>]) -> String {
    let d: Vec<String> = s
        .iter()
        .map(|d| d.map_or("None".to_string(), |d| d.to_string()))
        .collect();
    format!("({})", d.join(", "))
}

/// Keras's `obtain_input_shape` (channels last), plus the checks every application makes: the
/// default size, the minimum size, and a static shape when the classifier is included.
pub(crate) fn obtain_input_shape(
    model: &str,
    opts: &ApplicationOptions,
    default_size: usize,
    min_size: usize,
) -> Result<Shape> {
    if opts.include_top && opts.classes == 0 {
        return Err(Error::InvalidConfig(format!(
            "{model}: classes must be at least 1"
        )));
    }
    let shape: Shape = match opts.input_shape {
        Some(s) => s.to_vec(),
        None if opts.include_top => vec![Some(default_size), Some(default_size), Some(3)],
        None => vec![None, None, Some(3)],
    };
    if shape[..2].iter().any(|d| d.is_some_and(|d| d < min_size)) {
        return Err(Error::InvalidConfig(format!(
            "{model}: input size must be at least {min_size}x{min_size}; received input_shape={}",
            fmt_shape(&shape)
        )));
    }
    if shape[2].is_none() {
        return Err(Error::InvalidConfig(format!(
            "{model}: the number of input channels must be known; received input_shape={}",
            fmt_shape(&shape)
        )));
    }
    if opts.include_top && shape.iter().any(|d| d.is_none()) {
        return Err(Error::InvalidConfig(format!(
            "{model}: with include_top, input_shape must be static; received input_shape={}",
            fmt_shape(&shape)
        )));
    }
    Ok(shape)
}

/// Constructs a layer with an explicit name. `named` gives the default name back, so Keras's
/// numbering of unnamed layers is kept: InceptionV3's unnamed `concatenate` after
/// `mixed0`..`mixed9_0` is `concatenate`, not `concatenate_10`.
pub(crate) fn named<L: Layer + Sized>(make: impl FnOnce() -> L, name: &str) -> L {
    make().named(name)
}

/// Loads `opts.weights`, if any, into a freshly built application.
pub(crate) fn with_weights(
    model: Result<crate::Model>,
    opts: &ApplicationOptions,
) -> Result<crate::Model> {
    let mut model = model?;
    if let Some(path) = &opts.weights {
        let path = if path == "imagenet" {
            imagenet::imagenet_weights_path(&model, opts)?
        } else {
            path.clone()
        };
        crate::saving::load_weights_into(&mut model, &path)?;
    }
    Ok(model)
}
