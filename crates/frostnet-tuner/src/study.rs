//! A study: a named search stored in a trial store, run by one or more
//! workers.
//!
//! [`Study::optimize`] is the worker loop: claim a trial (take over an
//! orphaned one or plan a new one), run the user's closure with the trial's
//! [`Hyperparameters`] and a [`TrialContext`], and store the outcome. It
//! returns when the study is finished — including trials other workers are
//! still running, so every worker returns the same [`Results`].
//!
//! While the closure runs, a heartbeat thread renews the trial's lease; if
//! the process dies, the lease runs out and another worker (or the same
//! program, restarted) runs the trial again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::algorithms::grid::{GridSource, GridTrack};
use crate::algorithms::random::RandomSource;
use crate::algorithms::tpe::TpeSource;
use crate::algorithms::{Algorithm, TrialPlan};
use crate::error::{Error, Result, SpaceError};
use crate::pruning::{Pruner, PrunerState};
use crate::results::Results;
use crate::rng::fnv1a;
use crate::space::{HpState, Hyperparameters, ParamSource, ParamSpec};
use crate::store::{
    ClaimOutcome, FinishUpdate, Holder, RunningUpdate, Storage, TrialRecord, TrialState, TrialStore,
};

/// Whether the objective is minimized (a loss) or maximized (an accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// Orders `a` before `b` when `a` is better.
    pub fn compare(self, a: f64, b: f64) -> std::cmp::Ordering {
        match self {
            Direction::Minimize => a.total_cmp(&b),
            Direction::Maximize => b.total_cmp(&a),
        }
    }
}

/// The part of the configuration that defines the study; its hash is the
/// fingerprint checked when a stored study is opened again. The budget
/// (`max_trials`) is not part of it, so a study can be extended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StudyDefinition {
    objective: String,
    direction: Direction,
    algorithm: Algorithm,
    pruner: Pruner,
    /// Hyperparameters declared up front with [`StudyBuilder::search_space`]
    /// (omitted when empty, so such studies keep their fingerprint).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    space: BTreeMap<String, ParamSpec>,
}

/// Builds or reopens a [`Study`].
#[derive(Debug, Clone)]
pub struct StudyBuilder {
    name: String,
    storage: Option<Storage>,
    objective: Option<(String, Direction)>,
    algorithm: Algorithm,
    pruner: Pruner,
    max_trials: Option<u64>,
    lease: Duration,
    heartbeat: Option<Duration>,
    poll: Duration,
    worker: Option<String>,
    space: std::result::Result<BTreeMap<String, ParamSpec>, SpaceError>,
    max_retries: u32,
}

