//! Keras's image preprocessing layers (`keras.layers.Resizing`, `CenterCrop`, `RandomFlip`,
//! `RandomRotation`, `RandomZoom`, `RandomTranslation`, `RandomContrast`, `RandomBrightness`,
//! `RandomCrop`), one file each, channels-last images `(batch, height, width, channels)`.
//!
//! What they share lives here: the affine warp the geometric layers run (TensorFlow's
//! `ImageProjectiveTransformV3`, which Keras's `ops.image.affine_transform` calls, reproduced
//! operation by operation so outputs agree to float rounding), the `fill_mode`s, Keras's rules for
//! reading a `factor`, and the per-layer seeded generator.
//!
//! Semantics follow Keras 3: the random layers change their input only in training mode
//! ([`Mode::Train`]) and pass it through unchanged at inference, including `RandomCrop`, which
//! Keras 3 returns uncropped at inference. `Resizing` and `CenterCrop` always apply.
//!
//! Randomness: a layer given a `seed` owns a generator seeded with it (Keras's `SeedGenerator`),
//! so two layers with the same seed produce the same sequence of transformations and different
//! seeds different ones; without a seed, a layer draws from the forward context's generator,
//! which the model seeds from its own. frostnet's draws are not Keras's random stream.
//!
//! Gradients: Keras never differentiates through these layers in practice (they sit in front of
//! the network, where nothing upstream trains, and frostnet's executor then never calls their
//! `backward`). A pass that returned its input unchanged (inference) passes the gradient through;
//! after a pass that transformed its input, `backward` is a typed [`Error::State`] saying so,
//! rather than a silently wrong gradient.

mod center_crop;
mod per_image;
mod random_brightness;
mod random_contrast;
mod random_crop;
mod random_flip;
mod random_rotation;
mod random_translation;
mod random_zoom;
mod resizing;

pub use center_crop::CenterCrop;
pub use random_brightness::RandomBrightness;
pub use random_contrast::RandomContrast;
pub use random_crop::RandomCrop;
pub use random_flip::{FlipMode, RandomFlip};
pub use random_rotation::RandomRotation;
pub use random_translation::RandomTranslation;
pub use random_zoom::RandomZoom;
pub use resizing::Resizing;

pub(crate) use center_crop::CENTER_CROP;
pub(crate) use random_brightness::RANDOM_BRIGHTNESS;
pub(crate) use random_contrast::RANDOM_CONTRAST;
pub(crate) use random_crop::RANDOM_CROP;
pub(crate) use random_flip::RANDOM_FLIP;
pub(crate) use random_rotation::RANDOM_ROTATION;
pub(crate) use random_translation::RANDOM_TRANSLATION;
pub(crate) use random_zoom::RANDOM_ZOOM;
pub(crate) use resizing::RESIZING;

use super::{expect_inputs, incompatible, ForwardCtx, Shape};
use crate::datasets::Interpolation;
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};

/// How a geometric layer fills points that fall outside the input (Keras's `fill_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FillMode {
    /// `d c b a | a b c d | d c b a`: reflected about the edge of the last pixel (the default).
    #[default]
    Reflect,
    /// `a b c d | a b c d | a b c d`.
    Wrap,
    /// `k k k k | a b c d | k k k k` with `k = fill_value`.
    Constant,
    /// `a a a a | a b c d | d d d d`.
    Nearest,
}

impl FillMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FillMode::Reflect => "reflect",
            FillMode::Wrap => "wrap",
            FillMode::Constant => "constant",
            FillMode::Nearest => "nearest",
        }
    }
}

impl std::str::FromStr for FillMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<FillMode> {
        match s {
            "reflect" => Ok(FillMode::Reflect),
            "wrap" => Ok(FillMode::Wrap),
            "constant" => Ok(FillMode::Constant),
            "nearest" => Ok(FillMode::Nearest),
            other => Err(Error::InvalidConfig(format!(
                "fill_mode must be one of reflect, wrap, constant, nearest; got '{other}'"
            ))),
        }
    }
}

/// Keras's name of an interpolation.
pub(crate) fn interpolation_name(i: Interpolation) -> &'static str {
    match i {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Nearest => "nearest",
    }
}

