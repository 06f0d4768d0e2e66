//! `RandomContrast`: in training mode, scales each image's deviation from its per-channel mean
//! by a factor drawn uniformly from `[1 - lower, 1 + upper]` (Keras's `factor` range; a number
//! `f` gives the range `[0, f]`, so factors in `[1, 1 + f]`, as Keras 3 computes it), then clips
//! to `value_range`. Passes its input through at inference.

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

/// Randomly changes image contrast in training mode.
pub struct RandomContrast {
    base: LayerBase,
    factor: Factor,
    range: (f64, f64),
    value_range: (f64, f64),
    rng: Seeded,
    cache: Changed,
}

const BOUNDS: (f64, f64) = (0.0, 1.0);

impl RandomContrast {
    pub fn new(factor: impl Into<Factor>) -> RandomContrast {
        RandomContrast {
            base: LayerBase::new(RANDOM_CONTRAST.class_name),
            factor: factor.into(),
            range: (0.0, 0.0),
            value_range: (0.0, 255.0),
            rng: Seeded::new(None),
            cache: None,
        }
    }
    /// The range outputs are clipped to (Keras's default `(0, 255)`).
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

/// `(x - mean) * factor + mean` per channel of one `h x w x c` image, clipped to `[lo, hi]`.
/// The mean is taken over rows, then over columns, as Keras computes it.
fn adjust(img: &mut [f32], h: usize, w: usize, c: usize, factor: f32, lo: f32, hi: f32) {
    let mut mean = vec![0.0f32; c];
    for (ch, m) in mean.iter_mut().enumerate() {
        let mut over_w = 0.0f64;
        for x in 0..w {
            let col: f64 = (0..h).map(|y| img[(y * w + x) * c + ch] as f64).sum();
            over_w += (col / h as f64) as f32 as f64;
        }
        *m = (over_w / w as f64) as f32;
    }
    for px in img.chunks_mut(c) {
        for (v, &m) in px.iter_mut().zip(&mean) {
            *v = ((*v - m) * factor + m).clamp(lo, hi);
        }
    }
}

impl Layer for RandomContrast {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_CONTRAST.class_name
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
        let (lo, hi) = ((1.0 - self.range.0) as f32, (1.0 + self.range.1) as f32);
        let rng = self.rng.rng(ctx);
        let factors: Vec<f32> = (0..n).map(|_| uniform(rng, lo, hi)).collect();
        let (vlo, vhi) = (self.value_range.0 as f32, self.value_range.1 as f32);
        for (img, f) in y.data_mut().chunks_mut(h * w * c).zip(factors) {
            adjust(img, h, w, c, f, vlo, vhi);
        }
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_CONTRAST.class_name,
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

/// `RandomContrast`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_CONTRAST: LayerEntry = LayerEntry {
    class_name: "RandomContrast",
    from_config: random_contrast_from_config,
};

fn random_contrast_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let factor = Factor::read(o, "factor")?.ok_or_else(|| o.err("missing 'factor'"))?;
    factor
        .base_bounds(o.name, BOUNDS)
        .map_err(|e: Error| o.err(e))?;
    let (lo, hi) = read_value_range(o)?;
    let mut l = RandomContrast::new(factor).value_range(lo, hi);
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
