//! ConvNeXtTiny (Liu et al., 2022), built as `keras.applications.ConvNeXtTiny` builds it: a
//! `Normalization` with ImageNet's constant mean and variance (in 0..255 units) inside the model,
//! a "patchify" stem and three downsampling blocks each a nested `Sequential`, and blocks of a
//! 7x7 depthwise `Conv2D` (`groups` = channels), `LayerNormalization`, two `Dense` layers on the
//! rank-4 feature map with exact GELU, [`LayerScale`], and (when `drop_path_rate > 0`)
//! [`StochasticDepth`] before the residual `add` (Keras's `inputs + x`).

use super::keras_weights::{self, ImagenetFile};
use super::{named, obtain_input_shape, ApplicationOptions, Pooling};
use crate::error::{Error, Result};
use crate::layers::{
    naming, Activation, ActivationFn, Add, Conv2D, Dense, GlobalAveragePooling2D,
    GlobalMaxPooling2D, Input, LayerNormalization, LayerScale, Normalization, Shape,
    StochasticDepth,
};
use crate::models::{Functional, Model, Sequential, SymbolicTensor};
use crate::tensor::Padding;

/// `keras.applications.ConvNeXtTiny`'s arguments.
#[derive(Clone, Debug)]
pub struct ConvNeXtOptions {
    pub app: ApplicationOptions,
    /// Stochastic depth rate of the last block (Keras's `drop_path_rate`, linear from 0).
    pub drop_path_rate: f64,
    /// `LayerScale`'s initial value; `None` leaves `LayerScale` out.
    pub layer_scale_init_value: Option<f32>,
    /// Whether the model normalizes its 0..255 input itself (when it has 3 channels).
    pub include_preprocessing: bool,
}

impl Default for ConvNeXtOptions {
    /// Keras's defaults, except `weights=None`.
    fn default() -> Self {
        ConvNeXtOptions {
            app: ApplicationOptions::default(),
            drop_path_rate: 0.0,
            layer_scale_init_value: Some(1e-6),
            include_preprocessing: true,
        }
    }
}

const BASE_WEIGHTS_PATH: &str =
    "https://storage.googleapis.com/tensorflow/keras-applications/convnext/";
/// Keras's published SHA-256 of `convnext_tiny.h5` and `convnext_tiny_notop.h5`.
const TINY_HASHES: (&str, &str) = (
    "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
    "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
);
const TINY_DEPTHS: [usize; 4] = [3, 3, 9, 3];
const TINY_DIMS: [usize; 4] = [96, 192, 384, 768];

/// `keras.applications.ConvNeXtTiny` with Keras's defaults besides `opts`.
pub fn convnext_tiny(opts: &ApplicationOptions) -> Result<Model> {
    convnext_tiny_with(&ConvNeXtOptions {
        app: opts.clone(),
        ..Default::default()
    })
}

/// Builds ConvNeXtTiny (default input 224x224x3, at least 32) with fresh default names.
pub fn convnext_tiny_with(opts: &ConvNeXtOptions) -> Result<Model> {
    let name = "convnext_tiny";
    keras_weights::check_imagenet_classes("ConvNeXtTiny", &opts.app)?;
    if !(0.0..1.0).contains(&opts.drop_path_rate) {
        return Err(Error::InvalidConfig(format!(
            "ConvNeXtTiny: drop_path_rate must be in [0, 1), got {}",
            opts.drop_path_rate
        )));
    }
    let shape = obtain_input_shape("ConvNeXtTiny", &opts.app, 224, 32)?;
    let model = naming::with_fresh_names(|| build(name, opts, shape));
    keras_weights::load(model, &opts.app, || Ok(imagenet_file(opts.app.include_top)))
}

/// Keras's file for ConvNeXtTiny's `weights="imagenet"`.
pub(crate) fn imagenet_file(include_top: bool) -> ImagenetFile {
    let (suffix, hash) = if include_top {
        (".h5", TINY_HASHES.0)
    } else {
        ("_notop.h5", TINY_HASHES.1)
    };
    let file = format!("convnext_tiny{suffix}");
    ImagenetFile {
        url: format!("{BASE_WEIGHTS_PATH}{file}"),
        file,
        hash: Some(hash),
    }
}

fn layer_norm(name: &str) -> LayerNormalization {
    named(LayerNormalization::new, name).epsilon(1e-6)
}

/// A nested `Sequential` of `layers` (built on `x`'s shape, as Keras builds it when called).
fn sequential(
    g: &mut Functional,
    x: SymbolicTensor,
    name: &str,
    layers: Vec<Box<dyn crate::layers::Layer>>,
) -> Result<SymbolicTensor> {
    let mut seq = Sequential::named(name);
    seq.add(Input::with_shape(g.shape(x)?.clone()))?;
    for l in layers {
        seq.add_boxed(l)?;
    }
    g.call_boxed(Box::new(seq), &[x])
}

