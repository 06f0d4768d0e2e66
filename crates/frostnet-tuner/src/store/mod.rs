//! Persistent trial stores.
//!
//! A store holds studies and their trials so that a study survives the death
//! of its process and can be shared by several worker processes. The
//! [`TrialStore`] trait is the only thing the study needs; two
//! implementations exist:
//!
//! * [`SqliteStore`]: one file per study, for a single machine (several
//!   processes may share the file: claims use `BEGIN IMMEDIATE`);
//! * [`PostgresStore`]: a server shared by workers on several machines
//!   (claims lock with `SELECT ... FOR UPDATE [SKIP LOCKED]`).
//!
//! # Leases
//! A running trial has a lease (`lease_until`), renewed by a heartbeat thread
//! of the worker running it. A trial whose lease ran out belongs to a dead (or
//! hung) worker: the next claim takes it over and runs it again with a new
//! run token. Every write of a running trial is conditioned on its token, so a
//! worker that lost its lease can no longer finish the trial: a finished trial
//! is written exactly once.
//!
//! # Deterministic generation
//! New trials are created only inside the claim transaction, which holds a
//! lock on the study: the algorithm's planner sees the whole stored history
//! and chooses the next trial number and plan. Trial numbers are dense
//! (`0, 1, 2, ...`) and the random choices of a trial depend only on the seed
//! and the plan, never on which worker runs it.

pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::algorithms::TrialPlan;
use crate::error::{Error, Result};
use crate::space::{DefinedParam, ParamSpec};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// Version of the tables written by this crate; a store with another version
/// is rejected instead of being silently misread or migrated.
pub const SCHEMA_VERSION: &str = "2";

/// Columns added by schema version 2 (failure and preemption counts, the
/// lease holder's host and pid); a version-1 store opened for writing is
/// upgraded by adding them (`ALTER TABLE ... ADD COLUMN`, same SQL for both
/// databases).
pub(crate) const V2_COLUMNS: [&str; 4] = [
    "failures INTEGER NOT NULL DEFAULT 0",
    "preemptions INTEGER NOT NULL DEFAULT 0",
    "host TEXT",
    "pid INTEGER",
];

/// The life cycle of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrialState {
    /// Claimed by a worker (or orphaned, if its lease ran out).
    Running,
    /// Finished and reported the objective.
    Complete,
    /// Stopped early by the pruner (or by Hyperband's schedule).
    Pruned,
    /// The closure returned an error, panicked or never reported the
    /// objective (after its retries: see [`crate::StudyBuilder::max_retries`]).
    Failed,
    /// Shown, never stored: a running trial whose lease ran out (its worker
    /// was killed or hung) and that no worker has taken over yet. The next
    /// claim runs it again, from its last checkpoint if the closure saved one.
    Preempted,
}

impl TrialState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Preempted => "preempted",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "pruned" => TrialState::Pruned,
            "failed" => TrialState::Failed,
            other => return Err(Error::Corrupt(format!("unknown trial state `{other}`"))),
        })
    }
    /// Whether the trial will not change any more.
    pub fn is_finished(self) -> bool {
        !matches!(self, TrialState::Running | TrialState::Preempted)
    }
}

impl std::fmt::Display for TrialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision of a grid trial: which index of which hyperparameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridStep {
    pub name: String,
    pub index: u64,
    pub size: u64,
}

/// A trial as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    /// Store-wide id.
    pub id: i64,
    /// Number within the study, dense from 0.
    pub number: u64,
    pub state: TrialState,
    /// What the algorithm decided when it created the trial.
    pub plan: TrialPlan,
    /// Values chosen, in the order the closure asked for them.
    pub params: Vec<DefinedParam>,
    /// Grid decisions, once they are final (see [`crate::algorithms::grid`]).
    pub grid_path: Option<Vec<GridStep>>,
    /// Objective value per reported step.
    pub intermediate: BTreeMap<u64, f64>,
    /// The objective value (best over the reported steps).
    pub value: Option<f64>,
    /// The last value reported for every metric.
    pub metrics: BTreeMap<String, f64>,
    pub error: Option<String>,
    pub worker: Option<String>,
    /// How many times the trial was claimed (more than 1 after a takeover).
    pub attempts: u32,
    /// Attempts that failed (error or panic in the closure).
    pub failures: u32,
    /// Attempts whose lease ran out or whose process died (taken over).
    pub preemptions: u32,
    /// Host and pid of the process holding (or last holding) the lease.
    pub host: Option<String>,
    pub pid: Option<u32>,
    /// Unix time (store's clock) the lease runs out.
    pub lease_until: f64,
    /// Running but held by nobody: given back for a retry or after a
    /// search-space error; the next claim takes it at once.
    pub released: bool,
    /// Unix time (seconds) the current attempt started / finished.
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
}

