//! Callbacks: code that runs between batches and epochs with the model in hand — so it can stop
//! training, change the learning rate, save weights, or freeze and unfreeze layers. A change of
//! `trainable` made here takes effect at the very next batch; nothing needs recompiling.

use crate::error::{Error, Result};
use crate::models::Model;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::io::Write;

/// Logged values by name (`loss`, `accuracy`, `val_loss`, ...).
pub type Logs = BTreeMap<String, f64>;

/// Hooks called by `fit`. Every method has a default that does nothing.
#[allow(unused_variables)]
pub trait Callback {
    fn on_train_begin(&mut self, model: &mut Model) -> Result<()> {
        Ok(())
    }
    fn on_train_end(&mut self, model: &mut Model) -> Result<()> {
        Ok(())
    }
    fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> Result<()> {
        Ok(())
    }
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        Ok(())
    }
    fn on_batch_begin(&mut self, model: &mut Model, batch: usize) -> Result<()> {
        Ok(())
    }
    /// `logs` holds running means over the epoch so far, as Keras reports them.
    fn on_batch_end(&mut self, model: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        Ok(())
    }
}

/// Whether a monitored value improves when it goes down or up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    /// `min` for losses and errors, `max` for accuracies (Keras's `auto`).
    Auto,
    Min,
    Max,
}

impl MonitorMode {
    fn is_max(self, monitor: &str) -> bool {
        match self {
            MonitorMode::Max => true,
            MonitorMode::Min => false,
            MonitorMode::Auto => monitor.contains("acc") || monitor.starts_with("fmeasure"),
        }
    }
}