/// Keras's `ConvNeXtBlock`.
fn block(
    g: &mut Functional,
    inputs: SymbolicTensor,
    dim: usize,
    drop_path_rate: f64,
    layer_scale: Option<f32>,
    p: &str,
) -> Result<SymbolicTensor> {
    let mut x = g.call(
        named(
            || Conv2D::new(dim, 7).padding(Padding::Same).groups(dim),
            &format!("{p}_depthwise_conv"),
        ),
        &[inputs],
    )?;
    x = g.call(layer_norm(&format!("{p}_layernorm")), &[x])?;
    x = g.call(
        named(|| Dense::new(4 * dim), &format!("{p}_pointwise_conv_1")),
        &[x],
    )?;
    x = g.call(
        named(|| Activation::new(ActivationFn::Gelu), &format!("{p}_gelu")),
        &[x],
    )?;
    x = g.call(
        named(|| Dense::new(dim), &format!("{p}_pointwise_conv_2")),
        &[x],
    )?;
    if let Some(init) = layer_scale {
        x = g.call(
            named(|| LayerScale::new(init, dim), &format!("{p}_layer_scale")),
            &[x],
        )?;
    }
    x = if drop_path_rate > 0.0 {
        g.call(
            named(
                || StochasticDepth::new(drop_path_rate as f32),
                &format!("{p}_stochastic_depth"),
            ),
            &[x],
        )?
    } else {
        g.call(
            named(
                || Activation::new(ActivationFn::Linear),
                &format!("{p}_identity"),
            ),
            &[x],
        )?
    };
    // Keras's `inputs + x`: the op `add`, `add_1`, ...
    g.call(Add::new(), &[inputs, x])
}

fn build(name: &str, opts: &ConvNeXtOptions, shape: Shape) -> Result<Model> {
    let app = &opts.app;
    let channels = shape[2];
    let mut g = Functional::new();
    let input = g.input(Input::with_shape(shape));
    let mut x = input;
    if opts.include_preprocessing && channels == Some(3) {
        let mean = [0.485f64, 0.456, 0.406].map(|m| (m * 255.0) as f32);
        let variance = [0.229f64, 0.224, 0.225].map(|s| ((s * 255.0) * (s * 255.0)) as f32);
        x = g.call(
            named(
                || Normalization::with_mean_variance(&[-1], &mean, &variance),
                &format!("{name}_prestem_normalization"),
            ),
            &[x],
        )?;
    }
    let total: usize = TINY_DEPTHS.iter().sum();
    // numpy's `linspace(0, drop_path_rate, total)`.
    let rate = |i: usize| {
        if total > 1 {
            opts.drop_path_rate * i as f64 / (total - 1) as f64
        } else {
            0.0
        }
    };
    let mut cur = 0;
    for (i, (&depth, &dim)) in TINY_DEPTHS.iter().zip(&TINY_DIMS).enumerate() {
        x = if i == 0 {
            sequential(
                &mut g,
                x,
                &format!("{name}_stem"),
                vec![
                    Box::new(named(
                        || Conv2D::new(dim, 4).strides(4),
                        &format!("{name}_stem_conv"),
                    )),
                    Box::new(layer_norm(&format!("{name}_stem_layernorm"))),
                ],
            )?
        } else {
            let k = i - 1;
            sequential(
                &mut g,
                x,
                &format!("{name}_downsampling_block_{k}"),
                vec![
                    Box::new(layer_norm(&format!("{name}_downsampling_layernorm_{k}"))),
                    Box::new(named(
                        || Conv2D::new(dim, 2).strides(2),
                        &format!("{name}_downsampling_conv_{k}"),
                    )),
                ],
            )?
        };
        for j in 0..depth {
            x = block(
                &mut g,
                x,
                dim,
                rate(cur + j),
                opts.layer_scale_init_value,
                &format!("{name}_stage_{i}_block_{j}"),
            )?;
        }
        cur += depth;
    }
    if app.include_top {
        x = g.call(
            named(GlobalAveragePooling2D::new, &format!("{name}_head_gap")),
            &[x],
        )?;
        x = g.call(layer_norm(&format!("{name}_head_layernorm")), &[x])?;
        x = g.call(
            named(|| Dense::new(app.classes), &format!("{name}_head_dense"))
                .activation(app.classifier_activation),
            &[x],
        )?;
    } else {
        match app.pooling {
            Some(Pooling::Avg) => x = g.call(GlobalAveragePooling2D::new(), &[x])?,
            Some(Pooling::Max) => x = g.call(GlobalMaxPooling2D::new(), &[x])?,
            None => {}
        }
        x = g.call(LayerNormalization::new().epsilon(1e-6), &[x])?;
    }
    g.build_named(name, &[input], &[x])
}
