//! `RandomCrop`: in training mode, crops one random `(height, width)` window, at the same place
//! for every image of the batch (Keras draws one offset per call). An input not larger than the
//! target along both axes is instead cut to the target's aspect ratio around its centre and
//! resized (bilinear) if the window is not the target size, as Keras does.
//!
//! At inference Keras 3 (3.15.1) returns the input unchanged, uncropped, although the layer's
//! declared output shape is `(height, width)`; frostnet does the same, so a model that predicts
//! with Keras predicts the same with frostnet. Put layers that need the cropped size behind a
//! [`Resizing`](super::Resizing) or a global pooling, as with Keras.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Mode, Shape};
use super::center_crop::{crop, resize_window};
use super::{backward, image_dims, image_input, read_common, read_seed, uniform, Changed, Seeded};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

/// Randomly crops images in training mode.
pub struct RandomCrop {
    base: LayerBase,
    height: usize,
    width: usize,
    rng: Seeded,
    cache: Changed,
}

impl RandomCrop {
    pub fn new(height: usize, width: usize) -> RandomCrop {
        RandomCrop {
            base: LayerBase::new(RANDOM_CROP.class_name),
            height,
            width,
            rng: Seeded::new(None),
            cache: None,
        }
    }
    /// Gives the layer its own generator seeded with `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Seeded::new(Some(seed));
        self
    }
}

impl Layer for RandomCrop {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_CROP.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        if self.height == 0 || self.width == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': height and width must be positive, got {}x{}",
                self.base.name, self.height, self.width
            )));
        }
        self.base.built = true;
        Ok(vec![Some(self.height), Some(self.width), s[2]])
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let (_, h, w, _) = image_dims(&self.base.name, x)?;
        let train = ctx.mode == Mode::Train;
        self.cache = ctx.keep.then_some(train);
        if !train {
            return Ok(x.clone());
        }
        if h == 0 || w == 0 {
            return Err(Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: "images of at least 1x1 pixels".to_string(),
                got: crate::error::fmt_dims(x.shape()),
            });
        }
        let (th, tw) = (self.height, self.width);
        if h > th && w > tw {
            let rng = self.rng.rng(ctx);
            let top = uniform(rng, 0.0, (h - th + 1) as f32) as usize;
            let left = uniform(rng, 0.0, (w - tw + 1) as f32) as usize;
            return Ok(crop(x, top.min(h - th), left.min(w - tw), th, tw));
        }
        // Keras's fallback: the centred window of the target's aspect ratio, then a slice of at
        // most the target size from its top-left corner, resized if it is not the target size.
        let (top, left, _, _) = crate::datasets::resize::crop_box(h, w, (th, tw));
        let (sh, sw) = (th.min(h - top), tw.min(w - left));
        if (sh, sw) == (th, tw) {
            Ok(crop(x, top, left, th, tw))
        } else {
            Ok(resize_window(x, (top, left, sh, sw), th, tw))
        }
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_CROP.class_name,
            grad,
        )
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "height": self.height, "width": self.width,
               "seed": self.rng.json()})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `RandomCrop`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_CROP: LayerEntry = LayerEntry {
    class_name: "RandomCrop",
    from_config: random_crop_from_config,
};

fn random_crop_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let (h, w) = (o.size("height", None)?, o.size("width", None)?);
    o.budget((h * w) as u64)?;
    let mut l = RandomCrop::new(h, w);
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
