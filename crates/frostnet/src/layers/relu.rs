//! The `ReLU` layer with Keras's options: `max_value` (ReLU6 in MobileNetV2), `negative_slope`
//! (leaky) and `threshold`.

use super::registry::LayerEntry;
use super::{expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::buffer::Pooled;
use crate::tensor::norm::FusedRelu;
use crate::tensor::{map_with_codes, scale_by_codes, Tensor};
use serde_json::json;

/// `f(x) = min(x, max_value)` for `x > threshold`, `negative_slope * (x - threshold)` below it,
/// `0` at it, as Keras defines it.
pub struct ReLU {
    base: LayerBase,
    max_value: Option<f32>,
    negative_slope: f32,
    threshold: f32,
    cache: Option<Kept>,
}

/// What the layer keeps for backward.
enum Kept {
    /// Per input element, which derivative applies (an index into [`ReLU::derivatives`]): one
    /// byte instead of a copy of the input.
    Codes(Pooled<u8>),
    /// Nothing: the BatchNormalization before it applied it and takes its output's gradient
    /// (see [`ReLU::pass_through`]).
    Through,
}

impl Default for ReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl ReLU {
    /// Plain `max(x, 0)`.
    pub fn new() -> ReLU {
        ReLU {
            base: LayerBase::new(RELU.class_name),
            max_value: None,
            negative_slope: 0.0,
            threshold: 0.0,
            cache: None,
        }
    }
    pub fn max_value(mut self, m: f32) -> Self {
        self.max_value = Some(m);
        self
    }
    pub fn negative_slope(mut self, s: f32) -> Self {
        self.negative_slope = s;
        self
    }
    pub fn threshold(mut self, t: f32) -> Self {
        self.threshold = t;
        self
    }

    /// The form a BatchNormalization before it applies it in (the executor's fusion,
    /// models/model.rs): only the plain ReLU is fused.
    pub(crate) fn fused_form(&self) -> Option<FusedRelu> {
        let plain = self.threshold == 0.0 && self.max_value.is_none() && self.negative_slope == 0.0;
        plain.then_some(FusedRelu::Positive)
    }

    /// Records that the BatchNormalization before it computed its output (with `keep`, that
    /// backward passes the gradient straight through: the BN applies the derivative).
    pub(crate) fn pass_through(&mut self, keep: bool) {
        self.cache = keep.then_some(Kept::Through);
    }

    /// Keras's formula: keep `x` above the threshold, clip to `[0, max_value]`, subtract the
    /// leaky part below the threshold.
    fn f(&self, x: f32) -> f32 {
        relu_value(x, self.threshold, self.max_value, self.negative_slope)
    }

    /// The forward function as an owned in-place map, for the executor's conv epilogue fusion.
    pub(crate) fn in_place_fn(&self) -> impl Fn(&mut [f32]) + Sync + 'static {
        let (t, m, s) = (self.threshold, self.max_value, self.negative_slope);
        move |v: &mut [f32]| v.iter_mut().for_each(|v| *v = relu_value(*v, t, m, s))
    }

    /// Which of [`derivatives`](Self::derivatives) is the derivative at `x` (Keras's: 1 above
    /// the threshold up to `max_value`, `negative_slope` below the threshold, 0 elsewhere).
    fn df_code(&self, x: f32) -> u8 {
        if x > self.threshold {
            match self.max_value {
                Some(m) if x >= m => 0,
                _ => 1,
            }
        } else if x < self.threshold {
            2
        } else {
            0
        }
    }

    fn derivatives(&self) -> [f32; 3] {
        [0.0, 1.0, self.negative_slope]
    }
}

/// Keras's ReLU with threshold, max_value and negative_slope.
#[inline]
fn relu_value(x: f32, threshold: f32, max_value: Option<f32>, negative_slope: f32) -> f32 {
    let mut y = if x > threshold { x } else { 0.0 };
    if let Some(m) = max_value {
        y = y.clamp(0.0, m);
    }
    if negative_slope != 0.0 {
        y -= negative_slope * (threshold - x).max(0.0);
    }
    y
}

