//! The transfer-learning recipe of Keras's guide, as library calls: an application without its
//! top (any of the built-in ones), frozen, with its `preprocess_input` inside the model (none
//! for the applications that rescale inside themselves), global average pooling, dropout and a
//! new softmax classifier; then, optionally, the base unfrozen from a given layer on
//! ([`unfreeze_from`]). The model takes raw 0..255 RGB images, as
//! `image_dataset_from_directory` yields them, so a saved file needs nothing else to predict;
//! [`save_classifier`] keeps the class names in the `.keras` archive's `metadata.json`.
//!
//! The README's recipe (InceptionV3 with ImageNet weights on a folder `photos/`):
//!
//! ```no_run
//! use frostnet::applications::transfer::{save_classifier, transfer_model, unfreeze_from, TransferOptions};
//! use frostnet::applications::Application;
//! use frostnet::datasets::{image_datasets_from_directory, ImageDatasetOptions, Subset};
//! use frostnet::training::{Adam, FitOptions, Loss, Metric, ValidationData};
//!
//! // Keras's options and defaults: labels from sub-folders, shuffled with the seed, 20% held out.
//! let (mut train, val) = image_datasets_from_directory("photos", &ImageDatasetOptions {
//!     image_size: (299, 299),
//!     validation_split: Some(0.2),
//!     subset: Some(Subset::Both),
//!     seed: Some(1337),
//!     ..Default::default()
//! })?;
//! let classes = train.class_names().unwrap().to_vec();
//! let mut model = transfer_model(&TransferOptions {
//!     app: Application::InceptionV3,
//!     weights: Some("imagenet".into()),
//!     image_size: 299,
//!     num_classes: classes.len(),
//!     dropout: 0.2,
//!     seed: Some(1),
//! })?;
//! let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
//! model.compile(Adam::new(1e-3), loss, &[Metric::Accuracy]);
//! let opts = |epochs| FitOptions {
//!     epochs,
//!     validation_data: Some(ValidationData::Dataset(Box::new(val.clone()))),
//!     ..Default::default()
//! };
//! model.fit_dataset(&mut train, opts(5))?;                  // the base is frozen: the head trains
//! unfreeze_from(&mut model, "mixed8")?;                     // then fine-tune the top of the base
//! model.compile(Adam::new(1e-5), loss, &[Metric::Accuracy]);
//! model.fit_dataset(&mut train, opts(5))?;
//! save_classifier(&model, &classes, "pets.keras")?;
//! # Ok::<(), frostnet::Error>(())
//! ```

use super::{Application, ApplicationOptions, PreprocessMode};
use crate::error::{Error, Result};
use crate::layers::{
    ActivationFn, Conv2D, Dense, Dropout, GlobalAveragePooling2D, Input, Layer, LayerOptions,
    Rescaling,
};
use crate::models::{Functional, Model};
use crate::tensor::Tensor;
use std::io::{Read, Write};

/// What [`transfer_model`] builds.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    pub app: Application,
    /// `"imagenet"`, a Keras weights file, or `None` for a random base.
    pub weights: Option<String>,
    /// Input side (square images); at least the application's minimum.
    pub image_size: usize,
    pub num_classes: usize,
    /// Dropout before the classifier (Keras's guide uses 0.2).
    pub dropout: f32,
    /// Seed of the classifier's initialisation.
    pub seed: Option<u64>,
}

/// The name of the layer that applies `preprocess_input`.
pub const PREPROCESS_LAYER: &str = "preprocess_input";

/// `preprocess_input` as a frozen layer, or `None` for the applications that rescale inside
/// (EfficientNet, EfficientNetV2, MobileNetV3, ConvNeXt: Keras's `preprocess_input` is a
/// pass-through for them). `tf` mode: `Rescaling(1/127.5, offset=-1)`; `caffe` and `torch`
/// modes: a frozen 1x1 convolution ([`set_preprocess_weights`]).
fn preprocess_layer(app: Application) -> Option<Box<dyn Layer>> {
    match app.preprocess_mode() {
        PreprocessMode::Tf => Some(Box::new(
            Rescaling::new(1.0 / 127.5)
                .offset(-1.0)
                .named(PREPROCESS_LAYER),
        )),
        PreprocessMode::Caffe | PreprocessMode::Torch => {
            Some(Box::new(Conv2D::new(3, 1).named(PREPROCESS_LAYER)))
        }
        PreprocessMode::Identity => None,
    }
}