impl StudyBuilder {
    /// Where trials are stored; default: SQLite file `<name>.tuner.sqlite3`
    /// in the current directory.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }
    /// The reported metric to optimize, e.g. `("val_loss", Minimize)`.
    pub fn objective(mut self, metric: impl Into<String>, direction: Direction) -> Self {
        self.objective = Some((metric.into(), direction));
        self
    }
    /// The search algorithm; default: TPE with seed 0.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }
    /// The pruner; default: none.
    pub fn pruner(mut self, pruner: Pruner) -> Self {
        self.pruner = pruner;
        self
    }
    /// Total number of trials of the study (all workers together, failed and
    /// pruned ones included). Required for random and TPE; an optional cap
    /// for grid and Hyperband.
    pub fn max_trials(mut self, n: u64) -> Self {
        self.max_trials = Some(n);
        self
    }
    /// How long a running trial stays owned without a heartbeat before
    /// another worker takes it over; default 60 s. Must exceed the longest
    /// pause of the process (the heartbeat runs on its own thread).
    pub fn lease_timeout(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// How often the lease is renewed; default a quarter of the lease.
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }
    /// How long a worker sleeps when it must wait for other workers'
    /// trials; default 100 ms.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }
    /// Declares hyperparameters up front, as KerasTuner's
    /// `search_space_summary` builds the model once: `declare` is called
    /// once with recording hyperparameters (cheap: no training). The declared
    /// ranges become part of the study's fingerprint, so reopening a stored
    /// study with a changed range fails at [`StudyBuilder::open`] with
    /// [`Error::FingerprintMismatch`], before anything runs; the trial
    /// closure must then declare the same ranges. Optional: without it, a
    /// changed range is detected when a trial declares it
    /// ([`SpaceError::Redefined`]).
    ///
    /// ```
    /// # use frostnet_tuner::{Algorithm, Direction, Scale, Storage, Study};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let study = Study::builder("declared")
    ///     # .storage(Storage::sqlite(dir.path().join("s.sqlite3")))
    ///     .objective("val_loss", Direction::Minimize)
    ///     .algorithm(Algorithm::random(1))
    ///     .max_trials(10)
    ///     .search_space(|hp| {
    ///         hp.int("num_layers", 1, 4)?;
    ///         hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
    ///         Ok(())
    ///     })
    ///     .open()?;
    /// # Ok::<(), frostnet_tuner::Error>(())
    /// ```
    pub fn search_space<F>(mut self, declare: F) -> Self
    where
        F: FnOnce(&mut Hyperparameters) -> std::result::Result<(), SpaceError>,
    {
        let (mut hp, state) =
            Hyperparameters::new(Box::new(RandomSource { seed: 0, key: 0 }), BTreeMap::new());
        let r = declare(&mut hp);
        let recorded = state.borrow().error.clone();
        self.space = match (recorded, r) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(state
                .borrow()
                .defined
                .iter()
                .map(|d| (d.name.clone(), d.spec.clone()))
                .collect()),
        };
        self
    }

    /// How many times a failed trial (its closure returned an error or
    /// panicked) is run again before it stays failed; default 1. A trial
    /// whose worker died (preempted) is not failed: it is always resumed.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Name recorded with the trials this worker runs; default
    /// `<hostname>-<pid>`.
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker = Some(name.into());
        self
    }

    /// Validates the configuration, connects to the store and creates or
    /// opens the study. Opening a stored study with another fingerprint is
    /// [`Error::FingerprintMismatch`] and changes nothing.
    pub fn open(self) -> Result<Study> {
        let (objective, direction) = self.objective.clone().ok_or_else(|| {
            Error::Config("no objective: call .objective(metric, direction)".into())
        })?;
        if objective.is_empty() {
            return Err(Error::Config("the objective metric name is empty".into()));
        }
        if self.name.is_empty() {
            return Err(Error::Config("the study name is empty".into()));
        }
        self.algorithm.validate()?;
        if self.algorithm.needs_max_trials() && self.max_trials.is_none() {
            return Err(Error::Config(
                "random search and TPE need .max_trials(n)".into(),
            ));
        }
        if self.max_trials == Some(0) {
            return Err(Error::Config("max_trials must be >= 1".into()));
        }
        if self.lease.is_zero() {
            return Err(Error::Config("lease_timeout must be > 0".into()));
        }
        let heartbeat = self.heartbeat.unwrap_or(self.lease / 4);
        if heartbeat.is_zero() || heartbeat >= self.lease {
            return Err(Error::Config(
                "heartbeat_interval must be > 0 and shorter than lease_timeout".into(),
            ));
        }
        let space = self.space.clone()?;
        let definition = StudyDefinition {
            objective,
            direction,
            algorithm: self.algorithm.clone(),
            pruner: self.pruner.clone(),
            space,
        };
        let config = serde_json::to_string(&definition)?;
        let fingerprint = format!("{:016x}", fnv1a(config.as_bytes()));
        let storage = self.storage.clone().unwrap_or_else(|| {
            let safe: String = self
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            Storage::sqlite(format!("{safe}.tuner.sqlite3"))
        });
        let mut store = storage.connect()?;
        let study_id = store.open_study(&self.name, &fingerprint, &config)?;
        Ok(Study {
            name: self.name.clone(),
            definition,
            fingerprint,
            store: Arc::new(Mutex::new(store)),
            study_id,
            max_trials: self.max_trials,
            lease: self.lease,
            heartbeat,
            poll: self.poll,
            worker: self.worker.clone().unwrap_or_else(default_worker_name),
            read_only: false,
            holder: Holder::this_process(),
            max_retries: self.max_retries,
        })
    }
}

fn default_worker_name() -> String {
    format!("{}-{}", crate::store::host_name(), std::process::id())
}

