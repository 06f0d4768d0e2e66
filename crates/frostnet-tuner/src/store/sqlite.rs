//! SQLite trial store: the default, one file per study.
//!
//! Several processes on one machine may share the file. Every read-modify-
//! write runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write
//! lock up front, so two workers can never plan the same trial. WAL mode lets
//! readers (and heartbeats) proceed while a claim is planned, and a busy
//! timeout makes writers queue instead of failing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    corrupt_cell, ClaimOutcome, EncodedUpdate, FinishUpdate, Holder, PlanDecision, Planner,
    RawTrial, RunningUpdate, TrialRecord, TrialState, TrialStore, SCHEMA_VERSION, TRIAL_COLUMNS,
    V2_COLUMNS,
};
use crate::error::{Error, Result};

/// A study store in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE tuner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tuner_studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE tuner_trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id INTEGER NOT NULL REFERENCES tuner_studies(id),
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '[]',
    grid_path TEXT,
    intermediate TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    value REAL,
    error TEXT,
    worker TEXT,
    token TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    lease_until REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    pid INTEGER,
    UNIQUE (study_id, number)
);
CREATE INDEX tuner_trials_running ON tuner_trials (study_id, state, lease_until);
";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What is wrong with a cell that rusqlite could not convert, in a few words.
fn cell_problem(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, ty, inner) => format!("{ty} value: {inner}"),
        rusqlite::Error::InvalidColumnType(_, _, ty) => format!("unexpected {ty} value"),
        other => other.to_string(),
    }
}

fn raw_from_row(r: &rusqlite::Row<'_>, store: &str) -> Result<RawTrial> {
    let id: i64 = r.get(0).map_err(|e| {
        Error::Corrupt(format!(
            "{store}, table tuner_trials: a row's column `id` holds an {}",
            cell_problem(&e)
        ))
    })?;
    fn get<T: rusqlite::types::FromSql>(
        r: &rusqlite::Row<'_>,
        idx: usize,
        column: &str,
        store: &str,
        id: i64,
    ) -> Result<T> {
        r.get(idx)
            .map_err(|e| corrupt_cell(store, id, column, cell_problem(&e)))
    }
    Ok(RawTrial {
        id,
        number: get(r, 1, "number", store, id)?,
        state: get(r, 2, "state", store, id)?,
        plan: get(r, 3, "plan", store, id)?,
        params: get(r, 4, "params", store, id)?,
        grid_path: get(r, 5, "grid_path", store, id)?,
        intermediate: get(r, 6, "intermediate", store, id)?,
        metrics: get(r, 7, "metrics", store, id)?,
        value: get(r, 8, "value", store, id)?,
        error: get(r, 9, "error", store, id)?,
        worker: get(r, 10, "worker", store, id)?,
        attempts: get(r, 11, "attempts", store, id)?,
        started_at: get(r, 12, "started_at", store, id)?,
        finished_at: get(r, 13, "finished_at", store, id)?,
        failures: get(r, 14, "failures", store, id)?,
        preemptions: get(r, 15, "preemptions", store, id)?,
        host: get(r, 16, "host", store, id)?,
        pid: get(r, 17, "pid", store, id)?,
        lease_until: get(r, 18, "lease_until", store, id)?,
        released: get(r, 19, "token", store, id)?,
    })
}

fn load(conn: &Connection, study: i64, store: &str) -> Result<Vec<TrialRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TRIAL_COLUMNS} FROM tuner_trials WHERE study_id = ?1 ORDER BY number"
    ))?;
    let mut rows = stmt.query(params![study])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(raw_from_row(row, store)?.decode(store)?);
    }
    Ok(out)
}

/// The damage error for the file at `path`.
fn damaged(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Damaged {
        store: path.display().to_string(),
        message: message.to_string(),
    }
}

/// An empty path would make SQLite use a private temporary database that
/// vanishes with the connection: the study would silently be lost.
fn check_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::Config(
            "the SQLite store path is empty (use sqlite:PATH)".into(),
        ));
    }
    Ok(())
}