/// A `factor` argument as a Keras user gives it: one number `f` (meaning `[-f, f]`, cut to the
/// layer's bounds) or a `(lower, upper)` range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Factor {
    Scalar(f64),
    Range(f64, f64),
}

impl From<f64> for Factor {
    fn from(f: f64) -> Factor {
        Factor::Scalar(f)
    }
}

impl From<(f64, f64)> for Factor {
    fn from((a, b): (f64, f64)) -> Factor {
        Factor::Range(a, b)
    }
}

impl Factor {
    pub(crate) fn json(self) -> Value {
        match self {
            Factor::Scalar(f) => json!(f),
            Factor::Range(a, b) => json!([a, b]),
        }
    }

    /// Reads a number or a list of two numbers; `None` when the key is absent or null.
    pub(crate) fn read(o: &Opts, key: &str) -> Result<Option<Factor>> {
        let num = |v: &Value| {
            v.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                o.err(format!(
                    "'{key}' = {v} is not a number or a pair of numbers"
                ))
            })
        };
        match o.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) if a.len() == 2 => {
                Ok(Some(Factor::Range(num(&a[0])?, num(&a[1])?)))
            }
            Some(v) => num(v).map(|f| Some(Factor::Scalar(f))),
        }
    }

    /// Keras's `BaseImagePreprocessingLayer._set_factor`: a range is sorted and must overlap
    /// `bounds`; a number must lie in `bounds` and gives `[max(-|f|, low), |f|]`.
    pub(crate) fn base_bounds(self, layer: &str, bounds: (f64, f64)) -> Result<(f64, f64)> {
        let bad = || {
            Error::InvalidConfig(format!(
                "layer '{layer}': factor must be a number or a pair of numbers in [{}, {}], got {}",
                bounds.0,
                bounds.1,
                self.json()
            ))
        };
        match self {
            Factor::Range(a, b) => {
                if a > bounds.1 || b < bounds.0 || a.is_nan() || b.is_nan() {
                    return Err(bad());
                }
                Ok((a.min(b), a.max(b)))
            }
            Factor::Scalar(f) => {
                if !(bounds.0..=bounds.1).contains(&f) {
                    return Err(bad());
                }
                let f = f.abs();
                Ok(((-f).max(bounds.0), f))
            }
        }
    }

    /// `RandomZoom`'s and `RandomTranslation`'s rule: every given value must satisfy `ok`
    /// (described by `range` in the error); a number `f` means `[-|f|, |f|]`.
    pub(crate) fn symmetric_bounds(
        self,
        layer: &str,
        what: &str,
        ok: fn(f64) -> bool,
        range: &str,
    ) -> Result<(f64, f64)> {
        let check = |v: f64| {
            if ok(v) {
                Ok(v)
            } else {
                Err(Error::InvalidConfig(format!(
                    "layer '{layer}': {what} must be a number or a pair of numbers in {range}, \
                     got {}",
                    self.json()
                )))
            }
        };
        match self {
            Factor::Range(a, b) => {
                let (a, b) = (check(a)?, check(b)?);
                Ok((a.min(b), a.max(b)))
            }
            Factor::Scalar(f) => {
                let f = check(f)?.abs();
                Ok((-f, f))
            }
        }
    }
}

/// The per-layer random source: a generator of its own when the layer has a seed, otherwise
/// the forward context's.
pub(crate) struct Seeded {
    pub(crate) seed: Option<u64>,
    rng: Option<SmallRng>,
}

impl Seeded {
    pub(crate) fn new(seed: Option<u64>) -> Seeded {
        Seeded {
            seed,
            rng: seed.map(|s| crate::tensor::random::rng(Some(s))),
        }
    }
    pub(crate) fn rng<'a>(&'a mut self, ctx: &'a mut ForwardCtx) -> &'a mut SmallRng {
        match &mut self.rng {
            Some(r) => r,
            None => &mut ctx.rng,
        }
    }
    pub(crate) fn json(&self) -> Value {
        json!(self.seed)
    }
}

/// Reads a Keras `seed` (an int or null).
pub(crate) fn read_seed(o: &Opts) -> Result<Option<u64>> {
    match o.get("seed") {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(|s| Some(s as u64))
            .or_else(|| v.as_u64().map(Some))
            .ok_or_else(|| o.err(format!("'seed' = {v} is not an integer"))),
    }
}

