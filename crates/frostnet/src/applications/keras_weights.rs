//! `weights=` for the keras.applications CNNs: each builder says which file Keras downloads for
//! its options (URL, published hash, name in the cache), and this loads a path as given or fetches
//! that file through Keras's cache and download ([`get_file`]).

use super::download::{get_file, KERAS_HOST};
use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::models::Model;

/// The file Keras downloads for `weights="imagenet"`: the arguments the application passes to
/// `keras.utils.get_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagenetFile {
    /// The name in Keras's cache (`$KERAS_HOME/models`), Keras's `fname`.
    pub file: String,
    /// Where Keras downloads it from (Keras's `origin`).
    pub url: String,
    /// The hash Keras publishes (MD5, or SHA-256 when 64 digits); `None` where Keras checks none.
    pub hash: Option<&'static str>,
}

impl ImagenetFile {
    /// The cached file's path, downloaded (and checked against the hash) if not there yet:
    /// Keras's `get_file(fname, origin, cache_subdir="models", file_hash=hash)`.
    pub fn fetch(&self) -> Result<std::path::PathBuf> {
        get_file(&self.file, &self.url, self.hash)
    }
}

impl ImagenetFile {
    /// A file under `https://storage.googleapis.com/tensorflow/keras-applications/`, cached under
    /// the URL's last segment.
    pub(crate) fn new(path: impl Into<String>, hash: Option<&'static str>) -> ImagenetFile {
        let path = path.into();
        ImagenetFile {
            file: path.rsplit('/').next().unwrap_or(&path).to_string(),
            url: format!("{KERAS_HOST}tensorflow/keras-applications/{path}"),
            hash,
        }
    }

    /// The file is cached under `name` (Keras's `fname`) rather than the URL's last segment
    /// (NASNet's `nasnet_mobile.h5` for `NASNet-mobile.h5`).
    pub(crate) fn cached_as(mut self, name: &'static str) -> ImagenetFile {
        self.file = name.to_string();
        self
    }
}

/// Keras's check before building or downloading: the ImageNet classifier has 1000 classes.
pub(crate) fn check_imagenet_classes(app: &str, opts: &ApplicationOptions) -> Result<()> {
    if opts.weights.as_deref() == Some("imagenet") && opts.include_top && opts.classes != 1000 {
        return Err(Error::InvalidConfig(format!(
            "{app}: with weights='imagenet' and include_top, classes must be 1000, got {}",
            opts.classes
        )));
    }
    Ok(())
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
    check_imagenet_classes(app, opts)?;
    load(model, opts, imagenet)
}

/// [`with_keras_weights`] for a builder that made Keras's class check itself, before building.
pub(crate) fn load(
    model: Result<Model>,
    opts: &ApplicationOptions,
    imagenet: impl FnOnce() -> Result<ImagenetFile>,
) -> Result<Model> {
    let mut model = model?;
    let path = match opts.weights.as_deref() {
        None => return Ok(model),
        Some("imagenet") => imagenet()?.fetch()?.display().to_string(),
        Some(path) => path.to_string(),
    };
    crate::saving::load_weights_into(&mut model, &path)?;
    Ok(model)
}