impl Layer for ReLU {
    /// One byte per input value (which derivative applies).
    fn kept_for_backward(&self, inputs: &[u64], _output: u64) -> u64 {
        inputs.iter().sum::<u64>()
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RELU.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        // Keras rejects these in the constructor; a builder reports them here.
        let bad = |what: &str, v: f32| {
            Err(Error::InvalidConfig(format!(
                "layer '{}': {what} of a ReLU layer must be a non-negative number, got {v}",
                self.base.name
            )))
        };
        let negative = |v: f32| v.is_nan() || v < 0.0;
        if let Some(m) = self.max_value.filter(|&m| negative(m)) {
            return bad("max_value", m);
        }
        if negative(self.negative_slope) {
            return bad("negative_slope", self.negative_slope);
        }
        if negative(self.threshold) {
            return bad("threshold", self.threshold);
        }
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        // One pass: the output and, for backward, each element's derivative class.
        let plain = self.threshold == 0.0 && self.max_value.is_none() && self.negative_slope == 0.0;
        let (y, codes) = if plain {
            // `relu_value` with the defaults, and code 1 exactly where x > 0; elsewhere code 0,
            // whose derivative (0) equals code 2's `negative_slope` (0 here): backward is the
            // same. (The general closure below measured 3x slower than the unfused pair.)
            map_with_codes(x.data(), ctx.keep, |v| {
                let pos = v > 0.0;
                (if pos { v } else { 0.0 }, u8::from(pos))
            })
        } else {
            map_with_codes(x.data(), ctx.keep, |v| (self.f(v), self.df_code(v)))
        };
        self.cache = codes.map(Kept::Codes);
        Tensor::from_vec(x.shape(), y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let codes = match take_cache(&mut self.cache, &self.base.name)? {
            Kept::Codes(codes) => codes,
            Kept::Through => return Ok(vec![Some(grad.clone())]),
        };
        if codes.len() != grad.len() {
            return Err(Error::ShapeMismatch {
                context: format!("layer '{}': gradient", self.base.name),
                left: format!("{} values kept", codes.len()),
                right: format!("{} values", grad.len()),
            });
        }
        let dx = scale_by_codes(grad.data(), &codes, &self.derivatives());
        Ok(vec![Some(Tensor::from_vec(grad.shape(), dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "max_value": self.max_value, "negative_slope": self.negative_slope,
               "threshold": self.threshold})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

// Keras config reading.

/// `ReLU`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const RELU: LayerEntry = LayerEntry {
    class_name: "ReLU",
    from_config: relu_from_config,
};

fn relu_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let mut r = ReLU::new()
        .negative_slope(o.float("negative_slope", 0.0)?)
        .threshold(o.float("threshold", 0.0)?);
    if o.get("max_value").is_some() {
        r = r.max_value(o.float("max_value", 0.0)?);
    }
    Ok(Box::new(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keras's derivative, written out: 1 above the threshold (0 from `max_value` on),
    /// `negative_slope` below it, 0 at it.
    fn df(r: &ReLU, x: f32) -> f32 {
        [0.0, 1.0, r.negative_slope][r.df_code(x) as usize]
    }

    /// Forward and backward through the kept derivative codes equal the per-element definitions
    /// bit for bit, for plain ReLU (its fast path) and the leaky / capped / thresholded forms, on
    /// odd serial and parallel sizes with zeros, signed zeros, NaN and infinities planted.
    #[test]
    fn codes_path_is_bit_identical_to_the_definition() {
        let mut r = crate::tensor::random::rng(Some(4));
        for n in [7usize, 40_001] {
            let mut x = crate::tensor::random::uniform(&mut r, n, -3.0, 3.0);
            let special = [
                0.0,
                -0.0,
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                6.0,
                0.5,
            ];
            for (i, v) in special.iter().enumerate() {
                x[i] = *v;
            }
            let dy = crate::tensor::random::uniform(&mut r, n, -1.0, 1.0);
            let xt = Tensor::from_vec(&[n], x.clone()).unwrap();
            let gt = Tensor::from_vec(&[n], dy.clone()).unwrap();
            let layers = [
                ReLU::new(),
                ReLU::new().negative_slope(0.1),
                ReLU::new().max_value(6.0),
                ReLU::new().threshold(0.5).negative_slope(0.2),
            ];
            for mut layer in layers {
                layer.build(&[vec![Some(n)]]).unwrap();
                let mut ctx = ForwardCtx::infer();
                ctx.keep = true;
                let y = layer.forward(&[&xt], &mut ctx).unwrap();
                let dx = layer.backward(&gt, &[true]).unwrap().remove(0).unwrap();
                for i in 0..n {
                    assert_eq!(y.data()[i].to_bits(), layer.f(x[i]).to_bits(), "y[{i}]");
                    let want = dy[i] * df(&layer, x[i]);
                    assert_eq!(dx.data()[i].to_bits(), want.to_bits(), "dx[{i}] x={}", x[i]);
                }
            }
        }
    }
}
