//! What Keras users do around an application: `preprocess_input` (each application's input
//! scaling), `decode_predictions` (ImageNet class names), and `weights="imagenet"` (the official
//! files, downloaded as Keras downloads them: see `download.rs`).

use super::download::{get_file, KERAS_HOST};
use super::ApplicationOptions;
use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// The built-in applications, by Keras's module names (`inception_v3`, `resnet50`,
/// `mobilenet_v2`, `vgg16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Application {
    InceptionV3,
    ResNet50,
    MobileNetV2,
    Vgg16,
}

impl std::str::FromStr for Application {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "inception_v3" => Application::InceptionV3,
            "resnet50" => Application::ResNet50,
            "mobilenet_v2" => Application::MobileNetV2,
            "vgg16" => Application::Vgg16,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown application '{other}' (known: inception_v3, resnet50, mobilenet_v2, vgg16)"
                )))
            }
        })
    }
}

impl Application {
    /// Keras's module name.
    pub fn name(self) -> &'static str {
        match self {
            Application::InceptionV3 => "inception_v3",
            Application::ResNet50 => "resnet50",
            Application::MobileNetV2 => "mobilenet_v2",
            Application::Vgg16 => "vgg16",
        }
    }

    /// The ImageNet input side the application was trained at.
    pub fn default_size(self) -> usize {
        match self {
            Application::InceptionV3 => 299,
            _ => 224,
        }
    }

    /// The smallest input side Keras accepts.
    pub fn min_size(self) -> usize {
        match self {
            Application::InceptionV3 => 75,
            _ => 32,
        }
    }

    /// Builds the architecture (and loads `opts.weights`, `"imagenet"` included).
    pub fn build(self, opts: &ApplicationOptions) -> Result<Model> {
        match self {
            Application::InceptionV3 => super::inception_v3(opts),
            Application::ResNet50 => super::resnet50(opts),
            Application::MobileNetV2 => super::mobilenet_v2(opts),
            Application::Vgg16 => super::vgg16(opts),
        }
    }

    /// `keras.applications.<name>.preprocess_input`: images in 0..255 RGB (as
    /// `image_dataset_from_directory` yields them) to what the ImageNet weights expect.
    /// InceptionV3 and MobileNetV2 scale to [-1, 1] (`mode="tf"`); ResNet50 and VGG16 flip RGB
    /// to BGR and subtract the ImageNet mean per channel (`mode="caffe"`). The last axis must be
    /// the 3 colour channels.
    pub fn preprocess_input(self, x: &Tensor) -> Result<Tensor> {
        if x.shape().last() != Some(&3) {
            return Err(Error::Data(format!(
                "{}.preprocess_input expects RGB images with 3 channels last, got shape {:?}",
                self.name(),
                x.shape()
            )));
        }
        let mut out = x.clone();
        match self {
            Application::InceptionV3 | Application::MobileNetV2 => {
                // Keras: `x /= 127.5; x -= 1.0` in float32.
                for v in out.data_mut() {
                    *v = *v / 127.5 - 1.0;
                }
            }
            Application::ResNet50 | Application::Vgg16 => {
                // Keras: `x = x[..., ::-1]`, then the BGR mean subtracted channel by channel.
                const MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
                for (px, src) in out
                    .data_mut()
                    .chunks_exact_mut(3)
                    .zip(x.data().chunks_exact(3))
                {
                    for c in 0..3 {
                        px[c] = src[2 - c] - MEAN_BGR[c];
                    }
                }
            }
        }
        Ok(out)
    }

    /// The file Keras downloads for `weights="imagenet"`: `(file name, URL, published hash)`.
    /// Keras publishes no hash for MobileNetV2, and loads its 224 files for any other size (as
    /// here, with the same warning) since convolution weights do not depend on the input size.
    pub fn imagenet_weights(
        self,
        include_top: bool,
        rows: Option<usize>,
    ) -> (String, String, Option<&'static str>) {
        let base = format!("{KERAS_HOST}tensorflow/keras-applications/");
        let (dir, file, hash) = match (self, include_top) {
            (Application::InceptionV3, true) => (
                "inception_v3/",
                "inception_v3_weights_tf_dim_ordering_tf_kernels.h5".to_string(),
                Some("9a0d58056eeedaa3f26cb7ebd46da564"),
            ),
            (Application::InceptionV3, false) => (
                "inception_v3/",
                "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5".to_string(),
                Some("bcbd6486424b2319ff4ef7d526e38f63"),
            ),
            (Application::ResNet50, true) => (
                "resnet/",
                "resnet50_weights_tf_dim_ordering_tf_kernels.h5".to_string(),
                Some("2cb95161c43110f7111970584f804107"),
            ),
            (Application::ResNet50, false) => (
                "resnet/",
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5".to_string(),
                Some("4d473c1dd8becc155b73f8504c6f6626"),
            ),
            (Application::Vgg16, true) => (
                "vgg16/",
                "vgg16_weights_tf_dim_ordering_tf_kernels.h5".to_string(),
                Some("64373286793e3c8b2b4e3219cbf3544b"),
            ),
            (Application::Vgg16, false) => (
                "vgg16/",
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5".to_string(),
                Some("6d6bbae143d832006294945121d1f1fc"),
            ),
            (Application::MobileNetV2, top) => {
                let rows = rows
                    .filter(|r| [96, 128, 160, 192, 224].contains(r))
                    .unwrap_or(224);
                let tail = if top { "" } else { "_no_top" };
                (
                    "mobilenet_v2/",
                    format!("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}{tail}.h5"),
                    None,
                )
            }
        };
        let url = format!("{base}{dir}{file}");
        (file, url, hash)
    }

    /// Which application built `model`, from the name Keras gives it.
    pub(crate) fn of_model(model: &Model) -> Option<Application> {
        Application::of_model_name(model.name())
    }

    /// The application a model name is Keras's default for (`inception_v3`, `resnet50`,
    /// `vgg16`, `mobilenetv2_1.00_<rows>`).
    pub fn of_model_name(name: &str) -> Option<Application> {
        match name {
            "inception_v3" => Some(Application::InceptionV3),
            "resnet50" => Some(Application::ResNet50),
            "vgg16" => Some(Application::Vgg16),
            _ if name.starts_with("mobilenetv2_1.00_") => Some(Application::MobileNetV2),
            _ => None,
        }
    }
}

