//! MobileNetV3Small and MobileNetV3Large (Howard et al., 2019), built as
//! `keras.applications.MobileNetV3*` builds them: `Rescaling(1/127.5, offset=-1)` inside the model
//! (`include_preprocessing`), inverted residual blocks `expanded_conv_{i}_` with hard-swish or
//! ReLU, squeeze-and-excitation whose gate is Keras's `hard_sigmoid` written as ops
//! (`ReLU(6)(x + 3) * (1/6)`, see [`ScalarOp`]), the `minimalistic` variant (3x3 kernels, ReLU,
//! no squeeze-and-excitation), and a 1x1-convolution classifier. The input size stays unknown by
//! default, with or without the classifier, as in Keras.

use super::efficientnet::correct_pad;
use super::keras_weights::{self, ImagenetFile};
use super::{named, ApplicationOptions, Pooling};
use crate::error::{Error, Result};
use crate::layers::{
    naming, Activation, ActivationFn, Add, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout,
    Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, Multiply, ReLU, Rescaling,
    ScalarOp, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.MobileNetV3Small` / `MobileNetV3Large`'s arguments.
#[derive(Clone, Debug)]
pub struct MobileNetV3Options {
    pub app: ApplicationOptions,
    /// Width multiplier (Keras's `alpha`; ImageNet weights exist for 0.75 and 1.0).
    pub alpha: f64,
    /// 3x3 kernels, ReLU and no squeeze-and-excitation.
    pub minimalistic: bool,
    /// Whether the model rescales its 0..255 input to [-1, 1] itself.
    pub include_preprocessing: bool,
    /// Dropout before the classifier.
    pub dropout_rate: f32,
}

impl Default for MobileNetV3Options {
    /// Keras's defaults, except `weights=None`.
    fn default() -> Self {
        MobileNetV3Options {
            app: ApplicationOptions::default(),
            alpha: 1.0,
            minimalistic: false,
            include_preprocessing: true,
            dropout_rate: 0.2,
        }
    }
}

/// Where Keras downloads the MobileNetV3 ImageNet weights from.
const BASE_WEIGHT_PATH: &str =
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/";

/// Keras's `WEIGHTS_HASHES`: `(with top, without)` per `{type}{_minimalistic}_224_{alpha}_float`.
const WEIGHTS_HASHES: [(&str, &str, &str); 6] = [
    (
        "large_224_0.75_float",
        "765b44a33ad4005b3ac83185abf1d0eb",
        "40af19a13ebea4e2ee0c676887f69a2e",
    ),
    (
        "large_224_1.0_float",
        "59e551e166be033d707958cf9e29a6a7",
        "07fb09a5933dd0c8eaafa16978110389",
    ),
    (
        "large_minimalistic_224_1.0_float",
        "675e7b876c45c57e9e63e6d90a36599c",
        "ec5221f64a2f6d1ef965a614bdae7973",
    ),
    (
        "small_224_0.75_float",
        "cb65d4e5be93758266aa0a7f2c6708b7",
        "ebdb5cc8e0b497cd13a7c275d475c819",
    ),
    (
        "small_224_1.0_float",
        "8768d4c2e7dee89b9d02b2d03d65d862",
        "d3e8ec802a04aa4fc771ee12a9a9b836",
    ),
    (
        "small_minimalistic_224_1.0_float",
        "99cd97fb2fcdad2bf028eb838de69e37",
        "cde8136e733e811080d9fcd8a252f7e4",
    ),
];

/// Which stack: Small or Large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MobileNetV3Size {
    Small,
    Large,
}

/// Which nonlinearity a block uses: ReLU or the model's (hard-swish, or ReLU when minimalistic).
#[derive(Clone, Copy)]
enum Act {
    Relu,
    Model,
}

/// `(expansion, filters, kernel (0 = the model's), stride, squeeze-and-excite, activation)`.
type Row = (f64, usize, usize, usize, bool, Act);

const SMALL: [Row; 11] = [
    (1.0, 16, 3, 2, true, Act::Relu),
    (72.0 / 16.0, 24, 3, 2, false, Act::Relu),
    (88.0 / 24.0, 24, 3, 1, false, Act::Relu),
    (4.0, 40, 0, 2, true, Act::Model),
    (6.0, 40, 0, 1, true, Act::Model),
    (6.0, 40, 0, 1, true, Act::Model),
    (3.0, 48, 0, 1, true, Act::Model),
    (3.0, 48, 0, 1, true, Act::Model),
    (6.0, 96, 0, 2, true, Act::Model),
    (6.0, 96, 0, 1, true, Act::Model),
    (6.0, 96, 0, 1, true, Act::Model),
];

const LARGE: [Row; 15] = [
    (1.0, 16, 3, 1, false, Act::Relu),
    (4.0, 24, 3, 2, false, Act::Relu),
    (3.0, 24, 3, 1, false, Act::Relu),
    (3.0, 40, 0, 2, true, Act::Relu),
    (3.0, 40, 0, 1, true, Act::Relu),
    (3.0, 40, 0, 1, true, Act::Relu),
    (6.0, 80, 3, 2, false, Act::Model),
    (2.5, 80, 3, 1, false, Act::Model),
    (2.3, 80, 3, 1, false, Act::Model),
    (2.3, 80, 3, 1, false, Act::Model),
    (6.0, 112, 3, 1, true, Act::Model),
    (6.0, 112, 3, 1, true, Act::Model),
    (6.0, 160, 0, 2, true, Act::Model),
    (6.0, 160, 0, 1, true, Act::Model),
    (6.0, 160, 0, 1, true, Act::Model),
];

/// Keras's `_depth`: the multiple of 8 nearest `v`, never below 8 nor 10% below `v`.
fn depth(v: f64) -> usize {
    let mut new = (((v + 4.0) as usize) / 8 * 8).max(8);
    if (new as f64) < 0.9 * v {
        new += 8;
    }
    new
}

/// `keras.applications.MobileNetV3Small` with Keras's defaults besides `opts`.
pub fn mobilenet_v3_small(opts: &ApplicationOptions) -> Result<Model> {
    mobilenet_v3(
        MobileNetV3Size::Small,
        &MobileNetV3Options {
            app: opts.clone(),
            ..Default::default()
        },
    )
}

/// `keras.applications.MobileNetV3Large` with Keras's defaults besides `opts`.
pub fn mobilenet_v3_large(opts: &ApplicationOptions) -> Result<Model> {
    mobilenet_v3(
        MobileNetV3Size::Large,
        &MobileNetV3Options {
            app: opts.clone(),
            ..Default::default()
        },
    )
}

/// Builds MobileNetV3Small or Large with fresh default names.
pub fn mobilenet_v3(size: MobileNetV3Size, opts: &MobileNetV3Options) -> Result<Model> {
    let model_name = match size {
        MobileNetV3Size::Small => "MobileNetV3Small",
        MobileNetV3Size::Large => "MobileNetV3Large",
    };
    let app = &opts.app;
    if app.include_top && app.classes == 0 {
        return Err(Error::InvalidConfig(format!(
            "{model_name}: classes must be at least 1"
        )));
    }
    if !(opts.alpha > 0.0 && opts.alpha.is_finite()) {
        return Err(Error::InvalidConfig(format!(
            "{model_name}: alpha must be a positive number, got {}",
            opts.alpha
        )));
    }
    if !(0.0..1.0).contains(&opts.dropout_rate) {
        return Err(Error::InvalidConfig(format!(
            "{model_name}: dropout_rate must be in [0, 1), got {}",
            opts.dropout_rate
        )));
    }
    keras_weights::check_imagenet_classes(model_name, app)?;
    let shape: Shape = app
        .input_shape
        .map_or(vec![None, None, Some(3)], |s| s.to_vec());
    if shape[2].is_none() {
        return Err(Error::InvalidConfig(format!(
            "{model_name}: the number of input channels must be known"
        )));
    }
    if let (Some(r), Some(c)) = (shape[0], shape[1]) {
        if r < 32 || c < 32 {
            return Err(Error::InvalidConfig(format!(
                "{model_name}: input size must be at least 32x32; received {r}x{c}"
            )));
        }
    }
    let imagenet = app.weights.as_deref() == Some("imagenet");
    if imagenet {
        let ok = if opts.minimalistic {
            opts.alpha == 1.0
        } else {
            opts.alpha == 0.75 || opts.alpha == 1.0
        };
        if !ok {
            return Err(Error::InvalidConfig(format!(
                "{model_name}: ImageNet weights exist for alpha 0.75 or 1.0 (1.0 only when \
                 minimalistic), got {}",
                opts.alpha
            )));
        }
        if shape[0] != shape[1] || shape[0] != Some(224) {
            eprintln!(
                "warning: `input_shape` is undefined or non-square, or `rows` is not 224. \
                 Weights for input shape (224, 224) will be loaded as the default."
            );
        }
    }
    let model = naming::with_fresh_names(|| build(size, model_name, opts, shape));
    keras_weights::load(model, app, || imagenet_file(size, opts))
}

/// Keras's file for MobileNetV3's `weights="imagenet"` (per size, alpha and `minimalistic`).
pub(crate) fn imagenet_file(
    size: MobileNetV3Size,
    opts: &MobileNetV3Options,
) -> Result<ImagenetFile> {
    let (model_name, kind) = match size {
        MobileNetV3Size::Small => ("MobileNetV3Small", "small"),
        MobileNetV3Size::Large => ("MobileNetV3Large", "large"),
    };
    // Python's `str(alpha)`: `1.0`, `0.75`.
    let alpha = if opts.alpha.fract() == 0.0 {
        format!("{:.1}", opts.alpha)
    } else {
        opts.alpha.to_string()
    };
    let minimal = if opts.minimalistic {
        "_minimalistic"
    } else {
        ""
    };
    let key = format!("{kind}{minimal}_224_{alpha}_float");
    let (_, top, notop) = WEIGHTS_HASHES
        .iter()
        .find(|h| h.0 == key)
        .copied()
        .ok_or_else(|| Error::InvalidConfig(format!("{model_name}: no weights for {key}")))?;
    let (file, hash) = if opts.app.include_top {
        (format!("weights_mobilenet_v3_{key}.h5"), top)
    } else {
        (format!("weights_mobilenet_v3_{key}_no_top_v2.h5"), notop)
    };
    Ok(ImagenetFile {
        url: format!("{BASE_WEIGHT_PATH}{file}"),
        file,
        hash: Some(hash),
    })
}

fn bn(name: &str) -> BatchNormalization {
    named(BatchNormalization::new, name)
        .epsilon(1e-3)
        .momentum(0.999)
}

/// The unnamed activation Keras applies: `ReLU()` (`re_lu_N`) or `Activation("hard_swish")`
/// (`activation_N`).
fn activate(g: &mut Functional, x: SymbolicTensor, relu: bool) -> Result<SymbolicTensor> {
    if relu {
        g.call(ReLU::new(), &[x])
    } else {
        g.call(Activation::new(ActivationFn::HardSilu), &[x])
    }
}

/// Keras's `hard_sigmoid` in `mobilenet_v3.py`: `ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`.
fn hard_sigmoid(g: &mut Functional, x: SymbolicTensor) -> Result<SymbolicTensor> {
    let x = g.call(ScalarOp::add(3.0), &[x])?;
    let x = g.call(ReLU::new().max_value(6.0), &[x])?;
    g.call(ScalarOp::multiply((1.0f64 / 6.0) as f32), &[x])
}

/// Keras's `_se_block`.
fn se_block(
    g: &mut Functional,
    inputs: SymbolicTensor,
    filters: usize,
    p: &str,
) -> Result<SymbolicTensor> {
    let mut x = g.call(
        named(
            || GlobalAveragePooling2D::new().keepdims(true),
            &format!("{p}squeeze_excite_avg_pool"),
        ),
        &[inputs],
    )?;
    x = g.call(
        named(
            || Conv2D::new(depth(filters as f64 * 0.25), 1).padding(Padding::Same),
            &format!("{p}squeeze_excite_conv"),
        ),
        &[x],
    )?;
    x = g.call(named(ReLU::new, &format!("{p}squeeze_excite_relu")), &[x])?;
    x = g.call(
        named(
            || Conv2D::new(filters, 1).padding(Padding::Same),
            &format!("{p}squeeze_excite_conv_1"),
        ),
        &[x],
    )?;
    x = hard_sigmoid(g, x)?;
    g.call(
        named(Multiply::new, &format!("{p}squeeze_excite_mul")),
        &[inputs, x],
    )
}

/// Keras's `_inverted_res_block`.
#[allow(clippy::too_many_arguments)]
fn inverted_res_block(
    g: &mut Functional,
    x: SymbolicTensor,
    expansion: f64,
    filters: usize,
    kernel: usize,
    stride: usize,
    se: bool,
    relu: bool,
    block_id: usize,
) -> Result<SymbolicTensor> {
    let shortcut = x;
    let infilters = g.shape(x)?[2].unwrap_or(0);
    let expanded = depth(infilters as f64 * expansion);
    let mut x = x;
    let prefix = if block_id > 0 {
        let p = format!("expanded_conv_{block_id}_");
        x = g.call(
            named(
                || {
                    Conv2D::new(expanded, 1)
                        .padding(Padding::Same)
                        .use_bias(false)
                },
                &format!("{p}expand"),
            ),
            &[x],
        )?;
        x = g.call(bn(&format!("{p}expand_bn")), &[x])?;
        x = activate(g, x, relu)?;
        p
    } else {
        "expanded_conv_".to_string()
    };
    if stride == 2 {
        let pad = correct_pad(g.shape(x)?, kernel);
        x = g.call(
            named(
                || ZeroPadding2D::with_padding(pad),
                &format!("{prefix}depthwise_pad"),
            ),
            &[x],
        )?;
    }
    let padding = if stride == 1 {
        Padding::Same
    } else {
        Padding::Valid
    };
    x = g.call(
        named(
            || {
                DepthwiseConv2D::new(kernel)
                    .strides(stride)
                    .padding(padding)
                    .use_bias(false)
            },
            &format!("{prefix}depthwise"),
        ),
        &[x],
    )?;
    x = g.call(bn(&format!("{prefix}depthwise_bn")), &[x])?;
    x = activate(g, x, relu)?;
    if se {
        x = se_block(g, x, expanded, &prefix)?;
    }
    x = g.call(
        named(
            || {
                Conv2D::new(filters, 1)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            &format!("{prefix}project"),
        ),
        &[x],
    )?;
    x = g.call(bn(&format!("{prefix}project_bn")), &[x])?;
    if stride == 1 && infilters == filters {
        x = g.call(named(Add::new, &format!("{prefix}add")), &[shortcut, x])?;
    }
    Ok(x)
}

fn build(
    size: MobileNetV3Size,
    model_name: &str,
    opts: &MobileNetV3Options,
    shape: Shape,
) -> Result<Model> {
    let app = &opts.app;
    let (kernel, model_relu, se_on) = if opts.minimalistic {
        (3, true, false)
    } else {
        (5, false, true)
    };
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = input;
    if opts.include_preprocessing {
        x = g.call(Rescaling::new((1.0f64 / 127.5) as f32).offset(-1.0), &[x])?;
    }
    x = g.call(
        named(
            || {
                Conv2D::new(16, 3)
                    .strides(2)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            "conv",
        ),
        &[x],
    )?;
    x = g.call(bn("conv_bn"), &[x])?;
    x = activate(&mut g, x, model_relu)?;
    let (rows, last_point_ch): (&[Row], usize) = match size {
        MobileNetV3Size::Small => (&SMALL, 1024),
        MobileNetV3Size::Large => (&LARGE, 1280),
    };
    for (id, &(expansion, filters, k, stride, se, act)) in rows.iter().enumerate() {
        let k = if k == 0 { kernel } else { k };
        let relu = match act {
            Act::Relu => true,
            Act::Model => model_relu,
        };
        let filters = depth(filters as f64 * opts.alpha);
        x = inverted_res_block(
            &mut g,
            x,
            expansion,
            filters,
            k,
            stride,
            se && se_on,
            relu,
            id,
        )?;
    }
    let channels = g.shape(x)?[2].unwrap_or(0);
    let last_conv_ch = depth(channels as f64 * 6.0);
    let last_point_ch = if opts.alpha > 1.0 {
        depth(last_point_ch as f64 * opts.alpha)
    } else {
        last_point_ch
    };
    x = g.call(
        named(
            || {
                Conv2D::new(last_conv_ch, 1)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            "conv_1",
        ),
        &[x],
    )?;
    x = g.call(bn("conv_1_bn"), &[x])?;
    x = activate(&mut g, x, model_relu)?;
    if app.include_top {
        x = g.call(GlobalAveragePooling2D::new().keepdims(true), &[x])?;
        x = g.call(
            named(
                || Conv2D::new(last_point_ch, 1).padding(Padding::Same),
                "conv_2",
            ),
            &[x],
        )?;
        x = activate(&mut g, x, model_relu)?;
        if opts.dropout_rate > 0.0 {
            x = g.call(Dropout::new(opts.dropout_rate), &[x])?;
        }
        x = g.call(
            named(
                || Conv2D::new(app.classes, 1).padding(Padding::Same),
                "logits",
            ),
            &[x],
        )?;
        x = g.call(Flatten::new(), &[x])?;
        x = g.call(
            named(|| Activation::new(app.classifier_activation), "predictions"),
            &[x],
        )?;
    } else {
        match app.pooling {
            Some(Pooling::Avg) => {
                x = g.call(named(GlobalAveragePooling2D::new, "avg_pool"), &[x])?
            }
            Some(Pooling::Max) => x = g.call(named(GlobalMaxPooling2D::new, "max_pool"), &[x])?,
            None => {}
        }
    }
    g.build_named(model_name, &[input], &[x])
}
