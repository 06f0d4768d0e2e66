//! InceptionResNetV2 (Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual
//! Connections on Learning"), built as `keras.applications.InceptionResNetV2` builds it: the
//! stem and `mixed_5b`, 10 `block35`, `mixed_6a`, 20 `block17`, `mixed_7a`, 10 `block8` residual
//! blocks whose residual is added through [`CustomScaleLayer`] (scales 0.17, 0.1, 0.2, and 1.0
//! without activation for `block8_10`), `conv_7b`, and the model named `inception_resnet_v2`.
//! Unnamed layers are created in Keras's order, so they get Keras's numbers (`conv2d_202`).

use super::keras_weights::{with_keras_weights, ImagenetFile};
use super::resnet::top;
use super::{named, obtain_input_shape, ApplicationOptions};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, AveragePooling2D, BatchNormalization, Concatenate, Conv2D,
    CustomScaleLayer, Input, MaxPooling2D, Shape,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// Builds InceptionResNetV2 (default input 299x299x3, at least 75x75), with fresh default names.
pub fn inception_resnet_v2(opts: &ApplicationOptions) -> Result<Model> {
    let shape = obtain_input_shape("InceptionResNetV2", opts, 299, 75)?;
    let model = naming::with_fresh_names(|| build(opts, shape));
    with_keras_weights(model, opts, "InceptionResNetV2", || {
        Ok(imagenet_file(opts.include_top))
    })
}

/// Keras's file for InceptionResNetV2's `weights="imagenet"`.
pub(crate) fn imagenet_file(include_top: bool) -> ImagenetFile {
    if include_top {
        ImagenetFile::new(
            "inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
            Some("e693bd0210a403b3192acc6073ad2e96"),
        )
    } else {
        ImagenetFile::new(
            "inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            Some("d19885ff4a710c122648d3b5c3b684e4"),
        )
    }
}

/// Keras's `conv2d_bn` without bias: Conv2D, BatchNormalization without gamma, ReLU; unnamed,
/// or `<name>`, `<name>_bn`, `<name>_ac`.
fn conv_bn(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    kernel: (usize, usize),
    strides: usize,
    padding: Padding,
    name: Option<&str>,
) -> Result<SymbolicTensor> {
    let conv = || {
        Conv2D::with_kernel(filters, kernel)
            .strides(strides)
            .padding(padding)
            .use_bias(false)
    };
    let bn = || BatchNormalization::new().scale(false);
    let relu = || Activation::new(ActivationFn::Relu);
    match name {
        None => {
            let x = g.call(conv(), &[x])?;
            let x = g.call(bn(), &[x])?;
            g.call(relu(), &[x])
        }
        Some(n) => {
            let x = g.call(named(conv, n), &[x])?;
            let x = g.call(named(bn, &format!("{n}_bn")), &[x])?;
            g.call(named(relu, &format!("{n}_ac")), &[x])
        }
    }
}

/// `conv_bn` with stride 1, `same` padding and a default name, the common case.
fn cb(
    g: &mut Functional,
    x: SymbolicTensor,
    f: usize,
    kh: usize,
    kw: usize,
) -> Result<SymbolicTensor> {
    conv_bn(g, x, f, (kh, kw), 1, Padding::Same, None)
}

/// A 3x3 stride-2 `valid` `conv_bn`, the reduction blocks' downsampling.
fn cb_down(g: &mut Functional, x: SymbolicTensor, f: usize) -> Result<SymbolicTensor> {
    conv_bn(g, x, f, (3, 3), 2, Padding::Valid, None)
}

#[derive(Clone, Copy)]
enum BlockType {
    Block35,
    Block17,
    Block8,
}

/// Keras's `inception_resnet_block`: the branches, their concatenation (`<block>_mixed`), a 1x1
/// convolution with bias back to the input's channels (`<block>_conv`), `x + up * scale`, and a
/// ReLU (`<block>_ac`) unless `activation` is false.
fn inception_resnet_block(
    g: &mut Functional,
    x: SymbolicTensor,
    scale: f32,
    block: BlockType,
    idx: usize,
    activation: bool,
) -> Result<SymbolicTensor> {
    let (kind, branches) = match block {
        BlockType::Block35 => {
            let b0 = cb(g, x, 32, 1, 1)?;
            let b1 = cb(g, x, 32, 1, 1)?;
            let b1 = cb(g, b1, 32, 3, 3)?;
            let b2 = cb(g, x, 32, 1, 1)?;
            let b2 = cb(g, b2, 48, 3, 3)?;
            let b2 = cb(g, b2, 64, 3, 3)?;
            ("block35", vec![b0, b1, b2])
        }
        BlockType::Block17 => {
            let b0 = cb(g, x, 192, 1, 1)?;
            let b1 = cb(g, x, 128, 1, 1)?;
            let b1 = cb(g, b1, 160, 1, 7)?;
            let b1 = cb(g, b1, 192, 7, 1)?;
            ("block17", vec![b0, b1])
        }
        BlockType::Block8 => {
            let b0 = cb(g, x, 192, 1, 1)?;
            let b1 = cb(g, x, 192, 1, 1)?;
            let b1 = cb(g, b1, 224, 1, 3)?;
            let b1 = cb(g, b1, 256, 3, 1)?;
            ("block8", vec![b0, b1])
        }
    };
    let name = format!("{kind}_{idx}");
    let mixed = g.call(
        named(|| Concatenate::with_axis(3), &format!("{name}_mixed")),
        &branches,
    )?;
    let channels = g.shape(x)?[2].unwrap_or(0);
    let up = g.call(
        named(
            || Conv2D::new(channels, 1).padding(Padding::Same),
            &format!("{name}_conv"),
        ),
        &[mixed],
    )?;
    let y = g.call(CustomScaleLayer::new(scale), &[x, up])?;
    if !activation {
        return Ok(y);
    }
    g.call(
        named(
            || Activation::new(ActivationFn::Relu),
            &format!("{name}_ac"),
        ),
        &[y],
    )
}