/// Options every image preprocessing layer's config carries; frostnet handles channels-last only.
pub(crate) fn read_common(o: &Opts) -> Result<()> {
    o.generic()?;
    o.require("data_format", &[json!("channels_last")])
}

/// Reads `interpolation` (`bilinear` or `nearest`).
pub(crate) fn read_interpolation(o: &Opts) -> Result<Interpolation> {
    o.string("interpolation", "bilinear")?
        .parse()
        .map_err(|e: Error| o.err(e))
}

/// Reads `fill_mode` with Keras's default `reflect`.
pub(crate) fn read_fill_mode(o: &Opts, default: &'static str) -> Result<FillMode> {
    o.string("fill_mode", default)?
        .parse()
        .map_err(|e: Error| o.err(e))
}

/// Reads `value_range`, a pair of numbers (sorted, as Keras does).
pub(crate) fn read_value_range(o: &Opts) -> Result<(f64, f64)> {
    match o.get("value_range") {
        None => Ok((0.0, 255.0)),
        Some(Value::Array(a)) if a.len() == 2 && a.iter().all(|v| v.as_f64().is_some()) => {
            let (x, y) = (a[0].as_f64().unwrap_or(0.0), a[1].as_f64().unwrap_or(0.0));
            Ok((x.min(y), x.max(y)))
        }
        Some(v) => Err(o.err(format!("'value_range' = {v} is not a pair of numbers"))),
    }
}

/// Checks that the layer gets one image input `(height, width, channels)`.
pub(crate) fn image_input(layer: &str, inputs: &[Shape]) -> Result<Shape> {
    let s = &expect_inputs(layer, inputs, 1)?[0];
    if s.len() != 3 {
        return Err(incompatible(layer, "(None, height, width, channels)", s));
    }
    Ok(s.clone())
}

/// A tensor's `(batch, height, width, channels)`, or an error naming the layer.
pub(crate) fn image_dims(layer: &str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.shape() {
        [n, h, w, c] => Ok((n, h, w, c)),
        _ => Err(Error::IncompatibleShape {
            layer: layer.to_string(),
            expected: "(batch, height, width, channels)".to_string(),
            got: crate::error::fmt_dims(x.shape()),
        }),
    }
}

/// One uniform draw in `[low, high)`, computed as TensorFlow's `random.uniform` does
/// (`u * (high - low) + low` in f32), so that equal bounds give exactly `low`.
pub(crate) fn uniform(rng: &mut SmallRng, low: f32, high: f32) -> f32 {
    let u: f32 = rng.random();
    u * (high - low) + low
}

/// What a forward pass kept for `backward`: whether it changed its input.
pub(crate) type Changed = Option<bool>;

/// The gradient of a preprocessing layer (see the module docs).
pub(crate) fn backward(
    cache: &mut Changed,
    layer: &str,
    class: &str,
    grad: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    match super::take_cache(cache, layer)? {
        false => Ok(vec![Some(grad.clone())]),
        true => Err(Error::State(format!(
            "layer '{layer}': {class} has no gradient after transforming its input (as in \
             Keras, preprocessing layers are not differentiated); put it before the trainable \
             layers"
        ))),
    }
}

/// TensorFlow's `MapCoordinate` for one axis of length `len`.
fn map_coord(c: f32, len: usize, mode: FillMode) -> f32 {
    let lenf = len as f32;
    let len_i = len as i64;
    let mut c = c;
    match mode {
        FillMode::Constant => return c,
        FillMode::Nearest => {}
        FillMode::Reflect => {
            if c < 0.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz2 = 2 * len_i;
                    if c < sz2 as f32 {
                        c += (sz2 * ((-c / sz2 as f32) as i64)) as f32;
                    }
                    c = if c < -lenf { c + sz2 as f32 } else { -c - 1.0 };
                }
            } else if c > lenf - 1.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz2 = 2 * len_i;
                    c -= (sz2 * ((c / sz2 as f32) as i64)) as f32;
                    if c >= lenf {
                        c = sz2 as f32 - c - 1.0;
                    }
                }
            }
        }
        FillMode::Wrap => {
            if c < 0.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz = len_i - 1;
                    c += (len_i * ((-c / sz as f32) as i64 + 1)) as f32;
                }
            } else if c > lenf - 1.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz = len_i - 1;
                    c -= (len_i * ((c / sz as f32) as i64)) as f32;
                }
            }
        }
    }
    c.clamp(0.0, lenf - 1.0)
}

