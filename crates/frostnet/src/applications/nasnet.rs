//! NASNetMobile (Zoph et al., "Learning Transferable Architectures for Scalable Image
//! Recognition"), built as `keras.applications.NASNetMobile` builds it (`NASNet` with
//! penultimate_filters=1056, 4 normal cells per stage, 32 stem filters, no skip reduction):
//! reduction and normal cells of separable-convolution blocks, the `adjust` blocks that bring the
//! previous cell's output to the current size (`ZeroPadding2D` + `Cropping2D` + strided
//! 1x1 average pools), Keras's layer names and creation order (hence `activation_187`), BatchNorm
//! `momentum=0.9997, epsilon=1e-3`, model `nasnet_mobile`.
//!
//! Keras initialises NASNet's `Conv2D`s (the stem and every 1x1 convolution) with `he_normal`,
//! and its separable convolutions and classifier with the glorot-uniform default; so does
//! frostnet (only training from scratch sees the difference; ImageNet weights replace it).

use super::keras_weights::{with_keras_weights, ImagenetFile};
use super::resnet::top;
use super::{named, obtain_input_shape, ApplicationOptions};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, Add, AveragePooling2D, BatchNormalization, Concatenate,
    Conv2D, Cropping2D, Input, MaxPooling2D, SeparableConv2D, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// NASNetMobile's `penultimate_filters // 24`.
const FILTERS: usize = 1056 / 24;
/// Normal cells per stage.
const NUM_BLOCKS: usize = 4;

/// Builds NASNetMobile (input 224x224x3 unless given, at least 32x32), with fresh default names.
pub fn nasnet_mobile(opts: &ApplicationOptions) -> Result<Model> {
    // Keras: without the top and without an input shape, NASNetMobile still takes 224x224x3.
    let mut o = opts.clone();
    if !o.include_top && o.input_shape.is_none() {
        o.input_shape = Some([Some(224), Some(224), Some(3)]);
    }
    let shape = obtain_input_shape("NASNetMobile", &o, 224, 32)?;
    let model = naming::with_fresh_names(|| build(opts, shape));
    with_keras_weights(model, opts, "NASNetMobile", || {
        Ok(imagenet_file(opts.include_top))
    })
}

/// Keras's file for NASNetMobile's `weights="imagenet"`.
pub(crate) fn imagenet_file(include_top: bool) -> ImagenetFile {
    if include_top {
        ImagenetFile::new(
            "nasnet/NASNet-mobile.h5",
            Some("020fb642bf7360b370c678b08e0adf61"),
        )
        .cached_as("nasnet_mobile.h5")
    } else {
        ImagenetFile::new(
            "nasnet/NASNet-mobile-no-top.h5",
            Some("1ed92395b5b598bdda52abe5c0dbfd63"),
        )
        .cached_as("nasnet_mobile_no_top.h5")
    }
}

fn bn(name: &str) -> BatchNormalization {
    named(BatchNormalization::new, name)
        .momentum(0.9997)
        .epsilon(1e-3)
}

fn relu(g: &mut Functional, x: SymbolicTensor) -> Result<SymbolicTensor> {
    g.call(Activation::new(ActivationFn::Relu), &[x])
}

/// Keras's `imagenet_utils.correct_pad`: the zero padding that makes a strided `valid`
/// convolution of `kernel` behave like TensorFlow's `same` one.
fn correct_pad(
    g: &Functional,
    x: SymbolicTensor,
    kernel: usize,
) -> Result<((usize, usize), (usize, usize))> {
    let s = g.shape(x)?;
    let adjust = |d: Option<usize>| d.map_or(1, |d| 1 - d % 2);
    let c = kernel / 2;
    Ok(((c - adjust(s[0]), c), (c - adjust(s[1]), c)))
}

