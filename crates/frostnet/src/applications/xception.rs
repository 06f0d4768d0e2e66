//! Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions"), built as
//! `keras.applications.Xception` builds it: entry, middle (8 blocks) and exit flows of
//! `SeparableConv2D`s without bias, the unnamed strided 1x1 `Conv2D` + BatchNormalization
//! residuals created before each block's named layers (hence Keras's `conv2d`, `batch_normalization`
//! ... `add_11` numbering), and the model named `xception`.

use super::keras_weights::{with_keras_weights, ImagenetFile};
use super::resnet::top;
use super::{named, obtain_input_shape, ApplicationOptions};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, Add, BatchNormalization, Conv2D, Input, MaxPooling2D,
    SeparableConv2D, Shape,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// Builds Xception (default input 299x299x3, at least 71x71), with fresh default names.
pub fn xception(opts: &ApplicationOptions) -> Result<Model> {
    let shape = obtain_input_shape("Xception", opts, 299, 71)?;
    let model = naming::with_fresh_names(|| build(opts, shape));
    with_keras_weights(model, opts, "Xception", || {
        Ok(imagenet_file(opts.include_top))
    })
}

/// Keras's file for Xception's `weights="imagenet"`.
pub(crate) fn imagenet_file(include_top: bool) -> ImagenetFile {
    if include_top {
        ImagenetFile::new(
            "xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
            Some("0a58e3b7378bc2990ea3b43d5981f1f6"),
        )
    } else {
        ImagenetFile::new(
            "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            Some("b0042744bf5b25fce3cb969f33bebb97"),
        )
    }
}

fn relu(g: &mut Functional, x: SymbolicTensor, name: &str) -> Result<SymbolicTensor> {
    g.call(named(|| Activation::new(ActivationFn::Relu), name), &[x])
}

/// A named 3x3 `same` `SeparableConv2D` without bias and its BatchNormalization (`<name>_bn`).
fn sep_bn(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    name: &str,
) -> Result<SymbolicTensor> {
    let x = g.call(
        named(
            || {
                SeparableConv2D::new(filters, 3)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            name,
        ),
        &[x],
    )?;
    g.call(named(BatchNormalization::new, &format!("{name}_bn")), &[x])
}

/// The unnamed strided 1x1 convolution + BatchNormalization of a downsampling block's residual.
fn residual(g: &mut Functional, x: SymbolicTensor, filters: usize) -> Result<SymbolicTensor> {
    let r = g.call(
        Conv2D::new(filters, 1)
            .strides(2)
            .padding(Padding::Same)
            .use_bias(false),
        &[x],
    )?;
    g.call(BatchNormalization::new(), &[r])
}

/// A downsampling block (`block2`..`block4`, `block13`): [ReLU] sepconv-BN, ReLU sepconv-BN,
/// 3x3/2 max pool, plus the residual. `block2` has no leading ReLU.
fn down_block(
    g: &mut Functional,
    x: SymbolicTensor,
    block: usize,
    filters: (usize, usize),
    first_relu: bool,
) -> Result<SymbolicTensor> {
    let r = residual(g, x, filters.1)?;
    let p = format!("block{block}");
    let mut y = x;
    if first_relu {
        y = relu(g, y, &format!("{p}_sepconv1_act"))?;
    }
    y = sep_bn(g, y, filters.0, &format!("{p}_sepconv1"))?;
    y = relu(g, y, &format!("{p}_sepconv2_act"))?;
    y = sep_bn(g, y, filters.1, &format!("{p}_sepconv2"))?;
    y = g.call(
        named(
            || MaxPooling2D::new(3).strides(2).padding(Padding::Same),
            &format!("{p}_pool"),
        ),
        &[y],
    )?;
    g.call(Add::new(), &[y, r])
}

fn build(opts: &ApplicationOptions, shape: Shape) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = g.call(
        named(
            || Conv2D::new(32, 3).strides(2).use_bias(false),
            "block1_conv1",
        ),
        &[input],
    )?;
    x = g.call(named(BatchNormalization::new, "block1_conv1_bn"), &[x])?;
    x = relu(&mut g, x, "block1_conv1_act")?;
    x = g.call(
        named(|| Conv2D::new(64, 3).use_bias(false), "block1_conv2"),
        &[x],
    )?;
    x = g.call(named(BatchNormalization::new, "block1_conv2_bn"), &[x])?;
    x = relu(&mut g, x, "block1_conv2_act")?;

    x = down_block(&mut g, x, 2, (128, 128), false)?;
    x = down_block(&mut g, x, 3, (256, 256), true)?;
    x = down_block(&mut g, x, 4, (728, 728), true)?;
    for i in 0..8 {
        let p = format!("block{}", i + 5);
        let r = x;
        for j in 1..=3 {
            x = relu(&mut g, x, &format!("{p}_sepconv{j}_act"))?;
            x = sep_bn(&mut g, x, 728, &format!("{p}_sepconv{j}"))?;
        }
        x = g.call(Add::new(), &[x, r])?;
    }
    x = down_block(&mut g, x, 13, (728, 1024), true)?;

    x = sep_bn(&mut g, x, 1536, "block14_sepconv1")?;
    x = relu(&mut g, x, "block14_sepconv1_act")?;
    x = sep_bn(&mut g, x, 2048, "block14_sepconv2")?;
    x = relu(&mut g, x, "block14_sepconv2_act")?;
    x = top(&mut g, x, opts, "avg_pool", "", "")?;
    g.build_named("xception", &[input], &[x])
}
