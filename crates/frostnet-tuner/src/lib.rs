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
//! * [`Study`] runs the search, [`Results`] prints the table and the best;
//! * [`report`]: the study as one self-contained HTML page (history, parallel
//!   coordinates, PED-ANOVA importance, intermediate values, the trials).
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
//!
//! # Several workers, and resuming
//! Start the same program (same study name, storage and configuration) on
//! several machines against one PostgreSQL database, or several times
//! against one SQLite file: each [`Study::optimize`] claims trials until the
//! study is finished and then returns the same [`Results`]. Trials are
//! created inside the claim transaction from the stored history, and their
//! values come from `(seed, trial, name)`, so grid and random search (and
//! Hyperband's slots) produce the same trials and the same best result with
//! any number of workers; TPE is reproducible with one worker only (see
//! [`algorithms`]).
//!
//! A running trial holds a lease renewed by a heartbeat thread. If its
//! process dies, the lease runs out ([`StudyBuilder::lease_timeout`]) and the
//! next claim runs the trial again; a worker whose lease was taken over can
//! no longer write the trial, so a finished trial is stored exactly once.
//! Restarting a killed program simply continues the study. A lease records
//! its holder's host and pid: a worker on the same host takes over at once
//! the trial of a process that is gone, instead of waiting for the lease; a
//! worker that must wait says (on stderr) for which trial, held by whom and
//! for how long. Such a trial is *preempted*, not failed.
//!
//! A closure that returns an error or panics fails its trial (the panic is
//! caught and its message stored); the trial is run again at most
//! [`StudyBuilder::max_retries`] times (default 1), then stays failed and is
//! never claimed again. To resume a long trial where it stopped rather than
//! from scratch, the closure saves a checkpoint per epoch under its
//! [`TrialContext::number`] and, when it finds one, reloads it and reports
//! the saved epochs again (the `frostnet tune` command does this).
//!
//! Opening a stored study with another objective, direction, algorithm,
//! seed, pruner or declared search space ([`StudyBuilder::search_space`]) is
//! [`Error::FingerprintMismatch`] at `open`. Without a declaration, the
//! space is only known by running the closure: a stored hyperparameter
//! declared with another range is [`SpaceError::Redefined`] when a trial
//! asks for it, and that trial is given back (deleted) before it stored any
//! result. Neither changes the stored trials. `max_trials` is a budget, not part of the
//! fingerprint: raising it extends a finished study.
//!
//! # After the search
//! The tuner keeps no models. [`Results::best`] gives the best trial's
//! number and hyperparameters; replay them with [`Hyperparameters::fixed`]
//! to rebuild the model, or load a checkpoint the closure saved under the
//! trial's number ([`TrialContext::number`]).
#![forbid(unsafe_code)]

pub mod algorithms;
mod error;
pub mod pruning;
pub mod report;
pub mod results;
mod rng;
pub mod space;
pub mod store;
pub mod study;

pub use algorithms::{Algorithm, GridConfig, HyperbandConfig, RandomConfig, TpeConfig, TrialPlan};
pub use error::{Error, Result, SpaceError};
pub use pruning::Pruner;
pub use report::{render_html, write_report, ReportOptions, StudyInfo};
pub use results::{Results, TrialSummary};
pub use space::{DefinedParam, Hyperparameters, ParamSpec, ParamValue, Scale};
pub use store::{Holder, PostgresStore, SqliteStore, Storage, TrialRecord, TrialState, TrialStore};
pub use study::{Control, Direction, Study, StudyBuilder, TrialContext};
