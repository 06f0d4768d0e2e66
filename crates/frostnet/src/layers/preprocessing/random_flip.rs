//! `RandomFlip`: in training mode, flips each image with probability 1/2 left-right
//! (`horizontal`), top-bottom (`vertical`), or both at once (`horizontal_and_vertical`, Keras's
//! default: one draw per image decides both flips). Passes its input through at inference.

use super::super::registry::LayerEntry;
use super::super::{ForwardCtx, Layer, LayerBase, Mode, Shape};
use super::{backward, image_dims, image_input, read_common, read_seed, Changed, Seeded};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use rand::Rng;
use serde_json::json;

/// Which axes `RandomFlip` flips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlipMode {
    Horizontal,
    Vertical,
    #[default]
    HorizontalAndVertical,
}

impl FlipMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FlipMode::Horizontal => "horizontal",
            FlipMode::Vertical => "vertical",
            FlipMode::HorizontalAndVertical => "horizontal_and_vertical",
        }
    }
}

impl std::str::FromStr for FlipMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<FlipMode> {
        match s {
            "horizontal" => Ok(FlipMode::Horizontal),
            "vertical" => Ok(FlipMode::Vertical),
            "horizontal_and_vertical" => Ok(FlipMode::HorizontalAndVertical),
            other => Err(crate::Error::InvalidConfig(format!(
                "flip mode must be horizontal, vertical or horizontal_and_vertical; got '{other}'"
            ))),
        }
    }
}

/// Randomly flips images in training mode.
pub struct RandomFlip {
    base: LayerBase,
    mode: FlipMode,
    rng: Seeded,
    cache: Changed,
}

impl RandomFlip {
    pub fn new(mode: FlipMode) -> RandomFlip {
        RandomFlip {
            base: LayerBase::new(RANDOM_FLIP.class_name),
            mode,
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

/// Flips one `h x w x c` image in place along the chosen axes.
pub(crate) fn flip_image(img: &mut [f32], h: usize, w: usize, c: usize, hor: bool, ver: bool) {
    if hor {
        for row in img.chunks_mut(w * c) {
            for x in 0..w / 2 {
                for ch in 0..c {
                    row.swap(x * c + ch, (w - 1 - x) * c + ch);
                }
            }
        }
    }
    if ver {
        let stride = w * c;
        for y in 0..h / 2 {
            let (top, bottom) = img.split_at_mut((h - 1 - y) * stride);
            top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
        }
    }
}

impl Layer for RandomFlip {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RANDOM_FLIP.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = image_input(&self.base.name, inputs)?;
        self.base.built = true;
        Ok(s)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let (n, h, w, c) = image_dims(&self.base.name, &y)?;
        let train = ctx.mode == Mode::Train;
        if train && n > 0 && h * w * c > 0 {
            let rng = self.rng.rng(ctx);
            let flips: Vec<bool> = (0..n).map(|_| rng.random::<f32>() <= 0.5).collect();
            let hor = matches!(
                self.mode,
                FlipMode::Horizontal | FlipMode::HorizontalAndVertical
            );
            let ver = matches!(
                self.mode,
                FlipMode::Vertical | FlipMode::HorizontalAndVertical
            );
            for (img, flip) in y.data_mut().chunks_mut(h * w * c).zip(flips) {
                if flip {
                    flip_image(img, h, w, c, hor, ver);
                }
            }
        }
        self.cache = ctx.keep.then_some(train);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(
            &mut self.cache,
            &self.base.name,
            RANDOM_FLIP.class_name,
            grad,
        )
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "seed": self.rng.json(),
               "mode": self.mode.as_str()})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// `RandomFlip`'s Keras class name and config reader, listed in the
/// [registry](super::super::registry).
pub(crate) const RANDOM_FLIP: LayerEntry = LayerEntry {
    class_name: "RandomFlip",
    from_config: random_flip_from_config,
};

fn random_flip_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    read_common(o)?;
    let mode = o
        .string("mode", "horizontal_and_vertical")?
        .parse()
        .map_err(|e: crate::Error| o.err(e))?;
    let mut l = RandomFlip::new(mode);
    l.rng = Seeded::new(read_seed(o)?);
    Ok(Box::new(l))
}
