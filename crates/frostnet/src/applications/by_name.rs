//! The applications added with EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt, by their
//! CLI names (Keras's module-style names, as `inception_v3` and `mobilenet_v2`), so the CLI's
//! `--app` table grows by one line per family rather than one per model.

use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::models::Model;

type Builder = fn(&ApplicationOptions) -> Result<Model>;

/// `(CLI name, builder)` for every application in this table.
pub const APPLICATIONS: &[(&str, Builder)] = &[
    ("efficientnet_b0", super::efficientnet_b0),
    ("efficientnet_b1", super::efficientnet_b1),
    ("efficientnet_b2", super::efficientnet_b2),
    ("efficientnet_b3", super::efficientnet_b3),
    ("efficientnet_b4", super::efficientnet_b4),
    ("efficientnet_b5", super::efficientnet_b5),
    ("efficientnet_b6", super::efficientnet_b6),
    ("efficientnet_b7", super::efficientnet_b7),
    ("efficientnet_v2_b0", super::efficientnet_v2_b0),
    ("efficientnet_v2_b1", super::efficientnet_v2_b1),
    ("efficientnet_v2_b2", super::efficientnet_v2_b2),
    ("efficientnet_v2_b3", super::efficientnet_v2_b3),
    ("efficientnet_v2_s", super::efficientnet_v2_s),
    ("mobilenet_v3_small", super::mobilenet_v3_small),
    ("mobilenet_v3_large", super::mobilenet_v3_large),
    ("convnext_tiny", super::convnext_tiny),
];

/// Whether `name` is in this table.
pub fn knows(name: &str) -> bool {
    APPLICATIONS.iter().any(|(n, _)| *n == name)
}

/// Builds the application with CLI name `name`.
pub fn build_by_name(name: &str, opts: &ApplicationOptions) -> Result<Model> {
    match APPLICATIONS.iter().find(|(n, _)| *n == name) {
        Some((_, build)) => build(opts),
        None => Err(Error::InvalidConfig(format!(
            "unknown application '{name}' (known: {})",
            APPLICATIONS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
