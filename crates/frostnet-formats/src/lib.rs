//! Parse Keras model files into plain Rust data.
//!
//! This crate reads the three file formats Keras saves models in and hands
//! back their contents as neutral data: layer names, weights as
//! `(name, shape, f32 data)` in the order Keras saved them, and model
//! configs as `serde_json::Value`. It builds no models and depends on no
//! other frostnet crate, so whatever builds models can be tested apart from
//! whatever parses files.
//!
//! | format | written by | read with |
//! |---|---|---|
//! | `.keras` zip | Keras 3 `model.save("x.keras")` | [`read_keras_archive`] |
//! | `.weights.h5` | Keras 3 `model.save_weights("x.weights.h5")` | [`read_weights_h5`] |
//! | legacy `.h5`, full model | tf-keras or Keras 3 `model.save("x.h5")` | [`read_legacy_h5`] |
//! | legacy `.h5`, weights only | tf-keras `save_weights("x.h5")`, keras-applications | [`read_legacy_h5`] |
//!
//! [`read_any`] tells them apart by content (zip or HDF5 signature, then the
//! HDF5 layout), not by file name, because Keras's own extensions overlap:
//! `.weights.h5` and legacy `.h5` are both HDF5.
//!
//! # Example
//!
//! ```
//! use frostnet_formats::{read_any, KerasFile};
//!
//! let file = read_any("tests/fixtures/cnn_seq.keras")?;
//! let KerasFile::Archive(archive) = &file else { panic!("not a .keras file") };
//! assert_eq!(archive.config["class_name"], "Sequential");
//! let dense = file.layers().iter().find(|l| l.name == "dense").unwrap();
//! assert_eq!(dense.weights[0].shape, [64, 3]); // kernel, (in, out)
//! assert_eq!(dense.weights[1].shape, [3]); // bias
//! # Ok::<(), frostnet_formats::Error>(())
//! ```
//!
//! The `keras_dump` example prints the same for any file:
//! `cargo run -p frostnet-formats --example keras_dump -- model.keras`.
//!
//! # What is read and what is not
//!
//! Weights are read as 32-bit floats, the only type Keras writes for a
//! float32 model; any other element type is an [`Error::UnsupportedDtype`]
//! rather than a silent conversion. Optimizer state is skipped (its
//! `iteration` counter is an int64), since it is not needed to rebuild a
//! model. Trainable flags are not stored in weight files at all: they live in
//! each layer's `"trainable"` entry of the config.
//!
//! # Ordering
//!
//! Weight order matters, because Keras identifies a layer's variables by
//! position. Legacy files record it in the `weight_names` attribute, which
//! this crate follows. Keras 3 files record it only in the dataset names
//! `0`, `1`, ..., which this crate sorts numerically (h5py would list `10`
//! before `2`). The order of layers in a Keras 3 file is not recorded at all:
//! layers are stored under keys derived from their class names and listed
//! alphabetically, so [`read_keras_archive`] reorders them with the model's
//! config, and [`read_weights_h5_ordered`] does the same for a weights file
//! whose config is at hand.
//!
//! # Untrusted files
//!
//! Files are treated as untrusted. A truncated, corrupt or hostile file gives
//! an [`Error`] naming the file and the place inside it, never a panic or an
//! unbounded allocation: every dataset's declared size is checked against
//! the bytes the file has left for it before anything is allocated, the
//! declared sizes of zip members are checked likewise, and walks through
//! nested groups are bounded by depth and by the number of groups the file
//! could hold. No `catch_unwind` is used; the fuzz test in
//! `tests/fuzz.rs` feeds mutated fixtures to every reader to back this up.
//!
//! # Why `hdf5-pure`
//!
//! The HDF5 layer is the [`hdf5-pure`](https://docs.rs/hdf5-pure) crate, so
//! there is no system libhdf5 to install. Three pure-Rust readers on
//! crates.io were tried on every fixture (the Keras-written files plus
//! derived ones with fixed-length byte-string attributes, split
//! `layer_names0`/`layer_names1` attributes and the newest HDF5 object
//! format), and on mutated copies of them:
//!
//! - `hdf5-pure` read every file, decodes every string attribute form Keras
//!   uses (variable-length UTF-8 and ASCII, fixed-length `S` byte strings,
//!   the empty float64 `weight_names`), opens files from memory (needed for
//!   the weights inside a `.keras` zip), and returned `Ok` or `Err` without
//!   a panic on 15,000 mutated files, fast. With default features off it
//!   depends only on `byteorder` (and `flate2` for deflate).
//! - `hdf5-reader` also read every file and did not panic, but pulls in
//!   `memmap2`, `libc`, `ndarray`, `parking_lot` and `lru`, and was about 30
//!   times slower on corrupt input.
//! - `rust-hdf5` cannot read a string-array attribute of a group, which is
//!   how `layer_names` and `weight_names` are stored: its only group
//!   attribute reader, `attr_string`, returns `"image"` for the
//!   variable-length `["image", "conv", ...]` and `"imageconv"` for the
//!   fixed-length one. It also opens files only by path, not from memory.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod archive;
mod error;
mod h5;
mod keras3;
mod legacy;

