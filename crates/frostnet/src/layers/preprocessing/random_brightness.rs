//! `RandomBrightness`: in training mode, adds to each image `f * (high - low)`, `f` drawn
//! uniformly from `factor` (a number `f` means `[-f, f]`, within `[-1, 1]`) and `[low, high]` the
//! `value_range`, then clips to `value_range`. Passes its input through at inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Shape};
use super::per_image::PerImage;
use super::{uniform, Factor, Seeded};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::Value;

/// Randomly changes image brightness in training mode.
pub struct RandomBrightness(PerImage);

const BOUNDS: (f64, f64) = (-1.0, 1.0);

impl RandomBrightness {
    pub fn new(factor: impl Into<Factor>) -> RandomBrightness {
        RandomBrightness(PerImage::new(
            RANDOM_BRIGHTNESS.class_name,
            factor.into(),
            BOUNDS,
        ))
    }
    /// The pixel value range (Keras's default `(0, 255)`): deltas are fractions of its width and
    /// outputs are clipped to it.
    pub fn value_range(mut self, low: f64, high: f64) -> Self {
        self.0.value_range = (low.min(high), low.max(high));
        self
    }
    /// Gives the layer its own generator seeded with `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.rng = Seeded::new(Some(seed));
        self
    }
}

impl Layer for RandomBrightness {
    fn base(&self) -> &LayerBase {
        &self.0.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.0.base
    }
    fn class_name(&self) -> &str {
        RANDOM_BRIGHTNESS.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        self.0.build(inputs)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.0.forward(
            inputs,
            ctx,
            |rng, (lo, hi), (vlo, vhi)| uniform(rng, lo as f32, hi as f32) * (vhi - vlo) as f32,
            |img, _, delta, (lo, hi)| img.iter_mut().for_each(|v| *v = (*v + delta).clamp(lo, hi)),
        )
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        self.0.backward(RANDOM_BRIGHTNESS.class_name, grad)
    }
    fn config(&self) -> Value {
        self.0.config()
    }
    fn clear_cache(&mut self) {
        self.0.clear_cache();
    }
}

/// `RandomBrightness`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_BRIGHTNESS: LayerEntry = LayerEntry {
    class_name: "RandomBrightness",
    from_config: random_brightness_from_config,
};

fn random_brightness_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let p = PerImage::from_config(RANDOM_BRIGHTNESS.class_name, o, BOUNDS)?;
    Ok(Box::new(RandomBrightness(p)))
}
