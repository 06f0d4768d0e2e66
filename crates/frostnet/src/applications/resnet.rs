//! ResNet101 and ResNet152 (deeper ResNet50s, sharing `resnet50.rs`'s blocks), and ResNet50V2,
//! ResNet101V2, ResNet152V2 (He et al., "Identity Mappings in Deep Residual Networks"): built as
//! `keras.applications.resnet` and `resnet_v2` build them, with Keras's names (`conv4_block23_out`,
//! `post_bn`), the unnamed strided `MaxPooling2D(1)` shortcuts of the V2 stacks numbered as Keras
//! numbers them, and Keras's model names (`resnet101`, `resnet50v2`).

use super::keras_weights::{with_keras_weights, ImagenetFile};
use super::resnet50::{bn, relu};
use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::Result;
use crate::layers::{
    naming, Add, Conv2D, Dense, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, MaxPooling2D,
    Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};

/// Keras's `WEIGHTS_HASHES` in `resnet.py`: (with top, without top).
fn hashes(weights_name: &str) -> (&'static str, &'static str) {
    match weights_name {
        "resnet101" => (
            "f1aeb4b969a6efcfb50fad2f0c20cfc5",
            "88cf7a10940856eca736dc7b7e228a21",
        ),
        "resnet152" => (
            "100835be76be38e30d865e96f2aaae62",
            "ee4c566cf9a93f14d82f913c2dc6dd0c",
        ),
        "resnet50v2" => (
            "3ef43a0b657b3be2300d5770ece849e0",
            "fac2f116257151a9d068a22e544a4917",
        ),
        "resnet101v2" => (
            "6343647c601c52e1368623803854d971",
            "c0ed64b8031c3730f411d2eb4eea35b5",
        ),
        _ => (
            "a49b44d1979771252814e80f8ec446f9",
            "ed17cf2e0169df9d443503ef94b23b33",
        ),
    }
}

/// The ImageNet file of a ResNet, as `resnet.ResNet` names it from `weights_name`.
pub(crate) fn imagenet_file(weights_name: &str, include_top: bool) -> ImagenetFile {
    let (top, notop) = hashes(weights_name);
    let (tail, hash) = if include_top {
        ("", top)
    } else {
        ("_notop", notop)
    };
    ImagenetFile::new(
        format!("resnet/{weights_name}_weights_tf_dim_ordering_tf_kernels{tail}.h5"),
        Some(hash),
    )
}

fn v1(opts: &ApplicationOptions, app: &str, name: &str, blocks: &[usize; 4]) -> Result<Model> {
    let shape = obtain_input_shape(app, opts, 224, 32)?;
    let plain = ApplicationOptions {
        weights: None,
        ..opts.clone()
    };
    let model = naming::with_fresh_names(|| super::resnet50::build(&plain, shape, name, blocks));
    with_keras_weights(model, opts, app, || {
        Ok(imagenet_file(name, opts.include_top))
    })
}

/// `keras.applications.ResNet101` (stacks of 3, 4, 23, 3 blocks; default input 224x224x3, at
/// least 32x32), with fresh default names.
pub fn resnet101(opts: &ApplicationOptions) -> Result<Model> {
    v1(opts, "ResNet101", "resnet101", &[3, 4, 23, 3])
}

/// `keras.applications.ResNet152` (stacks of 3, 8, 36, 3 blocks).
pub fn resnet152(opts: &ApplicationOptions) -> Result<Model> {
    v1(opts, "ResNet152", "resnet152", &[3, 8, 36, 3])
}

/// `keras.applications.ResNet50V2` (pre-activation blocks, stacks of 3, 4, 6, 3).
pub fn resnet50_v2(opts: &ApplicationOptions) -> Result<Model> {
    v2(opts, "ResNet50V2", "resnet50v2", &[3, 4, 6, 3])
}

/// `keras.applications.ResNet101V2` (stacks of 3, 4, 23, 3).
pub fn resnet101_v2(opts: &ApplicationOptions) -> Result<Model> {
    v2(opts, "ResNet101V2", "resnet101v2", &[3, 4, 23, 3])
}

/// `keras.applications.ResNet152V2` (stacks of 3, 8, 36, 3).
pub fn resnet152_v2(opts: &ApplicationOptions) -> Result<Model> {
    v2(opts, "ResNet152V2", "resnet152v2", &[3, 8, 36, 3])
}

fn v2(opts: &ApplicationOptions, app: &str, name: &str, blocks: &[usize; 4]) -> Result<Model> {
    let shape = obtain_input_shape(app, opts, 224, 32)?;
    let model = naming::with_fresh_names(|| build_v2(opts, shape, name, blocks));
    with_keras_weights(model, opts, app, || {
        Ok(imagenet_file(name, opts.include_top))
    })
}

