//! What `RandomBrightness` and `RandomContrast` share: in training mode each image gets one
//! factor, drawn uniformly from bounds that Keras's `factor` gives, and is changed in place by
//! it, clipped to `value_range`; at inference the input passes through. Only the draw and the
//! change differ, so the two layers hold a [`PerImage`] and pass those two as closures.

use super::super::{ForwardCtx, LayerBase, Mode, Shape};
use super::{
    backward, image_dims, image_input, read_common, read_seed, read_value_range, Changed, Factor,
    Seeded,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use rand::rngs::SmallRng;
use serde_json::{json, Value};

pub(super) struct PerImage {
    pub(super) base: LayerBase,
    factor: Factor,
    /// The bounds Keras allows for `factor` (`[-1, 1]` for brightness, `[0, 1]` for contrast).
    bounds: (f64, f64),
    /// `factor` read against `bounds` at build time.
    range: (f64, f64),
    pub(super) value_range: (f64, f64),
    pub(super) rng: Seeded,
    cache: Changed,
}

impl PerImage {
    pub(super) fn new(class: &'static str, factor: Factor, bounds: (f64, f64)) -> PerImage {
        PerImage {
            base: LayerBase::new(class),
            factor,
            bounds,
            range: (0.0, 0.0),
            value_range: (0.0, 255.0),
            rng: Seeded::new(None),
            cache: None,
        }
    }

    pub(super) fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        self.range = self.factor.base_bounds(&self.base.name, self.bounds)?;
        self.base.built = true;
        Ok(s)
    }

    /// `draw(rng, range)` gives one image's factor; `change(image, (h, w, c), factor, (lo, hi))`
    /// applies it to one `h x w x c` image and clips to `[lo, hi]`.
    pub(super) fn forward(
        &mut self,
        inputs: &[&Tensor],
        ctx: &mut ForwardCtx,
        draw: impl Fn(&mut SmallRng, (f64, f64), (f64, f64)) -> f32,
        change: impl Fn(&mut [f32], (usize, usize, usize), f32, (f32, f32)),
    ) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let (n, h, w, c) = image_dims(&self.base.name, &y)?;
        let train = ctx.mode == Mode::Train;
        self.cache = ctx.keep.then_some(train);
        if !train || h * w * c == 0 {
            return Ok(y);
        }
        let rng = self.rng.rng(ctx);
        let factors: Vec<f32> = (0..n)
            .map(|_| draw(rng, self.range, self.value_range))
            .collect();
        let clip = (self.value_range.0 as f32, self.value_range.1 as f32);
        for (img, f) in y.data_mut().chunks_mut(h * w * c).zip(factors) {
            change(img, (h, w, c), f, clip);
        }
        Ok(y)
    }

    pub(super) fn backward(&mut self, class: &str, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        backward(&mut self.cache, &self.base.name, class, grad)
    }

    pub(super) fn config(&self) -> Value {
        let factor = self
            .factor
            .base_bounds(&self.base.name, self.bounds)
            .map(|(a, b)| json!([a, b]))
            .unwrap_or_else(|_| self.factor.json());
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "factor": factor,
               "value_range": [self.value_range.0, self.value_range.1],
               "seed": self.rng.json()})
    }

    pub(super) fn clear_cache(&mut self) {
        self.cache = None;
    }

    /// Reads the shared config (`factor` checked against `bounds`, `value_range`, `seed`) into
    /// a fresh `PerImage`; the caller wraps it in its layer.
    pub(super) fn from_config(class: &'static str, o: &Opts, bounds: (f64, f64)) -> Result<Self> {
        read_common(o)?;
        let factor = Factor::read(o, "factor")?.ok_or_else(|| o.err("missing 'factor'"))?;
        factor
            .base_bounds(o.name, bounds)
            .map_err(|e: Error| o.err(e))?;
        let mut p = PerImage::new(class, factor, bounds);
        let (lo, hi) = read_value_range(o)?;
        p.value_range = (lo.min(hi), lo.max(hi));
        p.rng = Seeded::new(read_seed(o)?);
        Ok(p)
    }
}