fn concat(g: &mut Functional, xs: &[SymbolicTensor], name: &str) -> Result<SymbolicTensor> {
    g.call(named(|| Concatenate::with_axis(3), name), xs)
}

fn max_pool(g: &mut Functional, x: SymbolicTensor) -> Result<SymbolicTensor> {
    g.call(MaxPooling2D::new(3).strides(2), &[x])
}

fn build(opts: &ApplicationOptions, shape: Shape) -> Result<Model> {
    let mut graph = Functional::new();
    let input = graph.input(Input::with_shape(shape));
    let x = body(&mut graph, input, opts)?;
    graph.build_named("inception_resnet_v2", &[input], &[x])
}

fn body(
    g: &mut Functional,
    input: SymbolicTensor,
    opts: &ApplicationOptions,
) -> Result<SymbolicTensor> {
    let valid = Padding::Valid;

    // Stem: 35 x 35 x 192.
    let mut x = conv_bn(g, input, 32, (3, 3), 2, valid, None)?;
    x = conv_bn(g, x, 32, (3, 3), 1, valid, None)?;
    x = cb(g, x, 64, 3, 3)?;
    x = max_pool(g, x)?;
    x = conv_bn(g, x, 80, (1, 1), 1, valid, None)?;
    x = conv_bn(g, x, 192, (3, 3), 1, valid, None)?;
    x = max_pool(g, x)?;

    // mixed_5b (Inception-A): 35 x 35 x 320.
    let b0 = cb(g, x, 96, 1, 1)?;
    let b1 = cb(g, x, 48, 1, 1)?;
    let b1 = cb(g, b1, 64, 5, 5)?;
    let b2 = cb(g, x, 64, 1, 1)?;
    let b2 = cb(g, b2, 96, 3, 3)?;
    let b2 = cb(g, b2, 96, 3, 3)?;
    let bp = g.call(
        AveragePooling2D::new(3).strides(1).padding(Padding::Same),
        &[x],
    )?;
    let bp = cb(g, bp, 64, 1, 1)?;
    x = concat(g, &[b0, b1, b2, bp], "mixed_5b")?;
    for i in 1..=10 {
        x = inception_resnet_block(g, x, 0.17, BlockType::Block35, i, true)?;
    }

    // mixed_6a (Reduction-A): 17 x 17 x 1088.
    let b0 = cb_down(g, x, 384)?;
    let b1 = cb(g, x, 256, 1, 1)?;
    let b1 = cb(g, b1, 256, 3, 3)?;
    let b1 = cb_down(g, b1, 384)?;
    let bp = max_pool(g, x)?;
    x = concat(g, &[b0, b1, bp], "mixed_6a")?;
    for i in 1..=20 {
        x = inception_resnet_block(g, x, 0.1, BlockType::Block17, i, true)?;
    }

    // mixed_7a (Reduction-B): 8 x 8 x 2080.
    let b0 = cb(g, x, 256, 1, 1)?;
    let b0 = cb_down(g, b0, 384)?;
    let b1 = cb(g, x, 256, 1, 1)?;
    let b1 = cb_down(g, b1, 288)?;
    let b2 = cb(g, x, 256, 1, 1)?;
    let b2 = cb(g, b2, 288, 3, 3)?;
    let b2 = cb_down(g, b2, 320)?;
    let bp = max_pool(g, x)?;
    x = concat(g, &[b0, b1, b2, bp], "mixed_7a")?;
    for i in 1..=9 {
        x = inception_resnet_block(g, x, 0.2, BlockType::Block8, i, true)?;
    }
    x = inception_resnet_block(g, x, 1.0, BlockType::Block8, 10, false)?;

    x = conv_bn(g, x, 1536, (1, 1), 1, Padding::Same, Some("conv_7b"))?;
    top(g, x, opts, "avg_pool", "", "")
}
