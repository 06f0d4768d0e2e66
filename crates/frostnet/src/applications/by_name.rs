//! Every built-in application, in one table: its CLI name (Keras's module-style names:
//! `inception_v3`, `mobilenet_v2`, `efficientnet_b0`), Keras's module and constructor, its default
//! and minimum input side, its `preprocess_input` mode, its builder and the ImageNet file Keras
//! downloads for it. [`Application`](super::Application), `frostnet summary/fit/tune --app` and
//! `frostnet predict` all read this table, so a new application is one entry here.

use super::keras_weights::ImagenetFile;
use super::mobilenet_v3::MobileNetV3Size;
use super::{Application, ApplicationOptions};
use crate::error::{Error, Result};
use crate::models::Model;

type Builder = fn(&ApplicationOptions) -> Result<Model>;
/// `(include_top, square input side if known)` to the file Keras downloads.
type WeightsFile = fn(bool, Option<usize>) -> Result<ImagenetFile>;

/// What `keras.applications.<module>.preprocess_input` does to 0..255 RGB images (the modes of
/// Keras's `imagenet_utils.preprocess_input`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreprocessMode {
    /// RGB to BGR, then the ImageNet mean subtracted per channel (VGG16, ResNet50/101/152).
    Caffe,
    /// Scaled to [-1, 1] (Inception, Xception, MobileNet, MobileNetV2, ResNetV2, NASNet).
    Tf,
    /// Scaled to [0, 1], then normalised by the ImageNet mean and standard deviation (DenseNet).
    Torch,
    /// A pass-through: the model rescales inside (EfficientNet, EfficientNetV2, MobileNetV3,
    /// ConvNeXt).
    Identity,
}

impl PreprocessMode {
    /// Keras's name of the mode (`"caffe"`, `"tf"`, `"torch"`; `"identity"` for a pass-through).
    pub fn name(self) -> &'static str {
        match self {
            PreprocessMode::Caffe => "caffe",
            PreprocessMode::Tf => "tf",
            PreprocessMode::Torch => "torch",
            PreprocessMode::Identity => "identity",
        }
    }
}

/// One built-in application.
pub struct AppSpec {
    pub app: Application,
    /// The CLI name (`resnet50_v2`).
    pub name: &'static str,
    /// The `keras.applications` module holding its `preprocess_input` (`resnet_v2`).
    pub module: &'static str,
    /// The Keras constructor (`ResNet50V2`).
    pub constructor: &'static str,
    /// The name Keras gives the model with default options (`resnet50v2`); MobileNet and
    /// MobileNetV2 put their alpha and size in it (`mobilenetv2_1.00_224`).
    pub model_name: &'static str,
    /// The ImageNet input side the weights were trained at.
    pub default_size: usize,
    /// The smallest input side Keras accepts.
    pub min_size: usize,
    pub preprocess: PreprocessMode,
    /// Where `frostnet tune --app` may start fine-tuning by default (besides `none`): the first
    /// layers of the base's last blocks, as Keras's guides fine-tune them.
    pub fine_tune_at: &'static [&'static str],
    build: Builder,
    weights: WeightsFile,
}

impl AppSpec {
    /// Builds the architecture (and loads `opts.weights`, `"imagenet"` included).
    pub fn build(&self, opts: &ApplicationOptions) -> Result<Model> {
        (self.build)(opts)
    }

    /// The file Keras downloads for `weights="imagenet"` with or without the top, for square
    /// inputs of side `rows` (MobileNet and MobileNetV2 have one file per size Keras trained;
    /// other sizes, or `None`, load the 224 file as in Keras).
    pub fn imagenet_file(&self, include_top: bool, rows: Option<usize>) -> Result<ImagenetFile> {
        (self.weights)(include_top, rows)
    }
}

const KERAS_APPS: &str = "https://storage.googleapis.com/tensorflow/keras-applications/";

fn legacy(
    dir: &str,
    name: &str,
    include_top: bool,
    hashes: (&'static str, &'static str),
) -> ImagenetFile {
    let (tail, hash) = if include_top {
        ("", hashes.0)
    } else {
        ("_notop", hashes.1)
    };
    ImagenetFile::new(
        format!("{dir}/{name}_weights_tf_dim_ordering_tf_kernels{tail}.h5"),
        Some(hash),
    )
}