/// The 1x1 convolution's kernel and bias. `caffe`: the kernel swaps R and B and the bias
/// subtracts the BGR ImageNet mean, so each output is `1 * x + 0 * y + 0 * z - mean`, exactly
/// Keras's `x[..., ::-1] - mean` in float32. `torch`: a diagonal kernel `1 / (255 std)` and bias
/// `-mean / std`, Keras's `(x / 255 - mean) / std` up to float32 rounding.
fn set_preprocess_weights(model: &mut Model, mode: PreprocessMode) -> Result<()> {
    let layer = model.get_layer_mut(PREPROCESS_LAYER)?;
    let mut kernel = vec![0.0f32; 9];
    let bias = match mode {
        PreprocessMode::Caffe => {
            for c in 0..3 {
                // kernel[0, 0, in, out]: output channel c reads input channel 2 - c.
                kernel[(2 - c) * 3 + c] = 1.0;
            }
            vec![-103.939, -116.779, -123.68]
        }
        _ => {
            const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
            const STD: [f32; 3] = [0.229, 0.224, 0.225];
            for c in 0..3 {
                kernel[c * 3 + c] = 1.0 / (255.0 * STD[c]);
            }
            (0..3).map(|c| -MEAN[c] / STD[c]).collect()
        }
    };
    layer.set_weights(vec![
        Tensor::from_vec(&[1, 1, 3, 3], kernel)?,
        Tensor::from_vec(&[3], bias)?,
    ])?;
    layer.set_trainable(false);
    Ok(())
}

/// Builds `inputs -> preprocess_input -> base (frozen) -> GlobalAveragePooling2D -> Dropout ->
/// Dense(num_classes, softmax)`, named `<app>_transfer`. The base is the application model
/// itself, nested as one layer under its Keras name (`inception_v3`, `mobilenetv2_1.00_224`,
/// ...), so [`unfreeze_from`] can reach its layers.
pub fn transfer_model(opts: &TransferOptions) -> Result<Model> {
    build_transfer(opts, &[], None)
}

/// [`transfer_model`] with hidden `Dense(units, relu)` layers (`head_dense`, `head_dense_1`,
/// ...) between the pooling and the dropout: the head KerasTuner's examples search
/// (`frostnet tune --app` searches its units).
pub fn transfer_model_with_head(opts: &TransferOptions, hidden: &[usize]) -> Result<Model> {
    build_transfer(opts, hidden, None)
}

/// [`transfer_model`] with Keras's data-augmentation block (e.g. a `Sequential` of `RandomFlip`,
/// `RandomRotation`, ... taking `(image_size, image_size, 3)`) nested between the input and
/// `preprocess_input`, as in Keras's transfer-learning guide: random in training, passed through
/// at inference, and saved with the model.
pub fn transfer_model_augmented(
    opts: &TransferOptions,
    augmentation: Option<Model>,
) -> Result<Model> {
    build_transfer(opts, &[], augmentation)
}

fn build_transfer(
    opts: &TransferOptions,
    hidden: &[usize],
    augmentation: Option<Model>,
) -> Result<Model> {
    let app = opts.app;
    if opts.image_size < app.min_size() {
        return Err(Error::InvalidConfig(format!(
            "{}: image size must be at least {}, got {}",
            app.name(),
            app.min_size(),
            opts.image_size
        )));
    }
    if opts.num_classes < 2 {
        return Err(Error::InvalidConfig(format!(
            "a classifier needs at least 2 classes, got {}",
            opts.num_classes
        )));
    }
    let n = opts.image_size;
    let mut base = app.build(&ApplicationOptions {
        include_top: false,
        pooling: None,
        input_shape: Some([Some(n), Some(n), Some(3)]),
        weights: opts.weights.clone(),
        ..Default::default()
    })?;
    base.set_trainable(false);
    let mut g = Functional::new();
    let input = g.input(Input::new(&[n, n, 3]).named("image"));
    let x = match augmentation {
        Some(aug) => g.call(aug, &[input])?,
        None => input,
    };
    let x = match preprocess_layer(app) {
        Some(layer) => g.call_boxed(layer, &[x])?,
        None => x,
    };
    let x = g.call(base, &[x])?;
    let mut x = g.call(GlobalAveragePooling2D::new(), &[x])?;
    for (i, &units) in hidden.iter().enumerate() {
        let name = if i == 0 {
            "head_dense".to_string()
        } else {
            format!("head_dense_{i}")
        };
        let mut dense = Dense::new(units)
            .activation(ActivationFn::Relu)
            .named(&name);
        if let Some(s) = opts.seed {
            dense = dense.seed(s.wrapping_add(1 + i as u64));
        }
        x = g.call(dense, &[x])?;
    }
    let x = g.call(Dropout::new(opts.dropout), &[x])?;
    let mut head = Dense::new(opts.num_classes)
        .activation(ActivationFn::Softmax)
        .named("classifier");
    if let Some(s) = opts.seed {
        head = head.seed(s);
    }
    let out = g.call(head, &[x])?;
    let mut model = g.build_named(&format!("{}_transfer", app.name()), &[input], &[out])?;
    match app.preprocess_mode() {
        mode @ (PreprocessMode::Caffe | PreprocessMode::Torch) => {
            set_preprocess_weights(&mut model, mode)?
        }
        PreprocessMode::Tf => model.get_layer_mut(PREPROCESS_LAYER)?.set_trainable(false),
        PreprocessMode::Identity => {}
    }
    Ok(model)
}

