//! `compile`, `fit`, `evaluate`, `train_on_batch`: Keras's training loop.
//!
//! Every step reads the trainable flags afresh, so freezing or unfreezing takes effect at the next
//! batch with no recompile (Keras 3 would keep training what it traced at the first `fit`). A step
//! with nothing trainable runs forward only.

use super::callbacks::{Callback, Logs};
use super::losses::Loss;
use super::metrics::{Mean, Metric};
use super::optimizers::Optimizer;
use super::prefix_cache::{PrefixCache, PrefixCacheReport, PrefixHook};
use super::progress::Progress;
use super::train_step::RunningLogs;
use crate::datasets::{Batch, Batches, Dataset};
use crate::error::{fmt_dims, Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::{random, Tensor};
use std::collections::BTreeMap;

/// What `compile` fixes: how to measure and how to update.
pub(crate) struct Compiled {
    pub(crate) optimizer: Box<dyn Optimizer>,
    pub(crate) loss: Loss,
    /// Each metric resolved for the loss, with the name it is logged under.
    pub(crate) metrics: Vec<(Metric, &'static str)>,
}

/// Keras's default batch size for `fit`, `evaluate` and `predict`.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// `fit`'s options, with Keras's defaults.
pub struct FitOptions {
    pub batch_size: usize,
    pub epochs: usize,
    /// Shuffle the training samples before each epoch (seeded by `seed`).
    pub shuffle: bool,
    pub seed: Option<u64>,
    /// Fraction of the samples, taken from the end before shuffling, held out for validation
    /// (tensors only, as in Keras).
    pub validation_data: Option<ValidationData>,
    pub validation_split: f32,
    /// 0 silent, 1 progress bar (plain lines when stdout is not a terminal), 2 one line per epoch.
    pub verbose: u8,
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Memory for the frozen-prefix cache (default 1 GiB; 0 turns it off): when a deterministic
    /// frozen prefix feeds the trainable layers and the same tensors come back every epoch, each
    /// sample's prefix output is computed in the first epoch and reused afterwards, with weights
    /// bit-identical to recomputing it. A prefix whose outputs need more than this is recomputed.
    /// See `training/prefix_cache.rs`; `History::prefix_cache` reports what happened.
    pub prefix_cache_bytes: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            epochs: 1,
            shuffle: true,
            seed: None,
            validation_split: 0.0,
            validation_data: None,
            verbose: 1,
            callbacks: Vec::new(),
            prefix_cache_bytes: 1 << 30,
        }
    }
}

/// What `fit` validates on after each epoch (Keras's `validation_data`): tensors or a dataset.
pub enum ValidationData {
    Tensors(Tensor, Tensor),
    Dataset(Box<dyn Dataset>),
}

impl From<(Tensor, Tensor)> for ValidationData {
    fn from((x, y): (Tensor, Tensor)) -> Self {
        ValidationData::Tensors(x, y)
    }
}

impl<D: Dataset + 'static> From<Box<D>> for ValidationData {
    fn from(d: Box<D>) -> Self {
        ValidationData::Dataset(d)
    }
}

/// Where `fit`'s training batches come from.
enum Source<'a> {
    /// In-memory tensors, shuffled per epoch from the training generator (so a seed gives the
    /// same run as before datasets existed).
    Tensors {
        x: &'a Tensor,
        y: &'a Tensor,
        batch_size: usize,
        shuffle: bool,
    },
    Data(&'a mut dyn Dataset),
}

/// Per-epoch values of every logged quantity (Keras's `History.history`).
#[derive(Clone, Debug, Default)]
pub struct History {
    pub history: BTreeMap<String, Vec<f64>>,
    /// Why training stopped early, if it did (EarlyStopping, TerminateOnNaN, ...).
    pub stopped: Option<String>,
    /// What the frozen-prefix cache did (see [`FitOptions::prefix_cache_bytes`]).
    pub prefix_cache: PrefixCacheReport,
}

