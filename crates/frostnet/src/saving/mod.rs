//! Model files: frostnet's native format (`native.rs`: safetensors weights + JSON), and Keras's.
//!
//! | function | file |
//! |---|---|
//! | [`load_model`] | `.keras`, legacy full-model `.h5` (tf-keras or Keras 3), or a native file, told apart by content |
//! | [`load_weights_into`] | `.weights.h5` or a legacy weights-only `.h5`, into a model built already |
//! | [`save_model`] | the native format ([`native`](self#native-format)): one safetensors file |
//! | [`save_keras`] | a `.keras` archive real Keras 3 loads |
//! | [`save_weights`] / [`load_weights`] | weights only, native safetensors |
//!
//! ```
//! use frostnet::saving::{load_model, save_model};
//! // A Keras 3 archive: architecture, weights, trainable flags, compiled optimizer.
//! let model = load_model("tests/fixtures/cnn_nested.keras")?;
//! assert!(!model.get_layer("base")?.is_trainable()); // the frozen base stays frozen
//! let path = std::env::temp_dir().join("frostnet_doc_cnn_nested.frostnet");
//! let path = path.to_str().unwrap();
//! save_model(&model, path)?;
//! let again = load_model(path)?;
//! assert_eq!(model.summary(), again.summary());
//! # std::fs::remove_file(path).ok();
//! # Ok::<(), frostnet::Error>(())
//! ```
//!
//! Keras files are parsed by `frostnet-formats` (`keras_config.rs` builds the model from the
//! config, `keras_weights.rs` assigns the weights); `.keras` files are written by
//! `keras_archive.rs`.
//!
//! # Native format
//!
//! One safetensors file (any extension; `.frostnet` is suggested). Its tensors are the weights
//! named by Keras 3 paths (`base/base_conv/kernel`), exactly as [`save_weights`] writes them; its
//! metadata holds `frostnet_format` (`"model/1"`), `config` (the model's Keras 3 config JSON, as
//! in a `.keras` archive, so the same builder rebuilds it), and `trainable:<path>` per weight.
//! With a compiled model, the optimizer and its state are saved too (see `native.rs`). A single
//! file keeps the config and the weights from ever getting out of step, and is written atomically.
//!
//! A `.keras` archive's optimizer (Adam/AdamW, SGD, plain RMSprop) and its state are restored
//! (`keras_optimizer.rs`), so the model is compiled as Keras's `load_model` compiles it and can
//! resume training. Legacy `.h5` optimizer weights are not read: those models load uncompiled.
//!
//! # Output paths
//!
//! Every writer goes through [`write_output`]: a regular file is replaced atomically and durably
//! (temporary file, fsync, rename, directory fsync), symlinks are followed, devices and FIFOs are
//! written through, directories and read-only files are refused (see `output.rs`).

mod keras_archive;
pub(crate) mod keras_config;
mod keras_optimizer;
mod keras_weights;
mod native;
mod output;

pub use keras_archive::save_keras;
pub use keras_config::{build_model, model_config};
pub use native::{load_weights, save_model, save_weights};
pub(crate) use output::write_atomic;
pub use output::write_output;

use crate::models::Model;
use frostnet_formats::KerasFile;
use keras_weights::Layout;

/// Turns a `frostnet-formats` error into [`Error::File`], keeping where in the file it happened.
pub(crate) fn formats_error(path: &str, e: frostnet_formats::Error) -> Error {
    let text = e.to_string();
    let message = text
        .strip_prefix(&format!("{path}: "))
        .map(str::to_string)
        .unwrap_or(text);
    Error::File {
        path: path.to_string(),
        message: crate::error::elide(&message, crate::error::MAX_MESSAGE_CHARS),
    }
}

fn read_head(path: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(8).read_to_end(&mut head))
        .map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
    Ok(head)
}

/// Loads a whole model: a `.keras` archive, a legacy full-model `.h5` (tf-keras or Keras 3), or a
/// file written by [`save_model`]. The format is told by content, not by name. Layer names and
/// `trainable` flags are restored; weights are checked against the architecture before any is
/// assigned. Anything wrong with the file is an [`Error::File`] naming it (and the layer).
///
/// What the file holds but frostnet cannot restore is left out; [`load_model_with_report`] says
/// what and why, this function does not.
pub fn load_model(path: &str) -> Result<Model> {
    load_model_with_report(path).map(|(model, _)| model)
}

/// Something a load left out of the model, and why. Keras prints these as warnings; the CLI
/// prints them on stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadWarning {
    /// What was not restored (`"compile config and optimizer state"`).
    pub dropped: String,
    /// Why (`"metric 'f7' is not implemented in frostnet"`).
    pub reason: String,
}

impl std::fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} not restored: {}", self.dropped, self.reason)
    }
}

/// What [`load_model_with_report`] left out; empty when the file was restored in full.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub warnings: Vec<LoadWarning>,
}