impl TrialRecord {
    /// Hyperparameter specs used by this trial.
    pub(crate) fn specs(&self) -> impl Iterator<Item = (&str, &ParamSpec)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.spec))
    }
    /// Seconds the finished attempt took.
    pub fn duration(&self) -> Option<f64> {
        match (self.started_at, self.finished_at) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        }
    }
}

/// Columns of `tuner_trials` as read from either database; decoded in one place.
pub(crate) struct RawTrial {
    pub id: i64,
    pub number: i64,
    pub state: String,
    pub plan: String,
    pub params: String,
    pub grid_path: Option<String>,
    pub intermediate: String,
    pub metrics: String,
    pub value: Option<f64>,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub attempts: i64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub failures: i64,
    pub preemptions: i64,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub lease_until: f64,
    pub released: bool,
}

/// The column list matching [`RawTrial`], shared by both stores.
pub(crate) const TRIAL_COLUMNS: &str = "id, number, state, plan, params, grid_path, \
     intermediate, metrics, value, error, worker, attempts, started_at, finished_at, \
     failures, preemptions, host, pid, lease_until, token IS NULL";

/// The one-line error for a stored value that cannot be decoded, naming the
/// store, the row and the column so the user can find (and fix or delete) it.
pub(crate) fn corrupt_cell(store: &str, id: i64, column: &str, problem: impl Display) -> Error {
    Error::Corrupt(format!(
        "{store}, table tuner_trials, row id {id}, column `{column}`: {problem}"
    ))
}

impl RawTrial {
    /// Decodes the JSON columns; `store` (its description) names the store in
    /// errors.
    pub(crate) fn decode(self, store: &str) -> Result<TrialRecord> {
        let id = self.id;
        let bad = |column: &str, e: &dyn Display| corrupt_cell(store, id, column, e);
        fn json<T: serde::de::DeserializeOwned>(
            s: &str,
            column: &str,
            bad: &dyn Fn(&str, &dyn Display) -> Error,
        ) -> Result<T> {
            serde_json::from_str(s).map_err(|e| bad(column, &e))
        }
        let grid_path = match &self.grid_path {
            Some(s) => Some(json(s, "grid_path", &bad)?),
            None => None,
        };
        Ok(TrialRecord {
            id,
            number: u64::try_from(self.number)
                .map_err(|_| bad("number", &format!("negative trial number {}", self.number)))?,
            state: TrialState::parse(&self.state).map_err(|e| match e {
                Error::Corrupt(m) => bad("state", &m),
                other => other,
            })?,
            plan: json(&self.plan, "plan", &bad)?,
            params: json(&self.params, "params", &bad)?,
            grid_path,
            intermediate: json(&self.intermediate, "intermediate", &bad)?,
            metrics: json(&self.metrics, "metrics", &bad)?,
            value: self.value,
            error: self.error,
            worker: self.worker,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            started_at: self.started_at,
            finished_at: self.finished_at,
            failures: u32::try_from(self.failures).unwrap_or(0),
            preemptions: u32::try_from(self.preemptions).unwrap_or(0),
            host: self.host,
            pid: self.pid.and_then(|p| u32::try_from(p).ok()),
            lease_until: self.lease_until,
            released: self.released,
        })
    }
}

/// What the planner decided inside the claim transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanDecision {
    /// Create trial `number` with this plan.
    New { number: u64, plan: TrialPlan },
    /// Nothing can be created until running trials finish.
    Wait,
    /// The budget is spent: no trial will ever be created again.
    Done,
}

