//! Error types of the tuner.
//!
//! Errors in the *search space* (a programming mistake in the user's closure)
//! are kept apart from store and study errors so that the closure can propagate
//! them with `?` and the study can still tell them from an ordinary failed
//! training run.

use thiserror::Error;

/// A mistake in the search space declared by the user's closure.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpaceError {
    /// `low > high` (or a NaN bound) for a numeric hyperparameter.
    #[error("hyperparameter `{name}`: low ({low}) is greater than high ({high})")]
    EmptyRange { name: String, low: f64, high: f64 },
    /// A log-scaled range must be strictly positive.
    #[error("hyperparameter `{name}`: a log-scaled range must be > 0, got [{low}, {high}]")]
    LogRangeNotPositive { name: String, low: f64, high: f64 },
    /// The step of a stepped range must be finite and > 0.
    #[error("hyperparameter `{name}`: step must be > 0, got {step}")]
    InvalidStep { name: String, step: f64 },
    /// `hp.choice` with no options.
    #[error("hyperparameter `{name}`: a choice needs at least one option")]
    EmptyChoice { name: String },
    /// The same option listed twice makes the grid and TPE counts ambiguous.
    #[error("hyperparameter `{name}`: option `{option}` is listed twice")]
    DuplicateChoice { name: String, option: String },
    /// The empty string is not a valid hyperparameter name.
    #[error("hyperparameter names must not be empty")]
    EmptyName,
    /// The same name was declared with a different range/kind, either in this
    /// trial or in an earlier trial stored for the study.
    #[error("hyperparameter `{name}` redefined: it was {previous} and is now {new}")]
    Redefined {
        name: String,
        previous: String,
        new: String,
    },
    /// The closure finished a trial without asking for any hyperparameter.
    #[error("the search space is empty: the objective closure did not ask for any hyperparameter")]
    Empty,
}

/// Every error the tuner returns.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The study configuration itself is invalid (e.g. `max_trials == 0`).
    #[error("invalid study configuration: {0}")]
    Config(String),
    /// The study exists with another algorithm/objective configuration.
    /// Nothing stored was modified.
    #[error(
        "study `{study}` already exists with a different configuration \
         (stored fingerprint {stored_fingerprint}: {stored}; \
         requested fingerprint {requested_fingerprint}: {requested}); \
         use another study name or the stored configuration"
    )]
    FingerprintMismatch {
        study: String,
        stored_fingerprint: String,
        stored: String,
        requested_fingerprint: String,
        requested: String,
    },
    /// No trial ever reported the objective metric.
    #[error(
        "objective `{metric}` was never reported by any trial ({failed} trial(s) failed); \
         call `trial.report(step, &[(\"{metric}\", value)])`"
    )]
    ObjectiveNeverReported { metric: String, failed: usize },
    /// No trial completed (all failed or were pruned).
    #[error("no trial of study `{study}` completed; last error: {last_error}")]
    NoCompletedTrial { study: String, last_error: String },
    /// The database server could not be reached.
    #[error("cannot reach trial store {target}: {message}")]
    Unreachable { target: String, message: String },
    /// The database is reachable but its tables are not the tuner's schema
    /// (or a different version of it).
    #[error("trial store {target} has an incompatible schema: {message}")]
    WrongSchema { target: String, message: String },
    /// Any other database error.
    #[error("trial store error: {0}")]
    Store(String),
    /// Stored data could not be decoded (corrupted or written by another tool).
    /// The message names the store, the table, the row and the column.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Reading a study that is not in the store (or a store that does not
    /// exist: reading never creates one).
    #[error("study '{study}' does not exist in {store}")]
    StudyNotFound { study: String, store: String },
    /// A file the tuner writes (the HTML report) could not be written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The store's file exists but is not (or no longer) a frostnet study
    /// database: empty, truncated, overwritten or corrupted. Nothing is
    /// created or restarted over it.
    #[error("{store} is not a frostnet study database: {message}")]
    Damaged { store: String, message: String },
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    /// Damage found by SQLite in the middle of any statement is reported as
    /// damage; the SQLite store fills in its path (see `SqliteStore`).
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => Error::Damaged {
                store: String::new(),
                message: e.to_string(),
            },
            _ => Error::Store(format!("sqlite: {e}")),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Store(format!("postgres: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Corrupt(e.to_string())
    }
}
