//! What Keras users do around an application: `preprocess_input` (each application's input
//! scaling), `decode_predictions` (ImageNet class names), and `weights="imagenet"` (the official
//! files, downloaded as Keras downloads them: see `download.rs`).

use super::by_name::{self, PreprocessMode};
use super::download::get_file;
use super::keras_weights::ImagenetFile;
use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// The built-in applications, by Keras's module-style names (`inception_v3`, `resnet50_v2`,
/// `efficientnet_b0`): every entry of [`by_name::APPLICATIONS`](super::by_name::APPLICATIONS),
/// in its order. What each one is (its sizes, `preprocess_input` mode, ImageNet file) lives in
/// that table; [`Application::spec`] reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Application {
    InceptionV3,
    ResNet50,
    MobileNetV2,
    Vgg16,
    ResNet101,
    ResNet152,
    ResNet50V2,
    ResNet101V2,
    ResNet152V2,
    Xception,
    DenseNet121,
    DenseNet169,
    DenseNet201,
    MobileNet,
    InceptionResNetV2,
    NasNetMobile,
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
    EfficientNetV2B0,
    EfficientNetV2B1,
    EfficientNetV2B2,
    EfficientNetV2B3,
    EfficientNetV2S,
    MobileNetV3Small,
    MobileNetV3Large,
    ConvNeXtTiny,
}

impl std::str::FromStr for Application {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        by_name::find(s)
            .map(|spec| spec.app)
            .ok_or_else(|| by_name::unknown(s))
    }
}

impl std::fmt::Display for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ImageNet mean of Keras's `caffe` mode, in BGR order.
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
/// The ImageNet mean and standard deviation of Keras's `torch` mode, in RGB order.
const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Application {
    /// Every built-in application, in the table's order.
    pub fn all() -> impl Iterator<Item = Application> {
        by_name::APPLICATIONS.iter().map(|s| s.app)
    }

    /// This application's entry in the table.
    pub fn spec(self) -> &'static by_name::AppSpec {
        let spec = &by_name::APPLICATIONS[self as usize];
        debug_assert_eq!(
            spec.app, self,
            "by_name::APPLICATIONS is in Application's order"
        );
        spec
    }

    /// The CLI name (Keras's module-style name: `inception_v3`, `resnet50_v2`).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The ImageNet input side the application was trained at.
    pub fn default_size(self) -> usize {
        self.spec().default_size
    }

    /// The smallest input side Keras accepts.
    pub fn min_size(self) -> usize {
        self.spec().min_size
    }

    /// What `keras.applications.<module>.preprocess_input` does for this application.
    pub fn preprocess_mode(self) -> PreprocessMode {
        self.spec().preprocess
    }

    /// Builds the architecture (and loads `opts.weights`, `"imagenet"` included).
    pub fn build(self, opts: &ApplicationOptions) -> Result<Model> {
        self.spec().build(opts)
    }

    /// `keras.applications.<module>.preprocess_input`: images in 0..255 RGB (as
    /// `image_dataset_from_directory` yields them) to what the ImageNet weights expect, in
    /// Keras's float32 operations and order. `tf` (Inception, Xception, MobileNet, MobileNetV2,
    /// ResNetV2, NASNet): `x / 127.5 - 1`; `caffe` (VGG16, ResNet50/101/152): RGB to BGR, minus
    /// the BGR ImageNet mean; `torch` (DenseNet): `(x / 255 - mean) / std` per channel;
    /// EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt rescale inside the model, and
    /// their `preprocess_input` returns the images unchanged. The last axis must be the 3 colour
    /// channels.
    pub fn preprocess_input(self, x: &Tensor) -> Result<Tensor> {
        if x.shape().last() != Some(&3) {
            return Err(Error::Data(format!(
                "{}.preprocess_input expects RGB images with 3 channels last, got shape {:?}",
                self.spec().module,
                x.shape()
            )));
        }
        let mut out = x.clone();
        match self.preprocess_mode() {
            PreprocessMode::Tf => {
                // Keras: `x /= 127.5; x -= 1.0` in float32.
                for v in out.data_mut() {
                    *v = *v / 127.5 - 1.0;
                }
            }
            PreprocessMode::Caffe => {
                // Keras: `x = x[..., ::-1]`, then the BGR mean subtracted channel by channel.
                for (px, src) in out
                    .data_mut()
                    .chunks_exact_mut(3)
                    .zip(x.data().chunks_exact(3))
                {
                    for c in 0..3 {
                        px[c] = src[2 - c] - CAFFE_MEAN_BGR[c];
                    }
                }
            }
            PreprocessMode::Torch => {
                // Keras: `x /= 255.0`, then `x[..., c] -= mean[c]`, then `x[..., c] /= std[c]`.
                for px in out.data_mut().chunks_exact_mut(3) {
                    for c in 0..3 {
                        px[c] = (px[c] / 255.0 - TORCH_MEAN[c]) / TORCH_STD[c];
                    }
                }
            }
            PreprocessMode::Identity => {}
        }
        Ok(out)
    }

    /// The file Keras downloads for `weights="imagenet"`, with or without the top, for square
    /// inputs of side `rows` (MobileNet and MobileNetV2 have one file per trained size; others
    /// load the 224 file, as in Keras, since convolution weights do not depend on the input
    /// size). Keras publishes no hash for MobileNet and MobileNetV2.
    pub fn imagenet_file(self, include_top: bool, rows: Option<usize>) -> Result<ImagenetFile> {
        self.spec().imagenet_file(include_top, rows)
    }

    /// Which application built `model`, from the name Keras gives it.
    pub(crate) fn of_model(model: &Model) -> Option<Application> {
        Application::of_model_name(model.name())
    }

    /// The application a model name is Keras's default for (`inception_v3`, `resnet50v2`,
    /// `efficientnetb0`, and MobileNet's `mobilenet_<alpha>_<rows>`,
    /// `mobilenetv2_<alpha>_<rows>`).
    pub fn of_model_name(name: &str) -> Option<Application> {
        let alpha_rows = |rest: &str| {
            rest.split_once('_').is_some_and(|(alpha, rows)| {
                alpha.parse::<f64>().is_ok() && rows.parse::<usize>().is_ok()
            })
        };
        if let Some(spec) = by_name::APPLICATIONS.iter().find(|s| s.model_name == name) {
            return Some(spec.app);
        }
        if name.strip_prefix("mobilenetv2_").is_some_and(alpha_rows) {
            return Some(Application::MobileNetV2);
        }
        if name.strip_prefix("mobilenet_").is_some_and(alpha_rows) {
            return Some(Application::MobileNet);
        }
        None
    }
}