/// The result of a claim.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// This worker now owns `trial`; `history` is every trial of the study
    /// as it was at claim time (including `trial`).
    Claimed {
        trial: Box<TrialRecord>,
        history: Vec<TrialRecord>,
        /// `false` when an orphaned trial was taken over.
        created: bool,
    },
    /// Other workers' trials must finish (or time out) first.
    Wait,
    /// Nothing left to run.
    Done,
}

impl ClaimOutcome {
    /// `Claimed` with trial `id` taken from the `history` just loaded in the claiming
    /// transaction (both stores end a claim this way).
    pub(crate) fn claimed(history: Vec<TrialRecord>, id: i64, created: bool) -> Result<Self> {
        let trial = history
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .map(Box::new)
            .ok_or_else(|| Error::Corrupt(format!("claimed trial {id} vanished")))?;
        Ok(ClaimOutcome::Claimed {
            trial,
            history,
            created,
        })
    }
}

/// The state of a running trial written at each report.
#[derive(Debug, Clone)]
pub struct RunningUpdate {
    pub params: Vec<DefinedParam>,
    pub grid_path: Option<Vec<GridStep>>,
    pub intermediate: BTreeMap<u64, f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// The final state of a trial.
#[derive(Debug, Clone)]
pub struct FinishUpdate {
    pub state: TrialState,
    pub running: RunningUpdate,
    pub value: Option<f64>,
    pub error: Option<String>,
    /// For a failed attempt with retries left: count the failure, store the
    /// error, and give the trial back (running, no holder) for the next
    /// claim instead of finishing it.
    pub retry: bool,
}

/// The process that holds a lease. A lease whose holder is on this host and
/// whose process is gone is taken over at once instead of after its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
}

impl Holder {
    /// This process: the kernel's host name (the container's, in one) and pid.
    pub fn this_process() -> Self {
        Holder {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// Whether the process `pid` on `host` is provably gone: `host` is this
    /// host and `/proc/<pid>` is missing or a zombie. Without `/proc` (not
    /// Linux) nothing is provable and the lease timeout decides.
    /// Hosts must have distinct names (containers sharing one host name and
    /// one store would misjudge each other's processes); an unknown name
    /// proves nothing.
    pub(crate) fn holder_is_dead(&self, host: &str, pid: u32) -> bool {
        host == self.host && host != UNKNOWN_HOST && pid != self.pid && !process_alive(pid)
    }
}

/// The host name as the kernel knows it, else `$HOSTNAME`, else `unknown`.
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| UNKNOWN_HOST.into())
}

const UNKNOWN_HOST: &str = "unknown";

/// Whether process `pid` exists (and is not a zombie), read from `/proc`
/// (std only, no signals). Unknown (no `/proc`) counts as alive.
fn process_alive(pid: u32) -> bool {
    let proc_dir = std::path::Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Plans new trials from the stored history (all trials of the study).
pub type Planner<'a> = dyn FnMut(&[TrialRecord]) -> Result<PlanDecision> + 'a;

/// A persistent, shareable store of studies and trials.
///
/// Every method that writes a running trial takes the run `token` given at
/// claim time and returns `false` (writing nothing) when the trial is no
/// longer owned by that token, i.e. its lease ran out and another worker took
/// it over.
pub trait TrialStore: Send {
    /// A human-readable description of the target (no password).
    fn describe(&self) -> String;

    /// Creates the study, or opens it if the stored fingerprint equals
    /// `fingerprint`. A different fingerprint is
    /// [`Error::FingerprintMismatch`] and nothing is written.
    fn open_study(&mut self, name: &str, fingerprint: &str, config: &str) -> Result<i64>;

    /// The id and stored configuration of study `name`, without creating or
    /// changing anything (what reading a study needs).
    fn find_study(&mut self, name: &str) -> Result<Option<(i64, String)>>;

    /// Where the store is, as named in "study 'X' does not exist in ..."
    /// (the path of an SQLite file, the URL of a server without password).
    fn location(&self) -> String;

    /// Every trial of the study, by number.
    fn load_trials(&mut self, study: i64) -> Result<Vec<TrialRecord>>;

    /// Atomically: takes over the lowest-numbered running trial whose lease
    /// ran out, was given back, or whose holder is provably dead
    /// ([`Holder`]), or else asks `planner` for a new trial and creates it.
    /// `holder` is recorded with the lease.
    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        token: &str,
        lease: Duration,
        holder: &Holder,
        planner: &mut Planner<'_>,
    ) -> Result<ClaimOutcome>;

    /// Renews the lease.
    fn heartbeat(&mut self, trial: i64, token: &str, lease: Duration) -> Result<bool>;

    /// Writes progress and renews the lease.
    fn update_running(
        &mut self,
        trial: i64,
        token: &str,
        lease: Duration,
        update: &RunningUpdate,
    ) -> Result<bool>;

    /// Writes the final state; the trial is then never claimed again.
    fn finish(&mut self, trial: i64, token: &str, update: &FinishUpdate) -> Result<bool>;

    /// Gives a claimed trial back without a result (e.g. after a search-space
    /// error): a trial created by this claim is deleted, a taken-over one is
    /// left orphaned for the next claim.
    fn release(&mut self, trial: i64, token: &str) -> Result<()>;
}

