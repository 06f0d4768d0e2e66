//! Optimizers with Keras 3's defaults and update rules.
//!
//! Slots (momentum, Adam's moments) are keyed by the weight's identity, not its position, so they
//! survive freezing and unfreezing: a weight frozen for a while resumes with its own moments.

use super::schedules::LearningRate;
use crate::layers::Weight;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// What the trainer needs from an optimizer.
pub trait Optimizer: Send + Sync {
    /// Keras's class name.
    fn name(&self) -> &'static str;
    /// Applies one update to every weight that has a gradient; `weights` are the trainable ones.
    fn apply(&mut self, weights: &mut [&mut Weight]);
    /// Updates done so far (Keras's `iterations`).
    fn iterations(&self) -> u64;
    /// The rate the next update will use.
    fn learning_rate(&self) -> f32;
    /// Replaces the rate by a constant (used by `ReduceLROnPlateau`).
    fn set_learning_rate(&mut self, lr: f32);
    /// Scalars held in slots, and whether the rate is a variable: for the summary's
    /// "Optimizer params" line.
    fn slot_params(&self) -> usize;
    fn has_lr_variable(&self) -> bool;
}

/// Slot storage shared by the optimizers.
#[derive(Default)]
struct Slots {
    by_weight: HashMap<u64, Vec<Tensor>>,
}

impl Slots {
    fn get(&mut self, w: &Weight, n: usize) -> &mut Vec<Tensor> {
        self.by_weight
            .entry(w.id())
            .or_insert_with(|| (0..n).map(|_| Tensor::zeros(w.shape())).collect())
    }
    fn params(&self) -> usize {
        self.by_weight.values().flatten().map(|t| t.len()).sum()
    }
}

/// Stochastic gradient descent, optionally with (Nesterov) momentum. Keras default rate 0.01.
pub struct Sgd {
    pub lr: LearningRate,
    pub momentum: f32,
    pub nesterov: bool,
    iterations: u64,
    slots: Slots,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd::new(0.01)
    }
}

impl Sgd {
    pub fn new(lr: impl Into<LearningRate>) -> Sgd {
        Sgd {
            lr: lr.into(),
            momentum: 0.0,
            nesterov: false,
            iterations: 0,
            slots: Slots::default(),
        }
    }
    pub fn momentum(mut self, m: f32) -> Sgd {
        self.momentum = m;
        self
    }
    pub fn nesterov(mut self, n: bool) -> Sgd {
        self.nesterov = n;
        self
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "SGD"
    }
    fn apply(&mut self, weights: &mut [&mut Weight]) {
        let lr = self.lr.at(self.iterations);
        for w in weights.iter_mut() {
            let Some(g) = w.grad.take() else { continue };
            if self.momentum == 0.0 {
                w.value_mut()
                    .data_mut()
                    .iter_mut()
                    .zip(g.data())
                    .for_each(|(v, g)| *v -= lr * g);
                continue;
            }
            let m = &mut self.slots.get(w, 1)[0];
            let (mu, nesterov) = (self.momentum, self.nesterov);
            let vals = w.value_mut().data_mut();
            for ((v, m), g) in vals.iter_mut().zip(m.data_mut()).zip(g.data()) {
                *m = mu * *m - lr * g;
                *v += if nesterov { mu * *m - lr * g } else { *m };
            }
        }
        self.iterations += 1;
    }
    fn iterations(&self) -> u64 {
        self.iterations
    }
    fn learning_rate(&self) -> f32 {
        self.lr.at(self.iterations)
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = LearningRate::Constant(lr);
    }
    fn slot_params(&self) -> usize {
        self.slots.params()
    }
    fn has_lr_variable(&self) -> bool {
        self.lr.is_constant()
    }
}

/// Adam (and AdamW with a decoupled weight decay). Keras defaults: rate 0.001, beta_1 0.9,
/// beta_2 0.999, epsilon 1e-7; AdamW weight_decay 0.004.
pub struct Adam {
    pub lr: LearningRate,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: Option<f32>,
    iterations: u64,
    slots: Slots,
}

impl Default for Adam {
    fn default() -> Self {
        Adam::new(0.001)
    }
}