const EMPTY_FILE: &str = "the file is empty (0 bytes): truncated, or not written by frostnet; \
     a new study database is only created where no file exists";

impl SqliteStore {
    /// Opens the study file for a worker, creating it only if no file exists
    /// at `path`. An existing file that is empty (0 bytes), not an SQLite
    /// database, or damaged is [`Error::Damaged`]: it is never replaced or
    /// started over, since it may be a study the user expects to resume.
    /// A database that holds tables of another schema is
    /// [`Error::WrongSchema`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        check_path(&path)?;
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
            target: format!("sqlite file {}", path.display()),
            message: e.to_string(),
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == 0 => return Err(damaged(&path, EMPTY_FILE)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_new(&path).map_err(|e| fill_store(&path, e))?;
            }
            Err(e) => return Err(unreachable(&e)),
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unreachable(&e))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let store = SqliteStore { conn, path };
        store.init(true).map_err(|e| fill_store(&store.path, e))?;
        Ok(store)
    }

    /// Opens the file read-only (`SQLITE_OPEN_READ_ONLY`) to read `study`:
    /// nothing is created. A missing file is [`Error::StudyNotFound`]; an
    /// empty, foreign or damaged one is [`Error::Damaged`].
    pub fn open_read_only(path: impl AsRef<Path>, study: &str) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        check_path(&path)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == 0 => return Err(damaged(&path, EMPTY_FILE)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::StudyNotFound {
                    study: study.into(),
                    store: path.display().to_string(),
                })
            }
            Err(e) => {
                return Err(Error::Unreachable {
                    target: format!("sqlite file {}", path.display()),
                    message: e.to_string(),
                })
            }
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Unreachable {
            target: format!("sqlite file {}", path.display()),
            message: e.to_string(),
        })?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let store = SqliteStore { conn, path };
        store.init(false).map_err(|e| fill_store(&store.path, e))?;
        Ok(store)
    }

    /// Sets the connection up and checks (or, when `create`, adds) the
    /// tables. The first statement that reads the file fails on a file that
    /// is not a database.
    fn init(&self, create: bool) -> Result<()> {
        if create {
            self.conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
            self.conn
                .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        }
        self.ensure_schema(create).map_err(|e| match e {
            Error::Store(m) => Error::WrongSchema {
                target: self.describe(),
                message: m,
            },
            other => other,
        })
    }

    fn ensure_schema(&self, create: bool) -> Result<()> {
        let target = format!("sqlite file {}", self.path.display());
        let behavior = if create {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, behavior)?;
        let tables: Vec<String> = {
            let mut st = tx.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tuner_%'",
            )?;
            let v = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            v
        };
        if tables.is_empty() {
            if !create {
                return Err(damaged(&self.path, "it has no tuner tables"));
            }
            tx.execute_batch(SCHEMA)?;
            tx.execute(
                "INSERT INTO tuner_meta (key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION],
            )?;
            tx.commit()?;
            return Ok(());
        }
        if !tables.iter().any(|t| t == "tuner_meta") {
            return Err(Error::WrongSchema {
                target,
                message: format!("tables {tables:?} exist but not `tuner_meta`"),
            });
        }
        let version: Option<String> = tx
            .query_row(
                "SELECT value FROM tuner_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| schema_error(&target, e))?;
        if create && version.as_deref() == Some("1") {
            // Version 1 lacks the failure/preemption counts and the holder.
            for column in V2_COLUMNS {
                tx.execute_batch(&format!("ALTER TABLE tuner_trials ADD COLUMN {column}"))?;
            }
            tx.execute(
                "UPDATE tuner_meta SET value = ?1 WHERE key = 'schema_version'",
                params![SCHEMA_VERSION],
            )?;
        } else if version.as_deref() == Some("1") {
            return Err(Error::WrongSchema {
                target,
                message: "schema version \"1\" (an older frostnet): run a worker on it once \
                          to upgrade it"
                    .into(),
            });
        } else if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(Error::WrongSchema {
                target,
                message: format!("schema version {version:?}, this build needs {SCHEMA_VERSION:?}"),
            });
        }
        // The expected columns must all be there.
        tx.prepare(&format!(
            "SELECT {TRIAL_COLUMNS}, token, study_id FROM tuner_trials LIMIT 0"
        ))
        .and_then(|_| tx.prepare("SELECT id, name, fingerprint, config FROM tuner_studies LIMIT 0"))
        .map_err(|e| schema_error(&target, e))?;
        tx.commit()?;
        Ok(())
    }

    fn immediate(&mut self) -> Result<rusqlite::Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// The bodies of the [`TrialStore`] methods; the trait methods add the
