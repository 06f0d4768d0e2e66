//! Hyperparameter search for frostnet, independent of the model code.
//!
//! Some numbers of a model (layers, units, learning rate) cannot be learned
//! by gradient descent; an outer search trains many candidates and keeps the
//! best. The user gives a closure that reads hyperparameters and reports
//! metrics; the tuner decides which values each trial gets, stores every
//! trial so that a study survives crashes and can be shared by workers, and
//! stops unpromising trials early.
//!
//! * search space, define-by-run: [`Hyperparameters`] (`int`, `float`,
//!   `choice`, `boolean`; conditional values by simply not asking);
//! * algorithms: [`Algorithm`] (grid, random, Hyperband, TPE) and
//!   [`Pruner::Median`];
//! * stores: [`Storage::Sqlite`] (default) and [`Storage::Postgres`] behind
//!   the [`TrialStore`] trait;
//! * [`Study`] runs the search, [`Results`] prints the table and the best.
//!
//! ```
//! use frostnet_tuner::{Algorithm, Direction, Scale, Storage, Study};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut study = Study::builder("quadratic")
//!     .storage(Storage::sqlite(dir.path().join("quadratic.sqlite3")))
//!     .objective("loss", Direction::Minimize)
//!     .algorithm(Algorithm::tpe(7))
//!     .max_trials(30)
//!     .open()?;
//! let results = study.optimize(|hp, trial| -> Result<(), frostnet_tuner::SpaceError> {
//!     let x = hp.int("x", 0, 6)?;
//!     let lr = hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
//!     let act = hp.choice("activation", &["relu", "tanh"])?;
//!     let penalty = if act == "tanh" { 0.0 } else { 0.5 };
//!     let loss = (x as f64 - 3.0).powi(2) + (lr.log10() + 2.0).powi(2) + penalty;
//!     let _ = trial.report(0, &[("loss", loss)]);
//!     Ok(())
//! })?;
//! let best = results.best().unwrap();
//! assert!(best.value.unwrap() < 1.5);
//! println!("{results}");
//! # Ok::<(), frostnet_tuner::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod algorithms;
mod error;
pub mod pruning;
pub mod results;
mod rng;
pub mod space;
pub mod store;
pub mod study;

pub use algorithms::{Algorithm, GridConfig, HyperbandConfig, RandomConfig, TpeConfig, TrialPlan};
pub use error::{Error, Result, SpaceError};
pub use pruning::Pruner;
pub use results::{Results, TrialSummary};
pub use space::{DefinedParam, Hyperparameters, ParamSpec, ParamValue, Scale};
pub use store::{PostgresStore, SqliteStore, Storage, TrialRecord, TrialState, TrialStore};
pub use study::{Control, Direction, Study, StudyBuilder, TrialContext};
