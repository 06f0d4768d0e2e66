//! `BatchNormalization` over the last (channel) axis.
//!
//! The semantics are Keras 3's (see `semantics.md` in the reference): batch statistics and a
//! moving-statistics update only when the mode is `Train` **and** the layer is trainable; a frozen
//! BN runs in inference mode even inside `fit`. The moving statistics are updated in the forward
//! pass, outside the gradient, with the *biased* batch variance, as Keras 3 does.

use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase,
    Mode, Shape, WeightKind,
};
use crate::error::Result;
use crate::tensor::{Tensor, PAR_THRESHOLD};
use rayon::prelude::*;
use serde_json::json;

const GAMMA: usize = 0;
const BETA: usize = 1;
const MEAN: usize = 2;
const VAR: usize = 3;

struct Cache {
    /// Normalised input.
    xhat: Tensor,
    /// `1 / sqrt(var + eps)` per channel, of whichever variance normalised.
    inv_std: Vec<f32>,
    /// Whether batch statistics normalised (so gradients flow through them).
    batch_stats: bool,
}

/// Normalises each channel; 4 weights in Keras's order `gamma, beta, moving_mean,
/// moving_variance`, the last two of kind [`WeightKind::State`].
pub struct BatchNormalization {
    base: LayerBase,
    momentum: f32,
    epsilon: f32,
    center: bool,
    scale: bool,
    in_shape: Shape,
    cache: Option<Cache>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormalization {
    /// Keras's defaults: momentum 0.99, epsilon 1e-3, center and scale.
    pub fn new() -> BatchNormalization {
        BatchNormalization {
            base: LayerBase::new("BatchNormalization"),
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            in_shape: Vec::new(),
            cache: None,
        }
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
    /// Without `scale` there is no gamma (Keras's `scale=False`, used by InceptionV3).
    pub fn scale(mut self, s: bool) -> Self {
        self.scale = s;
        self
    }
    pub fn center(mut self, c: bool) -> Self {
        self.center = c;
        self
    }

    /// Index of each weight, given which of gamma/beta exist.
    fn idx(&self, which: usize) -> Option<usize> {
        let mut i = 0;
        for (k, present) in [
            (GAMMA, self.scale),
            (BETA, self.center),
            (MEAN, true),
            (VAR, true),
        ] {
            if k == which {
                return present.then_some(i);
            }
            i += present as usize;
        }
        None
    }

    fn param(&self, which: usize, channels: usize, default: f32) -> Vec<f32> {
        match self.idx(which) {
            Some(i) => self.base.w(i).data().to_vec(),
            None => vec![default; channels],
        }
    }
}

/// Per-channel sums of `f(channel, value)` over all rows, in f64, parallel for large inputs.
fn channel_sums(x: &[f32], c: usize, f: impl Fn(usize, f32) -> f64 + Sync) -> Vec<f64> {
    let fold = |mut acc: Vec<f64>, r: &[f32]| {
        r.iter().enumerate().for_each(|(j, &v)| acc[j] += f(j, v));
        acc
    };
    if x.len() >= PAR_THRESHOLD {
        x.par_chunks(c).fold(|| vec![0.0; c], fold).reduce(
            || vec![0.0; c],
            |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
        )
    } else {
        x.chunks(c).fold(vec![0.0; c], fold)
    }
}

/// Per-channel mean and biased variance over all rows.
fn moments(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = (x.len() / c) as f64;
    let mean: Vec<f64> = channel_sums(x, c, |_, v| v as f64)
        .iter()
        .map(|s| s / rows)
        .collect();
    let var = channel_sums(x, c, |j, v| (v as f64 - mean[j]).powi(2));
    (
        mean.iter().map(|&v| v as f32).collect(),
        var.iter().map(|&v| (v / rows) as f32).collect(),
    )
}

impl Layer for BatchNormalization {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "BatchNormalization"
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let Some(&Some(c)) = s.last() else {
            return Err(incompatible(
                &self.base.name,
                "a known channel (last) axis",
                s,
            ));
        };
        if !self.base.built {
            if self.scale {
                self.base
                    .add_weight("gamma", Tensor::full(&[c], 1.0), WeightKind::Param);
            }
            if self.center {
                self.base
                    .add_weight("beta", Tensor::zeros(&[c]), WeightKind::Param);
            }
            self.base
                .add_weight("moving_mean", Tensor::zeros(&[c]), WeightKind::State);
            self.base.add_weight(
                "moving_variance",
                Tensor::full(&[c], 1.0),
                WeightKind::State,
            );
            self.base.built = true;
        } else if self.base.w(self.idx(MEAN).expect("always present")).len() != c {
            return Err(incompatible(
                &self.base.name,
                "the channel count it was built with",
                s,
            ));
        }
        self.in_shape = s.clone();
        Ok(s.clone())
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let c = *x.shape().last().expect("rank checked");
        let batch_stats = ctx.mode == Mode::Train && self.base.trainable;
        let (mean, var) = if batch_stats {
            let (mean, var) = moments(x.data(), c);
            // The moving-statistics update: outside the gradient, biased variance (Keras 3).
            let m = self.momentum;
            for (which, batch) in [(MEAN, &mean), (VAR, &var)] {
                let i = self.idx(which).expect("always present");
                let w = self.base.weights[i].value_mut().data_mut();
                w.iter_mut()
                    .zip(batch.iter())
                    .for_each(|(mv, &b)| *mv = *mv * m + b * (1.0 - m));
            }
            (mean, var)
        } else {
            (self.param(MEAN, c, 0.0), self.param(VAR, c, 1.0))
        };
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + self.epsilon).sqrt())
            .collect();
        let gamma = self.param(GAMMA, c, 1.0);
        let beta = self.param(BETA, c, 0.0);
        let mut y = Tensor::zeros(x.shape());
        let mut xhat = ctx.keep.then(|| Tensor::zeros(x.shape()));
        let norm = |xr: &[f32], yr: &mut [f32], hr: Option<&mut [f32]>| {
            for j in 0..c {
                yr[j] = gamma[j] * (xr[j] - mean[j]) * inv_std[j] + beta[j];
            }
            if let Some(hr) = hr {
                for j in 0..c {
                    hr[j] = (xr[j] - mean[j]) * inv_std[j];
                }
            }
        };
        match xhat.as_mut() {
            Some(h) => x
                .data()
                .par_chunks(c)
                .zip(y.data_mut().par_chunks_mut(c))
                .zip(h.data_mut().par_chunks_mut(c))
                .for_each(|((xr, yr), hr)| norm(xr, yr, Some(hr))),
            None => x
                .data()
                .par_chunks(c)
                .zip(y.data_mut().par_chunks_mut(c))
                .for_each(|(xr, yr)| norm(xr, yr, None)),
        }
        self.cache = xhat.map(|xhat| Cache {
            xhat,
            inv_std,
            batch_stats,
        });
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let Cache {
            xhat,
            inv_std,
            batch_stats,
        } = take_cache(&mut self.cache, &self.base.name)?;
        let c = inv_std.len();
        let rows = (grad.len() / c) as f32;
        // Per-channel sums of dy and dy * xhat, needed by every gradient below.
        let mut sum_dy = vec![0.0f64; c];
        let mut sum_dy_xhat = vec![0.0f64; c];
        for (g, h) in grad.data().chunks(c).zip(xhat.data().chunks(c)) {
            for j in 0..c {
                sum_dy[j] += g[j] as f64;
                sum_dy_xhat[j] += (g[j] * h[j]) as f64;
            }
        }
        if let Some(i) = self.idx(GAMMA).filter(|&i| self.base.wants_grad(i)) {
            let g = sum_dy_xhat.iter().map(|&v| v as f32).collect();
            self.base.set_grad(i, Tensor::from_vec(&[c], g)?);
        }
        if let Some(i) = self.idx(BETA).filter(|&i| self.base.wants_grad(i)) {
            let g = sum_dy.iter().map(|&v| v as f32).collect();
            self.base.set_grad(i, Tensor::from_vec(&[c], g)?);
        }
        if !need_dx.first().copied().unwrap_or(false) {
            return Ok(vec![None]);
        }
        let gamma = self.param(GAMMA, c, 1.0);
        let mut dx = Tensor::zeros(grad.shape());
        let mean_dy: Vec<f32> = sum_dy.iter().map(|&s| s as f32 / rows).collect();
        let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|&s| s as f32 / rows).collect();
        dx.data_mut()
            .par_chunks_mut(c)
            .zip(grad.data().par_chunks(c))
            .zip(xhat.data().par_chunks(c))
            .for_each(|((d, g), h)| {
                for j in 0..c {
                    let k = gamma[j] * inv_std[j];
                    d[j] = if batch_stats {
                        // Through the batch mean and variance (standard BN backprop).
                        k * (g[j] - mean_dy[j] - h[j] * mean_dy_xhat[j])
                    } else {
                        k * g[j]
                    };
                }
            });
        Ok(vec![Some(dx)])
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "name": self.base.name,
            "trainable": self.base.trainable,
            "axis": -1,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        })
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
}
