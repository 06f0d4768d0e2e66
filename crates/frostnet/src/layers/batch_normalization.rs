//! `BatchNormalization` over the last (channel) axis.
//!
//! The semantics are Keras 3's (see `semantics.md` in the reference): batch statistics and a
//! moving-statistics update only when the mode is `Train` **and** the layer is trainable; a frozen
//! BN runs in inference mode even inside `fit`. The moving statistics are updated in the forward
//! pass, outside the gradient, with the *biased* batch variance, as Keras 3 does.

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase,
    Mode, Shape, WeightKind,
};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::norm::{
    bn_backward_dx, bn_backward_sums, bn_forward, channel_moments, FusedRelu, ReluGate,
    Standardised,
};
use crate::tensor::Tensor;
use serde_json::{json, Value};

const GAMMA: usize = 0;
const BETA: usize = 1;
const MEAN: usize = 2;
const VAR: usize = 3;

struct Cache {
    /// The input (shared, not copied), from which backward recomputes the normalised input.
    x: Tensor,
    /// The mean and `1 / sqrt(var + eps)` per channel, of whichever statistics normalised.
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether batch statistics normalised (so gradients flow through them).
    batch_stats: bool,
    /// The forward map's `(scale, shift)` when a fused ReLU followed it (see
    /// [`BatchNormalization::forward_relu`]): backward gates `dy` where `x * scale + shift <= 0`.
    relu: Option<(Vec<f32>, Vec<f32>)>,
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
            base: LayerBase::new(BATCH_NORMALIZATION.class_name),
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

    /// Whether a forward pass in `mode` normalises with the moving statistics (inference mode, or
    /// a frozen layer in training mode: Keras 3). Only then is the layer a fixed per-channel
    /// affine map the executor may fuse into the preceding convolution.
    pub(crate) fn uses_moving_stats(&self, mode: Mode) -> bool {
        !(mode == Mode::Train && self.base.trainable)
    }

    /// `(scale, shift, inv_std)` with `y = x * scale + shift`, from the given statistics and the
    /// current gamma/beta. The unfused forward pass and the fused epilogue both use this, so they
    /// compute bit-identical outputs.
    fn affine(&self, mean: &[f32], var: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let c = mean.len();
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + self.epsilon).sqrt())
            .collect();
        let gamma = self.param(GAMMA, c, 1.0);
        let beta = self.param(BETA, c, 0.0);
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
        let shift: Vec<f32> = (0..c).map(|j| beta[j] - mean[j] * scale[j]).collect();
        (scale, shift, inv_std)
    }

    /// The inference-mode `(scale, shift)`, computed from the current weights on every call (a
    /// few operations per channel), so a fused pass can never use stale statistics.
    pub(crate) fn inference_affine(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.base.w(self.idx(MEAN).expect("always present")).len();
        let (scale, shift, _) = self.affine(&self.param(MEAN, c, 0.0), &self.param(VAR, c, 1.0));
        (scale, shift)
    }

    /// The forward pass followed by the plain ReLU that consumes the output (`relu` says which
    /// layer's form): the executor's fusion when the BN is not fused into a convolution
    /// (models/model.rs). The BN's own output is never formed, the ReLU keeps nothing, and
    /// [`Layer::backward`] takes the gradient of the ReLU's output. Bit-identical to the two
    /// layers run one after the other.
    pub(crate) fn forward_relu(
        &mut self,
        x: &Tensor,
        ctx: &mut ForwardCtx,
        relu: FusedRelu,
    ) -> Result<Tensor> {
        self.forward_then(x, ctx, Some(relu))
    }

    fn forward_then(
        &mut self,
        x: &Tensor,
        ctx: &mut ForwardCtx,
        relu: Option<FusedRelu>,
    ) -> Result<Tensor> {
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let c = *x.shape().last().expect("rank checked");
        let batch_stats = !self.uses_moving_stats(ctx.mode);
        let (mean, var) = if batch_stats {
            let (mean, var) = channel_moments(x.data(), c);
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
        // y = x * scale + shift; backward recomputes xhat = (x - mean) * inv_std from the input.
        let (scale, shift, inv_std) = self.affine(&mean, &var);
        let y = Tensor::from_vec(x.shape(), bn_forward(x.data(), c, &scale, &shift, relu))?;
        self.cache = ctx.keep.then(|| Cache {
            x: x.clone(),
            mean,
            inv_std,
            batch_stats,
            relu: relu.map(|_| (scale, shift)),
        });
        Ok(y)
    }

    fn param(&self, which: usize, channels: usize, default: f32) -> Vec<f32> {
        match self.idx(which) {
            Some(i) => self.base.w(i).data().to_vec(),
            None => vec![default; channels],
        }
    }
}

