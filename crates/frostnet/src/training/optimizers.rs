//! Optimizers with Keras 3's defaults and update rules.
//!
//! Slots (momentum, Adam's moments) are keyed by the weight's identity, not its position, so they
//! survive freezing and unfreezing: a weight frozen for a while resumes with its own moments.
//!
//! For resuming training from a file, [`Optimizer::state`] / [`Optimizer::load_state`] export and
//! import the iteration count and the slots keyed by a name per weight (the native model file uses
//! Keras paths, since weight identities do not survive a process), and [`optimizer_from_state`]
//! rebuilds Sgd, Adam(W) or RmsProp from the exported hyperparameters.

use super::schedules::LearningRate;
use crate::error::{Error, Result};
use crate::layers::Weight;
use crate::tensor::{elementwise, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;

/// What an optimizer needs to resume exactly where it stopped.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// Keras's class name (`"SGD"`, `"Adam"`, `"AdamW"`, `"RMSprop"`).
    pub class_name: String,
    /// Hyperparameters by Keras's names; `learning_rate` is a number or a schedule description.
    pub config: Value,
    /// Updates done so far.
    pub iterations: u64,
    /// Slot tensors of each weight that has any, keyed by the names the caller gave.
    pub slots: Vec<(String, Vec<Tensor>)>,
}

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
    /// Slot arrays the optimizer keeps per trainable weight, each the weight's size (Adam: 2),
    /// known before any step: for the summary's memory estimate.
    fn slots_per_weight(&self) -> usize {
        0
    }
    /// The state to save for resuming: `weights` names each weight the optimizer may hold slots
    /// for. `None` (the default) for an optimizer that cannot be saved.
    fn state(&self, _weights: &[(String, &Weight)]) -> Option<OptimizerState> {
        None
    }
    /// Restores the iteration count and the slots of `state`, matched to `weights` by name
    /// (hyperparameters come from [`optimizer_from_state`]). Checks every slot's shape first.
    fn load_state(
        &mut self,
        _state: &OptimizerState,
        _weights: &[(String, &Weight)],
    ) -> Result<()> {
        Err(Error::State(format!(
            "optimizer {} cannot restore saved state",
            self.name()
        )))
    }
}

/// Rebuilds an optimizer of the kind and hyperparameters in `state`, then loads its slots.
pub fn optimizer_from_state(
    state: &OptimizerState,
    weights: &[(String, &Weight)],
) -> Result<Box<dyn Optimizer>> {
    let c = &state.config;
    let bad = |what: &str| {
        Error::InvalidConfig(format!(
            "optimizer {}: {what} missing or invalid",
            state.class_name
        ))
    };
    let f = |k: &str| {
        c.get(k)
            .and_then(Value::as_f64)
            .map(|v| v as f32)
            .ok_or_else(|| bad(k))
    };
    let lr = lr_from_json(c.get("learning_rate").unwrap_or(&Value::Null))
        .ok_or_else(|| bad("learning_rate"))?;
    let mut opt: Box<dyn Optimizer> = match state.class_name.as_str() {
        "SGD" => Box::new(
            Sgd::new(lr).momentum(f("momentum")?).nesterov(
                c.get("nesterov")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| bad("nesterov"))?,
            ),
        ),
        "Adam" | "AdamW" => {
            let mut a = Adam::new(lr);
            a.beta_1 = f("beta_1")?;
            a.beta_2 = f("beta_2")?;
            a.epsilon = f("epsilon")?;
            if state.class_name == "AdamW" {
                a.weight_decay = Some(f("weight_decay")?);
            }
            Box::new(a)
        }
        "RMSprop" => {
            let mut r = RmsProp::new(lr);
            r.rho = f("rho")?;
            r.momentum = f("momentum")?;
            r.epsilon = f("epsilon")?;
            r.centered = c
                .get("centered")
                .and_then(Value::as_bool)
                .ok_or_else(|| bad("centered"))?;
            Box::new(r)
        }
        other => {
            return Err(Error::InvalidConfig(format!(
                "optimizer '{other}' cannot be restored (SGD, Adam, AdamW, RMSprop)"
            )))
        }
    };
    opt.load_state(state, weights)?;
    Ok(opt)
}

fn lr_to_json(lr: &LearningRate) -> Value {
    match *lr {
        LearningRate::Constant(v) => json!(v),
        LearningRate::ExponentialDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase,
        } => json!({
            "class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": initial, "decay_steps": decay_steps,
                       "decay_rate": decay_rate, "staircase": staircase}}),
        LearningRate::CosineDecay {
            initial,
            decay_steps,
            alpha,
        } => json!({
            "class_name": "CosineDecay",
            "config": {"initial_learning_rate": initial, "decay_steps": decay_steps,
                       "alpha": alpha}}),
    }
}

