//! DenseNet121, DenseNet169 and DenseNet201 (Huang et al., "Densely Connected Convolutional
//! Networks"), built as `keras.applications.densenet` builds them: dense blocks of BN-ReLU-1x1
//! and BN-ReLU-3x3 convolutions concatenated onto their input (`conv4_block24_concat`),
//! transition blocks halving channels and size (`pool3_pool`), the stem's unnamed
//! `ZeroPadding2D`s, and Keras's model names (`densenet121`).

use super::keras_weights::{with_keras_weights, ImagenetFile};
use super::resnet::top;
use super::resnet50::{bn, relu};
use super::{named, obtain_input_shape, ApplicationOptions};
use crate::error::Result;
use crate::layers::{
    naming, AveragePooling2D, Concatenate, Conv2D, Input, MaxPooling2D, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// Keras's published MD5s of the ImageNet files `(with top, without)`.
const DENSENET121_HASHES: (&str, &str) = (
    "9d60b8095a5708f2dcce2bca79d332c7",
    "30ee3e1110167f948a6b9946edeeb738",
);
const DENSENET169_HASHES: (&str, &str) = (
    "d699b8f76981ab1b30698df4c175e90b",
    "b8c4d4c20dd625c148057b9ff1c1176b",
);
const DENSENET201_HASHES: (&str, &str) = (
    "1ceb130c1ea1b78c3bf6114dbdfd8807",
    "c13680b51ded0fb44dff2d8f86ac8bb1",
);

/// Each dense layer adds this many channels.
const GROWTH_RATE: usize = 32;

/// `keras.applications.DenseNet121` (dense blocks of 6, 12, 24, 16 layers; default input
/// 224x224x3, at least 32x32), with fresh default names.
pub fn densenet121(opts: &ApplicationOptions) -> Result<Model> {
    densenet(
        opts,
        "DenseNet121",
        "densenet121",
        [6, 12, 24, 16],
        DENSENET121_HASHES,
    )
}

/// `keras.applications.DenseNet169` (6, 12, 32, 32).
pub fn densenet169(opts: &ApplicationOptions) -> Result<Model> {
    densenet(
        opts,
        "DenseNet169",
        "densenet169",
        [6, 12, 32, 32],
        DENSENET169_HASHES,
    )
}

/// `keras.applications.DenseNet201` (6, 12, 48, 32).
pub fn densenet201(opts: &ApplicationOptions) -> Result<Model> {
    densenet(
        opts,
        "DenseNet201",
        "densenet201",
        [6, 12, 48, 32],
        DENSENET201_HASHES,
    )
}

/// Builds one DenseNet; `hashes` are Keras's published MD5s of the ImageNet files (with top,
/// without top).
fn densenet(
    opts: &ApplicationOptions,
    app: &str,
    name: &str,
    blocks: [usize; 4],
    hashes: (&'static str, &'static str),
) -> Result<Model> {
    let shape = obtain_input_shape(app, opts, 224, 32)?;
    let model = naming::with_fresh_names(|| build(opts, shape, name, blocks));
    with_keras_weights(model, opts, app, || {
        Ok(imagenet_file(name, hashes, opts.include_top))
    })
}

/// Keras's ImageNet file of DenseNet `name` (`densenet121`), given its published MD5s.
fn imagenet_file(
    name: &str,
    hashes: (&'static str, &'static str),
    include_top: bool,
) -> ImagenetFile {
    let (tail, hash) = if include_top {
        ("", hashes.0)
    } else {
        ("_notop", hashes.1)
    };
    ImagenetFile::new(
        format!("densenet/{name}_weights_tf_dim_ordering_tf_kernels{tail}.h5"),
        Some(hash),
    )
}

/// Keras's ImageNet file of `densenet121`, `densenet169` or `densenet201`.
pub(crate) fn imagenet_file_of(name: &str, include_top: bool) -> ImagenetFile {
    let hashes = match name {
        "densenet121" => DENSENET121_HASHES,
        "densenet169" => DENSENET169_HASHES,
        _ => DENSENET201_HASHES,
    };
    imagenet_file(name, hashes, include_top)
}

/// Keras's `conv_block`: BN-ReLU-1x1 (4 x growth) then BN-ReLU-3x3 (growth), concatenated onto
/// the input.
fn conv_block(g: &mut Functional, x: SymbolicTensor, name: &str) -> Result<SymbolicTensor> {
    let mut y = g.call(bn(&format!("{name}_0_bn")), &[x])?;
    y = g.call(relu(&format!("{name}_0_relu")), &[y])?;
    y = g.call(
        named(
            || Conv2D::new(4 * GROWTH_RATE, 1).use_bias(false),
            &format!("{name}_1_conv"),
        ),
        &[y],
    )?;
    y = g.call(bn(&format!("{name}_1_bn")), &[y])?;
    y = g.call(relu(&format!("{name}_1_relu")), &[y])?;
    y = g.call(
        named(
            || {
                Conv2D::new(GROWTH_RATE, 3)
                    .padding(Padding::Same)
                    .use_bias(false)
            },
            &format!("{name}_2_conv"),
        ),
        &[y],
    )?;
    g.call(
        named(|| Concatenate::with_axis(3), &format!("{name}_concat")),
        &[x, y],
    )
}

/// Keras's `transition_block` with `reduction=0.5`: BN-ReLU, a 1x1 convolution to half the
/// channels, a 2x2 average pool.
fn transition_block(g: &mut Functional, x: SymbolicTensor, name: &str) -> Result<SymbolicTensor> {
    let mut y = g.call(bn(&format!("{name}_bn")), &[x])?;
    y = g.call(relu(&format!("{name}_relu")), &[y])?;
    // Keras: `int(x.shape[bn_axis] * reduction)`, the channel count is always known here.
    let channels = g.shape(y)?[2].unwrap_or(0);
    y = g.call(
        named(
            || Conv2D::new(channels / 2, 1).use_bias(false),
            &format!("{name}_conv"),
        ),
        &[y],
    )?;
    g.call(
        named(
            || AveragePooling2D::new(2).strides(2),
            &format!("{name}_pool"),
        ),
        &[y],
    )
}

fn build(opts: &ApplicationOptions, shape: Shape, name: &str, blocks: [usize; 4]) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = g.call(ZeroPadding2D::new(3), &[input])?;
    x = g.call(
        named(
            || Conv2D::new(64, 7).strides(2).use_bias(false),
            "conv1_conv",
        ),
        &[x],
    )?;
    x = g.call(bn("conv1_bn"), &[x])?;
    x = g.call(relu("conv1_relu"), &[x])?;
    x = g.call(ZeroPadding2D::new(1), &[x])?;
    x = g.call(named(|| MaxPooling2D::new(3).strides(2), "pool1"), &[x])?;
    for (i, &n) in blocks.iter().enumerate() {
        for b in 1..=n {
            x = conv_block(&mut g, x, &format!("conv{}_block{b}", i + 2))?;
        }
        if i < 3 {
            x = transition_block(&mut g, x, &format!("pool{}", i + 2))?;
        }
    }
    x = g.call(bn("bn"), &[x])?;
    x = g.call(relu("relu"), &[x])?;
    x = top(&mut g, x, opts, "avg_pool", "avg_pool", "max_pool")?;
    g.build_named(name, &[input], &[x])
}