/// file's path to damage errors.
impl SqliteStore {
    fn open_study_impl(&mut self, name: &str, fingerprint: &str, config: &str) -> Result<i64> {
        let tx = self.immediate()?;
        let existing: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT id, fingerprint, config FROM tuner_studies WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let id = match existing {
            Some((id, fp, stored)) => {
                if fp != fingerprint {
                    // Dropping `tx` rolls back; nothing was written anyway.
                    return Err(Error::FingerprintMismatch {
                        study: name.into(),
                        stored_fingerprint: fp,
                        stored,
                        requested_fingerprint: fingerprint.into(),
                        requested: config.into(),
                    });
                }
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO tuner_studies (name, fingerprint, config, created_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![name, fingerprint, config, now()],
                )?;
                tx.last_insert_rowid()
            }
        };
        tx.commit()?;
        Ok(id)
    }

    fn load_trials_impl(&mut self, study: i64) -> Result<Vec<TrialRecord>> {
        load(&self.conn, study, &self.path.display().to_string())
    }

    fn claim_impl(
        &mut self,
        study: i64,
        worker: &str,
        token: &str,
        lease: Duration,
        holder: &Holder,
        planner: &mut Planner<'_>,
    ) -> Result<ClaimOutcome> {
        let store = self.path.display().to_string();
        let tx = self.immediate()?;
        let t = now();
        // (id, preempted): a lease that ran out while held, or one given back.
        let mut orphan: Option<(i64, bool)> = tx
            .query_row(
                "SELECT id, token IS NOT NULL FROM tuner_trials WHERE study_id = ?1 \
                 AND state = 'running' AND lease_until < ?2 ORDER BY number LIMIT 1",
                params![study, t],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if orphan.is_none() {
            // A lease still running, held by a process of this host that is gone.
            let mut st = tx.prepare_cached(
                "SELECT id, pid FROM tuner_trials WHERE study_id = ?1 AND state = 'running' \
                 AND token IS NOT NULL AND host = ?2 AND pid IS NOT NULL ORDER BY number",
            )?;
            let held = st
                .query_map(params![study, holder.host], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            orphan = held
                .into_iter()
                .find(|&(_, pid)| {
                    u32::try_from(pid).is_ok_and(|p| holder.holder_is_dead(&holder.host, p))
                })
                .map(|(id, _)| (id, true));
        }
        let (id, created) = match orphan {
            Some((id, preempted)) => {
                tx.execute(
                    "UPDATE tuner_trials SET worker = ?2, token = ?3, attempts = attempts + 1, \
                     lease_until = ?4, started_at = ?5, intermediate = '{}', metrics = '{}', \
                     preemptions = preemptions + ?6, host = ?7, pid = ?8 WHERE id = ?1",
                    params![
                        id,
                        worker,
                        token,
                        t + lease.as_secs_f64(),
                        t,
                        preempted as i64,
                        holder.host,
                        holder.pid
                    ],
                )?;
                (id, false)
            }
            None => {
                let history = load(&tx, study, &store)?;
                match planner(&history)? {
                    PlanDecision::Wait => return Ok(ClaimOutcome::Wait),
                    PlanDecision::Done => return Ok(ClaimOutcome::Done),
                    PlanDecision::New { number, plan } => {
                        tx.execute(
                            "INSERT INTO tuner_trials (study_id, number, state, plan, worker, \
                             token, attempts, lease_until, started_at, host, pid) \
                             VALUES (?1, ?2, 'running', ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9)",
                            params![
                                study,
                                number as i64,
                                serde_json::to_string(&plan)?,
                                worker,
                                token,
                                t + lease.as_secs_f64(),
                                t,
                                holder.host,
                                holder.pid
                            ],
                        )?;
                        (tx.last_insert_rowid(), true)
                    }
                }
            }
        };
        let history = load(&tx, study, &store)?;
        tx.commit()?;
        ClaimOutcome::claimed(history, id, created)
    }

    fn heartbeat_impl(&mut self, trial: i64, token: &str, lease: Duration) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE tuner_trials SET lease_until = ?3 \
             WHERE id = ?1 AND token = ?2 AND state = 'running'",
            params![trial, token, now() + lease.as_secs_f64()],
        )?;
        Ok(n == 1)
    }

