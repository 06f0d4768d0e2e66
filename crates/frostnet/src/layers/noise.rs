//! Regularization layers that act in training mode only (like `Dropout`, they depend on the
//! mode, never on `trainable`): `GaussianNoise` adds `N(0, stddev²)`, `GaussianDropout`
//! multiplies by `N(1, rate / (1 - rate))`, `SpatialDropout2D` drops whole channels of each
//! image. At inference all three pass their input through.
//!
//! The noise comes from the forward context's seeded generator, so a run repeats exactly; it is
//! not Keras's random stream, so tests check its statistics rather than its values.

use super::registry::LayerEntry;
use super::{expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase, Mode, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::random::standard_normal;
use crate::tensor::Tensor;
use rand::Rng;
use serde_json::{json, Value};

fn rate_in_unit(layer: &str, rate: f32) -> Result<()> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "layer '{layer}': rate must be in [0, 1), got {rate}"
        )))
    }
}

/// What the training-mode forward multiplied by (`None`: it only added, or ran in inference).
type Scale = Option<Vec<f32>>;

fn backward_scaled(grad: &Tensor, scale: Scale) -> Vec<Option<Tensor>> {
    let mut dx = grad.clone();
    if let Some(s) = scale {
        dx.data_mut().iter_mut().zip(&s).for_each(|(d, s)| *d *= s);
    }
    vec![Some(dx)]
}

// ---------------------------------------------------------------------------------------------

/// Adds zero-mean Gaussian noise of standard deviation `stddev` in training mode.
pub struct GaussianNoise {
    base: LayerBase,
    stddev: f32,
    cache: Option<Scale>,
}

impl GaussianNoise {
    pub fn new(stddev: f32) -> GaussianNoise {
        GaussianNoise {
            base: LayerBase::new(GAUSSIAN_NOISE.class_name),
            stddev,
            cache: None,
        }
    }
}

impl Layer for GaussianNoise {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        GAUSSIAN_NOISE.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if self.stddev.is_nan() || self.stddev < 0.0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': stddev must be a non-negative number, got {}",
                self.base.name, self.stddev
            )));
        }
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        if ctx.mode == Mode::Train && self.stddev > 0.0 {
            let noise = standard_normal(&mut ctx.rng, y.len());
            let sd = self.stddev;
            y.data_mut()
                .iter_mut()
                .zip(noise)
                .for_each(|(v, e)| *v += sd * e);
        }
        self.cache = ctx.keep.then_some(None);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let scale = take_cache(&mut self.cache, &self.base.name)?;
        Ok(backward_scaled(grad, scale))
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "stddev": self.stddev, "seed": null})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn gaussian_noise_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(GaussianNoise::new(o.float("stddev", 0.0)?)))
}

/// `GaussianNoise`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const GAUSSIAN_NOISE: LayerEntry = LayerEntry {
    class_name: "GaussianNoise",
    from_config: gaussian_noise_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Multiplies by Gaussian noise of mean 1 and standard deviation `sqrt(rate / (1 - rate))` in
/// training mode.
pub struct GaussianDropout {
    base: LayerBase,
    rate: f32,
    cache: Option<Scale>,
}

impl GaussianDropout {
    pub fn new(rate: f32) -> GaussianDropout {
        GaussianDropout {
            base: LayerBase::new(GAUSSIAN_DROPOUT.class_name),
            rate,
            cache: None,
        }
    }
}

impl Layer for GaussianDropout {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        GAUSSIAN_DROPOUT.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        rate_in_unit(&self.base.name, self.rate)?;
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let mut scale = None;
        if ctx.mode == Mode::Train && self.rate > 0.0 {
            let sd = (self.rate / (1.0 - self.rate)).sqrt();
            let s: Vec<f32> = standard_normal(&mut ctx.rng, y.len())
                .into_iter()
                .map(|e| 1.0 + sd * e)
                .collect();
            y.data_mut().iter_mut().zip(&s).for_each(|(v, s)| *v *= s);
            scale = Some(s);
        }
        self.cache = ctx.keep.then_some(scale);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let scale = take_cache(&mut self.cache, &self.base.name)?;
        Ok(backward_scaled(grad, scale))
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "rate": self.rate, "seed": null})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn gaussian_dropout_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(GaussianDropout::new(o.float("rate", 0.0)?)))
}

/// `GaussianDropout`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const GAUSSIAN_DROPOUT: LayerEntry = LayerEntry {
    class_name: "GaussianDropout",
    from_config: gaussian_dropout_from_config,
};

// ---------------------------------------------------------------------------------------------

/// In training mode, zeroes each channel of each image with probability `rate` (all its
/// positions together) and scales the kept ones by `1 / (1 - rate)`.
pub struct SpatialDropout2D {
    base: LayerBase,
    rate: f32,
    cache: Option<Scale>,
}

impl SpatialDropout2D {
    pub fn new(rate: f32) -> SpatialDropout2D {
        SpatialDropout2D {
            base: LayerBase::new(SPATIAL_DROPOUT2D.class_name),
            rate,
            cache: None,
        }
    }
}

impl Layer for SpatialDropout2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        SPATIAL_DROPOUT2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if s.len() != 3 {
            return Err(incompatible(
                &self.base.name,
                "(None, height, width, channels)",
                s,
            ));
        }
        rate_in_unit(&self.base.name, self.rate)?;
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let mut scale = None;
        if ctx.mode == Mode::Train && self.rate > 0.0 && y.shape().len() == 4 {
            let (n, c) = (y.shape()[0], y.shape()[3]);
            let keep = 1.0 - self.rate;
            let masks: Vec<f32> = (0..n * c)
                .map(|_| {
                    if ctx.rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect();
            let per = y.sample_len();
            let s: Vec<f32> = (0..y.len())
                .map(|i| masks[(i / per.max(1)) * c + i % c.max(1)])
                .collect();
            y.data_mut().iter_mut().zip(&s).for_each(|(v, s)| *v *= s);
            scale = Some(s);
        }
        self.cache = ctx.keep.then_some(scale);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let scale = take_cache(&mut self.cache, &self.base.name)?;
        Ok(backward_scaled(grad, scale))
    }
    fn config(&self) -> Value {
        // Keras's SpatialDropout2D takes no `trainable` or `noise_shape` argument.
        json!({"name": self.base.name, "rate": self.rate, "seed": null,
               "data_format": "channels_last"})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn spatial_dropout2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    Ok(Box::new(SpatialDropout2D::new(o.float("rate", 0.0)?)))
}

/// `SpatialDropout2D`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const SPATIAL_DROPOUT2D: LayerEntry = LayerEntry {
    class_name: "SpatialDropout2D",
    from_config: spatial_dropout2d_from_config,
};