/// Keras's `residual_block_v2`: BN-ReLU pre-activation shared by the shortcut (a 1x1 convolution
/// in a stack's first block) and the 1x1 -> padded 3x3 (carrying the stride) -> 1x1 branch; the
/// identity shortcut of the strided last block is a `MaxPooling2D(1, strides)`.
fn block_v2(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    stride: usize,
    conv_shortcut: bool,
    name: &str,
) -> Result<SymbolicTensor> {
    let preact = g.call(bn(&format!("{name}_preact_bn")), &[x])?;
    let preact = g.call(relu(&format!("{name}_preact_relu")), &[preact])?;
    let shortcut = if conv_shortcut {
        g.call(
            named(
                || Conv2D::new(4 * filters, 1).strides(stride),
                &format!("{name}_0_conv"),
            ),
            &[preact],
        )?
    } else if stride > 1 {
        g.call(MaxPooling2D::new(1).strides(stride), &[x])?
    } else {
        x
    };
    let mut y = g.call(
        named(
            || Conv2D::new(filters, 1).use_bias(false),
            &format!("{name}_1_conv"),
        ),
        &[preact],
    )?;
    y = g.call(bn(&format!("{name}_1_bn")), &[y])?;
    y = g.call(relu(&format!("{name}_1_relu")), &[y])?;
    y = g.call(
        named(|| ZeroPadding2D::new(1), &format!("{name}_2_pad")),
        &[y],
    )?;
    y = g.call(
        named(
            || Conv2D::new(filters, 3).strides(stride).use_bias(false),
            &format!("{name}_2_conv"),
        ),
        &[y],
    )?;
    y = g.call(bn(&format!("{name}_2_bn")), &[y])?;
    y = g.call(relu(&format!("{name}_2_relu")), &[y])?;
    y = g.call(
        named(|| Conv2D::new(4 * filters, 1), &format!("{name}_3_conv")),
        &[y],
    )?;
    g.call(named(Add::new, &format!("{name}_out")), &[shortcut, y])
}

/// Keras's `ResNet(stack_fn, preact=True, use_bias=True)` with `stack_residual_blocks_v2`: the
/// stride of a stack is in its last block (none in `conv5`).
fn build_v2(
    opts: &ApplicationOptions,
    shape: Shape,
    model_name: &str,
    blocks: &[usize; 4],
) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = g.call(named(|| ZeroPadding2D::new(3), "conv1_pad"), &[input])?;
    x = g.call(named(|| Conv2D::new(64, 7).strides(2), "conv1_conv"), &[x])?;
    x = g.call(named(|| ZeroPadding2D::new(1), "pool1_pad"), &[x])?;
    x = g.call(
        named(|| MaxPooling2D::new(3).strides(2), "pool1_pool"),
        &[x],
    )?;
    for ((stack, filters, stride1), &n) in [
        ("conv2", 64, 2),
        ("conv3", 128, 2),
        ("conv4", 256, 2),
        ("conv5", 512, 1),
    ]
    .into_iter()
    .zip(blocks)
    {
        x = block_v2(&mut g, x, filters, 1, true, &format!("{stack}_block1"))?;
        for i in 2..n {
            x = block_v2(&mut g, x, filters, 1, false, &format!("{stack}_block{i}"))?;
        }
        x = block_v2(
            &mut g,
            x,
            filters,
            stride1,
            false,
            &format!("{stack}_block{n}"),
        )?;
    }
    x = g.call(bn("post_bn"), &[x])?;
    x = g.call(relu("post_relu"), &[x])?;
    x = top(&mut g, x, opts, "avg_pool", "avg_pool", "max_pool")?;
    g.build_named(model_name, &[input], &[x])
}

/// The head every application shares: with the top, global average pooling (`top_pool`) and
/// the `predictions` layer; without, the requested global pooling (`avg` or `max`), or nothing.
/// An empty name keeps Keras's default name (`global_average_pooling2d`).
pub(super) fn top(
    g: &mut Functional,
    x: SymbolicTensor,
    opts: &ApplicationOptions,
    top_pool: &str,
    avg: &str,
    max: &str,
) -> Result<SymbolicTensor> {
    let avg_pool = |n: &str| match n {
        "" => GlobalAveragePooling2D::new(),
        n => named(GlobalAveragePooling2D::new, n),
    };
    if opts.include_top {
        let x = g.call(avg_pool(top_pool), &[x])?;
        let p = named(|| Dense::new(opts.classes), "predictions")
            .activation(opts.classifier_activation);
        return g.call(p, &[x]);
    }
    match opts.pooling {
        Some(Pooling::Avg) => g.call(avg_pool(avg), &[x]),
        Some(Pooling::Max) => match max {
            "" => g.call(GlobalMaxPooling2D::new(), &[x]),
            n => g.call(named(GlobalMaxPooling2D::new, n), &[x]),
        },
        None => Ok(x),
    }
}