    fn update_running_impl(
        &mut self,
        trial: i64,
        token: &str,
        lease: Duration,
        update: &RunningUpdate,
    ) -> Result<bool> {
        let e = EncodedUpdate::new(update)?;
        let n = self.conn.execute(
            "UPDATE tuner_trials SET lease_until = ?3, params = ?4, grid_path = ?5, \
             intermediate = ?6, metrics = ?7 \
             WHERE id = ?1 AND token = ?2 AND state = 'running'",
            params![
                trial,
                token,
                now() + lease.as_secs_f64(),
                e.params,
                e.grid_path,
                e.intermediate,
                e.metrics
            ],
        )?;
        Ok(n == 1)
    }

    fn finish_impl(&mut self, trial: i64, token: &str, update: &FinishUpdate) -> Result<bool> {
        let e = EncodedUpdate::new(&update.running)?;
        let failed = (update.state == TrialState::Failed) as i64;
        let n = if update.retry {
            self.conn.execute(
                "UPDATE tuner_trials SET failures = failures + 1, params = ?3, grid_path = ?4, \
                 intermediate = ?5, metrics = ?6, error = ?7, finished_at = ?8, \
                 lease_until = 0, token = NULL \
                 WHERE id = ?1 AND token = ?2 AND state = 'running'",
                params![
                    trial,
                    token,
                    e.params,
                    e.grid_path,
                    e.intermediate,
                    e.metrics,
                    update.error,
                    now()
                ],
            )?
        } else {
            self.conn.execute(
                "UPDATE tuner_trials SET state = ?3, params = ?4, grid_path = ?5, \
                 intermediate = ?6, metrics = ?7, value = ?8, error = ?9, finished_at = ?10, \
                 failures = failures + ?11 \
                 WHERE id = ?1 AND token = ?2 AND state = 'running'",
                params![
                    trial,
                    token,
                    update.state.as_str(),
                    e.params,
                    e.grid_path,
                    e.intermediate,
                    e.metrics,
                    update.value,
                    update.error,
                    now(),
                    failed
                ],
            )?
        };
        Ok(n == 1)
    }