/// Keras's `ops.image.affine_transform` on TensorFlow (`ImageProjectiveTransformV3`): output
/// pixel `(x, y)` of image `b` reads the input at `((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)`
/// with `k = c0 x + c1 y + 1`, where `transforms[b] = [a0, a1, a2, b0, b1, b2, c0, c1]`. Points
/// outside the image are mapped by `fill`; bilinear reads outside the image use `fill_value`.
pub(crate) fn affine_transform(
    x: &Tensor,
    transforms: &[[f32; 8]],
    interp: Interpolation,
    fill: FillMode,
    fill_value: f32,
) -> Tensor {
    let (_, h, w, c) = match *x.shape() {
        [n, h, w, c] => (n, h, w, c),
        _ => unreachable!("callers check the rank"),
    };
    let mut out = Tensor::zeros(x.shape());
    let per = h * w * c;
    if per == 0 {
        return out;
    }
    let (hi, wi) = (h as i64, w as i64);
    for ((src, dst), t) in x
        .data()
        .chunks(per)
        .zip(out.data_mut().chunks_mut(per))
        .zip(transforms)
    {
        let read = |y: i64, x: i64, ch: usize| -> f32 {
            if (0..hi).contains(&y) && (0..wi).contains(&x) {
                src[(y as usize * w + x as usize) * c + ch]
            } else {
                fill_value
            }
        };
        for oy in 0..h {
            for ox in 0..w {
                let px = &mut dst[(oy * w + ox) * c..(oy * w + ox + 1) * c];
                let (xf, yf) = (ox as f32, oy as f32);
                let k = t[6] * xf + t[7] * yf + 1.0;
                if k == 0.0 {
                    px.fill(fill_value);
                    continue;
                }
                let ix = map_coord((t[0] * xf + t[1] * yf + t[2]) / k, w, fill);
                let iy = map_coord((t[3] * xf + t[4] * yf + t[5]) / k, h, fill);
                match interp {
                    Interpolation::Nearest => {
                        let (ry, rx) = (iy.round() as i64, ix.round() as i64);
                        for (ch, v) in px.iter_mut().enumerate() {
                            *v = read(ry, rx, ch);
                        }
                    }
                    Interpolation::Bilinear => {
                        let (y0, x0) = (iy.floor(), ix.floor());
                        let (y1, x1) = (y0 + 1.0, x0 + 1.0);
                        let (y0i, x0i, y1i, x1i) = (y0 as i64, x0 as i64, y1 as i64, x1 as i64);
                        for (ch, v) in px.iter_mut().enumerate() {
                            let top =
                                (x1 - ix) * read(y0i, x0i, ch) + (ix - x0) * read(y0i, x1i, ch);
                            let bottom =
                                (x1 - ix) * read(y1i, x0i, ch) + (ix - x0) * read(y1i, x1i, ch);
                            *v = (y1 - iy) * top + (iy - y0) * bottom;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Keras's `_compute_affine_matrix` for a rotation by `degrees` about the image centre (no
/// translation, scale 1, no shear), in f32 as Keras computes it.
pub(crate) fn rotation_matrix(degrees: f32, height: usize, width: usize) -> [f32; 8] {
    let angle = degrees * (std::f64::consts::PI / 180.0) as f32;
    let (cx, cy) = (0.5 * (width as f32 - 1.0), 0.5 * (height as f32 - 1.0));
    let (cos, sin) = (angle.cos(), angle.sin());
    let (a0, a1, b0, b1) = (cos, -sin, sin, cos);
    let a2 = 0.0 + cx - cx * a0 - cy * a1;
    let b2 = 0.0 + cy - cx * b0 - cy * b1;
    [a0, a1, a2, b0, b1, b2, 0.0, 0.0]
}

/// Configuration shared by the three warping layers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Warp {
    pub(crate) fill_mode: FillMode,
    pub(crate) interpolation: Interpolation,
    pub(crate) fill_value: f32,
}

impl Default for Warp {
    fn default() -> Warp {
        Warp {
            fill_mode: FillMode::Reflect,
            interpolation: Interpolation::Bilinear,
            fill_value: 0.0,
        }
    }
}

impl Warp {
    pub(crate) fn read(o: &Opts) -> Result<Warp> {
        Ok(Warp {
            fill_mode: read_fill_mode(o, "reflect")?,
            interpolation: read_interpolation(o)?,
            fill_value: o.float("fill_value", 0.0)?,
        })
    }
    pub(crate) fn apply(&self, x: &Tensor, transforms: &[[f32; 8]]) -> Tensor {
        affine_transform(
            x,
            transforms,
            self.interpolation,
            self.fill_mode,
            self.fill_value,
        )
    }
}

/// The builder methods of the warping layers (`fill_mode`, `interpolation`, `fill_value`, `seed`),
/// written once; the struct has fields `warp` and `rng`.
macro_rules! warp_options {
    ($t:ty) => {
        impl $t {
            /// How points outside the input are filled (default: reflect).
            pub fn fill_mode(mut self, m: $crate::layers::FillMode) -> Self {
                self.warp.fill_mode = m;
                self
            }
            /// Bilinear (the default) or nearest.
            pub fn interpolation(mut self, i: $crate::datasets::Interpolation) -> Self {
                self.warp.interpolation = i;
                self
            }
            /// The value of points outside the input with [`FillMode::Constant`](crate::layers::FillMode).
            pub fn fill_value(mut self, v: f32) -> Self {
                self.warp.fill_value = v;
                self
            }
            /// Gives the layer its own generator seeded with `seed` (see the module docs).
            pub fn seed(mut self, seed: u64) -> Self {
                self.rng = super::Seeded::new(Some(seed));
                self
            }
        }
    };
}
pub(crate) use warp_options;

/// The config fields the warping layers share.
pub(crate) fn warp_config(w: &Warp, seed: &Seeded) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("fill_mode".into(), json!(w.fill_mode.as_str()));
    m.insert(
        "interpolation".into(),
        json!(interpolation_name(w.interpolation)),
    );
    m.insert("fill_value".into(), json!(w.fill_value));
    m.insert("seed".into(), seed.json());
    m.insert("data_format".into(), json!("channels_last"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_coord_follows_tensorflow() {
        // Reflect [0 1 2 3] to [3 2 1 0 | 0 1 2 3 | 3 2 1 0].
        assert_eq!(map_coord(-1.0, 4, FillMode::Reflect), 0.0);
        assert_eq!(map_coord(-2.0, 4, FillMode::Reflect), 1.0);
        assert_eq!(map_coord(4.0, 4, FillMode::Reflect), 3.0);
        assert_eq!(map_coord(5.0, 4, FillMode::Reflect), 2.0);
        assert_eq!(map_coord(-5.0, 4, FillMode::Reflect), 3.0);
        // Wrap [0 1 2 3] to [0 1 2 3 | 0 1 2 3 | 0 1 2 3].
        assert_eq!(map_coord(-1.0, 4, FillMode::Wrap), 3.0);
        assert_eq!(map_coord(4.0, 4, FillMode::Wrap), 0.0);
        assert_eq!(map_coord(5.0, 4, FillMode::Wrap), 1.0);
        assert_eq!(map_coord(-7.0, 4, FillMode::Nearest), 0.0);
        assert_eq!(map_coord(-7.0, 4, FillMode::Constant), -7.0);
    }

    #[test]
    fn identity_matrix_is_identity() {
        let x = Tensor::from_vec(&[1, 2, 3, 1], (0..6).map(|v| v as f32).collect()).unwrap();
        for fill in [
            FillMode::Reflect,
            FillMode::Wrap,
            FillMode::Constant,
            FillMode::Nearest,
        ] {
            for interp in [Interpolation::Bilinear, Interpolation::Nearest] {
                let id = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
                assert_eq!(
                    affine_transform(&x, &[id], interp, fill, 9.0).data(),
                    x.data()
                );
            }
        }
    }
}
