//! MobileNetV2 (Sandler et al.), width multiplier 1.0, built as `keras.applications.MobileNetV2`
//! builds it: inverted residual blocks (`block_1_expand` ... `block_16_project_BN`), ReLU6,
//! `ZeroPadding2D` from `correct_pad` before each strided depthwise convolution, and the model
//! named `mobilenetv2_1.00_<rows>`.

use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::Result;
use crate::layers::{
    naming, Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D, GlobalAveragePooling2D,
    GlobalMaxPooling2D, Input, ReLU, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.MobileNetV2`'s arguments (`alpha=1.0`).
pub type MobileNetV2Options = ApplicationOptions;

/// Builds MobileNetV2 with `alpha=1.0` (default input 224x224x3, at least 32x32), with fresh
/// default names.
pub fn mobilenet_v2(opts: &MobileNetV2Options) -> Result<Model> {
    let shape = obtain_input_shape("MobileNetV2", opts, 224, 32)?;
    naming::with_fresh_names(|| build(opts, shape))
}

fn bn(name: &str) -> BatchNormalization {
    named(BatchNormalization::new, name)
        .epsilon(1e-3)
        .momentum(0.999)
}

fn relu6(name: &str) -> ReLU {
    named(|| ReLU::new().max_value(6.0), name)
}

/// Keras's `_make_divisible`: rounds channel counts to a multiple of 8, never down by more than
/// 10%.
fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = ((v + d / 2.0) / d).floor().max(1.0) as usize * divisor;
    new_v = new_v.max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// Keras's `_inverted_res_block`: 1x1 expansion (not in block 0), 3x3 depthwise, 1x1 projection,
/// and an `Add` shortcut when the shape is unchanged.
fn inverted_res_block(
    g: &mut Functional,
    inputs: SymbolicTensor,
    expansion: usize,
    stride: usize,
    filters: usize,
    block_id: usize,
) -> Result<SymbolicTensor> {
    let in_shape = g.shape(inputs)?.clone();
    let in_channels = in_shape[2].unwrap_or(0);
    let pointwise_filters = make_divisible(filters as f64, 8);
    let mut x = inputs;
    let prefix = if block_id > 0 {
        let p = format!("block_{block_id}_");
        let c = expansion * in_channels;
        x = g.call(
            named(
                || Conv2D::new(c, 1).padding(Padding::Same).use_bias(false),
                &format!("{p}expand"),
            ),
            &[x],
        )?;
        x = g.call(bn(&format!("{p}expand_BN")), &[x])?;
        x = g.call(relu6(&format!("{p}expand_relu")), &[x])?;
        p
    } else {
        "expanded_conv_".to_string()
    };
    if stride == 2 {
        // Keras's `correct_pad` for a 3x3 kernel: one pixel after, and one before only for an
        // odd (or unknown) size.
        let s = g.shape(x)?.clone();
        let adjust = |d: Option<usize>| d.map_or(1, |d| 1 - d % 2);
        let pad = ((1 - adjust(s[0]), 1), (1 - adjust(s[1]), 1));
        x = g.call(
            named(|| ZeroPadding2D::with_padding(pad), &format!("{prefix}pad")),
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
                    .strides(stride)
                    .use_bias(false)
                    .padding(padding)
            },
            &format!("{prefix}depthwise"),
        ),
        &[x],
    )?;
    x = g.call(bn(&format!("{prefix}depthwise_BN")), &[x])?;
    x = g.call(relu6(&format!("{prefix}depthwise_relu")), &[x])?;
    x = g.call(
        named(
            || {
                Conv2D::new(pointwise_filters, 1)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            &format!("{prefix}project"),
        ),
        &[x],
    )?;
    x = g.call(bn(&format!("{prefix}project_BN")), &[x])?;
    if in_channels == pointwise_filters && stride == 1 {
        return g.call(named(Add::new, &format!("{prefix}add")), &[inputs, x]);
    }
    Ok(x)
}

fn build(opts: &MobileNetV2Options, shape: Shape) -> Result<Model> {
    let rows = shape[0].map_or("None".to_string(), |r| r.to_string());
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let first = make_divisible(32.0, 8);
    let mut x = g.call(
        named(
            || {
                Conv2D::new(first, 3)
                    .strides(2)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            "Conv1",
        ),
        &[input],
    )?;
    x = g.call(bn("bn_Conv1"), &[x])?;
    x = g.call(relu6("Conv1_relu"), &[x])?;
    // (filters, stride, expansion) per block, as in Keras.
    let blocks: [(usize, usize, usize); 17] = [
        (16, 1, 1),
        (24, 2, 6),
        (24, 1, 6),
        (32, 2, 6),
        (32, 1, 6),
        (32, 1, 6),
        (64, 2, 6),
        (64, 1, 6),
        (64, 1, 6),
        (64, 1, 6),
        (96, 1, 6),
        (96, 1, 6),
        (96, 1, 6),
        (160, 2, 6),
        (160, 1, 6),
        (160, 1, 6),
        (320, 1, 6),
    ];
    for (id, (f, s, e)) in blocks.into_iter().enumerate() {
        x = inverted_res_block(&mut g, x, e, s, f, id)?;
    }
    x = g.call(
        named(|| Conv2D::new(1280, 1).use_bias(false), "Conv_1"),
        &[x],
    )?;
    x = g.call(bn("Conv_1_bn"), &[x])?;
    x = g.call(relu6("out_relu"), &[x])?;
    if opts.include_top {
        x = g.call(GlobalAveragePooling2D::new(), &[x])?;
        let p = named(|| Dense::new(opts.classes), "predictions")
            .activation(opts.classifier_activation);
        x = g.call(p, &[x])?;
    } else {
        match opts.pooling {
            Some(Pooling::Avg) => x = g.call(GlobalAveragePooling2D::new(), &[x])?,
            Some(Pooling::Max) => x = g.call(GlobalMaxPooling2D::new(), &[x])?,
            None => {}
        }
    }
    super::with_weights(
        g.build_named(&format!("mobilenetv2_1.00_{rows}"), &[input], &[x]),
        opts,
    )
}