impl History {
    /// The values logged under `key`, one per epoch.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.history.get(key).map(Vec::as_slice)
    }
    /// Number of epochs run.
    pub fn epochs(&self) -> usize {
        self.history.values().map(Vec::len).max().unwrap_or(0)
    }
}

fn check_data(what: &str, x: &Tensor, y: &Tensor) -> Result<()> {
    if x.shape().is_empty() || y.shape().is_empty() || x.batch() == 0 {
        return Err(Error::Data(format!("{what}: the data set is empty")));
    }
    if x.batch() != y.batch() {
        return Err(Error::Data(format!(
            "{what}: x has {} samples {} but y has {} {}",
            x.batch(),
            fmt_dims(x.shape()),
            y.batch(),
            fmt_dims(y.shape())
        )));
    }
    for (name, t) in [("x", x), ("y", y)] {
        if let Some(i) = t.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!(
                "{what}: {name} contains a non-finite value ({}) in sample {}",
                t.data()[i],
                i / t.sample_len().max(1)
            )));
        }
    }
    Ok(())
}

impl Model {
    /// Fixes the optimizer, loss and metrics (`"accuracy"` resolves from the loss, as in Keras).
    /// Compiling again starts a fresh optimizer.
    pub fn compile(&mut self, optimizer: impl Optimizer + 'static, loss: Loss, metrics: &[Metric]) {
        self.compiled = Some(Compiled {
            optimizer: Box::new(optimizer),
            loss,
            metrics: metrics
                .iter()
                .map(|m| (m.resolve(&loss), m.log_name()))
                .collect(),
        });
    }

