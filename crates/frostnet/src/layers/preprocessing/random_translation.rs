//! `RandomTranslation`: in training mode, shifts each image by `f_h * height` rows and
//! `f_w * width` columns, `f_h` and `f_w` drawn uniformly from `height_factor` and
//! `width_factor` (a number `f` means `[-f, f]`; positive values shift down and right), filling
//! uncovered points by `fill_mode`. Passes its input through at inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Mode, Shape};
use super::{
    backward, image_dims, image_input, read_common, read_seed, uniform, warp_config, warp_options,
    Changed, Factor, Seeded, Warp,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Randomly translates images in training mode.
pub struct RandomTranslation {
    base: LayerBase,
    height_factor: Factor,
    width_factor: Factor,
    ranges: ((f64, f64), (f64, f64)),
    warp: Warp,
    rng: Seeded,
    cache: Changed,
}

fn translation_ok(f: f64) -> bool {
    (-1.0..=1.0).contains(&f)
}

impl RandomTranslation {
    /// Fractions of the height and width (Keras accepts values in `[-1, 1]`).
    pub fn new(height_factor: impl Into<Factor>, width_factor: impl Into<Factor>) -> Self {
        RandomTranslation {
            base: LayerBase::new(RANDOM_TRANSLATION.class_name),
            height_factor: height_factor.into(),
            width_factor: width_factor.into(),
            ranges: ((0.0, 0.0), (0.0, 0.0)),
            warp: Warp::default(),
            rng: Seeded::new(None),
            cache: None,
        }
    }
    fn check(&self, layer: &str) -> Result<((f64, f64), (f64, f64))> {
        let r = "[-1, 1]";
        Ok((
            self.height_factor
                .symmetric_bounds(layer, "height_factor", translation_ok, r)?,
            self.width_factor
                .symmetric_bounds(layer, "width_factor", translation_ok, r)?,
        ))
    }
}

warp_options!(RandomTranslation);

impl Layer for RandomTranslation {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_TRANSLATION.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        self.ranges = self.check(&self.base.name)?;
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
        let ((hl, hh), (wl, wh)) = self.ranges;
        let rng = self.rng.rng(ctx);
        let mats: Vec<[f32; 8]> = (0..n)
            .map(|_| {
                let ty = uniform(rng, hl as f32, hh as f32) * h as f32;
                let tx = uniform(rng, wl as f32, wh as f32) * w as f32;
                [1.0, 0.0, -tx, 0.0, 1.0, -ty, 0.0, 0.0]
            })
            .collect();
        Ok(self.warp.apply(x, &mats))
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_TRANSLATION.class_name,
            grad,
        )
    }
    fn config(&self) -> Value {
        let mut m = warp_config(&self.warp, &self.rng);
        m.insert("name".into(), json!(self.base.name));
        m.insert("trainable".into(), json!(self.base.trainable));
        m.insert("height_factor".into(), self.height_factor.json());
        m.insert("width_factor".into(), self.width_factor.json());
        Value::Object(m)
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `RandomTranslation`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_TRANSLATION: LayerEntry = LayerEntry {
    class_name: "RandomTranslation",
    from_config: random_translation_from_config,
};

fn random_translation_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let hf = Factor::read(o, "height_factor")?.ok_or_else(|| o.err("missing 'height_factor'"))?;
    let wf = Factor::read(o, "width_factor")?.ok_or_else(|| o.err("missing 'width_factor'"))?;
    let mut l = RandomTranslation::new(hf, wf);
    l.check(o.name).map_err(|e: Error| o.err(e))?;
    l.warp = Warp::read(o)?;
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