fn lr_from_json(v: &Value) -> Option<LearningRate> {
    if let Some(x) = v.as_f64() {
        return Some(LearningRate::Constant(x as f32));
    }
    let c = v.get("config")?;
    let f = |k: &str| c.get(k).and_then(Value::as_f64).map(|x| x as f32);
    let initial = f("initial_learning_rate")?;
    let decay_steps = c.get("decay_steps").and_then(Value::as_u64)? as usize;
    match v.get("class_name")?.as_str()? {
        "ExponentialDecay" => Some(LearningRate::ExponentialDecay {
            initial,
            decay_steps,
            decay_rate: f("decay_rate")?,
            staircase: c.get("staircase")?.as_bool()?,
        }),
        "CosineDecay" => Some(LearningRate::CosineDecay {
            initial,
            decay_steps,
            alpha: f("alpha")?,
        }),
        _ => None,
    }
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
    /// Every weight's slots under its name, in the order of `weights`.
    fn export(&self, weights: &[(String, &Weight)]) -> Vec<(String, Vec<Tensor>)> {
        weights
            .iter()
            .filter_map(|(n, w)| Some((n.clone(), self.by_weight.get(&w.id())?.clone())))
            .collect()
    }
    /// Replaces all slots by `state`'s, after checking every name and shape.
    fn import(&mut self, state: &OptimizerState, weights: &[(String, &Weight)]) -> Result<()> {
        let by_name: HashMap<&str, &Weight> =
            weights.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        let mut slots = HashMap::new();
        for (name, tensors) in &state.slots {
            let w = by_name.get(name.as_str()).ok_or_else(|| {
                Error::InvalidConfig(format!("optimizer state for unknown weight '{name}'"))
            })?;
            if let Some(t) = tensors.iter().find(|t| t.shape() != w.shape()) {
                return Err(Error::WeightShape {
                    weight: format!("optimizer slot of {name}"),
                    expected: crate::error::fmt_dims(w.shape()),
                    got: crate::error::fmt_dims(t.shape()),
                });
            }
            slots.insert(w.id(), tensors.clone());
        }
        self.by_weight = slots;
        Ok(())
    }
}

/// The bookkeeping every optimizer here shares (step count, learning rate, slots), written once.
/// Each optimizer struct has the fields `lr: LearningRate`, `iterations: u64` and `slots: Slots`.
macro_rules! shared_optimizer_methods {
    () => {
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
        fn load_state(
            &mut self,
            state: &OptimizerState,
            weights: &[(String, &Weight)],
        ) -> Result<()> {
            self.slots.import(state, weights)?;
            self.iterations = state.iterations;
            Ok(())
        }
    };
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
    shared_optimizer_methods!();
    fn slots_per_weight(&self) -> usize {
        usize::from(self.momentum != 0.0)
    }
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
    fn state(&self, weights: &[(String, &Weight)]) -> Option<OptimizerState> {
        Some(OptimizerState {
            class_name: self.name().to_string(),
            config: json!({"learning_rate": lr_to_json(&self.lr), "momentum": self.momentum, "nesterov": self.nesterov}),
            iterations: self.iterations,
            slots: self.slots.export(weights),
        })
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
    shared_optimizer_methods!();
    fn slots_per_weight(&self) -> usize {
        2
    }
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
            elementwise::adam_update(
                vals,
                m[0].data_mut(),
                v[0].data_mut(),
                g.data(),
                alpha,
                b1,
                b2,
                eps,
            );
        }
        self.iterations += 1;
    }
    fn state(&self, weights: &[(String, &Weight)]) -> Option<OptimizerState> {
        Some(OptimizerState {
            class_name: self.name().to_string(),
            config: json!({"learning_rate": lr_to_json(&self.lr), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon, "weight_decay": self.weight_decay}),
            iterations: self.iterations,
            slots: self.slots.export(weights),
        })
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
    shared_optimizer_methods!();
    fn slots_per_weight(&self) -> usize {
        1 + usize::from(self.momentum != 0.0) + usize::from(self.centered)
    }
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
    fn state(&self, weights: &[(String, &Weight)]) -> Option<OptimizerState> {
        Some(OptimizerState {
            class_name: self.name().to_string(),
            config: json!({"learning_rate": lr_to_json(&self.lr), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon, "centered": self.centered}),
            iterations: self.iterations,
            slots: self.slots.export(weights),
        })
    }
}
