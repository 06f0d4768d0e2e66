//! A replaceable training step: Keras's overridable `Model.train_step(data)`.
//!
//! `fit`, `fit_dataset` and `train_on_batch` run one step per batch through a [`TrainStep`]. The
//! built-in one, [`DefaultTrainStep`], is written with the same public pieces a custom step gets
//! from its [`StepContext`]: a training-mode forward pass, the compiled loss, a backward pass that
//! leaves gradients on the trainable weights, the optimizer, and the running loss and metrics.
//! Replace it with [`Model::set_train_step`] to clip gradients, add a second loss, log extra
//! values, and so on:
//!
//! ```
//! use frostnet::prelude::*;
//! use frostnet::training::StepContext;
//! let x = Tensor::from_vec(&[8, 1], (0..8).map(|i| i as f32 / 4.0 - 1.0).collect())?;
//! let y = Tensor::from_vec(&[8, 1], x.data().iter().map(|v| 3.0 * v).collect())?;
//! let mut model = Sequential::new();
//! model.add(Input::new(&[1]))?;
//! model.add(Dense::new(1))?;
//! model.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
//! // The default step, with every gradient clipped to [-0.5, 0.5] before the update.
//! model.set_train_step(|ctx: &mut StepContext<'_>| {
//!     let pred = ctx.forward()?;
//!     let (loss, grad) = ctx.loss(&pred)?;
//!     ctx.backward(grad)?;
//!     for w in ctx.trainable_weights_mut() {
//!         if let Some(mut g) = w.take_grad() {
//!             g.data_mut().iter_mut().for_each(|v| *v = v.clamp(-0.5, 0.5));
//!             w.set_grad(Some(g))?;
//!         }
//!     }
//!     ctx.apply_gradients()?;
//!     ctx.update_loss(loss);
//!     ctx.update_metrics(&pred);
//!     Ok(ctx.results())
//! });
//! let history = model.fit(&x, &y, FitOptions { epochs: 3, verbose: 0, ..FitOptions::default() })?;
//! assert_eq!(history.get("loss").map(|l| l.len()), Some(3));
//! # Ok::<(), frostnet::Error>(())
//! ```
//!
//! Whatever the step does, the trainer keeps its guarantees: the flags are read afresh at every
//! step (the forward pass plans backward from them, and [`StepContext::apply_gradients`] updates
//! only the weights that are trainable at that moment, so a frozen weight stays bit-identical),
//! and after the step every activation kept for backward and every gradient is dropped, so a
//! gradient left on a weight frozen meanwhile is never applied later.

use super::callbacks::Logs;
use super::losses::Loss;
use super::metrics::{Mean, Metric};
use super::optimizers::Optimizer;
use super::prefix_cache::PrefixHook;
use crate::error::{Error, Result};
use crate::layers::{Layer, Mode, Weight};
use crate::models::Model;
use crate::tensor::Tensor;
use rand::rngs::SmallRng;