/// Keras's `_separable_conv_block`: ReLU, [correct padding], separable conv (carrying the
/// stride), BN, ReLU, separable conv, BN.
fn sep_block(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    kernel: usize,
    stride: usize,
    id: &str,
) -> Result<SymbolicTensor> {
    let mut x = relu(g, x)?;
    let padding = if stride == 2 {
        let pad = correct_pad(g, x, kernel)?;
        x = g.call(
            named(
                || ZeroPadding2D::with_padding(pad),
                &format!("separable_conv_1_pad_{id}"),
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
                SeparableConv2D::new(filters, kernel)
                    .strides(stride)
                    .padding(padding)
                    .use_bias(false)
            },
            &format!("separable_conv_1_{id}"),
        ),
        &[x],
    )?;
    x = g.call(bn(&format!("separable_conv_1_bn_{id}")), &[x])?;
    x = relu(g, x)?;
    x = g.call(
        named(
            || {
                SeparableConv2D::new(filters, kernel)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            &format!("separable_conv_2_{id}"),
        ),
        &[x],
    )?;
    g.call(bn(&format!("separable_conv_2_bn_{id}")), &[x])
}

fn conv1x1(filters: usize, name: &str) -> Conv2D {
    named(
        || {
            Conv2D::new(filters, 1)
                .padding(Padding::Same)
                .use_bias(false)
                .he_normal()
        },
        name,
    )
}

fn avg_pool1_s2(name: &str) -> AveragePooling2D {
    named(|| AveragePooling2D::new(1).strides(2), name)
}

/// Keras's `_adjust_block`: the previous cell's output `p` brought to `ip`'s size (two
/// half-filter paths, one shifted by a pixel, concatenated) or channel count (a 1x1 projection).
fn adjust_block(
    g: &mut Functional,
    p: Option<SymbolicTensor>,
    ip: SymbolicTensor,
    filters: usize,
    id: &str,
) -> Result<SymbolicTensor> {
    let Some(p) = p else { return Ok(ip) };
    let (ps, is) = (g.shape(p)?.clone(), g.shape(ip)?.clone());
    if ps[1] != is[1] {
        let p = g.call(
            named(
                || Activation::new(ActivationFn::Relu),
                &format!("adjust_relu_1_{id}"),
            ),
            &[p],
        )?;
        let p1 = g.call(avg_pool1_s2(&format!("adjust_avg_pool_1_{id}")), &[p])?;
        let p1 = g.call(conv1x1(filters / 2, &format!("adjust_conv_1_{id}")), &[p1])?;
        let p2 = g.call(ZeroPadding2D::with_padding(((0, 1), (0, 1))), &[p])?;
        let p2 = g.call(Cropping2D::new(((1, 0), (1, 0))), &[p2])?;
        let p2 = g.call(avg_pool1_s2(&format!("adjust_avg_pool_2_{id}")), &[p2])?;
        let p2 = g.call(conv1x1(filters / 2, &format!("adjust_conv_2_{id}")), &[p2])?;
        let p = g.call(Concatenate::new(), &[p1, p2])?;
        g.call(bn(&format!("adjust_bn_{id}")), &[p])
    } else if ps[2] != Some(filters) {
        let p = relu(g, p)?;
        let p = g.call(
            conv1x1(filters, &format!("adjust_conv_projection_{id}")),
            &[p],
        )?;
        g.call(bn(&format!("adjust_bn_{id}")), &[p])
    } else {
        Ok(p)
    }
}

fn add(
    g: &mut Functional,
    a: SymbolicTensor,
    b: SymbolicTensor,
    name: &str,
) -> Result<SymbolicTensor> {
    g.call(named(Add::new, name), &[a, b])
}

/// ReLU, 1x1 convolution, BN: the cell's view `h` of its input.
fn squeeze(
    g: &mut Functional,
    ip: SymbolicTensor,
    filters: usize,
    conv: &str,
    bn_name: &str,
) -> Result<SymbolicTensor> {
    let h = relu(g, ip)?;
    let h = g.call(conv1x1(filters, conv), &[h])?;
    g.call(bn(bn_name), &[h])
}

/// Keras's `_normal_a_cell`; returns the cell output and `ip` (the next cell's `p`).
fn normal_cell(
    g: &mut Functional,
    ip: SymbolicTensor,
    p: Option<SymbolicTensor>,
    filters: usize,
    id: &str,
) -> Result<(SymbolicTensor, SymbolicTensor)> {
    let p = adjust_block(g, p, ip, filters, id)?;
    let h = squeeze(
        g,
        ip,
        filters,
        &format!("normal_conv_1_{id}"),
        &format!("normal_bn_1_{id}"),
    )?;
    let x1_1 = sep_block(g, h, filters, 5, 1, &format!("normal_left1_{id}"))?;
    let x1_2 = sep_block(g, p, filters, 3, 1, &format!("normal_right1_{id}"))?;
    let x1 = add(g, x1_1, x1_2, &format!("normal_add_1_{id}"))?;
    let x2_1 = sep_block(g, p, filters, 5, 1, &format!("normal_left2_{id}"))?;
    let x2_2 = sep_block(g, p, filters, 3, 1, &format!("normal_right2_{id}"))?;
    let x2 = add(g, x2_1, x2_2, &format!("normal_add_2_{id}"))?;
    let avg3 = |name: String| {
        named(
            || AveragePooling2D::new(3).strides(1).padding(Padding::Same),
            &name,
        )
    };
    let x3 = g.call(avg3(format!("normal_left3_{id}")), &[h])?;
    let x3 = add(g, x3, p, &format!("normal_add_3_{id}"))?;
    let x4_1 = g.call(avg3(format!("normal_left4_{id}")), &[p])?;
    let x4_2 = g.call(avg3(format!("normal_right4_{id}")), &[p])?;
    let x4 = add(g, x4_1, x4_2, &format!("normal_add_4_{id}"))?;
    let x5 = sep_block(g, h, filters, 3, 1, &format!("normal_left5_{id}"))?;
    let x5 = add(g, x5, h, &format!("normal_add_5_{id}"))?;
    let x = g.call(
        named(Concatenate::new, &format!("normal_concat_{id}")),
        &[p, x1, x2, x3, x4, x5],
    )?;
    Ok((x, ip))
}

/// Keras's `_reduction_a_cell`; returns the cell output and `ip` (the next cell's `p`).
fn reduction_cell(
    g: &mut Functional,
    ip: SymbolicTensor,
    p: Option<SymbolicTensor>,
    filters: usize,
    id: &str,
) -> Result<(SymbolicTensor, SymbolicTensor)> {
    let p = adjust_block(g, p, ip, filters, id)?;
    let h = squeeze(
        g,
        ip,
        filters,
        &format!("reduction_conv_1_{id}"),
        &format!("reduction_bn_1_{id}"),
    )?;
    let pad = correct_pad(g, h, 3)?;
    let h3 = g.call(
        named(
            || ZeroPadding2D::with_padding(pad),
            &format!("reduction_pad_1_{id}"),
        ),
        &[h],
    )?;
    let x1_1 = sep_block(g, h, filters, 5, 2, &format!("reduction_left1_{id}"))?;
    let x1_2 = sep_block(g, p, filters, 7, 2, &format!("reduction_right1_{id}"))?;
    let x1 = add(g, x1_1, x1_2, &format!("reduction_add_1_{id}"))?;
    let x2_1 = g.call(
        named(
            || MaxPooling2D::new(3).strides(2),
            &format!("reduction_left2_{id}"),
        ),
        &[h3],
    )?;
    let x2_2 = sep_block(g, p, filters, 7, 2, &format!("reduction_right2_{id}"))?;
    let x2 = add(g, x2_1, x2_2, &format!("reduction_add_2_{id}"))?;
    let x3_1 = g.call(
        named(
            || AveragePooling2D::new(3).strides(2),
            &format!("reduction_left3_{id}"),
        ),
        &[h3],
    )?;
    let x3_2 = sep_block(g, p, filters, 5, 2, &format!("reduction_right3_{id}"))?;
    let x3 = add(g, x3_1, x3_2, &format!("reduction_add3_{id}"))?;
    let x4 = g.call(
        named(
            || AveragePooling2D::new(3).strides(1).padding(Padding::Same),
            &format!("reduction_left4_{id}"),
        ),
        &[x1],
    )?;
    let x4 = g.call(Add::new(), &[x2, x4])?;
    let x5_1 = sep_block(g, x1, filters, 3, 1, &format!("reduction_left4_{id}"))?;
    let x5_2 = g.call(
        named(
            || MaxPooling2D::new(3).strides(2),
            &format!("reduction_right5_{id}"),
        ),
        &[h3],
    )?;
    let x5 = add(g, x5_1, x5_2, &format!("reduction_add4_{id}"))?;
    let x = g.call(
        named(Concatenate::new, &format!("reduction_concat_{id}")),
        &[x2, x3, x4, x5],
    )?;
    Ok((x, ip))
}

fn build(opts: &ApplicationOptions, shape: Shape) -> Result<Model> {
    let mut graph = Functional::new();
    let input = graph.input(Input::with_shape(shape));
    let x = body(&mut graph, input, opts)?;
    graph.build_named("nasnet_mobile", &[input], &[x])
}

fn body(
    g: &mut Functional,
    input: SymbolicTensor,
    opts: &ApplicationOptions,
) -> Result<SymbolicTensor> {
    let mut x = g.call(
        named(
            || Conv2D::new(32, 3).strides(2).use_bias(false).he_normal(),
            "stem_conv1",
        ),
        &[input],
    )?;
    x = g.call(bn("stem_bn1"), &[x])?;
    let (x1, p) = reduction_cell(g, x, None, FILTERS / 4, "stem_1")?;
    let (mut x, mut p) = reduction_cell(g, x1, Some(p), FILTERS / 2, "stem_2")?;
    for (stage, mult) in [(0, 1), (1, 2), (2, 4)] {
        if stage > 0 {
            let id = format!("reduce_{}", stage * NUM_BLOCKS);
            (x, p) = reduction_cell(g, x, Some(p), FILTERS * mult, &id)?;
        }
        for i in 0..NUM_BLOCKS {
            let id = (stage * NUM_BLOCKS + i + usize::from(stage > 0)).to_string();
            (x, p) = normal_cell(g, x, Some(p), FILTERS * mult, &id)?;
        }
    }
    x = relu(g, x)?;
    top(g, x, opts, "", "", "")
}