/// Resolves `weights: "imagenet"` for a freshly built InceptionV3, ResNet50, MobileNetV2 or
/// VGG16 (the builders that leave it to [`with_weights`](super::with_weights)): Keras's checks,
/// then the cached or downloaded file's path.
pub(crate) fn imagenet_weights_path(model: &Model, opts: &ApplicationOptions) -> Result<String> {
    let app = Application::of_model(model).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "{}: no ImageNet weights are known for this model",
            model.name()
        ))
    })?;
    if opts.include_top && opts.classes != 1000 {
        return Err(Error::InvalidConfig(format!(
            "{}: with weights='imagenet' and include_top, classes must be 1000, got {}",
            app.name(),
            opts.classes
        )));
    }
    let rows = opts.input_shape.and_then(|s| match (s[0], s[1]) {
        (Some(r), Some(c)) if r == c => Some(r),
        _ => None,
    });
    if app == Application::MobileNetV2 && !matches!(rows, Some(96 | 128 | 160 | 192 | 224)) {
        eprintln!(
            "warning: `input_shape` is undefined or non-square, or `rows` is not in [96, 128, \
             160, 192, 224]. Weights for input shape (224, 224) will be loaded as the default."
        );
    }
    let path = app.imagenet_file(opts.include_top, rows)?.fetch()?;
    Ok(path.display().to_string())
}

/// Keras's `imagenet_class_index.json` location and published MD5.
const CLASS_INDEX_URL: &str =
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json";
const CLASS_INDEX_MD5: &str = "c2c37ea517e94d9795004a39431a14cb";