use std::path::Path;

use serde_json::Value;

pub use archive::read_keras_archive;
pub use error::{Error, Result};
pub use keras3::{read_weights_h5, read_weights_h5_ordered, read_weights_h5_ordered_limited};
pub use legacy::read_legacy_h5;

/// One saved variable of a layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    /// The name the file gives it. In a Keras 3 file this is the variable's
    /// index, `"0"`, `"1"`, ..., because that is all the file records (for a
    /// Dense layer `"0"` is the kernel and `"1"` the bias). In a legacy file
    /// it is the entry of `weight_names`, such as `"conv2d/kernel:0"` (tf-keras)
    /// or `"cnn_seq/conv2d/kernel"` (Keras 3), which is also the dataset's
    /// path relative to the layer's group.
    pub name: String,
    /// The dimensions as Keras stores them: Dense kernels are `(in, out)`,
    /// Conv2D kernels `(kh, kw, in, out)`. Empty for a scalar.
    pub shape: Vec<usize>,
    /// The values in row-major (C) order; `data.len()` is the product of
    /// `shape`.
    pub data: Vec<f32>,
}

/// The weights of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    /// The layer's name (`layer.name` in Keras).
    pub name: String,
    /// The names of the models or layers that contain this layer, outermost
    /// first, followed by the layer's own name. `["dense"]` for a layer of
    /// the top model, `["base", "base_conv"]` for a layer inside a nested
    /// model `base`, `["lstm", "lstm_cell"]` for the cell that holds an LSTM's
    /// weights. The outer model's own name is not included.
    ///
    /// Legacy files store a nested model as a single layer whose weights are
    /// its inner layers' weights, so there the path is always one name long.
    /// Keras 3 files list a nested model (or a layer holding layers) as an
    /// entry with its own weights, often none, followed by the entries of
    /// what it holds, with longer paths.
    pub path: Vec<String>,
    /// The HDF5 group the weights were read from, such as
    /// `/layers/functional/layers/conv2d/vars` or `/model_weights/conv`.
    /// Useful for error reports and for comparing with other tools' dumps.
    pub h5_group: String,
    /// The layer's weights in Keras's saved order. Empty for layers without
    /// weights, such as pooling or input layers.
    pub weights: Vec<Weight>,
}

/// The contents of a Keras 3 `.weights.h5` file, or of the
/// `model.weights.h5` inside a `.keras` archive.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightsFile {
    /// The model's name, from the `/vars` group's `@name` attribute. Files
    /// from Keras versions before that attribute existed have none.
    pub model_name: Option<String>,
    /// Every layer, including those without weights, with nested models'
    /// layers following the nested model's own entry. The order is
    /// `model.layers` order when a config was used to read the file
    /// ([`read_keras_archive`], [`read_weights_h5_ordered`]) and the HDF5
    /// listing order (alphabetical by Keras's group key) otherwise. If the
    /// model itself has variables of its own, they come first, as an entry
    /// with an empty `path`.
    pub layers: Vec<LayerWeights>,
    /// Whether the file also holds optimizer state (`/optimizer`), which is
    /// not read.
    pub has_optimizer: bool,
}

/// The contents of a `.keras` archive.
#[derive(Clone, Debug, PartialEq)]
pub struct KerasArchive {
    /// `config.json`: the architecture, including each layer's `"trainable"`
    /// flag, `build_config` and `compile_config`. Its `"class_name"` is
    /// `"Sequential"` or `"Functional"` for models.
    pub config: Value,
    /// `metadata.json` (`keras_version`, `date_saved`), if the archive has one.
    pub metadata: Option<Value>,
    /// `model.weights.h5`, with layers in `model.layers` order.
    pub weights: WeightsFile,
}

/// The contents of a legacy Keras `.h5` file.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyH5 {
    /// The `model_config` attribute: `{"class_name": ..., "config": ...}`.
    /// `None` for weights-only files, which carry no architecture.
    pub model_config: Option<Value>,
    /// The `training_config` attribute (loss, metrics, optimizer config),
    /// present when the model was compiled before saving.
    pub training_config: Option<Value>,
    /// The `keras_version` attribute, such as `"2.21.0"` or `"3.15.1"`.
    pub keras_version: Option<String>,
    /// The `backend` attribute, such as `"tensorflow"`.
    pub backend: Option<String>,
    /// One entry per name in `layer_names`, in that order, which is
    /// `model.layers` order. Each layer's weights are in `weight_names` order.
    pub layers: Vec<LayerWeights>,
}

impl LegacyH5 {
    /// Whether this is a full-model file (with `model_config`) rather than a
    /// weights-only one.
    pub fn is_full_model(&self) -> bool {
        self.model_config.is_some()
    }
}

