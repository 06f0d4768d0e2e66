//! `weights=` for the applications whose ImageNet files are described next to their builders
//! (ResNet101/152, the ResNet V2s, Xception, DenseNet, MobileNet, InceptionResNetV2,
//! NASNetMobile): each builder says which URL and hash Keras uses for its options, and this loads
//! a path as given or fetches that file through Keras's cache and download ([`get_file`]).

use super::download::{get_file, KERAS_HOST};
use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::models::Model;

/// The file Keras downloads for `weights="imagenet"`.
pub(crate) struct ImagenetFile {
    /// Path under `https://storage.googleapis.com/tensorflow/keras-applications/`.
    pub(crate) path: String,
    /// The hash Keras publishes (MD5, or SHA-256 when 64 digits); `None` where Keras checks none.
    pub(crate) hash: Option<&'static str>,
    /// The name in the cache when Keras's differs from the URL's (NASNet's `nasnet_mobile.h5`
    /// for `NASNet-mobile.h5`).
    pub(crate) cached_as: Option<&'static str>,
}

impl ImagenetFile {
    pub(crate) fn new(path: impl Into<String>, hash: Option<&'static str>) -> ImagenetFile {
        ImagenetFile {
            path: path.into(),
            hash,
            cached_as: None,
        }
    }

    /// The file is cached under `name` (Keras's `fname`) rather than the URL's last segment.
    pub(crate) fn cached_as(mut self, name: &'static str) -> ImagenetFile {
        self.cached_as = Some(name);
        self
    }

    /// Keras's URL for the file.
    pub(crate) fn url(&self) -> String {
        format!("{KERAS_HOST}tensorflow/keras-applications/{}", self.path)
    }
}

/// Loads `opts.weights` into a freshly built `model`: a path as given, or for `"imagenet"` the
/// file `imagenet` names (after Keras's `classes == 1000` check), cached in `$KERAS_HOME/models`.
/// `imagenet` returns an error where Keras has no such file (MobileNet's unknown alphas).
pub(crate) fn with_keras_weights(
    model: Result<Model>,
    opts: &ApplicationOptions,
    app: &str,
    imagenet: impl FnOnce() -> Result<ImagenetFile>,
) -> Result<Model> {
    let mut model = model?;
    let Some(weights) = &opts.weights else {
        return Ok(model);
    };
    let path = if weights == "imagenet" {
        if opts.include_top && opts.classes != 1000 {
            return Err(Error::InvalidConfig(format!(
                "{app}: with weights='imagenet' and include_top, classes must be 1000, got {}",
                opts.classes
            )));
        }
        let file = imagenet()?;
        let name = file
            .cached_as
            .unwrap_or_else(|| file.path.rsplit('/').next().unwrap_or(&file.path))
            .to_string();
        get_file(&name, &file.url(), file.hash)?
            .display()
            .to_string()
    } else {
        weights.clone()
    };
    crate::saving::load_weights_into(&mut model, &path)?;
    Ok(model)
}