/// The nested base model's name inside a [`transfer_model`].
pub fn base_name(model: &Model) -> Result<String> {
    model
        .layers()
        .iter()
        .find(|l| l.as_model().is_some())
        .map(|l| l.name().to_string())
        .ok_or_else(|| {
            Error::InvalidConfig(format!("model '{}' has no nested base model", model.name()))
        })
}

/// The fine-tuning step of the recipe: the base's layers from `at` on (a layer name, or an index
/// into the base's `layers`) become trainable, the ones before stay frozen. Returns the index.
pub fn unfreeze_from(model: &mut Model, at: &str) -> Result<usize> {
    let name = base_name(model)?;
    let base = model
        .get_layer_mut(&name)?
        .as_model_mut()
        .expect("base_name found a model");
    let len = base.len();
    let index = match at.parse::<usize>() {
        Ok(i) if i < len => i,
        Ok(i) => {
            return Err(Error::LayerIndex {
                model: name,
                index: i,
                len,
            })
        }
        Err(_) => base
            .layers()
            .iter()
            .position(|l| l.name() == at)
            .ok_or_else(|| Error::UnknownLayer {
                model: name.clone(),
                name: at.to_string(),
            })?,
    };
    base.set_trainable(true);
    base.set_trainable_range(0..index, false)?;
    Ok(index)
}

fn zip_err(path: &str, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.into(),
        message: e.to_string(),
    }
}

/// Saves `model` as a `.keras` archive (as [`save_keras`](crate::saving::save_keras)) with
/// `class_names` added to its `metadata.json`; Keras ignores the extra key and loads the model.
pub fn save_classifier(model: &Model, class_names: &[String], path: &str) -> Result<()> {
    let tmp = format!("{path}.{}.plain", std::process::id());
    crate::saving::save_keras(model, &tmp)?;
    let result = (|| {
        let bytes = std::fs::read(&tmp).map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e,
        })?;
        let mut src =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| zip_err(path, e))?;
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..src.len() {
            let mut f = src.by_index(i).map_err(|e| zip_err(path, e))?;
            let name = f.name().map_err(|e| zip_err(path, e))?.to_string();
            let mut data = Vec::new();
            f.read_to_end(&mut data).map_err(|e| zip_err(path, e))?;
            if name == "metadata.json" {
                let mut meta: serde_json::Value =
                    serde_json::from_slice(&data).map_err(|e| zip_err(path, e))?;
                meta["class_names"] = serde_json::json!(class_names);
                data = meta.to_string().into_bytes();
            }
            out.start_file(name, opts).map_err(|e| zip_err(path, e))?;
            out.write_all(&data).map_err(|e| zip_err(path, e))?;
        }
        let bytes = out.finish().map_err(|e| zip_err(path, e))?.into_inner();
        crate::saving::write_atomic(path, &bytes)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The class names [`save_classifier`] kept in a `.keras` archive, if any.
pub fn load_class_names(path: &str) -> Result<Option<Vec<String>>> {
    let f = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let Ok(mut zip) = zip::ZipArchive::new(f) else {
        return Ok(None);
    };
    let Ok(mut meta) = zip.by_name("metadata.json") else {
        return Ok(None);
    };
    let mut text = String::new();
    meta.read_to_string(&mut text)
        .map_err(|e| zip_err(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| zip_err(path, e))?;
    Ok(v.get("class_names").and_then(|c| {
        c.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    }))
}
