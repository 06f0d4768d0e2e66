//! `RandomContrast`: in training mode, scales each image's deviation from its per-channel mean
//! by a factor drawn uniformly from `[1 - lower, 1 + upper]` (Keras's `factor` range; a number
//! `f` gives the range `[0, f]`, so factors in `[1, 1 + f]`, as Keras 3 computes it), then clips
//! to `value_range`. Passes its input through at inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Shape};
use super::per_image::PerImage;
use super::{uniform, Factor, Seeded};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::Value;

/// Randomly changes image contrast in training mode.
pub struct RandomContrast(PerImage);

const BOUNDS: (f64, f64) = (0.0, 1.0);

impl RandomContrast {
    pub fn new(factor: impl Into<Factor>) -> RandomContrast {
        RandomContrast(PerImage::new(
            RANDOM_CONTRAST.class_name,
            factor.into(),
            BOUNDS,
        ))
    }
    /// The range outputs are clipped to (Keras's default `(0, 255)`).
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
        &self.0.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.0.base
    }
    fn class_name(&self) -> &str {
        RANDOM_CONTRAST.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        self.0.build(inputs)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.0.forward(
            inputs,
            ctx,
            |rng, (lower, upper), _| uniform(rng, (1.0 - lower) as f32, (1.0 + upper) as f32),
            |img, (h, w, c), f, (lo, hi)| adjust(img, h, w, c, f, lo, hi),
        )
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        self.0.backward(RANDOM_CONTRAST.class_name, grad)
    }
    fn config(&self) -> Value {
        self.0.config()
    }
    fn clear_cache(&mut self) {
        self.0.clear_cache();
    }
}

/// `RandomContrast`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_CONTRAST: LayerEntry = LayerEntry {
    class_name: "RandomContrast",
    from_config: random_contrast_from_config,
};

fn random_contrast_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let p = PerImage::from_config(RANDOM_CONTRAST.class_name, o, BOUNDS)?;
    Ok(Box::new(RandomContrast(p)))
}
