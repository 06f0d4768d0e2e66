//! Training by backpropagation: `compile`, `fit`, `evaluate` (`trainer.rs`), with Keras's losses,
//! metrics, optimizers, learning-rate schedules, callbacks and progress output; the step `fit`
//! runs per batch is replaceable (`train_step.rs`).

pub mod callbacks;
mod losses;
mod metrics;
mod optimizers;
mod prefix_cache;
mod progress;
mod schedules;
pub mod tensorboard;
mod train_step;
mod trainer;

pub use callbacks::{
    Callback, CsvLogger, EarlyStopping, LambdaCallback, Logs, ModelCheckpoint, MonitorMode,
    ReduceLROnPlateau, TerminateOnNaN,
};
pub use losses::Loss;
pub use metrics::Metric;
pub use optimizers::{optimizer_from_state, Adam, Optimizer, OptimizerState, RmsProp, Sgd};
pub(crate) use prefix_cache::Cut;
pub use prefix_cache::PrefixCacheReport;
pub use schedules::LearningRate;
pub use tensorboard::{TensorBoard, UpdateFreq};
pub use train_step::{DefaultTrainStep, StepContext, TrainStep};
pub(crate) use trainer::Compiled;
pub use trainer::{FitOptions, History, ValidationData, DEFAULT_BATCH_SIZE};