/// Which store a study uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// An SQLite file (created if missing); the default. The path must not
    /// be empty (SQLite would use a throw-away temporary database).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection string, e.g.
    /// `postgres://user:pass@host:5432/db` or `host=... user=... dbname=...`.
    Postgres(String),
}

impl Storage {
    /// SQLite file storage.
    pub fn sqlite(path: impl Into<std::path::PathBuf>) -> Self {
        Storage::Sqlite(path.into())
    }
    /// PostgreSQL storage.
    pub fn postgres(url: impl Into<String>) -> Self {
        Storage::Postgres(url.into())
    }
    /// Connects (creating the tables if the database has none). A missing
    /// SQLite file is created; an existing one must be a study database (an
    /// empty or damaged file is [`Error::Damaged`], never started over).
    pub fn connect(&self) -> Result<Box<dyn TrialStore>> {
        Ok(match self {
            Storage::Sqlite(p) => Box::new(SqliteStore::open(p)?),
            Storage::Postgres(u) => Box::new(PostgresStore::connect(u)?),
        })
    }

    /// Connects for reading only: nothing is created (a missing SQLite file
    /// or a database without the tuner's tables is
    /// [`Error::StudyNotFound`] for `study`) and nothing can be written.
    pub fn connect_read_only(&self, study: &str) -> Result<Box<dyn TrialStore>> {
        Ok(match self {
            Storage::Sqlite(p) => Box::new(SqliteStore::open_read_only(p, study)?),
            Storage::Postgres(u) => Box::new(PostgresStore::connect_read_only(u, study)?),
        })
    }
}

/// Serializes the parts of an update, shared by both stores.
pub(crate) struct EncodedUpdate {
    pub params: String,
    pub grid_path: Option<String>,
    pub intermediate: String,
    pub metrics: String,
}

impl EncodedUpdate {
    pub(crate) fn new(u: &RunningUpdate) -> Result<Self> {
        Ok(EncodedUpdate {
            params: serde_json::to_string(&u.params)?,
            grid_path: match &u.grid_path {
                Some(p) => Some(serde_json::to_string(p)?),
                None => None,
            },
            intermediate: serde_json::to_string(&u.intermediate)?,
            metrics: serde_json::to_string(&u.metrics)?,
        })
    }
}

/// Hides the password of a connection string in messages.
pub(crate) fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let creds = &rest[..at];
            if let Some(colon) = creds.find(':') {
                return format!(
                    "{}://{}:***@{}",
                    &url[..scheme_end],
                    &creds[..colon],
                    &rest[at + 1..]
                );
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@127.0.0.1:5/db"),
            "postgres://u:***@127.0.0.1:5/db"
        );
        assert_eq!(
            super::redact("host=x password=secret user=u"),
            "host=x password=*** user=u"
        );
    }
}
