//! Every built-in application by its CLI name (Keras's module-style names: `inception_v3`,
//! `mobilenet_v2`, `efficientnet_b0`): the one table `frostnet summary --app` and friends read,
//! so a new application is one line here.

use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::models::Model;

type Builder = fn(&ApplicationOptions) -> Result<Model>;

/// `(CLI name, builder)` for every application in this table.
pub const APPLICATIONS: &[(&str, Builder)] = &[
    ("inception_v3", super::inception_v3),
    ("resnet50", super::resnet50),
    ("mobilenet_v2", super::mobilenet_v2),
    ("vgg16", super::vgg16),
    ("resnet101", super::resnet101),
    ("resnet152", super::resnet152),
    ("resnet50_v2", super::resnet50_v2),
    ("resnet101_v2", super::resnet101_v2),
    ("resnet152_v2", super::resnet152_v2),
    ("xception", super::xception),
    ("densenet121", super::densenet121),
    ("densenet169", super::densenet169),
    ("densenet201", super::densenet201),
    ("mobilenet", super::mobilenet),
    ("inception_resnet_v2", super::inception_resnet_v2),
    ("nasnet_mobile", super::nasnet_mobile),
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
