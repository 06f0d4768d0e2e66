//! `RandomRotation`: in training mode, rotates each image about its centre by an angle drawn
//! uniformly from `factor * 360` degrees (`factor` a fraction of a full turn: `0.1` means
//! `[-36°, 36°]`), filling uncovered points by `fill_mode`. Passes its input through at inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Mode, Shape};
use super::{
    backward, image_dims, image_input, read_common, read_seed, rotation_matrix, uniform,
    warp_config, warp_options, Changed, Factor, Seeded, Warp,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Randomly rotates images in training mode.
pub struct RandomRotation {
    base: LayerBase,
    factor: Factor,
    /// `(lower, upper)` fractions of a turn, set by `build` from `factor`.
    range: (f64, f64),
    warp: Warp,
    rng: Seeded,
    cache: Changed,
}

impl RandomRotation {
    /// `factor`: a fraction of a full turn `f` (angles in `[-f, f] * 360°`) or a range
    /// `(lower, upper)`; Keras accepts values in `[-1, 1]`.
    pub fn new(factor: impl Into<Factor>) -> RandomRotation {
        RandomRotation {
            base: LayerBase::new(RANDOM_ROTATION.class_name),
            factor: factor.into(),
            range: (0.0, 0.0),
            warp: Warp::default(),
            rng: Seeded::new(None),
            cache: None,
        }
    }
}

warp_options!(RandomRotation);

impl Layer for RandomRotation {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_ROTATION.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        self.range = self.factor.base_bounds(&self.base.name, (-1.0, 1.0))?;
        self.base.built = true;
        Ok(s)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let (n, h, w, _) = image_dims(&self.base.name, x)?;
        let train = ctx.mode == Mode::Train;
        self.cache = ctx.keep.then_some(train);
        if !train {
            return Ok(x.clone());
        }
        let (lo, hi) = ((self.range.0 * 360.0) as f32, (self.range.1 * 360.0) as f32);
        let rng = self.rng.rng(ctx);
        let mats: Vec<[f32; 8]> = (0..n)
            .map(|_| rotation_matrix(uniform(rng, lo, hi), h, w))
            .collect();
        Ok(self.warp.apply(x, &mats))
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_ROTATION.class_name,
            grad,
        )
    }
    fn config(&self) -> Value {
        let mut m = warp_config(&self.warp, &self.rng);
        m.insert("name".into(), json!(self.base.name));
        m.insert("trainable".into(), json!(self.base.trainable));
        // Keras saves the factor as the (lower, upper) range it made of it.
        let range = self
            .factor
            .base_bounds(&self.base.name, (-1.0, 1.0))
            .map(|(a, b)| json!([a, b]))
            .unwrap_or_else(|_| self.factor.json());
        m.insert("factor".into(), range);
        Value::Object(m)
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `RandomRotation`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_ROTATION: LayerEntry = LayerEntry {
    class_name: "RandomRotation",
    from_config: random_rotation_from_config,
};

fn random_rotation_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let factor = Factor::read(o, "factor")?.ok_or_else(|| o.err("missing 'factor'"))?;
    factor
        .base_bounds(o.name, (-1.0, 1.0))
        .map_err(|e: Error| o.err(e))?;
    let mut l = RandomRotation::new(factor);
    l.warp = Warp::read(o)?;
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
