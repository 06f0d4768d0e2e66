//! VGG16 (Simonyan & Zisserman), built as `keras.applications.VGG16` builds it: five blocks of
//! 3x3 `same` convolutions with ReLU, each ending in a 2x2 max pool, every layer named
//! (`block1_conv1` ... `fc1`, `fc2`, `predictions`), model `vgg16`.

use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::Result;
use crate::layers::{
    naming, ActivationFn, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
    Input, MaxPooling2D, Shape,
};
use crate::models::{Functional, Model};
use crate::tensor::Padding;

/// `keras.applications.VGG16`'s arguments.
pub type Vgg16Options = ApplicationOptions;

/// Builds VGG16 (default input 224x224x3, at least 32x32), with fresh default names.
pub fn vgg16(opts: &Vgg16Options) -> Result<Model> {
    let shape = obtain_input_shape("VGG16", opts, 224, 32)?;
    naming::with_fresh_names(|| build(opts, shape))
}

fn build(opts: &Vgg16Options, shape: Shape) -> Result<Model> {
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = input;
    for (block, (filters, convs)) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let b = block + 1;
        for c in 1..=convs {
            let conv = named(|| Conv2D::new(filters, 3), &format!("block{b}_conv{c}"))
                .activation(ActivationFn::Relu)
                .padding(Padding::Same);
            x = g.call(conv, &[x])?;
        }
        let pool = named(
            || MaxPooling2D::new(2).strides(2),
            &format!("block{b}_pool"),
        );
        x = g.call(pool, &[x])?;
    }
    if opts.include_top {
        x = g.call(named(Flatten::new, "flatten"), &[x])?;
        for fc in ["fc1", "fc2"] {
            let d = named(|| Dense::new(4096), fc).activation(ActivationFn::Relu);
            x = g.call(d, &[x])?;
        }
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
    super::with_weights(g.build_named("vgg16", &[input], &[x]), opts)
}