    pub(crate) fn compiled(&self) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| {
            Error::State(format!(
                "model '{}' must be compiled before training",
                self.name()
            ))
        })
    }

    /// The compiled optimizer, to read or change its learning rate.
    pub fn optimizer_mut(&mut self) -> Option<&mut (dyn Optimizer + 'static)> {
        self.compiled.as_mut().map(|c| c.optimizer.as_mut())
    }

    /// Asks `fit` to stop after the current batch (Keras's `model.stop_training = True`).
    pub fn stop_training(&mut self, reason: &str) {
        self.stop_reason = Some(reason.to_string());
    }

    /// The "Optimizer params" of the Keras 3 summary: slots plus the `iterations` counter (int64)
    /// and the learning-rate variable (float32, absent for a schedule), once the optimizer has run.
    pub(crate) fn optimizer_footprint(&self) -> Option<(usize, usize)> {
        let opt = &self.compiled.as_ref()?.optimizer;
        if opt.iterations() == 0 {
            return None;
        }
        let lr = opt.has_lr_variable() as usize;
        let slots = opt.slot_params();
        Some((slots + 1 + lr, slots * 4 + 8 + 4 * lr))
    }

    /// Whether this step will update anything: Keras 3 trains `model.trainable_weights`, which
    /// is empty when the model itself is frozen.
    pub(crate) fn has_trainable(&self) -> bool {
        self.is_trainable() && self.weights().iter().any(|w| w.is_trainable())
    }

    /// Trains on one batch through the model's training step (the default or the one set with
    /// [`set_train_step`](Self::set_train_step)) and returns the `loss` it logged
    /// (`train_on_batch`); the running metrics start afresh, as Keras's `reset_metrics=True`.
    pub fn train_on_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<f32> {
        check_data("train_on_batch", x, y)?;
        let mut rng = random::rng(None);
        let mut running = RunningLogs::new(&self.compiled()?.metrics);
        let logs = self.run_train_step(x, y, &mut rng, &mut running, None)?;
        logs.get("loss").map(|&l| l as f32).ok_or_else(|| {
            Error::State(format!(
                "train_on_batch: the training step of model '{}' logged no 'loss'",
                self.name()
            ))
        })
    }

    /// Loss and metrics on `(x, y)` in inference mode, in batches of `batch_size`; `None` means
    /// Keras's default of 32 (`evaluate(&x, &y, 64)` and `evaluate(&x, &y, None)` both work).
    pub fn evaluate(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        batch_size: impl Into<Option<usize>>,
    ) -> Result<Logs> {
        let batch_size = batch_size.into().unwrap_or(DEFAULT_BATCH_SIZE);
        check_data("evaluate", x, y)?;
        if batch_size == 0 {
            return Err(Error::InvalidConfig("batch_size must be at least 1".into()));
        }
        let n = x.batch();
        let batches = (0..n).step_by(batch_size).map(|start| {
            let end = (start + batch_size).min(n);
            Ok(Batch {
                x: x.slice_batch(start, end),
                y: Some(y.slice_batch(start, end)),
            })
        });
        self.evaluate_batches(Box::new(batches))
    }

    /// Loss and metrics over one pass of a dataset, in inference mode (Keras's
    /// `evaluate(dataset)`). The dataset must yield targets.
    pub fn evaluate_dataset(&mut self, data: &mut dyn Dataset) -> Result<Logs> {
        let batches = data.epoch()?;
        self.evaluate_batches(batches)
    }

    fn evaluate_batches(&mut self, batches: Batches<'_>) -> Result<Logs> {
        let (loss_fn, metrics) = {
            let c = self.compiled()?;
            (c.loss, c.metrics.clone())
        };
        let mut loss = Mean::default();
        let mut ms = vec![Mean::default(); metrics.len()];
        let mut seen = 0;
        for batch in batches {
            let (xb, yb) = labelled("evaluate", batch?)?;
            let pred = self.call(&xb)?;
            let n = xb.batch();
            let penalty = self.regularization_loss()?;
            // A Keras mask on the output: only unmasked positions count (models/masking.rs).
            let mask = self.output_mask(0).map(<[bool]>::to_vec);
            let value = match &mask {
                Some(mk) => crate::models::masking::masked_loss(loss_fn, &pred, &yb, mk)?.0,
                None => loss_fn.compute(&pred, &yb)?.0,
            };
            loss.add((value + penalty) as f64, n);
            for ((m, _), acc) in metrics.iter().zip(ms.iter_mut()) {
                let v = match &mask {
                    Some(mk) => crate::models::masking::masked_metric(m, &pred, &yb, mk)?,
                    None => m.batch_value(&pred, &yb),
                };
                acc.add(v, n);
            }
            seen += n;
        }
        if seen == 0 {
            return Err(Error::Data("evaluate: the data set is empty".into()));
        }
        let mut logs = Logs::new();
        logs.insert("loss".into(), loss.value());
        for ((_, name), acc) in metrics.iter().zip(&ms) {
            logs.insert(name.to_string(), acc.value());
        }
        Ok(logs)
    }

    /// Predictions for every batch of one pass of a dataset, concatenated in order (Keras's
    /// `predict(dataset)`); targets, if any, are ignored.
    pub fn predict_dataset(&mut self, data: &mut dyn Dataset) -> Result<Tensor> {
        let mut parts = Vec::new();
        for batch in data.epoch()? {
            parts.push(self.call(&batch?.x)?);
        }
        if parts.is_empty() {
            return Err(Error::Data("predict got an empty data set".into()));
        }
        Tensor::concat_batch(&parts)
    }

    /// Trains for `opts.epochs` epochs. Returns the per-epoch history of the loss, the metrics and
    /// their `val_` counterparts.
    pub fn fit(&mut self, x: &Tensor, y: &Tensor, mut opts: FitOptions) -> Result<History> {
        check_data("fit", x, y)?;
        if opts.batch_size == 0 {
            return Err(Error::InvalidConfig("batch_size must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&opts.validation_split) {
            return Err(Error::InvalidConfig(format!(
                "validation_split must be in [0, 1), got {}",
                opts.validation_split
            )));
        }
        let loss_fn = self.compiled()?.loss;
        // Fail fast on inputs or labels the model cannot take, before any weight changes.
        let probe = self.call(&x.slice_batch(0, 1))?;
        loss_fn.check_targets(probe.shape(), y)?;

        let (train_x, train_y, val) = if opts.validation_split > 0.0 {
            let split = (x.batch() as f64 * (1.0 - opts.validation_split as f64)) as usize;
            if split == 0 || split == x.batch() {
                return Err(Error::Data(format!(
                    "validation_split {} of {} samples leaves an empty part",
                    opts.validation_split,
                    x.batch()
                )));
            }
            (
                x.slice_batch(0, split),
                y.slice_batch(0, split),
                Some(ValidationData::Tensors(
                    x.slice_batch(split, x.batch()),
                    y.slice_batch(split, y.batch()),
                )),
            )
        } else {
            (x.clone(), y.clone(), opts.validation_data.take())
        };
        let source = Source::Tensors {
            x: &train_x,
            y: &train_y,
            batch_size: opts.batch_size,
            shuffle: opts.shuffle,
        };
        self.fit_source(source, val, opts)
    }

    /// Trains on a dataset (Keras's `fit(dataset)`): each epoch is one pass over it, in the order
    /// it yields; its batches are its own (`batch_size`, `shuffle` and `validation_split` of the
    /// options do not apply). `validation_data` may be tensors or another dataset. Given the
    /// same batches, training is bit-identical to [`fit`](Self::fit) on tensors.
    pub fn fit_dataset(&mut self, data: &mut dyn Dataset, mut opts: FitOptions) -> Result<History> {
        if opts.validation_split > 0.0 {
            return Err(Error::InvalidConfig(
                "validation_split is only supported for tensors; pass validation_data (for \
                 image folders: subset Validation of the same folder)"
                    .into(),
            ));
        }
        self.compiled()?;
        let val = opts.validation_data.take();
        self.fit_source(Source::Data(data), val, opts)
    }

    fn fit_source(
        &mut self,
        mut source: Source<'_>,
        mut val: Option<ValidationData>,
        mut opts: FitOptions,
    ) -> Result<History> {
        let compiled = self.compiled()?;
        let metrics = compiled.metrics.clone();
        let loss_fn = compiled.loss;
        if let Some(ValidationData::Tensors(vx, vy)) = &val {
            check_data("validation data", vx, vy)?;
        }
        if opts.verbose > 0 && !self.has_trainable() {
            eprintln!(
                "warning: model '{}' has no trainable weights; fit will not change it",
                self.name()
            );
        }

        let steps = match &source {
            Source::Tensors { x, batch_size, .. } => Some(x.batch().div_ceil(*batch_size)),
            Source::Data(d) => d.num_batches(),
        };
        let mut rng = random::rng(opts.seed);
        let mut history = History::default();
        let mut callbacks = std::mem::take(&mut opts.callbacks);
        self.stop_reason = None;
        let mut probed = matches!(source, Source::Tensors { .. });
        for cb in callbacks.iter_mut() {
            cb.on_train_begin(self)?;
        }
        let (samples, full_batch, dataset) = match &source {
            Source::Tensors { x, batch_size, .. } => (x.batch(), *batch_size, false),
            Source::Data(_) => (0, 0, true),
        };
        let (mut prefix, report) = PrefixCache::start(
            self,
            samples,
            full_batch,
            opts.epochs,
            opts.prefix_cache_bytes,
            opts.verbose > 0,
            dataset,
        );
        history.prefix_cache = report;
        'epochs: for epoch in 0..opts.epochs {
            for cb in callbacks.iter_mut() {
                cb.on_epoch_begin(self, epoch)?;
            }
            // The sample indices of each batch of tensors, for the prefix cache.
            let mut batch_rows: Vec<Vec<usize>> = Vec::new();
            let batches: Batches<'_> = match &mut source {
                Source::Tensors {
                    x,
                    y,
                    batch_size,
                    shuffle,
                } => {
                    let n = x.batch();
                    let order: Vec<usize> = if *shuffle {
                        random::permutation(&mut rng, n)
                    } else {
                        (0..n).collect()
                    };
                    let (x, y): (&Tensor, &Tensor) = (*x, *y);
                    let chunks: Vec<Vec<usize>> =
                        order.chunks(*batch_size).map(<[usize]>::to_vec).collect();
                    if prefix.is_some() {
                        batch_rows = chunks.clone();
                    }
                    Box::new(chunks.into_iter().map(move |rows| {
                        Ok(Batch {
                            x: x.gather_batch(&rows),
                            y: Some(y.gather_batch(&rows)),
                        })
                    }))
                }
                Source::Data(d) => d.epoch()?,
            };
            let progress = Progress::start_epoch(opts.verbose, epoch, opts.epochs, steps);
            let mut running = RunningLogs::new(&metrics);
            let mut logs = Logs::new();
            for (b, batch) in batches.enumerate() {
                let (xb, yb) = labelled("fit", batch?)?;
                if !probed {
                    // The first batch of a dataset: check it fits the model and the loss before
                    // any weight changes.
                    check_data("fit", &xb, &yb)?;
                    let probe = self.call(&xb.slice_batch(0, 1))?;
                    loss_fn.check_targets(probe.shape(), &yb)?;
                    probed = true;
                }
                for cb in callbacks.iter_mut() {
                    cb.on_batch_begin(self, b)?;
                }
                let hook = match (prefix.as_mut(), batch_rows.get(b)) {
                    (Some(cache), Some(rows)) => Some(PrefixHook { cache, rows }),
                    _ => None,
                };
                logs = self.run_train_step(&xb, &yb, &mut rng, &mut running, hook)?;
                if let Some(c) = &prefix {
                    history.prefix_cache = c.report.clone();
                }
                progress.batch_done(&logs);
                for cb in callbacks.iter_mut() {
                    cb.on_batch_end(self, b, &logs)?;
                }
                if self.stop_reason.is_some() {
                    progress.epoch_done(&logs);
                    push(&mut history, &logs);
                    break 'epochs;
                }
            }
            if !probed {
                return Err(Error::Data("fit: the dataset yielded no batches".into()));
            }
            match &mut val {
                Some(ValidationData::Tensors(vx, vy)) => {
                    for (k, v) in self.evaluate(vx, vy, opts.batch_size)? {
                        logs.insert(format!("val_{k}"), v);
                    }
                }
                Some(ValidationData::Dataset(d)) => {
                    for (k, v) in self.evaluate_dataset(d.as_mut())? {
                        logs.insert(format!("val_{k}"), v);
                    }
                }
                None => {}
            }
            progress.epoch_done(&logs);
            push(&mut history, &logs);
            for cb in callbacks.iter_mut() {
                cb.on_epoch_end(self, epoch, &logs)?;
            }
            if self.stop_reason.is_some() {
                break;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(self)?;
        }
        history.stopped = self.stop_reason.take();
        Ok(history)
    }
}

/// The `(x, y)` of a batch that must have targets.
fn labelled(what: &str, batch: Batch) -> Result<(Tensor, Tensor)> {
    let Batch { x, y } = batch;
    let y = y.ok_or_else(|| {
        Error::Data(format!(
            "{what}: the dataset yields no labels (label_mode None); targets are needed"
        ))
    })?;
    if x.shape().is_empty() || y.shape().is_empty() || x.batch() != y.batch() {
        return Err(Error::Data(format!(
            "{what}: a batch has x {} but y {}",
            fmt_dims(x.shape()),
            fmt_dims(y.shape())
        )));
    }
    Ok((x, y))
}

fn push(history: &mut History, logs: &Logs) {
    for (k, v) in logs {
        history.history.entry(k.clone()).or_default().push(*v);
    }
}