fn inception_v3_file(top: bool, _: Option<usize>) -> Result<ImagenetFile> {
    Ok(legacy(
        "inception_v3",
        "inception_v3",
        top,
        (
            "9a0d58056eeedaa3f26cb7ebd46da564",
            "bcbd6486424b2319ff4ef7d526e38f63",
        ),
    ))
}

fn resnet50_file(top: bool, _: Option<usize>) -> Result<ImagenetFile> {
    Ok(legacy(
        "resnet",
        "resnet50",
        top,
        (
            "2cb95161c43110f7111970584f804107",
            "4d473c1dd8becc155b73f8504c6f6626",
        ),
    ))
}

fn vgg16_file(top: bool, _: Option<usize>) -> Result<ImagenetFile> {
    Ok(legacy(
        "vgg16",
        "vgg16",
        top,
        (
            "64373286793e3c8b2b4e3219cbf3544b",
            "6d6bbae143d832006294945121d1f1fc",
        ),
    ))
}

/// Keras publishes no hash for MobileNetV2; one file per trained size (224 for any other).
fn mobilenet_v2_file(top: bool, rows: Option<usize>) -> Result<ImagenetFile> {
    let rows = rows
        .filter(|r| [96, 128, 160, 192, 224].contains(r))
        .unwrap_or(224);
    let tail = if top { "" } else { "_no_top" };
    let file = format!("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}{tail}.h5");
    Ok(ImagenetFile {
        url: format!("{KERAS_APPS}mobilenet_v2/{file}"),
        file,
        hash: None,
    })
}

fn mobilenet_file(top: bool, rows: Option<usize>) -> Result<ImagenetFile> {
    let mut opts = super::MobileNetOptions::default();
    opts.base.include_top = top;
    let rows = rows
        .filter(|r| [128, 160, 192, 224].contains(r))
        .or(Some(224));
    super::mobilenet::imagenet_file(&opts, rows, rows)
}

fn mobilenet_v3_file(size: MobileNetV3Size, top: bool) -> Result<ImagenetFile> {
    let mut opts = super::MobileNetV3Options::default();
    opts.app.include_top = top;
    super::mobilenet_v3::imagenet_file(size, &opts)
}

macro_rules! spec {
    ($app:ident, $name:literal, $module:literal, $ctor:literal, $model:literal, $size:literal,
     $min:literal, $mode:ident, [$($ft:literal),*], $build:expr, $weights:expr) => {
        AppSpec {
            app: Application::$app,
            name: $name,
            module: $module,
            constructor: $ctor,
            model_name: $model,
            default_size: $size,
            min_size: $min,
            preprocess: PreprocessMode::$mode,
            fine_tune_at: &[$($ft),*],
            build: $build,
            weights: $weights,
        }
    };
}

macro_rules! resnet {
    ($app:ident, $name:literal, $module:literal, $ctor:literal, $model:literal, $mode:ident,
     [$($ft:literal),*], $build:expr) => {
        spec!($app, $name, $module, $ctor, $model, 224, 32, $mode, [$($ft),*], $build,
            |top, _| Ok(super::resnet::imagenet_file($model, top)))
    };
}

macro_rules! efficientnet {
    ($app:ident, $name:literal, $ctor:literal, $model:literal, $size:literal, $v:literal,
     $build:expr) => {
        spec!(
            $app,
            $name,
            "efficientnet",
            $ctor,
            $model,
            $size,
            32,
            Identity,
            ["block7a_expand_conv", "block6a_expand_conv"],
            $build,
            |top, _| super::efficientnet::imagenet_file($v, top)
        )
    };
}

macro_rules! efficientnet_v2 {
    ($app:ident, $name:literal, $ctor:literal, $model:literal, $size:literal, $v:literal,
     $build:expr) => {
        spec!(
            $app,
            $name,
            "efficientnet_v2",
            $ctor,
            $model,
            $size,
            32,
            Identity,
            ["block6a_expand_conv", "block5a_expand_conv"],
            $build,
            |top, _| super::efficientnet_v2::imagenet_file($v, top)
        )
    };
}