/// A unique token per claim, so that writes of a worker that lost its lease
/// are refused.
fn new_token(worker: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{worker}-{nanos:x}-{}",
        COUNTER.fetch_add(1, AtomicOrdering::Relaxed)
    )
}

type SharedStore = Arc<Mutex<Box<dyn TrialStore>>>;

fn lock(store: &SharedStore) -> MutexGuard<'_, Box<dyn TrialStore>> {
    // A panic in the user's closure cannot poison this mutex (it is never
    // held while the closure runs), so a poisoned lock still holds a usable
    // connection.
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hyperparameter search stored under a name.
///
/// ```no_run
/// use frostnet_tuner::{Algorithm, Direction, Scale, Storage, Study};
///
/// let mut study = Study::builder("mlp-search")
///     .storage(Storage::sqlite("mlp-search.sqlite3"))
///     .objective("val_loss", Direction::Minimize)
///     .algorithm(Algorithm::random(42))
///     .max_trials(20)
///     .open()?;
/// let results = study.optimize(|hp, trial| -> Result<(), Box<dyn std::error::Error>> {
///     let layers = hp.int("num_layers", 1, 4)?;
///     let lr = hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
///     for epoch in 0..10 {
///         let val_loss = (layers as f64 - 2.0).powi(2) + lr / (epoch + 1) as f64;
///         if trial.report(epoch, &[("val_loss", val_loss)]).should_stop() {
///             break;
///         }
///     }
///     Ok(())
/// })?;
/// println!("{results}");
/// # Ok::<(), frostnet_tuner::Error>(())
/// ```
pub struct Study {
    name: String,
    definition: StudyDefinition,
    fingerprint: String,
    store: SharedStore,
    study_id: i64,
    max_trials: Option<u64>,
    lease: Duration,
    heartbeat: Duration,
    poll: Duration,
    worker: String,
    /// Opened with [`Study::open_existing`]: results only, no trials run.
    read_only: bool,
    /// This process, recorded with its leases.
    holder: Holder,
    max_retries: u32,
}

/// `Random {"seed": 42}` as `random(seed=42)`: an enum value serialized by
/// serde, in the words a user would type.
fn describe_enum(v: &impl Serialize) -> String {
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) if m.len() == 1 => {
            let (name, inner) = m.into_iter().next().expect("one entry");
            let fields = match inner {
                serde_json::Value::Object(f) => f
                    .iter()
                    .map(|(k, v)| format!("{k}={}", scalar(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => scalar(&other),
            };
            format!("{}({fields})", name.to_lowercase())
        }
        Ok(other) => scalar(&other).to_lowercase(),
        Err(e) => format!("<{e}>"),
    }
}

/// What the closure's `report` tells it to do.
#[must_use = "a pruned trial should stop training"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop now: the trial was pruned (or this worker lost the trial).
    Stop,
}

impl Control {
    /// `true` for [`Control::Stop`].
    pub fn should_stop(self) -> bool {
        self == Control::Stop
    }
}

/// The running trial as the closure sees it: its budget, and `report` for
/// intermediate values.
pub struct TrialContext {
    number: u64,
    plan: TrialPlan,
    objective: String,
    direction: Direction,
    pruner: PrunerState,
    store: SharedStore,
    trial_id: i64,
    token: String,
    lease: Duration,
    hp: Rc<RefCell<HpState>>,
    grid: Option<Rc<RefCell<GridTrack>>>,
    intermediate: BTreeMap<u64, f64>,
    metrics: BTreeMap<String, f64>,
    best: Option<f64>,
    objective_seen: bool,
    pruned: bool,
    lost: Arc<AtomicBool>,
    store_error: Option<Error>,
}

impl TrialContext {
    /// The trial's number in the study.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The epoch budget set by the algorithm (Hyperband), or `None` when the
    /// closure chooses its own.
    pub fn max_epochs(&self) -> Option<u64> {
        self.plan.max_epochs()
    }

    /// For a Hyperband trial promoted to a longer budget: the number of the
    /// trial it continues (same hyperparameters), e.g. to reload its
    /// checkpoint instead of training from scratch.
    pub fn promoted_from(&self) -> Option<u64> {
        match self.plan {
            TrialPlan::Hyperband { promoted_from, .. } => promoted_from,
            _ => None,
        }
    }

