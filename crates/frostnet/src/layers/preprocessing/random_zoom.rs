//! `RandomZoom`: in training mode, zooms each image about its centre by `1 + f` along each axis,
//! `f` drawn uniformly from `height_factor` (and from `width_factor`, or the same `f` for both
//! axes when it is not given). Positive factors zoom out (the image shrinks, `fill_mode` fills
//! the border), negative ones zoom in, as in Keras. Passes its input through at inference.

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

/// A factor's `(lower, upper)` bounds.
type Bounds = (f64, f64);

/// Randomly zooms images in training mode.
pub struct RandomZoom {
    base: LayerBase,
    height_factor: Factor,
    width_factor: Option<Factor>,
    ranges: ((f64, f64), Option<(f64, f64)>),
    warp: Warp,
    rng: Seeded,
    cache: Changed,
}

fn zoom_ok(f: f64) -> bool {
    f > -1.0 && f <= 1.0
}

impl RandomZoom {
    /// The same zoom along both axes, `1 + f` with `f` from `height_factor` (a number `f` means
    /// `[-f, f]`; Keras accepts values in `(-1, 1]`).
    pub fn new(height_factor: impl Into<Factor>) -> RandomZoom {
        RandomZoom {
            base: LayerBase::new(RANDOM_ZOOM.class_name),
            height_factor: height_factor.into(),
            width_factor: None,
            ranges: ((0.0, 0.0), None),
            warp: Warp::default(),
            rng: Seeded::new(None),
            cache: None,
        }
    }
    /// Draws the width's zoom separately, from `width_factor`.
    pub fn width_factor(mut self, f: impl Into<Factor>) -> Self {
        self.width_factor = Some(f.into());
        self
    }
    /// The height's zoom bounds and, if drawn separately, the width's.
    fn check(&self, layer: &str) -> Result<(Bounds, Option<Bounds>)> {
        let r = "(-1, 1]";
        let h = self
            .height_factor
            .symmetric_bounds(layer, "height_factor", zoom_ok, r)?;
        let w = match self.width_factor {
            Some(f) => Some(f.symmetric_bounds(layer, "width_factor", zoom_ok, r)?),
            None => None,
        };
        Ok((h, w))
    }
}

warp_options!(RandomZoom);

impl Layer for RandomZoom {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_ZOOM.class_name
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
        let ((hl, hh), wr) = self.ranges;
        let rng = self.rng.rng(ctx);
        let zh: Vec<f32> = (0..n)
            .map(|_| uniform(rng, (1.0 + hl) as f32, (1.0 + hh) as f32))
            .collect();
        let zw: Vec<f32> = match wr {
            Some((wl, wh)) => (0..n)
                .map(|_| uniform(rng, (1.0 + wl) as f32, (1.0 + wh) as f32))
                .collect(),
            None => zh.clone(),
        };
        let mats: Vec<[f32; 8]> = zh
            .iter()
            .zip(&zw)
            .map(|(&zh, &zw)| {
                let x_off = (w as f32 - 1.0) / 2.0 * (1.0 - zw);
                let y_off = (h as f32 - 1.0) / 2.0 * (1.0 - zh);
                [zw, 0.0, x_off, 0.0, zh, y_off, 0.0, 0.0]
            })
            .collect();
        Ok(self.warp.apply(x, &mats))
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_ZOOM.class_name,
            grad,
        )
    }
    fn config(&self) -> Value {
        let mut m = warp_config(&self.warp, &self.rng);
        m.insert("name".into(), json!(self.base.name));
        m.insert("trainable".into(), json!(self.base.trainable));
        m.insert("height_factor".into(), self.height_factor.json());
        m.insert(
            "width_factor".into(),
            self.width_factor.map_or(Value::Null, Factor::json),
        );
        Value::Object(m)
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `RandomZoom`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_ZOOM: LayerEntry = LayerEntry {
    class_name: "RandomZoom",
    from_config: random_zoom_from_config,
};

fn random_zoom_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let hf = Factor::read(o, "height_factor")?.ok_or_else(|| o.err("missing 'height_factor'"))?;
    let mut l = RandomZoom::new(hf);
    l.width_factor = Factor::read(o, "width_factor")?;
    l.check(o.name).map_err(|e: Error| o.err(e))?;
    l.warp = Warp::read(o)?;
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
