//! EfficientNetB0 to B7 (Tan & Le, 2019), built as `keras.applications.EfficientNetB*` builds
//! them: one builder scaled by a width, a depth and a resolution coefficient; preprocessing inside
//! the model (`Rescaling(1/255)` then `Normalization`, plus Keras's per-channel `Rescaling` by
//! `1/sqrt(stddev)` when the ImageNet weights are loaded); MBConv blocks `block{i}{a..}_` with
//! swish, squeeze-and-excitation (`GlobalAveragePooling2D` → `Reshape` → two 1x1 convolutions →
//! a broadcasting `Multiply`) and drop-connect `Dropout` before each identity shortcut.

use super::keras_weights::{self, ImagenetFile};
use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D,
    Dropout, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, Multiply, Normalization, Rescaling,
    Reshape, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.EfficientNetB*`'s arguments.
pub type EfficientNetOptions = ApplicationOptions;

/// Where Keras downloads the EfficientNet ImageNet weights from.
const BASE_WEIGHTS_PATH: &str = "https://storage.googleapis.com/keras-applications/";

/// Keras's `IMAGENET_STDDEV_RGB`: the third preprocessing layer (ImageNet weights only) divides
/// by the square root of these, since the stored `Normalization` variance is the stddev itself.
const IMAGENET_STDDEV_RGB: [f64; 3] = [0.229, 0.224, 0.225];

/// One EfficientNet variant: Keras's `EfficientNet(width, depth, size, dropout)` call and its
/// published hashes `(with top, without)`.
struct Variant {
    width: f64,
    depth: f64,
    default_size: usize,
    dropout_rate: f32,
    hashes: (&'static str, &'static str),
}

const VARIANTS: [Variant; 8] = [
    Variant {
        width: 1.0,
        depth: 1.0,
        default_size: 224,
        dropout_rate: 0.2,
        hashes: (
            "902e53a9f72be733fc0bcb005b3ebbac",
            "50bc09e76180e00e4465e1a485ddc09d",
        ),
    },
    Variant {
        width: 1.0,
        depth: 1.1,
        default_size: 240,
        dropout_rate: 0.2,
        hashes: (
            "1d254153d4ab51201f1646940f018540",
            "74c4e6b3e1f6a1eea24c589628592432",
        ),
    },
    Variant {
        width: 1.1,
        depth: 1.2,
        default_size: 260,
        dropout_rate: 0.3,
        hashes: (
            "b15cce36ff4dcbd00b6dd88e7857a6ad",
            "111f8e2ac8aa800a7a99e3239f7bfb39",
        ),
    },
    Variant {
        width: 1.2,
        depth: 1.4,
        default_size: 300,
        dropout_rate: 0.3,
        hashes: (
            "ffd1fdc53d0ce67064dc6a9c7960ede0",
            "af6d107764bb5b1abb91932881670226",
        ),
    },
    Variant {
        width: 1.4,
        depth: 1.8,
        default_size: 380,
        dropout_rate: 0.4,
        hashes: (
            "18c95ad55216b8f92d7e70b3a046e2fc",
            "ebc24e6d6c33eaebbd558eafbeedf1ba",
        ),
    },
    Variant {
        width: 1.6,
        depth: 2.2,
        default_size: 456,
        dropout_rate: 0.4,
        hashes: (
            "ace28f2a6363774853a83a0b21b9421a",
            "38879255a25d3c92d5e44e04ae6cec6f",
        ),
    },
    Variant {
        width: 1.8,
        depth: 2.6,
        default_size: 528,
        dropout_rate: 0.5,
        hashes: (
            "165f6e37dce68623721b423839de8be5",
            "9ecce42647a20130c1f39a5d4cb75743",
        ),
    },
    Variant {
        width: 2.0,
        depth: 3.1,
        default_size: 600,
        dropout_rate: 0.5,
        hashes: (
            "8c03f828fec3ef71311cd463b6759d99",
            "cbcfe4450ddf6f3ad90b1b398090fe4a",
        ),
    },
];

/// Keras's `DEFAULT_BLOCKS_ARGS`: `(kernel, repeats, filters_in, filters_out, expand_ratio,
/// strides)`; every block has `id_skip=True` and `se_ratio=0.25`.
const BLOCKS: [(usize, usize, usize, usize, usize, usize); 7] = [
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
];

/// Keras's `drop_connect_rate` default.
const DROP_CONNECT_RATE: f64 = 0.2;

/// Builds `EfficientNetB{version}` (0 to 7) with fresh default names: default input
/// 224/240/260/300/380/456/528/600 pixels, at least 32.
pub fn efficientnet(version: usize, opts: &EfficientNetOptions) -> Result<Model> {
    let v = VARIANTS.get(version).ok_or_else(|| {
        crate::Error::InvalidConfig(format!(
            "EfficientNetB{version}: no such variant (B0 to B7)"
        ))
    })?;
    let model_name = format!("EfficientNetB{version}");
    keras_weights::check_imagenet_classes(&model_name, opts)?;
    let shape = obtain_input_shape(&model_name, opts, v.default_size, 32)?;
    let name = format!("efficientnetb{version}");
    let model = naming::with_fresh_names(|| build(v, &name, opts, shape));
    keras_weights::load(model, opts, || imagenet_file(version, opts.include_top))
}

/// Keras's file for EfficientNetB`version`'s `weights="imagenet"`.
pub(crate) fn imagenet_file(version: usize, include_top: bool) -> Result<ImagenetFile> {
    let v = VARIANTS.get(version).ok_or_else(|| {
        crate::Error::InvalidConfig(format!(
            "EfficientNetB{version}: no such variant (B0 to B7)"
        ))
    })?;
    let (suffix, hash) = if include_top {
        (".h5", v.hashes.0)
    } else {
        ("_notop.h5", v.hashes.1)
    };
    let file = format!("efficientnetb{version}{suffix}");
    Ok(ImagenetFile {
        url: format!("{BASE_WEIGHTS_PATH}{file}"),
        file,
        hash: Some(hash),
    })
}

macro_rules! variant_fn {
    ($($f:ident = $v:literal),*) => {$(
        #[doc = concat!("`keras.applications.EfficientNetB", $v, "`; see [`efficientnet`].")]
        pub fn $f(opts: &EfficientNetOptions) -> Result<Model> {
            efficientnet($v, opts)
        }
    )*};
}
variant_fn!(
    efficientnet_b0 = 0,
    efficientnet_b1 = 1,
    efficientnet_b2 = 2,
    efficientnet_b3 = 3,
    efficientnet_b4 = 4,
    efficientnet_b5 = 5,
    efficientnet_b6 = 6,
    efficientnet_b7 = 7
);

/// Keras's `round_filters`: scales a channel count by the width coefficient and rounds to a
/// multiple of the divisor, never down by more than 10%.
pub(crate) fn round_filters(filters: usize, width: f64, divisor: usize) -> usize {
    let f = filters as f64 * width;
    let d = divisor as f64;
    let mut new = (((f + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new as f64) < 0.9 * f {
        new += divisor;
    }
    new
}

/// Keras's `imagenet_utils.correct_pad` for a square `kernel` before a stride-2 convolution:
/// `kernel // 2` after, and one less before when the size is even (both when it is unknown).
pub(crate) fn correct_pad(shape: &Shape, kernel: usize) -> ((usize, usize), (usize, usize)) {
    let c = kernel / 2;
    let adjust = |d: Option<usize>| d.map_or(1, |d| 1 - d % 2);
    let (a0, a1) = match (shape[0], shape[1]) {
        (None, _) => (1, 1),
        (h, w) => (adjust(h), adjust(w)),
    };
    ((c - a0, c), (c - a1, c))
}

fn bn(name: &str) -> BatchNormalization {
    named(BatchNormalization::new, name)
}

fn act(name: &str) -> Activation {
    named(|| Activation::new(ActivationFn::Silu), name)
}

fn conv1x1(filters: usize, name: &str) -> Conv2D {
    named(
        || {
            Conv2D::new(filters, 1)
                .padding(Padding::Same)
                .use_bias(false)
        },
        name,
    )
}

/// One MBConv block's arguments (Keras's `block(...)` keywords).
pub(crate) struct BlockArgs {
    pub drop_rate: f64,
    pub filters_in: usize,
    pub filters_out: usize,
    pub kernel: usize,
    pub strides: usize,
    pub expand_ratio: usize,
    pub se_ratio: f64,
}

/// Keras's squeeze-and-excitation as EfficientNet writes it (`{p}se_squeeze` .. `{p}se_excite`):
/// `filters_se` channels in the bottleneck, applied to `x` (with `filters` channels) by a
/// broadcasting multiply.
pub(crate) fn se_block(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    filters_se: usize,
    p: &str,
) -> Result<SymbolicTensor> {
    let mut se = g.call(
        named(GlobalAveragePooling2D::new, &format!("{p}se_squeeze")),
        &[x],
    )?;
    se = g.call(
        named(
            || Reshape::new(&[1, 1, filters as isize]),
            &format!("{p}se_reshape"),
        ),
        &[se],
    )?;
    se = g.call(
        named(
            || {
                Conv2D::new(filters_se, 1)
                    .padding(Padding::Same)
                    .activation(ActivationFn::Silu)
            },
            &format!("{p}se_reduce"),
        ),
        &[se],
    )?;
    se = g.call(
        named(
            || {
                Conv2D::new(filters, 1)
                    .padding(Padding::Same)
                    .activation(ActivationFn::Sigmoid)
            },
            &format!("{p}se_expand"),
        ),
        &[se],
    )?;
    g.call(named(Multiply::new, &format!("{p}se_excite")), &[x, se])
}

/// Keras's `block`: 1x1 expansion (unless `expand_ratio == 1`), depthwise convolution (padded by
/// `correct_pad` when strided), squeeze-and-excitation, 1x1 projection, and the identity shortcut
/// with drop-connect when the shape is unchanged.
fn block(
    g: &mut Functional,
    inputs: SymbolicTensor,
    a: &BlockArgs,
    p: &str,
) -> Result<SymbolicTensor> {
    let filters = a.filters_in * a.expand_ratio;
    let mut x = inputs;
    if a.expand_ratio != 1 {
        x = g.call(conv1x1(filters, &format!("{p}expand_conv")), &[x])?;
        x = g.call(bn(&format!("{p}expand_bn")), &[x])?;
        x = g.call(act(&format!("{p}expand_activation")), &[x])?;
    }
    let padding = if a.strides == 2 {
        let pad = correct_pad(g.shape(x)?, a.kernel);
        x = g.call(
            named(
                || ZeroPadding2D::with_padding(pad),
                &format!("{p}dwconv_pad"),
            ),
            &[x],
        )?;
        Padding::Valid
    } else {
        Padding::Same
    };
    x = g.call(
        named(
            || {
                DepthwiseConv2D::new(a.kernel)
                    .strides(a.strides)
                    .padding(padding)
                    .use_bias(false)
            },
            &format!("{p}dwconv"),
        ),
        &[x],
    )?;
    x = g.call(bn(&format!("{p}bn")), &[x])?;
    x = g.call(act(&format!("{p}activation")), &[x])?;
    if 0.0 < a.se_ratio && a.se_ratio <= 1.0 {
        let filters_se = ((a.filters_in as f64 * a.se_ratio) as usize).max(1);
        x = se_block(g, x, filters, filters_se, p)?;
    }
    x = g.call(conv1x1(a.filters_out, &format!("{p}project_conv")), &[x])?;
    x = g.call(bn(&format!("{p}project_bn")), &[x])?;
    if a.strides == 1 && a.filters_in == a.filters_out {
        if a.drop_rate > 0.0 {
            // Keras drops whole samples here (`noise_shape=(None, 1, 1, 1)`).
            x = g.call(
                named(
                    || {
                        Dropout::new(a.drop_rate as f32).noise_shape(&[
                            None,
                            Some(1),
                            Some(1),
                            Some(1),
                        ])
                    },
                    &format!("{p}drop"),
                ),
                &[x],
            )?;
        }
        x = g.call(named(Add::new, &format!("{p}add")), &[x, inputs])?;
    }
    Ok(x)
}

/// The shared stem of EfficientNet's preprocessing: `Rescaling(1/255)`, `Normalization` on the
/// channel axis, and with ImageNet weights Keras's extra per-channel `Rescaling`.
pub(crate) fn imagenet_preprocessing(
    g: &mut Functional,
    x: SymbolicTensor,
    imagenet: bool,
) -> Result<SymbolicTensor> {
    let mut x = g.call(Rescaling::new(1.0 / 255.0), &[x])?;
    x = g.call(Normalization::with_axis(&[3]), &[x])?;
    if imagenet {
        let scale: Vec<f32> = IMAGENET_STDDEV_RGB
            .iter()
            .map(|s| (1.0 / s.sqrt()) as f32)
            .collect();
        x = g.call(Rescaling::per_channel(&scale), &[x])?;
    }
    Ok(x)
}

fn build(v: &Variant, name: &str, opts: &EfficientNetOptions, shape: Shape) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let imagenet = opts.weights.as_deref() == Some("imagenet");
    let mut x = imagenet_preprocessing(&mut g, input, imagenet)?;
    let pad = correct_pad(g.shape(x)?, 3);
    x = g.call(
        named(|| ZeroPadding2D::with_padding(pad), "stem_conv_pad"),
        &[x],
    )?;
    x = g.call(
        named(
            || {
                Conv2D::new(round_filters(32, v.width, 8), 3)
                    .strides(2)
                    .padding(Padding::Valid)
                    .use_bias(false)
            },
            "stem_conv",
        ),
        &[x],
    )?;
    x = g.call(bn("stem_bn"), &[x])?;
    x = g.call(act("stem_activation"), &[x])?;
    let round_repeats = |r: usize| (v.depth * r as f64).ceil() as usize;
    let blocks: usize = BLOCKS.iter().map(|b| round_repeats(b.1)).sum();
    let mut b = 0usize;
    for (i, &(kernel, repeats, f_in, f_out, expand_ratio, strides)) in BLOCKS.iter().enumerate() {
        let filters_out = round_filters(f_out, v.width, 8);
        let mut filters_in = round_filters(f_in, v.width, 8);
        let mut strides = strides;
        for j in 0..round_repeats(repeats) {
            if j > 0 {
                strides = 1;
                filters_in = filters_out;
            }
            let a = BlockArgs {
                drop_rate: DROP_CONNECT_RATE * b as f64 / blocks as f64,
                filters_in,
                filters_out,
                kernel,
                strides,
                expand_ratio,
                se_ratio: 0.25,
            };
            let letter = char::from(b'a' + j as u8);
            x = block(&mut g, x, &a, &format!("block{}{letter}_", i + 1))?;
            b += 1;
        }
    }
    x = g.call(conv1x1(round_filters(1280, v.width, 8), "top_conv"), &[x])?;
    x = g.call(bn("top_bn"), &[x])?;
    x = g.call(act("top_activation"), &[x])?;
    x = head(&mut g, x, opts, v.dropout_rate)?;
    g.build_named(name, &[input], &[x])
}

/// EfficientNet's (and EfficientNetV2's) top: `avg_pool`, `top_dropout` and `predictions` with
/// the classifier, else the optional `avg_pool` / `max_pool`.
pub(crate) fn head(
    g: &mut Functional,
    mut x: SymbolicTensor,
    opts: &ApplicationOptions,
    dropout_rate: f32,
) -> Result<SymbolicTensor> {
    if opts.include_top {
        x = g.call(named(GlobalAveragePooling2D::new, "avg_pool"), &[x])?;
        if dropout_rate > 0.0 {
            x = g.call(named(|| Dropout::new(dropout_rate), "top_dropout"), &[x])?;
        }
        let p = named(|| Dense::new(opts.classes), "predictions")
            .activation(opts.classifier_activation);
        x = g.call(p, &[x])?;
    } else {
        match opts.pooling {
            Some(Pooling::Avg) => {
                x = g.call(named(GlobalAveragePooling2D::new, "avg_pool"), &[x])?
            }
            Some(Pooling::Max) => x = g.call(named(GlobalMaxPooling2D::new, "max_pool"), &[x])?,
            None => {}
        }
    }
    Ok(x)
}