/// [`load_model`], also returning what the file holds but the loaded model does not have: a
/// compile config naming an optimizer, loss or metric frostnet lacks (the model loads
/// uncompiled), a legacy `.h5`'s training config. Damaged data (a truncated file, optimizer
/// state that cannot be read) is an error, never a warning.
pub fn load_model_with_report(path: &str) -> Result<(Model, LoadReport)> {
    let mut report = LoadReport::default();
    let head = read_head(path)?;
    let is_keras = head.starts_with(b"PK\x03\x04") || head.starts_with(b"\x89HDF\r\n\x1a\n");
    if !is_keras {
        return native::load_model(path).map(|m| (m, report));
    }
    // The architecture first, then the weights capped at what that architecture needs: a
    // dataset larger than the model's largest weight is refused before it is read.
    let config = frostnet_formats::read_config(path, &frostnet_formats::Limits::default())
        .map_err(|e| formats_error(path, e))?
        .ok_or_else(|| weights_only(path))?;
    let mut model = keras_config::build_model(&config, path)?;
    let limits = limits_for(&model);
    let file =
        frostnet_formats::read_any_limited(path, &limits).map_err(|e| formats_error(path, e))?;
    let layout = match &file {
        KerasFile::Archive(_) => Layout::Keras3,
        KerasFile::Legacy(_) => Layout::Legacy,
        KerasFile::Weights(_) => return Err(weights_only(path)),
    };
    keras_weights::assign(&mut model, file.layers(), layout, path)?;
    match &file {
        KerasFile::Archive(a) => {
            let has_optimizer = a.weights.has_optimizer;
            let warning =
                keras_optimizer::restore(&mut model, &a.config, path, &limits, has_optimizer)?;
            report.warnings.extend(warning);
        }
        KerasFile::Legacy(l) if l.training_config.is_some() => {
            report.warnings.push(LoadWarning {
                dropped: "training config and optimizer state (the model loads uncompiled)".into(),
                reason: "frostnet does not read them from legacy .h5 files; save as .keras \
                         to keep them"
                    .into(),
            });
        }
        _ => {}
    }
    Ok((model, report))
}

/// The caps on what a Keras file loaded into `model` may declare: no dataset larger than the
/// model's largest weight (optimizer slots have their weight's shape; 64 bytes at least, for
/// scalars and seed states), and a `model.weights.h5` member no larger than five times all the
/// weights (the weights plus up to three optimizer slots each) plus 16 MiB of HDF5 structure.
pub(crate) fn limits_for(model: &Model) -> frostnet_formats::Limits {
    let sizes: Vec<u64> = model
        .named_weights()
        .iter()
        .map(|(_, w)| w.value().len() as u64 * 4)
        .collect();
    let largest = sizes.iter().copied().max().unwrap_or(0).max(64);
    let total: u64 = sizes.iter().sum();
    frostnet_formats::Limits {
        max_dataset_bytes: largest,
        max_weights_member_bytes: total.saturating_mul(5).saturating_add(16 << 20),
        ..Default::default()
    }
}

fn weights_only(path: &str) -> Error {
    Error::File {
        path: path.into(),
        message: "holds weights only, no architecture: build the model and use load_weights_into"
            .into(),
    }
}

/// Loads a Keras weights file (`.weights.h5`, or a legacy weights-only or full-model `.h5`) into a
/// model that already has the architecture. Layers are matched by name (nested ones by path),
/// every shape is checked first, and every layer with weights must be in the file; on any error
/// the model is unchanged.
pub fn load_weights_into(model: &mut Model, path: &str) -> Result<()> {
    let file = frostnet_formats::read_any_limited(path, &limits_for(model))
        .map_err(|e| formats_error(path, e))?;
    let (entries, layout) = match file {
        KerasFile::Weights(_) => {
            // Re-read with the model's config: matches layers stored without their names.
            let w = frostnet_formats::read_weights_h5_ordered_limited(
                path,
                &model_config(model),
                &limits_for(model),
            )
            .map_err(|e| formats_error(path, e))?;
            (w.layers, Layout::Keras3)
        }
        KerasFile::Archive(a) => (a.weights.layers, Layout::Keras3),
        KerasFile::Legacy(l) => (l.layers, Layout::Legacy),
    };
    match keras_weights::assign(model, &entries, layout, path) {
        // Keras's own applications load their legacy weight files by position, not by name (the
        // official files keep Keras 2's names, `conv2d_1`...). Do the same when names do not match
        // but the layers with weights line up one to one.
        Err(by_name) if layout == Layout::Legacy => {
            assign_by_order(model, &entries, path).map_err(|_| by_name)
        }
        other => other,
    }
}

/// Assigns the file's layers with weights to the model's layers with weights, in order, after
/// checking every shape (Keras's `load_weights(by_name=False)` for legacy files).
fn assign_by_order(
    model: &mut Model,
    entries: &[frostnet_formats::LayerWeights],
    path: &str,
) -> Result<()> {
    use crate::layers::Layer;
    let file_layers: Vec<_> = entries.iter().filter(|e| !e.weights.is_empty()).collect();
    let model_layers: Vec<usize> = (0..model.len())
        .filter(|&i| model.layer(i).is_ok_and(|l| !l.weights().is_empty()))
        .collect();
    let mismatch = |m: String| Error::File {
        path: path.into(),
        message: m,
    };
    if file_layers.len() != model_layers.len() {
        return Err(mismatch(format!(
            "the file has {} layers with weights, model '{}' has {}",
            file_layers.len(),
            model.name(),
            model_layers.len()
        )));
    }
    let mut values = Vec::new();
    for (entry, &i) in file_layers.iter().zip(&model_layers) {
        let layer = model.layer(i)?;
        let shapes: Vec<Vec<usize>> = layer.weights().iter().map(|w| w.shape().to_vec()).collect();
        let got: Vec<Vec<usize>> = entry.weights.iter().map(|w| w.shape.clone()).collect();
        if shapes != got {
            return Err(mismatch(format!(
                "layer {} of the file ('{}') has weight shapes {got:?}, model layer '{}' has {shapes:?}",
                i,
                entry.name,
                layer.name()
            )));
        }
        for w in &entry.weights {
            values.push(crate::tensor::Tensor::from_vec(&w.shape, w.data.clone())?);
        }
    }
    model.set_weights(values)
}

use crate::error::{Error, Result};