    /// Whether another worker took this trial over (this worker's lease ran
    /// out, e.g. while it hung): the closure should return without touching
    /// what the trial shares with the new owner, such as its checkpoint.
    pub fn is_lost(&self) -> bool {
        self.lost.load(AtomicOrdering::Relaxed)
    }

    /// Whether the trial was told to stop.
    pub fn should_stop(&self) -> bool {
        self.pruned || self.lost.load(AtomicOrdering::Relaxed) || self.store_error.is_some()
    }

    /// Reports metrics at a step (usually the epoch). The objective metric,
    /// if among them, becomes the trial's intermediate value at `step`; the
    /// trial's final objective is the best of these. Returns
    /// [`Control::Stop`] when the trial is pruned; the closure should then
    /// return (`Ok`), and later reports are ignored.
    pub fn report(&mut self, step: u64, metrics: &[(&str, f64)]) -> Control {
        if self.should_stop() {
            return Control::Stop;
        }
        let mut objective_value = None;
        for (name, v) in metrics {
            if v.is_finite() {
                self.metrics.insert((*name).to_string(), *v);
            }
            if *name == self.objective {
                self.objective_seen = true;
                objective_value = Some(*v);
                if v.is_finite() {
                    self.intermediate.insert(step, *v);
                    self.best = Some(match self.best {
                        Some(b) if self.direction.compare(b, *v).is_le() => b,
                        _ => *v,
                    });
                }
            }
        }
        if let Some(g) = &self.grid {
            g.borrow_mut().frozen = true;
        }
        let update = self.running_update();
        match lock(&self.store).update_running(self.trial_id, &self.token, self.lease, &update) {
            Ok(true) => {}
            Ok(false) => {
                self.lost.store(true, AtomicOrdering::Relaxed);
                return Control::Stop;
            }
            Err(e) => {
                self.store_error = Some(e);
                return Control::Stop;
            }
        }
        if let Some(v) = objective_value {
            if self.pruner.should_prune(step, v) {
                self.pruned = true;
                return Control::Stop;
            }
        }
        Control::Continue
    }