fn monitored(logs: &Logs, monitor: &str) -> Result<f64> {
    logs.get(monitor).copied().ok_or_else(|| {
        Error::InvalidConfig(format!(
            "callback monitors '{monitor}', which is not logged; available: {}",
            logs.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Tracks the best value of a monitored metric.
#[derive(Clone, Debug)]
struct Best {
    maximize: bool,
    min_delta: f64,
    value: Option<f64>,
}

impl Best {
    fn improves(&self, v: f64) -> bool {
        match self.value {
            None => true,
            Some(b) if self.maximize => v > b + self.min_delta,
            Some(b) => v < b - self.min_delta,
        }
    }
}

/// Stops training when the monitored value stops improving; optionally restores the weights of
/// the best epoch.
pub struct EarlyStopping {
    monitor: String,
    patience: usize,
    restore_best_weights: bool,
    best: Best,
    wait: usize,
    best_weights: Option<Vec<Tensor>>,
    /// The epoch at which training was stopped, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    pub fn new(monitor: &str, patience: usize) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.into(),
            patience,
            restore_best_weights: false,
            best: Best {
                maximize: MonitorMode::Auto.is_max(monitor),
                min_delta: 0.0,
                value: None,
            },
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }
    pub fn min_delta(mut self, d: f64) -> Self {
        self.best.min_delta = d.abs();
        self
    }
    pub fn mode(mut self, mode: MonitorMode) -> Self {
        self.best.maximize = mode.is_max(&self.monitor);
        self
    }
    pub fn restore_best_weights(mut self, r: bool) -> Self {
        self.restore_best_weights = r;
        self
    }
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        let v = monitored(logs, &self.monitor)?;
        if self.best.improves(v) {
            self.best.value = Some(v);
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(model.get_weights());
            }
            return Ok(());
        }
        self.wait += 1;
        if self.wait >= self.patience {
            self.stopped_epoch = Some(epoch);
            model.stop_training(&format!(
                "EarlyStopping: '{}' did not improve for {} epochs",
                self.monitor, self.patience
            ));
            if let Some(w) = self.best_weights.take() {
                model.set_weights(w)?;
            }
        }
        Ok(())
    }
}

/// Saves the model's weights after an epoch (every epoch, or only when the monitored value
/// improves), atomically: a temporary file renamed into place, so a crash never leaves a
/// half-written checkpoint.
pub struct ModelCheckpoint {
    path: String,
    monitor: String,
    save_best_only: bool,
    best: Best,
}

impl ModelCheckpoint {
    /// `path` may contain `{epoch}`, replaced by the 1-based epoch number.
    pub fn new(path: &str) -> ModelCheckpoint {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            save_best_only: false,
            best: Best {
                maximize: false,
                min_delta: 0.0,
                value: None,
            },
        }
    }
    pub fn monitor(mut self, monitor: &str) -> Self {
        self.best.maximize = MonitorMode::Auto.is_max(monitor);
        self.monitor = monitor.into();
        self
    }
    pub fn save_best_only(mut self, b: bool) -> Self {
        self.save_best_only = b;
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        if self.save_best_only {
            let v = monitored(logs, &self.monitor)?;
            if !self.best.improves(v) {
                return Ok(());
            }
            self.best.value = Some(v);
        }
        let path = self.path.replace("{epoch}", &(epoch + 1).to_string());
        crate::saving::save_weights(model, &path)
    }
}

/// Multiplies the learning rate by `factor` when the monitored value has not improved for
/// `patience` epochs, down to `min_lr`.
pub struct ReduceLROnPlateau {
    monitor: String,
    factor: f32,
    patience: usize,
    min_lr: f32,
    best: Best,
    wait: usize,
}

impl ReduceLROnPlateau {
    /// Keras's defaults: factor 0.1, patience 10, min_lr 0.
    pub fn new(monitor: &str) -> ReduceLROnPlateau {
        ReduceLROnPlateau {
            monitor: monitor.into(),
            factor: 0.1,
            patience: 10,
            min_lr: 0.0,
            best: Best {
                maximize: MonitorMode::Auto.is_max(monitor),
                min_delta: 1e-4,
                value: None,
            },
            wait: 0,
        }
    }
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = f;
        self
    }
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    pub fn min_lr(mut self, m: f32) -> Self {
        self.min_lr = m;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_epoch_end(&mut self, model: &mut Model, _epoch: usize, logs: &Logs) -> Result<()> {
        let v = monitored(logs, &self.monitor)?;
        if self.best.improves(v) {
            self.best.value = Some(v);
            self.wait = 0;
            return Ok(());
        }
        self.wait += 1;
        if self.wait >= self.patience {
            if let Some(opt) = model.optimizer_mut() {
                let lr = (opt.learning_rate() * self.factor).max(self.min_lr);
                opt.set_learning_rate(lr);
            }
            self.wait = 0;
        }
        Ok(())
    }
}

/// Appends one CSV row per epoch (`epoch,` then the logged names in sorted order, as Keras).
pub struct CsvLogger {
    path: String,
    header_written: bool,
}

impl CsvLogger {
    pub fn new(path: &str) -> CsvLogger {
        CsvLogger {
            path: path.into(),
            header_written: false,
        }
    }
}

impl Callback for CsvLogger {
    fn on_epoch_end(&mut self, _model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        let io = |e| Error::Io {
            path: self.path.clone(),
            source: e,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(self.header_written)
            .write(true)
            .truncate(!self.header_written)
            .open(&self.path)
            .map_err(io)?;
        if !self.header_written {
            let names: Vec<&str> = logs.keys().map(String::as_str).collect();
            writeln!(f, "epoch,{}", names.join(",")).map_err(io)?;
            self.header_written = true;
        }
        let values: Vec<String> = logs.values().map(|v| v.to_string()).collect();
        writeln!(f, "{epoch},{}", values.join(",")).map_err(io)?;
        Ok(())
    }
}

/// Stops training as soon as a batch's loss is NaN or infinite.
#[derive(Default)]
pub struct TerminateOnNaN;

impl Callback for TerminateOnNaN {
    fn on_batch_end(&mut self, model: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        if let Some(loss) = logs.get("loss") {
            if !loss.is_finite() {
                model.stop_training(&format!(
                    "TerminateOnNaN: batch {batch} has an invalid loss ({loss})"
                ));
            }
        }
        Ok(())
    }
}

type EpochFn = Box<dyn FnMut(&mut Model, usize, &Logs) -> Result<()>>;
type IndexFn = Box<dyn FnMut(&mut Model, usize) -> Result<()>>;

/// A callback from closures: `LambdaCallback::new().on_epoch_end(|model, epoch, logs| ...)`.
/// Handy for freezing or unfreezing layers mid-training.
#[derive(Default)]
pub struct LambdaCallback {
    epoch_begin: Option<IndexFn>,
    epoch_end: Option<EpochFn>,
    batch_begin: Option<IndexFn>,
    batch_end: Option<EpochFn>,
}

impl LambdaCallback {
    pub fn new() -> LambdaCallback {
        LambdaCallback::default()
    }
    pub fn on_epoch_begin(
        mut self,
        f: impl FnMut(&mut Model, usize) -> Result<()> + 'static,
    ) -> Self {
        self.epoch_begin = Some(Box::new(f));
        self
    }
    pub fn on_epoch_end(
        mut self,
        f: impl FnMut(&mut Model, usize, &Logs) -> Result<()> + 'static,
    ) -> Self {
        self.epoch_end = Some(Box::new(f));
        self
    }
    pub fn on_batch_begin(
        mut self,
        f: impl FnMut(&mut Model, usize) -> Result<()> + 'static,
    ) -> Self {
        self.batch_begin = Some(Box::new(f));
        self
    }
    pub fn on_batch_end(
        mut self,
        f: impl FnMut(&mut Model, usize, &Logs) -> Result<()> + 'static,
    ) -> Self {
        self.batch_end = Some(Box::new(f));
        self
    }
}

impl Callback for LambdaCallback {
    fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> Result<()> {
        self.epoch_begin
            .as_mut()
            .map_or(Ok(()), |f| f(model, epoch))
    }
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        self.epoch_end
            .as_mut()
            .map_or(Ok(()), |f| f(model, epoch, logs))
    }
    fn on_batch_begin(&mut self, model: &mut Model, batch: usize) -> Result<()> {
        self.batch_begin
            .as_mut()
            .map_or(Ok(()), |f| f(model, batch))
    }
    fn on_batch_end(&mut self, model: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        self.batch_end
            .as_mut()
            .map_or(Ok(()), |f| f(model, batch, logs))
    }
}
