//! `weights=` for the applications whose ImageNet files Keras hosts under
//! `storage.googleapis.com/keras-applications/` or `tensorflow/keras-applications/<family>/`
//! (EfficientNet, EfficientNetV2, MobileNetV3, ConvNeXt): each builder names the file, the URL and
//! the hash Keras publishes for it, and this module downloads (or finds in the cache) and loads it
//! through the same machinery as the older applications ([`get_file`]).

use super::download::get_file;
use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::models::Model;

/// The file Keras's `get_file` would fetch: `(file name, URL, published hash)`.
pub(crate) struct HostedFile {
    pub file: String,
    pub url: String,
    pub hash: Option<&'static str>,
}

/// Keras's check before downloading: the ImageNet classifier has 1000 classes.
pub(crate) fn check_imagenet_classes(model: &str, opts: &ApplicationOptions) -> Result<()> {
    if opts.weights.as_deref() == Some("imagenet") && opts.include_top && opts.classes != 1000 {
        return Err(Error::InvalidConfig(format!(
            "{model}: with weights='imagenet' and include_top, classes must be 1000, got {}",
            opts.classes
        )));
    }
    Ok(())
}

/// Loads `opts.weights` into a freshly built model: `"imagenet"` resolves to `hosted` (downloaded
/// and verified on first use, cached in `$KERAS_HOME/models`), anything else is a weights file.
pub(crate) fn load(
    model: Result<Model>,
    opts: &ApplicationOptions,
    hosted: impl FnOnce() -> Result<HostedFile>,
) -> Result<Model> {
    let mut model = model?;
    match opts.weights.as_deref() {
        None => {}
        Some("imagenet") => {
            let h = hosted()?;
            let path = get_file(&h.file, &h.url, h.hash)?;
            crate::saving::load_weights_into(&mut model, &path.display().to_string())?;
        }
        Some(path) => crate::saving::load_weights_into(&mut model, path)?,
    }
    Ok(model)
}