    fn running_update(&self) -> RunningUpdate {
        RunningUpdate {
            params: self.hp.borrow().defined.clone(),
            grid_path: self.grid.as_ref().map(|g| g.borrow().path.clone()),
            intermediate: self.intermediate.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Renews a lease until dropped.
struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(
        store: SharedStore,
        trial: i64,
        token: String,
        lease: Duration,
        every: Duration,
        lost: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || loop {
            match rx.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(false) = lock(&store).heartbeat(trial, &token, lease) {
                        lost.store(true, AtomicOrdering::Relaxed);
                        return;
                    }
                    // A failed heartbeat (e.g. database restarting) is
                    // retried at the next tick; the lease covers the gap.
                }
                _ => return,
            }
        });
        Heartbeat {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Tells the user (on stderr) what a waiting worker waits for: which
/// trials, held by whom, and when their leases run out. Said again when that
/// changes (at most every 2 s) or every 10 s.
#[derive(Default)]
struct WaitNotice {
    /// When the last notice was given, and the (trial, worker) pairs it named.
    last: Option<(std::time::Instant, Vec<WaitedFor>)>,
}

type WaitedFor = (u64, Option<String>);

impl WaitNotice {
    fn tell(&mut self, study: &str, trials: &[TrialRecord]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let held: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| t.state == TrialState::Running && !t.released)
            .collect();
        let key: Vec<WaitedFor> = held.iter().map(|t| (t.number, t.worker.clone())).collect();
        if let Some((at, last)) = &self.last {
            let since = at.elapsed();
            let changed = *last != key;
            if !(changed && since >= Duration::from_secs(2) || since >= Duration::from_secs(10)) {
                return;
            }
        }
        let what: Vec<String> = held
            .iter()
            .take(4)
            .map(|t| {
                let who = t.worker.as_deref().unwrap_or("?");
                let place = match (&t.host, t.pid) {
                    (Some(h), Some(p)) => format!(", pid {p} on {h}"),
                    _ => String::new(),
                };
                format!(
                    "trial {} (held by {who}{place}, lease expires in {:.0} s)",
                    t.number,
                    (t.lease_until - now).max(0.0)
                )
            })
            .collect();
        let more = held.len().saturating_sub(4);
        let text = if what.is_empty() {
            "other workers' trials".to_string()
        } else if more > 0 {
            format!("{} and {more} more", what.join(", "))
        } else {
            what.join(", ")
        };
        use std::io::Write;
        // A closed or full stderr must not stop the search.
        let _ = writeln!(
            std::io::stderr(),
            "frostnet-tuner: study '{study}' waits for {text}"
        );
        self.last = Some((std::time::Instant::now(), key));
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".into())
}

/// The message stored for a trial that never reported the objective.
fn never_reported(objective: &str, metrics: &BTreeMap<String, f64>) -> String {
    let names: Vec<&str> = metrics.keys().map(String::as_str).collect();
    format!(
        "objective `{objective}` was never reported (reported metrics: [{}])",
        names.join(", ")
    )
}

impl Study {
    /// Starts building a study named `name`.
    pub fn builder(name: impl Into<String>) -> StudyBuilder {
        StudyBuilder {
            name: name.into(),
            storage: None,
            objective: None,
            algorithm: Algorithm::tpe(0),
            pruner: Pruner::None,
            max_trials: None,
            lease: Duration::from_secs(60),
            heartbeat: None,
            poll: Duration::from_millis(100),
            worker: None,
            space: Ok(BTreeMap::new()),
            max_retries: 1,
        }
    }

    /// Opens a stored study for reading its results and configuration: only
    /// the store and the name are needed, the configuration is the stored
    /// one. The store is opened read-only and nothing is created: a missing
    /// SQLite file, database or study is [`Error::StudyNotFound`]; a damaged
    /// file is [`Error::Damaged`]. [`Study::optimize`] refuses to run on it.
    pub fn open_existing(name: &str, storage: &Storage) -> Result<Study> {
        let mut store = storage.connect_read_only(name)?;
        let (study_id, config) = store
            .find_study(name)?
            .ok_or_else(|| Error::StudyNotFound {
                study: name.into(),
                store: store.location(),
            })?;
        let definition: StudyDefinition = serde_json::from_str(&config).map_err(|e| {
            Error::Corrupt(format!(
                "{}, table tuner_studies, study '{name}', column `config`: {e}",
                store.location()
            ))
        })?;
        let lease = Duration::from_secs(60);
        Ok(Study {
            name: name.into(),
            definition,
            fingerprint: format!("{:016x}", fnv1a(config.as_bytes())),
            store: Arc::new(Mutex::new(store)),
            study_id,
            max_trials: None,
            lease,
            heartbeat: lease / 4,
            poll: Duration::from_millis(100),
            worker: default_worker_name(),
            read_only: true,
            holder: Holder::this_process(),
            max_retries: 0,
        })
    }

    /// The stored configuration in one line, e.g. `objective val_accuracy
    /// (maximize), algorithm random(seed=42), pruner median(...)`.
    pub fn configuration(&self) -> String {
        let d = &self.definition;
        let mut s = format!(
            "objective {} ({}), algorithm {}, pruner {}",
            d.objective,
            describe_enum(&d.direction),
            describe_enum(&d.algorithm),
            describe_enum(&d.pruner)
        );
        if !d.space.is_empty() {
            let space: Vec<String> = d.space.iter().map(|(n, p)| format!("{n}: {p}")).collect();
            s.push_str(&format!(", declared space {{{}}}", space.join("; ")));
        }
        s
    }

    /// The study's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hash of the objective, direction, algorithm (with seed) and pruner.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The reported metric the study optimizes.
    pub fn objective(&self) -> &str {
        &self.definition.objective
    }

    /// Whether the objective is minimized or maximized.
    pub fn direction(&self) -> Direction {
        self.definition.direction
    }

    /// Every stored trial as stored (with its intermediate values and the
    /// declared range of each hyperparameter), by number; what the
    /// [`crate::report`] draws.
    pub fn trial_records(&self) -> Result<Vec<TrialRecord>> {
        lock(&self.store).load_trials(self.study_id)
    }

    /// This worker's name.
    pub fn worker_name(&self) -> &str {
        &self.worker
    }

    /// All stored trials as a table, with the best trial.
    pub fn results(&self) -> Result<Results> {
        let trials = lock(&self.store).load_trials(self.study_id)?;
        Ok(Results::new(
            &self.name,
            &self.definition.objective,
            self.definition.direction,
            &trials,
        ))
    }

    /// The best complete trial so far, if any.
    pub fn best(&self) -> Result<Option<crate::results::TrialSummary>> {
        Ok(self.results()?.best().cloned())
    }

    /// Runs trials until the study is finished (by any worker), then returns
    /// the results.
    ///
    /// A closure error fails that trial (its message is stored) and the
    /// search goes on. A search-space error ([`SpaceError`]) stops the search
    /// and is returned: the trial is given back unchanged. If no trial ever
    /// completes, the error says why (e.g. [`Error::ObjectiveNeverReported`]).
    ///
    /// When no trial can be started yet (the budget is spent or a grid /
    /// Hyperband step depends on trials of other workers), the worker polls
    /// every `poll_interval` until those trials finish or their leases run
    /// out. A worker that hangs while its heartbeat thread lives keeps its
    /// trial, and so keeps the others waiting.
    pub fn optimize<E, F>(&mut self, mut objective: F) -> Result<Results>
    where
        E: Display,
        F: FnMut(&mut Hyperparameters, &mut TrialContext) -> std::result::Result<(), E>,
    {
        if self.read_only {
            return Err(Error::Config(format!(
                "study '{}' was opened read-only (Study::open_existing); open it with \
                 Study::builder to run trials",
                self.name
            )));
        }
        let mut waiting = WaitNotice::default();
        loop {
            let token = new_token(&self.worker);
            let algorithm = self.definition.algorithm.clone();
            let (max_trials, direction) = (self.max_trials, self.definition.direction);
            let outcome = lock(&self.store).claim(
                self.study_id,
                &self.worker,
                &token,
                self.lease,
                &self.holder,
                &mut |history| algorithm.plan(history, max_trials, direction),
            )?;
            match outcome {
                ClaimOutcome::Done => break,
                ClaimOutcome::Wait => {
                    let trials = lock(&self.store).load_trials(self.study_id)?;
                    waiting.tell(&self.name, &trials);
                    std::thread::sleep(self.poll);
                }
                ClaimOutcome::Claimed { trial, history, .. } => {
                    self.run_trial(&trial, &history, &token, &mut objective)?;
                }
            }
        }
        let results = self.results()?;
        if results.best().is_none() {
            let failed: Vec<_> = results
                .trials
                .iter()
                .filter(|t| t.state == TrialState::Failed)
                .collect();
            let marker = format!(
                "objective `{}` was never reported",
                self.definition.objective
            );
            if !failed.is_empty()
                && failed
                    .iter()
                    .all(|t| t.error.as_deref().is_some_and(|e| e.starts_with(&marker)))
            {
                return Err(Error::ObjectiveNeverReported {
                    metric: self.definition.objective.clone(),
                    failed: failed.len(),
                });
            }
            let last_error = failed
                .last()
                .and_then(|t| t.error.clone())
                .unwrap_or_else(|| "all trials were pruned".into());
            return Err(Error::NoCompletedTrial {
                study: self.name.clone(),
                last_error,
            });
        }
        Ok(results)
    }

    fn source_for(
        &self,
        plan: &TrialPlan,
        history: &[TrialRecord],
        grid: &Option<Rc<RefCell<GridTrack>>>,
    ) -> Box<dyn ParamSource> {
        let alg = &self.definition.algorithm;
        match (alg, plan) {
            (Algorithm::Grid(g), TrialPlan::Grid { prefix }) => Box::new(GridSource {
                prefix: prefix.clone(),
                float_points: g.float_points,
                track: grid.clone().unwrap_or_default(),
            }),
            (Algorithm::Tpe(cfg), TrialPlan::Tpe { key }) => Box::new(TpeSource::new(
                cfg.clone(),
                *key,
                self.definition.direction,
                history,
            )),
            (Algorithm::Hyperband(h), TrialPlan::Hyperband { config_key, .. }) => {
                Box::new(RandomSource {
                    seed: h.seed,
                    key: *config_key,
                })
            }
            (Algorithm::Random(r), TrialPlan::Random { key }) => Box::new(RandomSource {
                seed: r.seed,
                key: *key,
            }),
            // The fingerprint makes a plan of another algorithm impossible;
            // fall back to random values rather than failing.
            (_, _) => Box::new(RandomSource { seed: 0, key: 0 }),
        }
    }

    fn run_trial<E, F>(
        &mut self,
        trial: &TrialRecord,
        history: &[TrialRecord],
        token: &str,
        objective: &mut F,
    ) -> Result<()>
    where
        E: Display,
        F: FnMut(&mut Hyperparameters, &mut TrialContext) -> std::result::Result<(), E>,
    {
        let others: Vec<&TrialRecord> = history.iter().filter(|t| t.id != trial.id).collect();
        let mut known: BTreeMap<String, ParamSpec> = self.definition.space.clone();
        for t in &others {
            for (name, spec) in t.specs() {
                known
                    .entry(name.to_string())
                    .or_insert_with(|| spec.clone());
            }
        }
        let grid = matches!(trial.plan, TrialPlan::Grid { .. })
            .then(|| Rc::new(RefCell::new(GridTrack::default())));
        let finished_history: Vec<TrialRecord> = others.into_iter().cloned().collect();
        let source = self.source_for(&trial.plan, &finished_history, &grid);
        let (mut hp, hp_state) = Hyperparameters::new(source, known);
        let lost = Arc::new(AtomicBool::new(false));
        let mut ctx = TrialContext {
            number: trial.number,
            plan: trial.plan.clone(),
            objective: self.definition.objective.clone(),
            direction: self.definition.direction,
            pruner: PrunerState::new(
                self.definition.pruner.clone(),
                self.definition.direction,
                &finished_history,
            ),
            store: self.store.clone(),
            trial_id: trial.id,
            token: token.to_string(),
            lease: self.lease,
            hp: hp_state.clone(),
            grid: grid.clone(),
            intermediate: BTreeMap::new(),
            metrics: BTreeMap::new(),
            best: None,
            objective_seen: false,
            pruned: false,
            lost: lost.clone(),
            store_error: None,
        };
        let heartbeat = Heartbeat::start(
            self.store.clone(),
            trial.id,
            token.to_string(),
            self.lease,
            self.heartbeat,
            lost.clone(),
        );
        // A panic in the closure (say `Dense::new(0)` from a sampled 0) fails
        // this trial instead of killing the worker: the study goes on.
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            objective(&mut hp, &mut ctx)
        })) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
        };
        drop(heartbeat);

        let space_error = hp_state.borrow().error.clone();
        if let Some(e) = space_error {
            lock(&self.store).release(trial.id, token)?;
            return Err(Error::Space(e));
        }
        if let Some(e) = ctx.store_error.take() {
            // The lease runs out and the trial is run again later.
            return Err(e);
        }
        if lost.load(AtomicOrdering::Relaxed) {
            // Another worker owns the trial now; its result counts, not ours.
            return Ok(());
        }
        if result.is_ok() && hp_state.borrow().defined.is_empty() {
            lock(&self.store).release(trial.id, token)?;
            return Err(Error::Space(SpaceError::Empty));
        }
        if let Some(g) = &grid {
            g.borrow_mut().frozen = true;
        }
        let (state, value, error) = match result {
            Err(e) => (TrialState::Failed, ctx.best, Some(e)),
            Ok(()) if ctx.pruned => (TrialState::Pruned, ctx.best, None),
            Ok(()) if !ctx.objective_seen => (
                TrialState::Failed,
                None,
                Some(never_reported(&ctx.objective, &ctx.metrics)),
            ),
            Ok(()) if ctx.best.is_none() => (
                TrialState::Failed,
                None,
                Some(format!("objective `{}` was not finite", ctx.objective)),
            ),
            Ok(()) => (TrialState::Complete, ctx.best, None),
        };
        let retry = state == TrialState::Failed && trial.failures < self.max_retries;
        let update = FinishUpdate {
            state,
            running: ctx.running_update(),
            value,
            error,
            retry,
        };
        // `false` means the lease was lost at the last moment: the other
        // worker's run will be the one stored.
        lock(&self.store).finish(trial.id, token, &update)?;
        Ok(())
    }
}
