//! MobileNet (Howard et al., "MobileNets"), built as `keras.applications.MobileNet` builds it:
//! width multiplier `alpha`, depthwise-separable blocks (`conv_dw_1` ... `conv_pw_13_relu`) with
//! ReLU6, `ZeroPadding2D((0, 1), (0, 1))` before each strided depthwise convolution, a
//! convolutional classifier (`conv_preds` on a kept-dims global pool, `reshape_2`), and the model
//! named `mobilenet_<alpha:.2f>_<rows>`.

use super::keras_weights::{with_keras_weights, ImagenetFile};
use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::{Error, Result};
use crate::layers::{
    naming, Activation, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout,
    GlobalAveragePooling2D, GlobalMaxPooling2D, Input, ReLU, Reshape, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.MobileNet`'s arguments: the shared ones plus the width multiplier, the
/// depth multiplier of the depthwise convolutions and the classifier's dropout rate.
#[derive(Clone, Debug)]
pub struct MobileNetOptions {
    pub base: ApplicationOptions,
    /// Width multiplier: every layer has `int(filters * alpha)` filters (Keras's ImageNet
    /// weights exist for 0.25, 0.5, 0.75 and 1.0).
    pub alpha: f64,
    /// Depthwise channels per input channel.
    pub depth_multiplier: usize,
    /// Dropout rate before `conv_preds`.
    pub dropout: f32,
}

impl Default for MobileNetOptions {
    /// Keras's defaults (`alpha=1.0`, `depth_multiplier=1`, `dropout=1e-3`), except
    /// `weights=None`.
    fn default() -> Self {
        MobileNetOptions {
            base: ApplicationOptions::default(),
            alpha: 1.0,
            depth_multiplier: 1,
            dropout: 1e-3,
        }
    }
}

impl From<ApplicationOptions> for MobileNetOptions {
    fn from(base: ApplicationOptions) -> Self {
        MobileNetOptions {
            base,
            ..Default::default()
        }
    }
}

/// `keras.applications.MobileNet` with `alpha=1.0` (default input 224x224x3, at least 32x32).
pub fn mobilenet(opts: &ApplicationOptions) -> Result<Model> {
    mobilenet_with(&opts.clone().into())
}

/// `keras.applications.MobileNet` with every argument, with fresh default names.
pub fn mobilenet_with(opts: &MobileNetOptions) -> Result<Model> {
    let base = &opts.base;
    if !(opts.alpha.is_finite() && opts.alpha > 0.0) || opts.depth_multiplier == 0 {
        return Err(Error::InvalidConfig(format!(
            "MobileNet: alpha must be positive and depth_multiplier at least 1; received \
             alpha={}, depth_multiplier={}",
            opts.alpha, opts.depth_multiplier
        )));
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        return Err(Error::InvalidConfig(format!(
            "MobileNet: dropout must be in [0, 1); received {}",
            opts.dropout
        )));
    }
    // Keras: the default size is the given square side when it is one Keras has weights for.
    let default_size = match base.input_shape {
        Some([Some(r), Some(c), _]) if r == c && [128, 160, 192, 224].contains(&r) => r,
        _ => 224,
    };
    let shape = obtain_input_shape("MobileNet", base, default_size, 32)?;
    let model = naming::with_fresh_names(|| build(opts, shape.clone()));
    with_keras_weights(model, base, "MobileNet", || {
        imagenet_file(opts, shape[0], shape[1])
    })
}

/// Keras's file for `weights="imagenet"`: per alpha and (square) size, no published hash.
pub(crate) fn imagenet_file(
    opts: &MobileNetOptions,
    rows: Option<usize>,
    cols: Option<usize>,
) -> Result<ImagenetFile> {
    if opts.depth_multiplier != 1 {
        return Err(Error::InvalidConfig(format!(
            "MobileNet: if imagenet weights are being loaded, depth multiplier must be 1; \
             received depth_multiplier={}",
            opts.depth_multiplier
        )));
    }
    let alpha_text = match opts.alpha {
        1.0 => "1_0",
        0.75 => "7_5",
        0.5 => "5_0",
        0.25 => "2_5",
        a => {
            return Err(Error::InvalidConfig(format!(
                "MobileNet: if imagenet weights are being loaded, alpha can be one of 0.25, \
                 0.50, 0.75 or 1.0 only; received alpha={a}"
            )))
        }
    };
    let rows = match (rows, cols) {
        (Some(r), Some(c)) if r == c && [128, 160, 192, 224].contains(&r) => r,
        _ => {
            eprintln!(
                "warning: `input_shape` is undefined or non-square, or `rows` is not in [128, \
                 160, 192, 224]. Weights for input shape (224, 224) will be loaded as the \
                 default."
            );
            224
        }
    };
    let tail = if opts.base.include_top { "" } else { "_no_top" };
    Ok(ImagenetFile::new(
        format!("mobilenet/mobilenet_{alpha_text}_{rows}_tf{tail}.h5"),
        None,
    ))
}

fn bn_relu6(g: &mut Functional, x: SymbolicTensor, name: &str) -> Result<SymbolicTensor> {
    let x = g.call(named(BatchNormalization::new, &format!("{name}_bn")), &[x])?;
    g.call(
        named(|| ReLU::new().max_value(6.0), &format!("{name}_relu")),
        &[x],
    )
}

/// Keras's `_depthwise_conv_block`: [pad], 3x3 depthwise, BN, ReLU6, 1x1 pointwise, BN, ReLU6.
fn dw_block(
    g: &mut Functional,
    mut x: SymbolicTensor,
    filters: usize,
    opts: &MobileNetOptions,
    stride: usize,
    id: usize,
) -> Result<SymbolicTensor> {
    let filters = (filters as f64 * opts.alpha) as usize;
    if stride != 1 {
        x = g.call(
            named(
                || ZeroPadding2D::with_padding(((0, 1), (0, 1))),
                &format!("conv_pad_{id}"),
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
                DepthwiseConv2D::new(3)
                    .padding(padding)
                    .depth_multiplier(opts.depth_multiplier)
                    .strides(stride)
                    .use_bias(false)
            },
            &format!("conv_dw_{id}"),
        ),
        &[x],
    )?;
    x = bn_relu6(g, x, &format!("conv_dw_{id}"))?;
    x = g.call(
        named(
            || {
                Conv2D::new(filters, 1)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            &format!("conv_pw_{id}"),
        ),
        &[x],
    )?;
    bn_relu6(g, x, &format!("conv_pw_{id}"))
}

fn build(opts: &MobileNetOptions, shape: Shape) -> Result<Model> {
    let base = &opts.base;
    let rows = shape[0].map_or("None".to_string(), |r| r.to_string());
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let first = (32.0 * opts.alpha) as usize;
    let mut x = g.call(
        named(
            || {
                Conv2D::new(first, 3)
                    .padding(Padding::Same)
                    .use_bias(false)
                    .strides(2)
            },
            "conv1",
        ),
        &[input],
    )?;
    x = bn_relu6(&mut g, x, "conv1")?;
    // (pointwise filters, stride) of blocks 1..13.
    let blocks: [(usize, usize); 13] = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];
    for (i, (f, s)) in blocks.into_iter().enumerate() {
        x = dw_block(&mut g, x, f, opts, s, i + 1)?;
    }
    if base.include_top {
        x = g.call(GlobalAveragePooling2D::new().keepdims(true), &[x])?;
        x = g.call(named(|| Dropout::new(opts.dropout), "dropout"), &[x])?;
        x = g.call(
            named(
                || Conv2D::new(base.classes, 1).padding(Padding::Same),
                "conv_preds",
            ),
            &[x],
        )?;
        let classes = isize::try_from(base.classes).map_err(|_| {
            Error::InvalidConfig(format!("MobileNet: classes={} is too large", base.classes))
        })?;
        x = g.call(named(|| Reshape::new(&[classes]), "reshape_2"), &[x])?;
        x = g.call(
            named(
                || Activation::new(base.classifier_activation),
                "predictions",
            ),
            &[x],
        )?;
    } else {
        match base.pooling {
            Some(Pooling::Avg) => x = g.call(GlobalAveragePooling2D::new(), &[x])?,
            Some(Pooling::Max) => x = g.call(GlobalMaxPooling2D::new(), &[x])?,
            None => {}
        }
    }
    g.build_named(
        &format!("mobilenet_{:.2}_{rows}", opts.alpha),
        &[input],
        &[x],
    )
}
