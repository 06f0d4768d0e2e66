//! `use frostnet::prelude::*;`: what a model script reaches for, in one import (the common
//! layers and the `LayerOptions` builder methods `.named()` / `.trainable()` / `.input_shape()`,
//! models, training, saving, and the custom-layer API).

pub use crate::constraints::Constraint;
pub use crate::error::{Error, Result};
pub use crate::layers::custom::{register_layer, LayerConfig};
pub use crate::layers::{
    Activation, ActivationFn, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, Initializer, Input, Layer, LayerBase, LayerOptions, MaxPooling2D, Mode,
    Shape, WeightKind,
};
pub use crate::models::{Functional, Model, Sequential};
pub use crate::ops::{Autodiff, OpsLayer, Scope, Var};
pub use crate::regularizers::{Regularizer, RegularizerOptions};
pub use crate::saving::{load_model, save_keras, save_model};
pub use crate::tensor::Tensor;
pub use crate::training::{Adam, FitOptions, Loss, Metric, Sgd};
