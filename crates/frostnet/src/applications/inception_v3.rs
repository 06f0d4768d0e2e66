//! InceptionV3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision"),
//! built exactly as `keras.applications.InceptionV3` builds it: same layer creation order (hence
//! the same default names, `conv2d_80`), same `mixed*` names, BatchNormalization without gamma
//! (`scale=False`), and the model named `inception_v3`.

use super::{named, obtain_input_shape, InceptionV3Options, Pooling};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, AveragePooling2D, BatchNormalization, Concatenate, Conv2D,
    Dense, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, MaxPooling2D, Shape,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// Keras's smallest accepted input side: smaller images vanish before `mixed10`.
const MIN_SIZE: usize = 75;
/// The ImageNet input side the architecture was designed for.
const DEFAULT_SIZE: usize = 299;

/// Builds InceptionV3 with fresh default names, so every layer is named as in a fresh Keras
/// session however many layers this thread has made before.
///
/// ```
/// use frostnet::applications::{inception_v3, InceptionV3Options};
/// let small = InceptionV3Options { include_top: false, input_shape: Some([Some(75), Some(75), Some(3)]),
///     ..Default::default() };
/// let model = inception_v3(&small)?;
/// assert_eq!(model.layers()[249].name(), "conv2d_80");
/// # Ok::<(), frostnet::Error>(())
/// ```
pub fn inception_v3(opts: &InceptionV3Options) -> Result<Model> {
    let shape = obtain_input_shape("InceptionV3", opts, DEFAULT_SIZE, MIN_SIZE)?;
    naming::with_fresh_names(|| build(opts, shape))
}

/// Keras's `conv2d_bn`: Conv2D without bias, BatchNormalization without gamma, ReLU.
fn conv_bn(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    kernel: (usize, usize),
    strides: usize,
    padding: Padding,
) -> Result<SymbolicTensor> {
    let x = g.call(
        Conv2D::with_kernel(filters, kernel)
            .strides(strides)
            .padding(padding)
            .use_bias(false),
        &[x],
    )?;
    let x = g.call(BatchNormalization::new().scale(false), &[x])?;
    g.call(Activation::new(ActivationFn::Relu), &[x])
}

/// `conv_bn` with stride 1 and `same` padding, the common case.
fn cb(
    g: &mut Functional,
    x: SymbolicTensor,
    f: usize,
    kh: usize,
    kw: usize,
) -> Result<SymbolicTensor> {
    conv_bn(g, x, f, (kh, kw), 1, Padding::Same)
}

/// The 3x3 stride-1 `same` average pool that feeds each block's pool branch.
fn avg_pool_same(g: &mut Functional, x: SymbolicTensor) -> Result<SymbolicTensor> {
    g.call(
        AveragePooling2D::new(3).strides(1).padding(Padding::Same),
        &[x],
    )
}

fn concat(g: &mut Functional, xs: &[SymbolicTensor], name: &str) -> Result<SymbolicTensor> {
    g.call(named(Concatenate::new, name), xs)
}