/// What [`read_any`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum KerasFile {
    /// A `.keras` zip archive.
    Archive(KerasArchive),
    /// A Keras 3 `.weights.h5` file.
    Weights(WeightsFile),
    /// A legacy `.h5` file, full model or weights only.
    Legacy(LegacyH5),
}

impl KerasFile {
    /// The layers, whatever the format.
    pub fn layers(&self) -> &[LayerWeights] {
        match self {
            KerasFile::Archive(a) => &a.weights.layers,
            KerasFile::Weights(w) => &w.layers,
            KerasFile::Legacy(l) => &l.layers,
        }
    }

    /// The model config, if the file has one.
    pub fn config(&self) -> Option<&Value> {
        match self {
            KerasFile::Archive(a) => Some(&a.config),
            KerasFile::Weights(_) => None,
            KerasFile::Legacy(l) => l.model_config.as_ref(),
        }
    }
}

/// Caps a reader applies on top of what the file itself can hold.
///
/// The file alone bounds every allocation (a dataset cannot need more bytes than the file has
/// left, a deflated member not more than deflate's ratio allows), but a small file can still
/// declare gigabytes: a `config.json` that inflates to a sea of whitespace, a gzip-compressed
/// dataset of shape (33000, 33000) where a 4-value weight belongs. A caller who knows what it
/// expects passes tighter caps; every one is checked against the declared size, before
/// anything is read or decompressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed size of `config.json` or `metadata.json` in a `.keras` zip.
    pub max_json_bytes: u64,
    /// Largest decompressed size of the `model.weights.h5` member of a `.keras` zip.
    pub max_weights_member_bytes: u64,
    /// Largest data size (elements x 4 bytes) of any one dataset.
    pub max_dataset_bytes: u64,
}

impl Limits {
    /// 64 MiB for a JSON member: InceptionV3's config, the largest of Keras's applications,
    /// is 0.1 MiB.
    pub const DEFAULT_MAX_JSON_BYTES: u64 = 64 << 20;
}

impl Default for Limits {
    /// JSON members capped at [`Limits::DEFAULT_MAX_JSON_BYTES`]; weights only by the file.
    fn default() -> Limits {
        Limits {
            max_json_bytes: Limits::DEFAULT_MAX_JSON_BYTES,
            max_weights_member_bytes: u64::MAX,
            max_dataset_bytes: u64::MAX,
        }
    }
}

/// Reads only a file's model config: `config.json` of a `.keras` archive, the `model_config`
/// attribute of a legacy full-model `.h5`; `None` for a weights-only file. No weight is read,
/// so a caller can build the model first and then read the weights with [`read_any_limited`]
/// capped at what the model needs.
pub fn read_config(path: impl AsRef<Path>, limits: &Limits) -> Result<Option<Value>> {
    let path = path.as_ref();
    let bytes = error::read_file(path)?;
    let origin = error::Origin::new(path, "");
    if bytes.starts_with(archive::ZIP_MAGIC) {
        return archive::config_only(bytes, path, limits).map(Some);
    }
    if !h5::has_signature(&bytes) {
        return Err(origin.unknown("neither a zip archive nor an HDF5 file"));
    }
    let h5 = h5::H5::open(bytes, origin)?;
    if legacy::looks_like(&h5)? {
        legacy::model_config(&h5)
    } else if keras3::looks_like(&h5)? {
        Ok(None)
    } else {
        Err(h5.origin.unknown(
            "HDF5 file has neither a layers group (Keras 3 weights) \
             nor model_weights or layer_names (legacy Keras)",
        ))
    }
}

/// Reads any Keras file, telling the format from its content.
///
/// A zip signature means a `.keras` archive. An HDF5 signature means either a
/// Keras 3 weights file (a `layers` or `vars` group at the root) or a legacy
/// file (a `model_weights` group, or a `layer_names` attribute at the root).
/// The file name is not consulted.
pub fn read_any(path: impl AsRef<Path>) -> Result<KerasFile> {
    read_any_limited(path, &Limits::default())
}

/// [`read_any`] with caps on what may be allocated (see [`Limits`]).
pub fn read_any_limited(path: impl AsRef<Path>, limits: &Limits) -> Result<KerasFile> {
    let path = path.as_ref();
    let bytes = error::read_file(path)?;
    let origin = error::Origin::new(path, "");
    if bytes.starts_with(archive::ZIP_MAGIC) {
        return archive::parse(bytes, path, limits).map(KerasFile::Archive);
    }
    if !h5::has_signature(&bytes) {
        return Err(origin.unknown("neither a zip archive nor an HDF5 file"));
    }
    let h5 = h5::H5::open(bytes, origin)?.limit_datasets(limits.max_dataset_bytes);
    if legacy::looks_like(&h5)? {
        legacy::parse(&h5).map(KerasFile::Legacy)
    } else if keras3::looks_like(&h5)? {
        keras3::parse(&h5, None).map(KerasFile::Weights)
    } else {
        Err(h5.origin.unknown(
            "HDF5 file has neither a layers group (Keras 3 weights) \
             nor model_weights or layer_names (legacy Keras)",
        ))
    }
}