/// One training step on one batch (Keras's `train_step(data)`); returns the logs `fit` shows,
/// hands to callbacks and records per epoch (Keras: running means over the epoch so far).
///
/// Implemented for closures `FnMut(&mut StepContext) -> Result<Logs>`, so most custom steps are
/// one closure given to [`Model::set_train_step`].
pub trait TrainStep: Send + Sync {
    fn train_step(&mut self, ctx: &mut StepContext<'_>) -> Result<Logs>;
}

impl<F> TrainStep for F
where
    F: FnMut(&mut StepContext<'_>) -> Result<Logs> + Send + Sync,
{
    fn train_step(&mut self, ctx: &mut StepContext<'_>) -> Result<Logs> {
        self(ctx)
    }
}

/// The step `fit` runs unless replaced: forward in training mode, the compiled loss, backward,
/// one optimizer update of the trainable weights, then the running loss and compiled metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultTrainStep;

impl TrainStep for DefaultTrainStep {
    fn train_step(&mut self, ctx: &mut StepContext<'_>) -> Result<Logs> {
        let pred = ctx.forward()?;
        let (loss, grad) = ctx.loss(&pred)?;
        ctx.backward(grad)?;
        // Keras minimises and logs the loss plus the regularization penalties.
        let loss = loss + ctx.regularization()?;
        ctx.apply_gradients()?;
        ctx.update_loss(loss);
        ctx.update_metrics(&pred);
        Ok(ctx.results())
    }
}

/// The running loss and compiled metrics of one epoch (Keras's stateful metrics, reset at the
/// start of every epoch and for every `train_on_batch`).
pub(crate) struct RunningLogs {
    loss: Mean,
    /// The last batch loss, if any: a non-finite one is logged as is (not averaged away), so
    /// `TerminateOnNaN` sees it.
    last_loss: Option<f32>,
    metrics: Vec<(Metric, &'static str, Mean)>,
}

impl RunningLogs {
    pub(crate) fn new(metrics: &[(Metric, &'static str)]) -> RunningLogs {
        RunningLogs {
            loss: Mean::default(),
            last_loss: None,
            metrics: metrics
                .iter()
                .map(|&(m, name)| (m, name, Mean::default()))
                .collect(),
        }
    }
}

/// What a [`TrainStep`] works with: the batch, the model and its compiled loss, metrics and
/// optimizer. Each method is one piece of the default step; a custom step calls them in its
/// own order and may change what passes between them (the loss gradient, the weights' gradients).
pub struct StepContext<'a> {
    model: &'a mut Model,
    x: &'a Tensor,
    y: &'a Tensor,
    rng: &'a mut SmallRng,
    running: &'a mut RunningLogs,
    /// The frozen-prefix cache of this `fit` and the batch's sample indices, if one is active.
    prefix: Option<PrefixHook<'a>>,
    /// Whether the last forward pass planned a backward pass (something trained then).
    planned: bool,
}

impl<'a> StepContext<'a> {
    pub(crate) fn new(
        model: &'a mut Model,
        x: &'a Tensor,
        y: &'a Tensor,
        rng: &'a mut SmallRng,
        running: &'a mut RunningLogs,
        prefix: Option<PrefixHook<'a>>,
    ) -> StepContext<'a> {
        StepContext {
            model,
            x,
            y,
            rng,
            running,
            prefix,
            planned: false,
        }
    }

    /// The batch's inputs.
    pub fn x(&self) -> &Tensor {
        self.x
    }
    /// The batch's targets.
    pub fn y(&self) -> &Tensor {
        self.y
    }
    /// The model being trained.
    pub fn model(&self) -> &Model {
        self.model
    }
    /// The model, to change it mid-step (flags, weights). Changes of flags take effect at the
    /// next forward pass.
    pub fn model_mut(&mut self) -> &mut Model {
        self.model
    }

    /// The forward pass in training mode (Dropout active, trainable BatchNormalization on batch
    /// statistics) on the batch's inputs; returns the model's (first) output. It plans a
    /// backward pass from the flags as they are now: only if some weight trains, and only
    /// through the nodes at or after the first trainable one, so a frozen prefix keeps nothing.
    /// Within `fit`, a deterministic frozen prefix may come from the prefix cache
    /// ([`FitOptions::prefix_cache_bytes`](super::FitOptions::prefix_cache_bytes)), with the
    /// same result.
    pub fn forward(&mut self) -> Result<Tensor> {
        let trains = self.model.has_trainable();
        let mut out = match self.prefix.as_mut() {
            Some(hook) => hook.forward(self.model, self.x, trains, self.rng)?,
            None => self
                .model
                .run_forward(&[self.x], Mode::Train, trains, &[false], self.rng)?,
        };
        self.planned = trains;
        if out.is_empty() {
            return Err(Error::State(format!(
                "model '{}' has no outputs",
                self.model.name()
            )));
        }
        Ok(out.swap_remove(0))
    }

    /// The compiled loss.
    pub fn compiled_loss(&self) -> Result<Loss> {
        Ok(self.model.compiled()?.loss)
    }

    /// The compiled loss of `pred` against the batch's targets: its value and its gradient with
    /// respect to `pred` (what [`backward`](Self::backward) takes).
    ///
    /// When a Keras mask (an `Embedding(mask_zero=True)`'s) reaches the model's output, only the
    /// unmasked positions count, as in Keras (`models/masking.rs`).
    pub fn loss(&self, pred: &Tensor) -> Result<(f32, Tensor)> {
        let loss = self.compiled_loss()?;
        match self.model.output_mask(0) {
            Some(mask) => crate::models::masking::masked_loss(loss, pred, self.y, mask),
            None => loss.compute(pred, self.y),
        }
    }

    /// Backpropagates `grad` (d loss / d output) through the pass [`forward`](Self::forward)
    /// planned, storing each trainable weight's gradient on it ([`Weight::grad`]). Does nothing
    /// when nothing trained at the forward pass; fails if no forward pass preceded it.
    pub fn backward(&mut self, grad: Tensor) -> Result<()> {
        if !self.planned {
            return Ok(());
        }
        self.planned = false;
        self.model.run_backward(vec![grad])?;
        Ok(())
    }

    /// The regularization penalties of the model's layers (kernel, bias, ... and activity
    /// regularizers, [`crate::regularizers`]) to add to the loss, as Keras's `compute_loss`
    /// adds `model.losses`; after [`backward`](Self::backward), each weight penalty's gradient is
    /// added to its weight's gradient.
    pub fn regularization(&mut self) -> Result<f32> {
        let grads = self.model.has_trainable();
        self.model.regularization_step(grads)
    }

    /// The weights that train now (Keras's `model.trainable_weights`: none when the model
    /// itself is frozen), with their gradients after [`backward`](Self::backward), to read or
    /// change them ([`Weight::grad`], [`Weight::set_grad`], [`Weight::take_grad`]).
    pub fn trainable_weights_mut(&mut self) -> Vec<&mut Weight> {
        if !self.model.is_trainable() {
            return Vec::new();
        }
        self.model
            .weights_mut()
            .into_iter()
            .filter(|w| w.is_trainable())
            .collect()
    }

    /// The compiled optimizer.
    pub fn optimizer_mut(&mut self) -> Result<&mut (dyn Optimizer + 'static)> {
        let name = self.model.name().to_string();
        self.model
            .optimizer_mut()
            .ok_or_else(|| Error::State(format!("model '{name}' must be compiled before training")))
    }

    /// One optimizer update (Keras's `optimizer.apply_gradients`) of every weight that is
    /// trainable now and has a gradient. Frozen weights are never passed to the optimizer, so
    /// they stay bit-identical. Does nothing (not even counting an iteration) when nothing is
    /// trainable.
    pub fn apply_gradients(&mut self) -> Result<()> {
        if !self.model.has_trainable() {
            return Ok(());
        }
        let mut compiled = self.model.compiled.take().ok_or_else(|| {
            Error::State(format!(
                "model '{}' must be compiled before training",
                self.model.name()
            ))
        })?;
        {
            let mut ws: Vec<&mut Weight> = self
                .model
                .weights_mut()
                .into_iter()
                .filter(|w| w.is_trainable())
                .collect();
            compiled.optimizer.apply(&mut ws);
        }
        self.model.compiled = Some(compiled);
        // Keras's optimizer applies the weights' constraints right after the update.
        self.model.apply_constraints()
    }

    /// Adds a batch loss to the epoch's running `loss`, weighted by the batch size.
    pub fn update_loss(&mut self, loss: f32) {
        self.running.loss.add(loss as f64, self.x.batch());
        self.running.last_loss = Some(loss);
    }

    /// Adds `pred` against the batch's targets to each compiled metric's running mean.
    pub fn update_metrics(&mut self, pred: &Tensor) {
        let rows = self.x.batch();
        let mask = self.model.output_mask(0).map(<[bool]>::to_vec);
        for (m, _, acc) in &mut self.running.metrics {
            let value = match &mask {
                // The loss already checked that the mask fits; NaN would show a misfit.
                Some(mk) => {
                    crate::models::masking::masked_metric(m, pred, self.y, mk).unwrap_or(f64::NAN)
                }
                None => m.batch_value(pred, self.y),
            };
            acc.add(value, rows);
        }
    }

    /// The running values so far this epoch: `loss` (once [`update_loss`](Self::update_loss)
    /// ran; a non-finite batch loss is reported as is) and each compiled metric by its name.
    pub fn results(&self) -> Logs {
        let mut logs = Logs::new();
        if let Some(l) = self.running.last_loss {
            let v = if l.is_finite() {
                self.running.loss.value()
            } else {
                l as f64
            };
            logs.insert("loss".into(), v);
        }
        for (_, name, acc) in &self.running.metrics {
            logs.insert(name.to_string(), acc.value());
        }
        logs
    }
}

impl Model {
    /// Replaces the training step `fit`, `fit_dataset` and `train_on_batch` run on every batch
    /// (Keras's overridden `train_step`); see [`TrainStep`] and the module docs for an example.
    /// The step stays until replaced or [reset](Self::reset_train_step); compiling again keeps it.
    pub fn set_train_step(&mut self, step: impl TrainStep + 'static) {
        self.train_step = Some(Box::new(step));
    }

    /// Goes back to [`DefaultTrainStep`].
    pub fn reset_train_step(&mut self) {
        self.train_step = None;
    }

    /// Whether a custom training step is set.
    pub fn has_custom_train_step(&self) -> bool {
        self.train_step.is_some()
    }

    /// Runs the model's training step on one batch, then drops every kept activation and every
    /// gradient (whatever the step did or failed to do).
    pub(crate) fn run_train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        rng: &mut SmallRng,
        running: &mut RunningLogs,
        prefix: Option<PrefixHook<'_>>,
    ) -> Result<Logs> {
        crate::tensor::isa::on_worker(|| self.run_train_step_here(x, y, rng, running, prefix))
    }

    /// [`run_train_step`](Self::run_train_step) on the calling thread.
    fn run_train_step_here(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        rng: &mut SmallRng,
        running: &mut RunningLogs,
        prefix: Option<PrefixHook<'_>>,
    ) -> Result<Logs> {
        let mut custom = self.train_step.take();
        let result = {
            let mut ctx = StepContext::new(self, x, y, rng, running, prefix);
            match custom.as_mut() {
                Some(step) => step.train_step(&mut ctx),
                None => DefaultTrainStep.train_step(&mut ctx),
            }
        };
        // A step that installed another step from inside keeps the new one.
        if self.train_step.is_none() {
            self.train_step = custom;
        }
        self.clear_caches();
        // A gradient left on a weight that was frozen meanwhile must never be applied later.
        self.weights_mut().into_iter().for_each(|w| w.grad = None);
        result
    }
}