fn build(opts: &InceptionV3Options, shape: Shape) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let valid = Padding::Valid;

    let mut x = conv_bn(&mut g, input, 32, (3, 3), 2, valid)?;
    x = conv_bn(&mut g, x, 32, (3, 3), 1, valid)?;
    x = cb(&mut g, x, 64, 3, 3)?;
    x = g.call(MaxPooling2D::new(3).strides(2), &[x])?;
    x = conv_bn(&mut g, x, 80, (1, 1), 1, valid)?;
    x = conv_bn(&mut g, x, 192, (3, 3), 1, valid)?;
    x = g.call(MaxPooling2D::new(3).strides(2), &[x])?;

    // mixed0, 1, 2: 35 x 35 x 256 / 288 / 288.
    for (i, pool_filters) in [32, 64, 64].into_iter().enumerate() {
        let b1 = cb(&mut g, x, 64, 1, 1)?;
        let b5 = cb(&mut g, x, 48, 1, 1)?;
        let b5 = cb(&mut g, b5, 64, 5, 5)?;
        let b3 = cb(&mut g, x, 64, 1, 1)?;
        let b3 = cb(&mut g, b3, 96, 3, 3)?;
        let b3 = cb(&mut g, b3, 96, 3, 3)?;
        let bp = avg_pool_same(&mut g, x)?;
        let bp = cb(&mut g, bp, pool_filters, 1, 1)?;
        x = concat(&mut g, &[b1, b5, b3, bp], &format!("mixed{i}"))?;
    }

    // mixed3: 17 x 17 x 768.
    let b3 = conv_bn(&mut g, x, 384, (3, 3), 2, valid)?;
    let bd = cb(&mut g, x, 64, 1, 1)?;
    let bd = cb(&mut g, bd, 96, 3, 3)?;
    let bd = conv_bn(&mut g, bd, 96, (3, 3), 2, valid)?;
    let bp = g.call(MaxPooling2D::new(3).strides(2), &[x])?;
    x = concat(&mut g, &[b3, bd, bp], "mixed3")?;

    // mixed4..7: 17 x 17 x 768, factorised 7x7 convolutions.
    for (i, c) in [128, 160, 160, 192].into_iter().enumerate() {
        let b1 = cb(&mut g, x, 192, 1, 1)?;
        let b7 = cb(&mut g, x, c, 1, 1)?;
        let b7 = cb(&mut g, b7, c, 1, 7)?;
        let b7 = cb(&mut g, b7, 192, 7, 1)?;
        let bd = cb(&mut g, x, c, 1, 1)?;
        let bd = cb(&mut g, bd, c, 7, 1)?;
        let bd = cb(&mut g, bd, c, 1, 7)?;
        let bd = cb(&mut g, bd, c, 7, 1)?;
        let bd = cb(&mut g, bd, 192, 1, 7)?;
        let bp = avg_pool_same(&mut g, x)?;
        let bp = cb(&mut g, bp, 192, 1, 1)?;
        x = concat(&mut g, &[b1, b7, bd, bp], &format!("mixed{}", 4 + i))?;
    }

    // mixed8: 8 x 8 x 1280.
    let b3 = cb(&mut g, x, 192, 1, 1)?;
    let b3 = conv_bn(&mut g, b3, 320, (3, 3), 2, valid)?;
    let b7 = cb(&mut g, x, 192, 1, 1)?;
    let b7 = cb(&mut g, b7, 192, 1, 7)?;
    let b7 = cb(&mut g, b7, 192, 7, 1)?;
    let b7 = conv_bn(&mut g, b7, 192, (3, 3), 2, valid)?;
    let bp = g.call(MaxPooling2D::new(3).strides(2), &[x])?;
    x = concat(&mut g, &[b3, b7, bp], "mixed8")?;

    // mixed9, 10: 8 x 8 x 2048.
    for i in 0..2 {
        let b1 = cb(&mut g, x, 320, 1, 1)?;
        let b3 = cb(&mut g, x, 384, 1, 1)?;
        let b3a = cb(&mut g, b3, 384, 1, 3)?;
        let b3b = cb(&mut g, b3, 384, 3, 1)?;
        let b3 = concat(&mut g, &[b3a, b3b], &format!("mixed9_{i}"))?;
        let bd = cb(&mut g, x, 448, 1, 1)?;
        let bd = cb(&mut g, bd, 384, 3, 3)?;
        let bda = cb(&mut g, bd, 384, 1, 3)?;
        let bdb = cb(&mut g, bd, 384, 3, 1)?;
        let bd = g.call(Concatenate::new(), &[bda, bdb])?;
        let bp = avg_pool_same(&mut g, x)?;
        let bp = cb(&mut g, bp, 192, 1, 1)?;
        x = concat(&mut g, &[b1, b3, bd, bp], &format!("mixed{}", 9 + i))?;
    }

    if opts.include_top {
        x = g.call(named(GlobalAveragePooling2D::new, "avg_pool"), &[x])?;
        x = g.call(
            named(|| Dense::new(opts.classes), "predictions")
                .activation(opts.classifier_activation),
            &[x],
        )?;
    } else {
        match opts.pooling {
            Some(Pooling::Avg) => x = g.call(GlobalAveragePooling2D::new(), &[x])?,
            Some(Pooling::Max) => x = g.call(GlobalMaxPooling2D::new(), &[x])?,
            None => {}
        }
    }
    super::with_weights(g.build_named("inception_v3", &[input], &[x]), opts)
}
