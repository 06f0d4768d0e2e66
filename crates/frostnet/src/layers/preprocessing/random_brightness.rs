//! `RandomBrightness`: in training mode, adds to each image `f * (high - low)`, `f` drawn
//! uniformly from `factor` (a number `f` means `[-f, f]`, within `[-1, 1]`) and `[low, high]` the
//! `value_range`, then clips to `value_range`. Passes its input through at inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Mode, Shape};
use super::{
    backward, image_dims, image_input, read_common, read_seed, read_value_range, uniform, Changed,
    Factor, Seeded,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Randomly changes image brightness in training mode.
pub struct RandomBrightness {
    base: LayerBase,
    factor: Factor,
    range: (f64, f64),
    value_range: (f64, f64),
    rng: Seeded,
    cache: Changed,
}

const BOUNDS: (f64, f64) = (-1.0, 1.0);

impl RandomBrightness {
    pub fn new(factor: impl Into<Factor>) -> RandomBrightness {
        RandomBrightness {
            base: LayerBase::new(RANDOM_BRIGHTNESS.class_name),
            factor: factor.into(),
            range: (0.0, 0.0),
            value_range: (0.0, 255.0),
            rng: Seeded::new(None),
            cache: None,
        }
    }
    /// The pixel value range (Keras's default `(0, 255)`): deltas are fractions of its width and
    /// outputs are clipped to it.
    pub fn value_range(mut self, low: f64, high: f64) -> Self {
        self.value_range = (low.min(high), low.max(high));
        self
    }
    /// Gives the layer its own generator seeded with `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Seeded::new(Some(seed));
        self
    }
}

impl Layer for RandomBrightness {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_BRIGHTNESS.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        self.range = self.factor.base_bounds(&self.base.name, BOUNDS)?;
        self.base.built = true;
        Ok(s)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let (n, h, w, c) = image_dims(&self.base.name, &y)?;
        let train = ctx.mode == Mode::Train;
        self.cache = ctx.keep.then_some(train);
        if !train || h * w * c == 0 {
            return Ok(y);
        }
        let (lo, hi) = (self.range.0 as f32, self.range.1 as f32);
        let width = (self.value_range.1 - self.value_range.0) as f32;
        let rng = self.rng.rng(ctx);
        let deltas: Vec<f32> = (0..n).map(|_| uniform(rng, lo, hi) * width).collect();
        let (vlo, vhi) = (self.value_range.0 as f32, self.value_range.1 as f32);
        for (img, d) in y.data_mut().chunks_mut(h * w * c).zip(deltas) {
            img.iter_mut().for_each(|v| *v = (*v + d).clamp(vlo, vhi));
        }
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_BRIGHTNESS.class_name,
            grad,
        )
    }
    fn config(&self) -> Value {
        let factor = self
            .factor
            .base_bounds(&self.base.name, BOUNDS)
            .map(|(a, b)| json!([a, b]))
            .unwrap_or_else(|_| self.factor.json());
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "factor": factor,
               "value_range": [self.value_range.0, self.value_range.1],
               "seed": self.rng.json()})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `RandomBrightness`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_BRIGHTNESS: LayerEntry = LayerEntry {
    class_name: "RandomBrightness",
    from_config: random_brightness_from_config,
};

fn random_brightness_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let factor = Factor::read(o, "factor")?.ok_or_else(|| o.err("missing 'factor'"))?;
    factor
        .base_bounds(o.name, BOUNDS)
        .map_err(|e: Error| o.err(e))?;
    let (lo, hi) = read_value_range(o)?;
    let mut l = RandomBrightness::new(factor).value_range(lo, hi);
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
