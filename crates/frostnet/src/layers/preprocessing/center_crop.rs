//! `CenterCrop`: the centred `(height, width)` window of each image; an image smaller than the
//! target along either axis is instead cropped to the target's aspect ratio and resized to it
//! (Keras's `smart_resize`, bilinear). Deterministic: the same in training and inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Shape};
use super::{backward, image_dims, image_input, read_common, Changed};
use crate::datasets::resize::{crop_box, resize_into, Image};
use crate::datasets::Interpolation;
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

/// Crops the centre of each image.
pub struct CenterCrop {
    base: LayerBase,
    height: usize,
    width: usize,
    cache: Changed,
}

impl CenterCrop {
    pub fn new(height: usize, width: usize) -> CenterCrop {
        CenterCrop {
            base: LayerBase::new(CENTER_CROP.class_name),
            height,
            width,
            cache: None,
        }
    }
}

/// Copies the window `(top, left)` of size `th x tw` of each `h x w x c` image of `x`.
pub(crate) fn crop(x: &Tensor, top: usize, left: usize, th: usize, tw: usize) -> Tensor {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let mut y = Tensor::zeros(&[n, th, tw, c]);
    let (per_in, per_out) = (h * w * c, th * tw * c);
    if per_in == 0 || per_out == 0 {
        return y;
    }
    for (src, dst) in x
        .data()
        .chunks(per_in)
        .zip(y.data_mut().chunks_mut(per_out))
    {
        for r in 0..th {
            let from = ((top + r) * w + left) * c;
            dst[r * tw * c..(r + 1) * tw * c].copy_from_slice(&src[from..from + tw * c]);
        }
    }
    y
}

/// Resizes the window `(top, left, wh, ww)` of each image of `x` to `th x tw` (bilinear).
pub(crate) fn resize_window(
    x: &Tensor,
    window: (usize, usize, usize, usize),
    th: usize,
    tw: usize,
) -> Tensor {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let mut y = Tensor::zeros(&[n, th, tw, c]);
    let (per_in, per_out) = (h * w * c, th * tw * c);
    if per_in == 0 || per_out == 0 {
        return y;
    }
    for (src, dst) in x
        .data()
        .chunks(per_in)
        .zip(y.data_mut().chunks_mut(per_out))
    {
        let img = Image {
            data: src,
            height: h,
            width: w,
            channels: c,
        };
        resize_into(&img, window, th, tw, Interpolation::Bilinear, dst);
    }
    y
}

impl Layer for CenterCrop {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        CENTER_CROP.class_name
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
        let (th, tw) = (self.height, self.width);
        let y = if h >= th && w >= tw {
            crop(x, (h - th) / 2, (w - tw) / 2, th, tw)
        } else if h == 0 || w == 0 {
            return Err(Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: "images of at least 1x1 pixels".to_string(),
                got: crate::error::fmt_dims(x.shape()),
            });
        } else {
            resize_window(x, crop_box(h, w, (th, tw)), th, tw)
        };
        self.cache = ctx.keep.then_some((h, w) != (th, tw));
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            CENTER_CROP.class_name,
            grad,
        )
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "height": self.height, "width": self.width})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `CenterCrop`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const CENTER_CROP: LayerEntry = LayerEntry {
    class_name: "CenterCrop",
    from_config: center_crop_from_config,
};

fn center_crop_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let (h, w) = (o.size("height", None)?, o.size("width", None)?);
    o.budget((h * w) as u64)?;
    Ok(Box::new(CenterCrop::new(h, w)))
}