impl Adam {
    pub fn new(lr: impl Into<LearningRate>) -> Adam {
        Adam {
            lr: lr.into(),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            weight_decay: None,
            iterations: 0,
            slots: Slots::default(),
        }
    }
    /// AdamW with Keras's default decay 0.004.
    pub fn adamw(lr: impl Into<LearningRate>) -> Adam {
        Adam {
            weight_decay: Some(0.004),
            ..Adam::new(lr)
        }
    }
    pub fn weight_decay(mut self, wd: f32) -> Adam {
        self.weight_decay = Some(wd);
        self
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        if self.weight_decay.is_some() {
            "AdamW"
        } else {
            "Adam"
        }
    }
    fn apply(&mut self, weights: &mut [&mut Weight]) {
        let lr = self.lr.at(self.iterations) as f64;
        let step = (self.iterations + 1) as i32;
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let alpha =
            (lr * (1.0 - (b2 as f64).powi(step)).sqrt() / (1.0 - (b1 as f64).powi(step))) as f32;
        for w in weights.iter_mut() {
            let Some(g) = w.grad.take() else { continue };
            if let Some(wd) = self.weight_decay {
                let k = wd * lr as f32;
                w.value_mut()
                    .data_mut()
                    .iter_mut()
                    .for_each(|v| *v -= *v * k);
            }
            let slots = self.slots.get(w, 2);
            let (m, v) = slots.split_at_mut(1);
            let vals = w.value_mut().data_mut();
            for (((x, m), v), g) in vals
                .iter_mut()
                .zip(m[0].data_mut())
                .zip(v[0].data_mut())
                .zip(g.data())
            {
                *m += (g - *m) * (1.0 - b1);
                *v += (g * g - *v) * (1.0 - b2);
                *x -= alpha * *m / (v.sqrt() + eps);
            }
        }
        self.iterations += 1;
    }
    fn iterations(&self) -> u64 {
        self.iterations
    }
    fn learning_rate(&self) -> f32 {
        self.lr.at(self.iterations)
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = LearningRate::Constant(lr);
    }
    fn slot_params(&self) -> usize {
        self.slots.params()
    }
    fn has_lr_variable(&self) -> bool {
        self.lr.is_constant()
    }
}

/// RMSprop. Keras defaults: rate 0.001, rho 0.9, momentum 0, epsilon 1e-7, not centered.
pub struct RmsProp {
    pub lr: LearningRate,
    pub rho: f32,
    pub momentum: f32,
    pub epsilon: f32,
    pub centered: bool,
    iterations: u64,
    slots: Slots,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp::new(0.001)
    }
}

impl RmsProp {
    pub fn new(lr: impl Into<LearningRate>) -> RmsProp {
        RmsProp {
            lr: lr.into(),
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
            iterations: 0,
            slots: Slots::default(),
        }
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &'static str {
        "RMSprop"
    }
    fn apply(&mut self, weights: &mut [&mut Weight]) {
        let lr = self.lr.at(self.iterations);
        let (rho, mu, eps, centered) = (self.rho, self.momentum, self.epsilon, self.centered);
        let n_slots = 1 + (mu > 0.0) as usize + centered as usize;
        for w in weights.iter_mut() {
            let Some(g) = w.grad.take() else { continue };
            let slots = self.slots.get(w, n_slots);
            let len = g.len();
            for i in 0..len {
                let gi = g.data()[i];
                let vel = &mut slots[0].data_mut()[i];
                *vel = rho * *vel + (1.0 - rho) * gi * gi;
                let mut denom = *vel;
                if centered {
                    let avg = &mut slots[n_slots - 1].data_mut()[i];
                    *avg = rho * *avg + (1.0 - rho) * gi;
                    denom -= *avg * *avg;
                }
                let inc = lr * gi / (denom + eps).sqrt();
                let x = &mut w.value_mut().data_mut()[i];
                if mu > 0.0 {
                    let m = &mut slots[1].data_mut()[i];
                    *m = mu * *m + inc;
                    *x -= *m;
                } else {
                    *x -= inc;
                }
            }
        }
        self.iterations += 1;
    }
    fn iterations(&self) -> u64 {
        self.iterations
    }
    fn learning_rate(&self) -> f32 {
        self.lr.at(self.iterations)
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = LearningRate::Constant(lr);
    }
    fn slot_params(&self) -> usize {
        self.slots.params()
    }
    fn has_lr_variable(&self) -> bool {
        self.lr.is_constant()
    }
}
