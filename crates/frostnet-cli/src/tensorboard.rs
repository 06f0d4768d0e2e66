//! `--tensorboard DIR` of `frostnet fit` and `frostnet tune`: the library's `TensorBoard`
//! callback, shared by several `fit` calls that make one run.
//!
//! `frostnet fit` trains the head, then fine-tunes: two `fit` calls, one run whose epochs go on
//! counting (Keras's guide passes `initial_epoch` for the same reason). A tuner trial trains one
//! epoch per `fit` call, to report to the pruner in between; its run is `DIR/trial_N`, one run
//! per trial as KerasTuner's TensorBoard logging makes them.

use std::cell::RefCell;
use std::rc::Rc;

use frostnet::training::{Callback, Logs, TensorBoard};
use frostnet::Model;

/// One TensorBoard run (`train/` and `validation/` under its directory).
#[derive(Clone)]
pub struct Run {
    board: Rc<RefCell<TensorBoard>>,
    started: Rc<RefCell<bool>>,
}

impl Run {
    pub fn new(dir: impl AsRef<std::path::Path>) -> Run {
        Run {
            board: Rc::new(RefCell::new(TensorBoard::new(dir))),
            started: Rc::new(RefCell::new(false)),
        }
    }

    /// The callback for a `fit` call whose first epoch is epoch `first` of the run.
    pub fn callback(&self, first: usize) -> Box<dyn Callback> {
        Box::new(Part {
            run: self.clone(),
            first,
        })
    }
}

/// A run's callback in one `fit` call: epochs shifted by `first`, the run started only once
/// (starting it again would restart its batch count).
struct Part {
    run: Run,
    first: usize,
}

impl Callback for Part {
    fn on_train_begin(&mut self, model: &mut Model) -> frostnet::Result<()> {
        if !self.run.started.replace(true) {
            self.run.board.borrow_mut().on_train_begin(model)?;
        }
        Ok(())
    }
    fn on_train_end(&mut self, model: &mut Model) -> frostnet::Result<()> {
        self.run.board.borrow_mut().on_train_end(model)
    }
    fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> frostnet::Result<()> {
        self.run
            .board
            .borrow_mut()
            .on_epoch_begin(model, self.first + epoch)
    }
    fn on_epoch_end(
        &mut self,
        model: &mut Model,
        epoch: usize,
        logs: &Logs,
    ) -> frostnet::Result<()> {
        self.run
            .board
            .borrow_mut()
            .on_epoch_end(model, self.first + epoch, logs)
    }
    fn on_batch_begin(&mut self, model: &mut Model, batch: usize) -> frostnet::Result<()> {
        self.run.board.borrow_mut().on_batch_begin(model, batch)
    }
    fn on_batch_end(
        &mut self,
        model: &mut Model,
        batch: usize,
        logs: &Logs,
    ) -> frostnet::Result<()> {
        self.run.board.borrow_mut().on_batch_end(model, batch, logs)
    }
}

/// The run of tuner trial `number` under `dir`.
pub fn trial_dir(dir: &str, number: u64) -> std::path::PathBuf {
    std::path::Path::new(dir).join(format!("trial_{number}"))
}
