//! EfficientNetV2B0 to B3 and V2S (Tan & Le, 2021), built as `keras.applications.EfficientNetV2*`
//! builds them: Fused-MBConv blocks (a full convolution in place of expansion + depthwise) in the
//! early stages and MBConv blocks with squeeze-and-excitation later, BatchNormalization momentum
//! 0.9, swish, and preprocessing inside the model (`include_preprocessing`): `Rescaling(1/255)`
//! and a `Normalization` with ImageNet's constant mean and variance for the B variants,
//! `Rescaling(1/128, offset=-1)` for S.

use super::efficientnet::{head, se_block};
use super::keras_weights::{self, ImagenetFile};
use super::{named, obtain_input_shape, ApplicationOptions};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, Add, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout,
    Input, Normalization, Rescaling, Shape,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.EfficientNetV2*`'s arguments, plus `include_preprocessing`.
#[derive(Clone, Debug)]
pub struct EfficientNetV2Options {
    pub app: ApplicationOptions,
    /// Whether the model rescales (and for the B variants normalizes) its 0..255 input itself
    /// (Keras's default: true).
    pub include_preprocessing: bool,
}

impl Default for EfficientNetV2Options {
    fn default() -> Self {
        EfficientNetV2Options {
            app: ApplicationOptions::default(),
            include_preprocessing: true,
        }
    }
}

/// Where Keras downloads the EfficientNetV2 ImageNet weights from.
const BASE_WEIGHTS_PATH: &str =
    "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/";

/// `(kernel, repeats, filters_in, filters_out, expand_ratio, se_ratio, strides, fused)`.
type BlockRow = (usize, usize, usize, usize, usize, f64, usize, bool);

/// Keras's `DEFAULT_BLOCKS_ARGS["efficientnetv2-b0"]` (shared by B0 to B3).
const BLOCKS_B: [BlockRow; 6] = [
    (3, 1, 32, 16, 1, 0.0, 1, true),
    (3, 2, 16, 32, 4, 0.0, 2, true),
    (3, 2, 32, 48, 4, 0.0, 2, true),
    (3, 3, 48, 96, 4, 0.25, 2, false),
    (3, 5, 96, 112, 6, 0.25, 1, false),
    (3, 8, 112, 192, 6, 0.25, 2, false),
];

/// Keras's `DEFAULT_BLOCKS_ARGS["efficientnetv2-s"]`.
const BLOCKS_S: [BlockRow; 6] = [
    (3, 2, 24, 24, 1, 0.0, 1, true),
    (3, 4, 24, 48, 4, 0.0, 2, true),
    (3, 4, 48, 64, 4, 0.0, 2, true),
    (3, 6, 64, 128, 4, 0.25, 2, false),
    (3, 9, 128, 160, 6, 0.25, 1, false),
    (3, 15, 160, 256, 6, 0.25, 2, false),
];

/// One variant: its Keras name suffix (`b0` .. `s`), coefficients, default size, blocks and
/// published hashes `(with top, without)`.
struct Variant {
    suffix: &'static str,
    width: f64,
    depth: f64,
    default_size: usize,
    blocks: &'static [BlockRow; 6],
    hashes: (&'static str, &'static str),
}

const VARIANTS: [Variant; 5] = [
    Variant {
        suffix: "b0",
        width: 1.0,
        depth: 1.0,
        default_size: 224,
        blocks: &BLOCKS_B,
        hashes: (
            "21ecbf6da12460d5c40bb2f29ceb2188",
            "893217f2bb855e2983157299931e43ff",
        ),
    },
    Variant {
        suffix: "b1",
        width: 1.0,
        depth: 1.1,
        default_size: 240,
        blocks: &BLOCKS_B,
        hashes: (
            "069f0534ff22adf035c89e2d9547a9dc",
            "0e80663031ca32d657f9caa404b6ec37",
        ),
    },
    Variant {
        suffix: "b2",
        width: 1.1,
        depth: 1.2,
        default_size: 260,
        blocks: &BLOCKS_B,
        hashes: (
            "424e49f28180edbde1e94797771950a7",
            "1dfe2e7a5d45b6632553a8961ea609eb",
        ),
    },
    Variant {
        suffix: "b3",
        width: 1.2,
        depth: 1.4,
        default_size: 300,
        blocks: &BLOCKS_B,
        hashes: (
            "1f1fc43bd98a6e4fd8fdfd551e02c7a0",
            "f6abf7b5849ac99a89b50dd3fd532856",
        ),
    },
    Variant {
        suffix: "s",
        width: 1.0,
        depth: 1.0,
        default_size: 384,
        blocks: &BLOCKS_S,
        hashes: (
            "e1d88a8495beba45748fedd0cecbe016",
            "af0682fb74e8c54910f2d4393339c070",
        ),
    },
];

const BN_MOMENTUM: f32 = 0.9;
const DROP_CONNECT_RATE: f64 = 0.2;
const DROPOUT_RATE: f32 = 0.2;

/// Builds `EfficientNetV2{variant}` with `variant` one of `b0`, `b1`, `b2`, `b3`, `s` (Keras's
/// name suffix), with fresh default names.
pub fn efficientnet_v2(variant: &str, opts: &EfficientNetV2Options) -> Result<Model> {
    let v = VARIANTS
        .iter()
        .find(|v| v.suffix == variant)
        .ok_or_else(|| {
            crate::Error::InvalidConfig(format!(
                "EfficientNetV2: no variant '{variant}' (b0, b1, b2, b3, s)"
            ))
        })?;
    let display = format!("EfficientNetV2{}", variant.to_uppercase());
    keras_weights::check_imagenet_classes(&display, &opts.app)?;
    let shape = obtain_input_shape(&display, &opts.app, v.default_size, 32)?;
    let name = format!("efficientnetv2-{}", v.suffix);
    let model = naming::with_fresh_names(|| build(v, &name, opts, shape));
    keras_weights::load(model, &opts.app, || {
        imagenet_file(v.suffix, opts.app.include_top)
    })
}

/// Keras's file for EfficientNetV2`variant`'s (`b0` .. `s`) `weights="imagenet"`.
pub(crate) fn imagenet_file(variant: &str, include_top: bool) -> Result<ImagenetFile> {
    let v = VARIANTS
        .iter()
        .find(|v| v.suffix == variant)
        .ok_or_else(|| {
            crate::Error::InvalidConfig(format!(
                "EfficientNetV2: no variant '{variant}' (b0, b1, b2, b3, s)"
            ))
        })?;
    let (suffix, hash) = if include_top {
        (".h5", v.hashes.0)
    } else {
        ("_notop.h5", v.hashes.1)
    };
    let file = format!("efficientnetv2-{}{suffix}", v.suffix);
    Ok(ImagenetFile {
        url: format!("{BASE_WEIGHTS_PATH}{file}"),
        file,
        hash: Some(hash),
    })
}

macro_rules! variant_fn {
    ($($f:ident = $v:literal),*) => {$(
        #[doc = concat!("`keras.applications.EfficientNetV2", $v, "` with Keras's defaults besides ")]
        #[doc = "`opts`; see [`efficientnet_v2`] for `include_preprocessing`."]
        pub fn $f(opts: &ApplicationOptions) -> Result<Model> {
            efficientnet_v2(&$v.to_lowercase(), &EfficientNetV2Options {
                app: opts.clone(),
                include_preprocessing: true,
            })
        }
    )*};
}
variant_fn!(
    efficientnet_v2_b0 = "B0",
    efficientnet_v2_b1 = "B1",
    efficientnet_v2_b2 = "B2",
    efficientnet_v2_b3 = "B3",
    efficientnet_v2_s = "S"
);

/// EfficientNetV2's `round_filters`: like EfficientNet's but with no 10% correction.
fn round_filters(filters: usize, width: f64) -> usize {
    let f = filters as f64 * width;
    (((f + 4.0) as usize) / 8 * 8).max(8)
}

fn bn(name: &str) -> BatchNormalization {
    named(BatchNormalization::new, name).momentum(BN_MOMENTUM)
}

fn act(name: &str) -> Activation {
    named(|| Activation::new(ActivationFn::Silu), name)
}

fn conv(filters: usize, kernel: usize, strides: usize, name: &str) -> Conv2D {
    named(
        || {
            Conv2D::new(filters, kernel)
                .strides(strides)
                .padding(Padding::Same)
                .use_bias(false)
        },
        name,
    )
}

struct Block {
    kernel: usize,
    filters_in: usize,
    filters_out: usize,
    expand_ratio: usize,
    se_ratio: f64,
    strides: usize,
    survival_probability: f64,
}

/// Keras's `MBConvBlock` (`fused == false`) and `FusedMBConvBlock`.
fn block(
    g: &mut Functional,
    inputs: SymbolicTensor,
    b: &Block,
    fused: bool,
    p: &str,
) -> Result<SymbolicTensor> {
    let filters = b.filters_in * b.expand_ratio;
    let mut x = inputs;
    if b.expand_ratio != 1 {
        let (k, s) = if fused { (b.kernel, b.strides) } else { (1, 1) };
        x = g.call(conv(filters, k, s, &format!("{p}expand_conv")), &[x])?;
        x = g.call(bn(&format!("{p}expand_bn")), &[x])?;
        x = g.call(act(&format!("{p}expand_activation")), &[x])?;
    }
    if !fused {
        x = g.call(
            named(
                || {
                    DepthwiseConv2D::new(b.kernel)
                        .strides(b.strides)
                        .padding(Padding::Same)
                        .use_bias(false)
                },
                &format!("{p}dwconv2"),
            ),
            &[x],
        )?;
        x = g.call(bn(&format!("{p}bn")), &[x])?;
        x = g.call(act(&format!("{p}activation")), &[x])?;
    }
    if 0.0 < b.se_ratio && b.se_ratio <= 1.0 {
        let filters_se = ((b.filters_in as f64 * b.se_ratio) as usize).max(1);
        x = se_block(g, x, filters, filters_se, p)?;
    }
    let (k, s) = if fused && b.expand_ratio == 1 {
        (b.kernel, b.strides)
    } else {
        (1, 1)
    };
    x = g.call(conv(b.filters_out, k, s, &format!("{p}project_conv")), &[x])?;
    x = g.call(bn(&format!("{p}project_bn")), &[x])?;
    if fused && b.expand_ratio == 1 {
        x = g.call(act(&format!("{p}project_activation")), &[x])?;
    }
    if b.strides == 1 && b.filters_in == b.filters_out {
        if b.survival_probability > 0.0 {
            // Keras passes its "survival probability" as the dropout rate, whole samples at once.
            let rate = b.survival_probability as f32;
            x = g.call(
                named(
                    || Dropout::new(rate).noise_shape(&[None, Some(1), Some(1), Some(1)]),
                    &format!("{p}drop"),
                ),
                &[x],
            )?;
        }
        x = g.call(named(Add::new, &format!("{p}add")), &[x, inputs])?;
    }
    Ok(x)
}

fn build(v: &Variant, name: &str, opts: &EfficientNetV2Options, shape: Shape) -> Result<Model> {
    let channels = shape[2];
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = input;
    if opts.include_preprocessing {
        if v.suffix.starts_with('b') && channels == Some(3) {
            x = g.call(Rescaling::new(1.0 / 255.0), &[x])?;
            let mean = [0.485, 0.456, 0.406];
            // Keras squares in double precision and stores float32.
            let variance = [0.229f64, 0.224, 0.225].map(|s| (s * s) as f32);
            x = g.call(
                Normalization::with_mean_variance(&[3], &mean, &variance),
                &[x],
            )?;
        } else {
            x = g.call(Rescaling::new(1.0 / 128.0).offset(-1.0), &[x])?;
        }
    }
    x = g.call(
        conv(round_filters(v.blocks[0].2, v.width), 3, 2, "stem_conv"),
        &[x],
    )?;
    x = g.call(bn("stem_bn"), &[x])?;
    x = g.call(act("stem_activation"), &[x])?;
    let round_repeats = |r: usize| (v.depth * r as f64).ceil() as usize;
    // Keras divides by the unscaled number of blocks here (unlike EfficientNet).
    let blocks: usize = v.blocks.iter().map(|b| b.1).sum();
    let mut n = 0usize;
    for (i, &(kernel, repeats, f_in, f_out, expand_ratio, se_ratio, strides, fused)) in
        v.blocks.iter().enumerate()
    {
        let filters_out = round_filters(f_out, v.width);
        let mut filters_in = round_filters(f_in, v.width);
        let mut strides = strides;
        for j in 0..round_repeats(repeats) {
            if j > 0 {
                strides = 1;
                filters_in = filters_out;
            }
            let b = Block {
                kernel,
                filters_in,
                filters_out,
                expand_ratio,
                se_ratio,
                strides,
                survival_probability: DROP_CONNECT_RATE * n as f64 / blocks as f64,
            };
            let letter = char::from(b'a' + j as u8);
            x = block(&mut g, x, &b, fused, &format!("block{}{letter}_", i + 1))?;
            n += 1;
        }
    }
    x = g.call(conv(round_filters(1280, v.width), 1, 1, "top_conv"), &[x])?;
    x = g.call(bn("top_bn"), &[x])?;
    x = g.call(act("top_activation"), &[x])?;
    x = head(&mut g, x, &opts.app, DROPOUT_RATE)?;
    g.build_named(name, &[input], &[x])
}
