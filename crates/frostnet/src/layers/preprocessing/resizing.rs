//! `Resizing`: resizes images to `(height, width)` as TensorFlow's `tf.image.resize` does
//! (half-pixel centres, no antialiasing; the kernel image folders use), optionally first cropping
//! (`crop_to_aspect_ratio`) or padding (`pad_to_aspect_ratio`) to the target's aspect ratio.
//! Deterministic: the same in training and inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Shape};
use super::{backward, image_dims, image_input, interpolation_name, read_common, Changed};
use crate::datasets::resize::{resize_into, Image};
use crate::datasets::Interpolation;
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

/// Resizes images to a fixed size.
pub struct Resizing {
    base: LayerBase,
    height: usize,
    width: usize,
    interpolation: Interpolation,
    crop_to_aspect_ratio: bool,
    pad_to_aspect_ratio: bool,
    fill_value: f32,
    cache: Changed,
}

impl Resizing {
    pub fn new(height: usize, width: usize) -> Resizing {
        Resizing {
            base: LayerBase::new(RESIZING.class_name),
            height,
            width,
            interpolation: Interpolation::Bilinear,
            crop_to_aspect_ratio: false,
            pad_to_aspect_ratio: false,
            fill_value: 0.0,
            cache: None,
        }
    }
    pub fn interpolation(mut self, i: Interpolation) -> Self {
        self.interpolation = i;
        self
    }
    /// Crops the largest centred window of the target's aspect ratio before resizing.
    pub fn crop_to_aspect_ratio(mut self, on: bool) -> Self {
        self.crop_to_aspect_ratio = on;
        self
    }
    /// Pads the short side evenly with `fill_value` to the target's aspect ratio before resizing.
    pub fn pad_to_aspect_ratio(mut self, on: bool) -> Self {
        self.pad_to_aspect_ratio = on;
        self
    }
    pub fn fill_value(mut self, v: f32) -> Self {
        self.fill_value = v;
        self
    }
}

/// TensorFlow's crop window for `crop_to_aspect_ratio` (f32 arithmetic, as Keras's TF backend).
fn crop_window(h: usize, w: usize, th: usize, tw: usize) -> (usize, usize, usize, usize) {
    let ch = (((w * th) as f32 / tw as f32) as usize).min(h).max(1);
    let cw = (((h * tw) as f32 / th as f32) as usize).min(w).max(1);
    let top = ((h - ch) as f32 / 2.0) as usize;
    let left = ((w - cw) as f32 / 2.0) as usize;
    (top, left, ch, cw)
}

/// Keras's `pad_to_aspect_ratio` padding per side `(rows, columns)`. Keras pads each side by
/// half the missing size (rounded down), so an odd difference leaves the result one short of the
/// exact ratio; this is what Keras computes.
fn pad_sides(h: usize, w: usize, th: usize, tw: usize) -> (usize, usize) {
    let ph = (((w * th) as f32 / tw as f32) as usize).max(h);
    let pw = (((h * tw) as f32 / th as f32) as usize).max(w);
    (
        ((ph - h) as f32 / 2.0) as usize,
        ((pw - w) as f32 / 2.0) as usize,
    )
}

impl Layer for Resizing {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RESIZING.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        if self.height == 0 || self.width == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': height and width must be positive, got {}x{}",
                self.base.name, self.height, self.width
            )));
        }
        if self.crop_to_aspect_ratio && self.pad_to_aspect_ratio {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be set",
                self.base.name
            )));
        }
        self.base.built = true;
        Ok(vec![Some(self.height), Some(self.width), s[2]])
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let (n, h, w, c) = image_dims(&self.base.name, x)?;
        let (th, tw) = (self.height, self.width);
        let mut y = Tensor::zeros(&[n, th, tw, c]);
        let per_in = h * w * c;
        let per_out = th * tw * c;
        if h == 0 || w == 0 {
            return Err(Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: "images of at least 1x1 pixels".to_string(),
                got: crate::error::fmt_dims(x.shape()),
            });
        }
        let (ph, pw) = if self.pad_to_aspect_ratio {
            pad_sides(h, w, th, tw)
        } else {
            (0, 0)
        };
        let mut padded = Vec::new();
        for (src, dst) in x
            .data()
            .chunks(per_in.max(1))
            .zip(y.data_mut().chunks_mut(per_out.max(1)))
        {
            if ph > 0 || pw > 0 {
                let (hh, ww) = (h + 2 * ph, w + 2 * pw);
                padded.clear();
                padded.resize(hh * ww * c, self.fill_value);
                for r in 0..h {
                    let at = ((r + ph) * ww + pw) * c;
                    padded[at..at + w * c].copy_from_slice(&src[r * w * c..(r + 1) * w * c]);
                }
                let img = Image {
                    data: &padded[..],
                    height: hh,
                    width: ww,
                    channels: c,
                };
                resize_into(&img, (0, 0, hh, ww), th, tw, self.interpolation, dst);
            } else {
                let window = if self.crop_to_aspect_ratio {
                    crop_window(h, w, th, tw)
                } else {
                    (0, 0, h, w)
                };
                let img = Image {
                    data: src,
                    height: h,
                    width: w,
                    channels: c,
                };
                resize_into(&img, window, th, tw, self.interpolation, dst);
            }
        }
        self.cache = ctx.keep.then_some(true);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(&mut self.cache, &self.base.name, RESIZING.class_name, grad)
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "height": self.height, "width": self.width,
               "interpolation": interpolation_name(self.interpolation),
               "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
               "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": "constant",
               "fill_value": self.fill_value, "antialias": false})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `Resizing`'s Keras class name and config reader, listed in the [registry](super::super::registry).
pub(crate) const RESIZING: LayerEntry = LayerEntry {
    class_name: "Resizing",
    from_config: resizing_from_config,
};

fn resizing_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    o.require("fill_mode", &[json!("constant")])?;
    o.require("antialias", &[json!(false)])?;
    let interp = super::read_interpolation(o)?;
    let (h, w) = (o.size("height", None)?, o.size("width", None)?);
    o.budget((h * w) as u64)?;
    Ok(Box::new(
        Resizing::new(h, w)
            .interpolation(interp)
            .crop_to_aspect_ratio(o.boolean("crop_to_aspect_ratio", false)?)
            .pad_to_aspect_ratio(o.boolean("pad_to_aspect_ratio", false)?)
            .fill_value(o.float("fill_value", 0.0)?),
    ))
}