/// Every built-in application, in [`Application`]'s order: variant, CLI name, Keras module,
/// constructor, model name, default and minimum input side, `preprocess_input` mode, default
/// fine-tuning layers, builder, ImageNet file.
#[rustfmt::skip]
pub const APPLICATIONS: &[AppSpec] = &[
    spec!(InceptionV3, "inception_v3", "inception_v3", "InceptionV3", "inception_v3", 299, 75, Tf,
        ["mixed9", "mixed8", "mixed7"], super::inception_v3, inception_v3_file),
    spec!(ResNet50, "resnet50", "resnet50", "ResNet50", "resnet50", 224, 32, Caffe,
        ["conv5_block3_1_conv", "conv5_block1_1_conv"], super::resnet50, resnet50_file),
    spec!(MobileNetV2, "mobilenet_v2", "mobilenet_v2", "MobileNetV2", "mobilenetv2_1.00_224",
        224, 32, Tf, ["block_16_expand", "block_13_expand"], super::mobilenet_v2,
        mobilenet_v2_file),
    spec!(Vgg16, "vgg16", "vgg16", "VGG16", "vgg16", 224, 32, Caffe,
        ["block5_conv1", "block4_conv1"], super::vgg16, vgg16_file),
    resnet!(ResNet101, "resnet101", "resnet", "ResNet101", "resnet101", Caffe,
        ["conv5_block3_1_conv", "conv5_block1_1_conv"], super::resnet101),
    resnet!(ResNet152, "resnet152", "resnet", "ResNet152", "resnet152", Caffe,
        ["conv5_block3_1_conv", "conv5_block1_1_conv"], super::resnet152),
    resnet!(ResNet50V2, "resnet50_v2", "resnet_v2", "ResNet50V2", "resnet50v2", Tf,
        ["conv5_block3_preact_bn", "conv5_block1_preact_bn"], super::resnet50_v2),
    resnet!(ResNet101V2, "resnet101_v2", "resnet_v2", "ResNet101V2", "resnet101v2", Tf,
        ["conv5_block3_preact_bn", "conv5_block1_preact_bn"], super::resnet101_v2),
    resnet!(ResNet152V2, "resnet152_v2", "resnet_v2", "ResNet152V2", "resnet152v2", Tf,
        ["conv5_block3_preact_bn", "conv5_block1_preact_bn"], super::resnet152_v2),
    spec!(Xception, "xception", "xception", "Xception", "xception", 299, 71, Tf,
        ["block14_sepconv1", "block13_sepconv1_act"], super::xception,
        |top, _| Ok(super::xception::imagenet_file(top))),
    spec!(DenseNet121, "densenet121", "densenet", "DenseNet121", "densenet121", 224, 32, Torch,
        ["conv5_block9_0_bn", "conv5_block1_0_bn"], super::densenet121,
        |top, _| Ok(super::densenet::imagenet_file_of("densenet121", top))),
    spec!(DenseNet169, "densenet169", "densenet", "DenseNet169", "densenet169", 224, 32, Torch,
        ["conv5_block17_0_bn", "conv5_block1_0_bn"], super::densenet169,
        |top, _| Ok(super::densenet::imagenet_file_of("densenet169", top))),
    spec!(DenseNet201, "densenet201", "densenet", "DenseNet201", "densenet201", 224, 32, Torch,
        ["conv5_block17_0_bn", "conv5_block1_0_bn"], super::densenet201,
        |top, _| Ok(super::densenet::imagenet_file_of("densenet201", top))),
    spec!(MobileNet, "mobilenet", "mobilenet", "MobileNet", "mobilenet_1.00_224", 224, 32, Tf,
        ["conv_dw_13", "conv_dw_12"], super::mobilenet, mobilenet_file),
    spec!(InceptionResNetV2, "inception_resnet_v2", "inception_resnet_v2", "InceptionResNetV2",
        "inception_resnet_v2", 299, 75, Tf, ["block8_1_conv", "mixed_7a"],
        super::inception_resnet_v2, |top, _| Ok(super::inception_resnet_v2::imagenet_file(top))),
    spec!(NasNetMobile, "nasnet_mobile", "nasnet", "NASNetMobile", "nasnet_mobile", 224, 32, Tf,
        ["normal_conv_1_12", "normal_conv_1_10"], super::nasnet_mobile,
        |top, _| Ok(super::nasnet::imagenet_file(top))),
    efficientnet!(EfficientNetB0, "efficientnet_b0", "EfficientNetB0", "efficientnetb0", 224, 0,
        super::efficientnet_b0),
    efficientnet!(EfficientNetB1, "efficientnet_b1", "EfficientNetB1", "efficientnetb1", 240, 1,
        super::efficientnet_b1),
    efficientnet!(EfficientNetB2, "efficientnet_b2", "EfficientNetB2", "efficientnetb2", 260, 2,
        super::efficientnet_b2),
    efficientnet!(EfficientNetB3, "efficientnet_b3", "EfficientNetB3", "efficientnetb3", 300, 3,
        super::efficientnet_b3),
    efficientnet!(EfficientNetB4, "efficientnet_b4", "EfficientNetB4", "efficientnetb4", 380, 4,
        super::efficientnet_b4),
    efficientnet!(EfficientNetB5, "efficientnet_b5", "EfficientNetB5", "efficientnetb5", 456, 5,
        super::efficientnet_b5),
    efficientnet!(EfficientNetB6, "efficientnet_b6", "EfficientNetB6", "efficientnetb6", 528, 6,
        super::efficientnet_b6),
    efficientnet!(EfficientNetB7, "efficientnet_b7", "EfficientNetB7", "efficientnetb7", 600, 7,
        super::efficientnet_b7),
    efficientnet_v2!(EfficientNetV2B0, "efficientnet_v2_b0", "EfficientNetV2B0",
        "efficientnetv2-b0", 224, "b0", super::efficientnet_v2_b0),
    efficientnet_v2!(EfficientNetV2B1, "efficientnet_v2_b1", "EfficientNetV2B1",
        "efficientnetv2-b1", 240, "b1", super::efficientnet_v2_b1),
    efficientnet_v2!(EfficientNetV2B2, "efficientnet_v2_b2", "EfficientNetV2B2",
        "efficientnetv2-b2", 260, "b2", super::efficientnet_v2_b2),
    efficientnet_v2!(EfficientNetV2B3, "efficientnet_v2_b3", "EfficientNetV2B3",
        "efficientnetv2-b3", 300, "b3", super::efficientnet_v2_b3),
    efficientnet_v2!(EfficientNetV2S, "efficientnet_v2_s", "EfficientNetV2S",
        "efficientnetv2-s", 384, "s", super::efficientnet_v2_s),
    spec!(MobileNetV3Small, "mobilenet_v3_small", "mobilenet_v3", "MobileNetV3Small",
        "MobileNetV3Small", 224, 32, Identity,
        ["expanded_conv_10_expand", "expanded_conv_8_expand"], super::mobilenet_v3_small,
        |top, _| mobilenet_v3_file(MobileNetV3Size::Small, top)),
    spec!(MobileNetV3Large, "mobilenet_v3_large", "mobilenet_v3", "MobileNetV3Large",
        "MobileNetV3Large", 224, 32, Identity,
        ["expanded_conv_14_expand", "expanded_conv_12_expand"], super::mobilenet_v3_large,
        |top, _| mobilenet_v3_file(MobileNetV3Size::Large, top)),
    spec!(ConvNeXtTiny, "convnext_tiny", "convnext", "ConvNeXtTiny", "convnext_tiny", 224, 32,
        Identity,
        ["convnext_tiny_downsampling_block_2", "convnext_tiny_stage_2_block_6_depthwise_conv"],
        super::convnext_tiny, |top, _| Ok(super::convnext::imagenet_file(top))),
];

/// The application with CLI name `name`, if any.
pub fn find(name: &str) -> Option<&'static AppSpec> {
    APPLICATIONS.iter().find(|a| a.name == name)
}

/// Whether `name` is in this table.
pub fn knows(name: &str) -> bool {
    find(name).is_some()
}

/// The error for a name not in this table, listing the known ones.
pub(crate) fn unknown(name: &str) -> Error {
    Error::InvalidConfig(format!(
        "unknown application '{name}' (known: {})",
        APPLICATIONS
            .iter()
            .map(|a| a.name)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Builds the application with CLI name `name`.
pub fn build_by_name(name: &str, opts: &ApplicationOptions) -> Result<Model> {
    find(name).ok_or_else(|| unknown(name))?.build(opts)
}