/// Resolves `weights: "imagenet"` for a freshly built application: Keras's checks, then the
/// cached or downloaded file's path.
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
    let (file, url, hash) = app.imagenet_weights(opts.include_top, rows);
    let path = get_file(&file, &url, hash)?;
    Ok(path.display().to_string())
}

/// Keras's `imagenet_class_index.json` location and published MD5.
const CLASS_INDEX_URL: &str =
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json";
const CLASS_INDEX_MD5: &str = "c2c37ea517e94d9795004a39431a14cb";

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
        let bad = |m: String| Error::File {
            path: path.display().to_string(),
            message: m,
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let map: HashMap<String, (String, String)> = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a Keras class index: {e}")))?;
        let n = map.len();
        let mut classes = vec![None; n];
        for (k, v) in map {
            let i: usize = k
                .parse()
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| bad(format!("key '{k}' is not an index below {n}")))?;
            classes[i] = Some(v);
        }
        let classes = classes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("class indices are not 0..n".into()))?;
        Ok(ImagenetClassIndex { classes })
    }

    /// Keras's file, from the cache or downloaded (and checked against Keras's MD5) as
    /// `decode_predictions` does.
    pub fn keras() -> Result<ImagenetClassIndex> {
        let path = get_file(
            "imagenet_class_index.json",
            CLASS_INDEX_URL,
            Some(CLASS_INDEX_MD5),
        )?;
        ImagenetClassIndex::from_file(path)
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
/// (cached in `$KERAS_HOME/models`, or downloaded from Keras's URL and verified).
pub fn decode_predictions(preds: &Tensor, top: usize) -> Result<Vec<Vec<DecodedPrediction>>> {
    ImagenetClassIndex::keras()?.decode(preds, top)
}