/// Keras's `imagenet_class_index.json`, byte for byte (35 KB; its MD5 is Keras's
/// [`CLASS_INDEX_MD5`]), rebuilt from PyPI data by `tools/make_imagenet_class_index.py`, so
/// decoding ImageNet predictions needs no network.
pub const BUNDLED_CLASS_INDEX_JSON: &str = include_str!("imagenet_class_index.json");

/// The 1000 ImageNet classes: WordNet id and readable name per index.
pub struct ImagenetClassIndex {
    classes: Vec<(String, String)>,
}

/// One decoded prediction: `(wordnet_id, name, probability)` as Keras's tuples.
pub type DecodedPrediction = (String, String, f32);

impl ImagenetClassIndex {
    /// Reads a class index in Keras's format: `{"0": ["n01440764", "tench"], ...}`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ImagenetClassIndex> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        ImagenetClassIndex::from_json(&text).map_err(|m| Error::File {
            path: path.display().to_string(),
            message: m,
        })
    }

    /// Parses Keras's format; the keys must be exactly `0..n`.
    fn from_json(text: &str) -> std::result::Result<ImagenetClassIndex, String> {
        let map: HashMap<String, (String, String)> =
            serde_json::from_str(text).map_err(|e| format!("not a Keras class index: {e}"))?;
        let n = map.len();
        let mut classes = vec![None; n];
        for (k, v) in map {
            let i: usize = k
                .parse()
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| format!("key '{k}' is not an index below {n}"))?;
            classes[i] = Some(v);
        }
        let classes = classes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "class indices are not 0..n".to_string())?;
        Ok(ImagenetClassIndex { classes })
    }

    /// Keras's class index, bundled in the library ([`BUNDLED_CLASS_INDEX_JSON`]): what
    /// `decode_predictions` and `frostnet predict` use, with no download.
    pub fn bundled() -> ImagenetClassIndex {
        ImagenetClassIndex::from_json(BUNDLED_CLASS_INDEX_JSON)
            .expect("the bundled class index is checked by the tests")
    }

    /// Keras's file as Keras gets it: from `$KERAS_HOME/models`, or downloaded from Keras's URL
    /// and checked against Keras's MD5. [`bundled`](Self::bundled) holds the same bytes.
    pub fn keras() -> Result<ImagenetClassIndex> {
        let path = get_file(
            "imagenet_class_index.json",
            CLASS_INDEX_URL,
            Some(CLASS_INDEX_MD5),
        )?;
        ImagenetClassIndex::from_file(path)
    }

    /// The WordNet id of class `i` (`"n01440764"`).
    pub fn wordnet_id(&self, i: usize) -> &str {
        &self.classes[i].0
    }
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    /// The readable name of class `i` (`"tench"`).
    pub fn name(&self, i: usize) -> &str {
        &self.classes[i].1
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The `top` most probable classes of each row of `preds` `(samples, classes)`, most
    /// probable first.
    pub fn decode(&self, preds: &Tensor, top: usize) -> Result<Vec<Vec<DecodedPrediction>>> {
        let k = self.classes.len();
        if preds.shape().len() != 2 || preds.shape()[1] != k {
            return Err(Error::Data(format!(
                "decode_predictions expects a batch of predictions of shape (samples, {k}), got {:?}",
                preds.shape()
            )));
        }
        Ok(preds
            .data()
            .chunks_exact(k)
            .map(|row| {
                top_k(row, top)
                    .into_iter()
                    .map(|i| (self.classes[i].0.clone(), self.classes[i].1.clone(), row[i]))
                    .collect()
            })
            .collect())
    }
}

/// Indices of the `top` largest values, largest first (ties: the higher index first, as
/// Keras's `argsort()[-top:][::-1]`).
pub fn top_k(row: &[f32], top: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(b.cmp(&a)));
    idx.truncate(top);
    idx
}

/// Keras's `decode_predictions(preds, top)` for an ImageNet classifier, with Keras's class index
/// bundled in the library (no download; [`ImagenetClassIndex::from_file`] reads another).
pub fn decode_predictions(preds: &Tensor, top: usize) -> Result<Vec<Vec<DecodedPrediction>>> {
    ImagenetClassIndex::bundled().decode(preds, top)
}