impl Layer for BatchNormalization {
    /// The standardised input (`xhat`); nothing in inference mode.
    fn kept_for_backward(&self, inputs: &[u64], _output: u64) -> u64 {
        inputs.iter().sum::<u64>() * 4
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[("gamma", "gamma"), ("beta", "beta")]
    }
    fn class_name(&self) -> &str {
        BATCH_NORMALIZATION.class_name
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
        self.forward_then(inputs[0], ctx, None)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let Cache {
            x,
            mean,
            inv_std,
            batch_stats,
            relu,
        } = take_cache(&mut self.cache, &self.base.name)?;
        let xhat = Standardised {
            x: x.data(),
            mean: &mean,
            inv_std: &inv_std,
        };
        let gate = relu.as_ref().map(|(scale, shift)| ReluGate {
            x: x.data(),
            scale,
            shift,
        });
        let c = inv_std.len();
        let rows = (grad.len() / c) as f32;
        // Per-channel sums of dy and dy * xhat (one pass), for the gamma/beta gradients and,
        // with batch statistics, the input gradient through them.
        let want_gamma = self.idx(GAMMA).filter(|&i| self.base.wants_grad(i));
        let want_beta = self.idx(BETA).filter(|&i| self.base.wants_grad(i));
        let need = need_dx.first().copied().unwrap_or(false);
        let through_stats = batch_stats && need;
        let (sum_dy, sum_dy_xhat) = if want_gamma.is_some() || want_beta.is_some() || through_stats
        {
            let with_xhat = want_gamma.is_some() || through_stats;
            bn_backward_sums(grad.data(), with_xhat.then_some(xhat), c, gate)
        } else {
            (Vec::new(), Vec::new())
        };
        if let Some(i) = want_gamma {
            let g = sum_dy_xhat.iter().map(|&v| v as f32).collect();
            self.base.set_grad(i, Tensor::from_vec(&[c], g)?);
        }
        if let Some(i) = want_beta {
            let g = sum_dy.iter().map(|&v| v as f32).collect();
            self.base.set_grad(i, Tensor::from_vec(&[c], g)?);
        }
        if !need {
            return Ok(vec![None]);
        }
        let gamma = self.param(GAMMA, c, 1.0);
        let k: Vec<f32> = (0..c).map(|j| gamma[j] * inv_std[j]).collect();
        let dx = if batch_stats {
            // Through the batch mean and variance (standard BN backprop).
            let mean_dy: Vec<f32> = sum_dy.iter().map(|&s| s as f32 / rows).collect();
            let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|&s| s as f32 / rows).collect();
            bn_backward_dx(
                grad.data(),
                c,
                &k,
                Some((xhat, &mean_dy, &mean_dy_xhat)),
                gate,
            )
        } else {
            bn_backward_dx(grad.data(), c, &k, None, gate)
        };
        let dx = Tensor::from_vec(grad.shape(), dx)?;
        Ok(vec![Some(dx)])
    }

    fn state_description(&self) -> (String, &'static str) {
        (
            "BatchNormalization moving statistics".to_string(),
            " (2 x channels each)",
        )
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
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

// Keras config reading.

/// `BatchNormalization`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const BATCH_NORMALIZATION: LayerEntry = LayerEntry {
    class_name: "BatchNormalization",
    from_config: batch_normalization_from_config,
};