    fn release_impl(&mut self, trial: i64, token: &str) -> Result<()> {
        let tx = self.immediate()?;
        let n = tx.execute(
            "DELETE FROM tuner_trials WHERE id = ?1 AND token = ?2 AND attempts = 1 \
             AND state = 'running'",
            params![trial, token],
        )?;
        if n == 0 {
            tx.execute(
                "UPDATE tuner_trials SET lease_until = 0, token = NULL WHERE id = ?1 \
                 AND token = ?2 AND state = 'running'",
                params![trial, token],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl TrialStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite file {}", self.path.display())
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn open_study(&mut self, name: &str, fingerprint: &str, config: &str) -> Result<i64> {
        let r = self.open_study_impl(name, fingerprint, config);
        r.map_err(|e| fill_store(&self.path, e))
    }

    fn find_study(&mut self, name: &str) -> Result<Option<(i64, String)>> {
        let r = self
            .conn
            .query_row(
                "SELECT id, config FROM tuner_studies WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional();
        r.map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => Error::Corrupt(format!(
                "{}, table tuner_studies, study '{name}': {}",
                self.path.display(),
                cell_problem(&e)
            )),
            e => fill_store(&self.path, e.into()),
        })
    }

    fn load_trials(&mut self, study: i64) -> Result<Vec<TrialRecord>> {
        let r = self.load_trials_impl(study);
        r.map_err(|e| fill_store(&self.path, e))
    }

    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        token: &str,
        lease: Duration,
        holder: &Holder,
        planner: &mut Planner<'_>,
    ) -> Result<ClaimOutcome> {
        let r = self.claim_impl(study, worker, token, lease, holder, planner);
        r.map_err(|e| fill_store(&self.path, e))
    }

    fn heartbeat(&mut self, trial: i64, token: &str, lease: Duration) -> Result<bool> {
        let r = self.heartbeat_impl(trial, token, lease);
        r.map_err(|e| fill_store(&self.path, e))
    }

    fn update_running(
        &mut self,
        trial: i64,
        token: &str,
        lease: Duration,
        update: &RunningUpdate,
    ) -> Result<bool> {
        let r = self.update_running_impl(trial, token, lease, update);
        r.map_err(|e| fill_store(&self.path, e))
    }

    fn finish(&mut self, trial: i64, token: &str, update: &FinishUpdate) -> Result<bool> {
        let r = self.finish_impl(trial, token, update);
        r.map_err(|e| fill_store(&self.path, e))
    }

    fn release(&mut self, trial: i64, token: &str) -> Result<()> {
        let r = self.release_impl(trial, token);
        r.map_err(|e| fill_store(&self.path, e))
    }
}

/// A failed schema check: damage stays damage, anything else means the
/// tables are not ours.
fn schema_error(target: &str, e: rusqlite::Error) -> Error {
    let message = e.to_string();
    match Error::from(e) {
        damage @ Error::Damaged { .. } => damage,
        _ => Error::WrongSchema {
            target: target.into(),
            message,
        },
    }
}

/// Names the file in a damage error raised by SQLite inside a statement.
fn fill_store(path: &Path, e: Error) -> Error {
    match e {
        Error::Damaged { store, message } if store.is_empty() => damaged(path, message),
        other => other,
    }
}

/// Creates a new study database at `path`, which did not exist: the schema
/// is written to a temporary file beside it, which is then hard-linked to
/// `path`. Linking fails if `path` appeared meanwhile, so workers starting
/// together never see a half-created (0-byte) file, and an existing file is
/// never replaced. Where hard links are unsupported, the file is created in
/// place.
fn create_new(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "study".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = path.with_file_name(format!(".{name}.new-{}-{nanos:x}", std::process::id()));
    let result = (|| -> Result<()> {
        let conn = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Unreachable {
            target: format!("sqlite file {}", path.display()),
            message: e.to_string(),
        })?;
        let store = SqliteStore {
            conn,
            path: tmp.clone(),
        };
        store.init(true)?;
        // Closing checkpoints the WAL into the file and removes -wal/-shm.
        store.conn.close().map_err(|(_, e)| Error::from(e))?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                // No hard links here (some network or FUSE file systems):
                // create in place; the window between the check and the
                // rename is the only race left.
                if !path.exists() {
                    std::fs::rename(&tmp, path).map_err(|e| Error::Unreachable {
                        target: format!("sqlite file {}", path.display()),
                        message: e.to_string(),
                    })?;
                }
                Ok(())
            }
        }
    })();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = tmp.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    result
}
