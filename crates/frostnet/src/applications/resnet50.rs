//! ResNet50 (He et al., "Deep Residual Learning"), built as `keras.applications.ResNet50` builds
//! it: bottleneck blocks (`conv2_block1_1_conv` ...), an `Add` shortcut per block, explicit
//! `ZeroPadding2D` before the stem, BatchNormalization with `epsilon=1.001e-5`, model `resnet50`.

use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::Result;
use crate::layers::{
    naming, Activation, ActivationFn, Add, BatchNormalization, Conv2D, Dense,
    GlobalAveragePooling2D, GlobalMaxPooling2D, Input, MaxPooling2D, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.ResNet50`'s arguments.
pub type ResNet50Options = ApplicationOptions;

/// Keras's BatchNormalization epsilon in ResNet.
const BN_EPSILON: f32 = 1.001e-5;

/// Builds ResNet50 (default input 224x224x3, at least 32x32), with fresh default names.
pub fn resnet50(opts: &ResNet50Options) -> Result<Model> {
    let shape = obtain_input_shape("ResNet50", opts, 224, 32)?;
    naming::with_fresh_names(|| build(opts, shape, "resnet50", &[3, 4, 6, 3]))
}

pub(super) fn bn(name: &str) -> BatchNormalization {
    named(BatchNormalization::new, name).epsilon(BN_EPSILON)
}

pub(super) fn relu(name: &str) -> Activation {
    named(|| Activation::new(ActivationFn::Relu), name)
}

/// Keras's `residual_block_v1`: 1x1 -> 3x3 -> 1x1 (4x filters), plus a shortcut that is a strided
/// 1x1 convolution in each stack's first block and the identity elsewhere.
fn block(
    g: &mut Functional,
    x: SymbolicTensor,
    filters: usize,
    stride: usize,
    conv_shortcut: bool,
    name: &str,
) -> Result<SymbolicTensor> {
    let shortcut = if conv_shortcut {
        let s = g.call(
            named(
                || Conv2D::new(4 * filters, 1).strides(stride),
                &format!("{name}_0_conv"),
            ),
            &[x],
        )?;
        g.call(bn(&format!("{name}_0_bn")), &[s])?
    } else {
        x
    };
    let mut y = g.call(
        named(
            || Conv2D::new(filters, 1).strides(stride),
            &format!("{name}_1_conv"),
        ),
        &[x],
    )?;
    y = g.call(bn(&format!("{name}_1_bn")), &[y])?;
    y = g.call(relu(&format!("{name}_1_relu")), &[y])?;
    y = g.call(
        named(
            || Conv2D::new(filters, 3).padding(Padding::Same),
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
    y = g.call(bn(&format!("{name}_3_bn")), &[y])?;
    y = g.call(named(Add::new, &format!("{name}_add")), &[shortcut, y])?;
    g.call(relu(&format!("{name}_out")), &[y])
}

/// Keras's `ResNet(stack_fn, preact=False, use_bias=True)`: the v1 stem, four stacks of
/// `blocks[i]` bottleneck blocks (64, 128, 256, 512 filters), the head; ResNet101 and ResNet152
/// differ from ResNet50 only in `blocks` and the model name.
pub(super) fn build(
    opts: &ResNet50Options,
    shape: Shape,
    model_name: &str,
    blocks: &[usize; 4],
) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = g.call(named(|| ZeroPadding2D::new(3), "conv1_pad"), &[input])?;
    x = g.call(named(|| Conv2D::new(64, 7).strides(2), "conv1_conv"), &[x])?;
    x = g.call(bn("conv1_bn"), &[x])?;
    x = g.call(relu("conv1_relu"), &[x])?;
    x = g.call(named(|| ZeroPadding2D::new(1), "pool1_pad"), &[x])?;
    x = g.call(
        named(|| MaxPooling2D::new(3).strides(2), "pool1_pool"),
        &[x],
    )?;
    for ((stack, filters, stride1), &blocks) in [
        ("conv2", 64, 1),
        ("conv3", 128, 2),
        ("conv4", 256, 2),
        ("conv5", 512, 2),
    ]
    .into_iter()
    .zip(blocks)
    {
        x = block(
            &mut g,
            x,
            filters,
            stride1,
            true,
            &format!("{stack}_block1"),
        )?;
        for i in 2..=blocks {
            x = block(&mut g, x, filters, 1, false, &format!("{stack}_block{i}"))?;
        }
    }
    if opts.include_top {
        x = g.call(named(GlobalAveragePooling2D::new, "avg_pool"), &[x])?;
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
    super::with_weights(g.build_named(model_name, &[input], &[x]), opts)
}