fn batch_normalization_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    // Keras 3 writes -1, tf-keras the absolute axis ([3] for images).
    let rank = inputs.first().map_or(0, |s| s.len() as i64 + 1);
    let axis_ok = match o.get("axis") {
        None => true,
        Some(Value::Array(a)) if a.len() == 1 => {
            a[0].as_i64().is_some_and(|x| x == -1 || x == rank - 1)
        }
        Some(v) => v.as_i64().is_some_and(|x| x == -1 || x == rank - 1),
    };
    if !axis_ok {
        return Err(o.err(format!(
            "axis {} is not implemented (only the last axis)",
            o.get("axis").expect("checked")
        )));
    }
    o.require("renorm", &[json!(false)])?;
    Ok(Box::new(
        BatchNormalization::new()
            .momentum(o.float("momentum", 0.99)?)
            .epsilon(o.float("epsilon", 1e-3)?)
            .center(o.boolean("center", true)?)
            .scale(o.boolean("scale", true)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Activation, ActivationFn, ReLU};
    use crate::tensor::isa::{self, Isa};
    use crate::tensor::random;

    /// A built BN over `c` channels with the given `gamma, beta, moving_mean, moving_variance`.
    fn bn_with(c: usize, weights: &[Vec<f32>], trainable: bool) -> BatchNormalization {
        let mut bn = BatchNormalization::new();
        bn.build(&[vec![Some(c)]]).unwrap();
        for (w, v) in bn.base.weights.iter_mut().zip(weights) {
            w.value_mut().data_mut().copy_from_slice(v);
        }
        bn.set_trainable(trainable);
        bn
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.data().iter().map(|v| v.to_bits()).collect()
    }

    /// Everything a BN holds after a step: weights, then gradients (`None` where not computed).
    fn state(bn: &BatchNormalization) -> Vec<Option<Vec<u32>>> {
        let ws = bn.base.weights.iter();
        ws.clone()
            .map(|w| Some(bits(w.value())))
            .chain(ws.map(|w| w.grad().map(bits)))
            .collect()
    }

    fn relu_layer(form: FusedRelu, c: usize) -> Box<dyn Layer> {
        let mut layer: Box<dyn Layer> = match form {
            FusedRelu::Max => Box::new(Activation::new(ActivationFn::Relu)),
            FusedRelu::Positive => Box::new(ReLU::new()),
        };
        layer.build(&[vec![Some(c)]]).unwrap();
        layer
    }

    /// `forward_relu` then the ReLU layer's pass-through backward equal the BN layer followed by
    /// the real `Activation("relu")` / `ReLU()` layer bit for bit: output, input gradient, gamma
    /// and beta gradients and moving statistics, with batch statistics (training), moving ones
    /// in training (frozen) and in inference mode with gradients kept, on a serial and a
    /// parallel size, at every kernel level the CPU supports. Planted values make
    /// `x * scale + shift` exactly +0 and -0: channel 0 has gamma 0 and beta -0 (scale 0),
    /// channel 1 beta 0 and inputs equal to its moving mean, channel 2 beta -0, moving mean 0
    /// and inputs -0 (the last two with moving statistics).
    fn forward_relu_is_bit_identical_to_the_two_layers(levels: Vec<Isa>) {
        let mut r = random::rng(Some(17));
        for (rows, c) in [(37usize, 5usize), (2621, 13)] {
            let n = rows * c;
            let mut gamma = random::uniform(&mut r, c, 0.5, 1.5);
            let mut beta = random::uniform(&mut r, c, -0.5, 0.5);
            let mut mean = random::uniform(&mut r, c, -0.5, 0.5);
            let var = random::uniform(&mut r, c, 0.2, 3.0);
            (gamma[0], beta[0]) = (0.0, -0.0);
            beta[1] = 0.0;
            (beta[2], mean[2]) = (-0.0, 0.0);
            let mut x = random::uniform(&mut r, n, -2.0, 2.0);
            for row in (0..rows).step_by(3) {
                x[row * c + 1] = mean[1];
                x[row * c + 2] = -0.0;
            }
            // Channel 0's batch mean is positive, so its shift `-0 - mean * 0` is -0 and its
            // negative inputs give -0 in training mode too.
            for row in 0..rows {
                let v = x[row * c].abs();
                x[row * c] = if row % 2 == 1 { -0.1 * v } else { v };
            }
            let x = Tensor::from_vec(&[rows, c], x).unwrap();
            let dy = Tensor::from_vec(&[rows, c], random::uniform(&mut r, n, -1.0, 1.0)).unwrap();
            let weights = [gamma, beta, mean, var];
            for (mode, trainable) in [
                (Mode::Train, true),
                (Mode::Train, false),
                (Mode::Infer, true),
            ] {
                for (form, level) in [FusedRelu::Max, FusedRelu::Positive]
                    .into_iter()
                    .flat_map(|f| levels.clone().into_iter().map(move |l| (f, l)))
                {
                    isa::with_forced(level, || {
                        let what =
                            format!("{rows}x{c} {mode:?} trainable {trainable} {form:?} {level}");
                        let ctx = || ForwardCtx {
                            mode,
                            keep: true,
                            input_needs_grad: vec![true],
                            rng: random::rng(Some(0)),
                        };
                        // Unfused: the BN layer, then the ReLU layer, and back.
                        let mut bn = bn_with(c, &weights, trainable);
                        let mut act = relu_layer(form, c);
                        let y_bn = bn.forward(&[&x], &mut ctx()).unwrap();
                        let want = act.forward(&[&y_bn], &mut ctx()).unwrap();
                        let g = act.backward(&dy, &[true]).unwrap().remove(0).unwrap();
                        let want_dx = bn.backward(&g, &[true]).unwrap().remove(0).unwrap();
                        // Fused, as the executor runs it (models/model.rs, `run_bn_relu`).
                        let mut fbn = bn_with(c, &weights, trainable);
                        let mut fact = relu_layer(form, c);
                        let any = fact.as_any_mut().unwrap();
                        match any.downcast_mut::<Activation>() {
                            Some(a) => {
                                assert_eq!(a.fused_form(), Some(form));
                                a.pass_through(true);
                            }
                            None => {
                                let a = any.downcast_mut::<ReLU>().unwrap();
                                assert_eq!(a.fused_form(), Some(form));
                                a.pass_through(true);
                            }
                        }
                        let got = fbn.forward_relu(&x, &mut ctx(), form).unwrap();
                        let g = fact.backward(&dy, &[true]).unwrap().remove(0).unwrap();
                        assert_eq!(bits(&g), bits(&dy), "{what}: the ReLU passes dy through");
                        let got_dx = fbn.backward(&g, &[true]).unwrap().remove(0).unwrap();
                        assert_eq!(bits(&got), bits(&want), "{what}: output");
                        assert_eq!(bits(&got_dx), bits(&want_dx), "{what}: input gradient");
                        assert_eq!(state(&fbn), state(&bn), "{what}: weights and gradients");
                        // Not vacuous: exact zeros of both signs reached the ReLU, which cut some
                        // values and kept others; gamma and beta got gradients where they train.
                        let y = y_bn.data();
                        assert!(
                            y.iter().any(|v| v.to_bits() == (-0.0f32).to_bits()),
                            "{what}"
                        );
                        assert!(y.iter().any(|v| v.to_bits() == 0), "{what}: +0");
                        assert!(y.iter().any(|&v| v > 0.0) && y.iter().any(|&v| v < 0.0));
                        let grads = bn.base.weights[0].grad().is_some();
                        assert_eq!(grads, trainable, "{what}");
                    });
                }
            }
        }
    }
    crate::level_tests!(forward_relu_is_bit_identical_to_the_two_layers);
}
