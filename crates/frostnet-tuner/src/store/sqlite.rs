//! SQLite trial store: the default, one file per study.
//!
//! Several processes on one machine may share the file. Every read-modify-
//! write runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write
//! lock up front, so two workers can never plan the same trial. WAL mode lets
//! readers (and heartbeats) proceed while a claim is planned, and a busy
//! timeout makes writers queue instead of failing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    ClaimOutcome, EncodedUpdate, FinishUpdate, PlanDecision, Planner, RawTrial, RunningUpdate,
    TrialRecord, TrialStore, SCHEMA_VERSION, TRIAL_COLUMNS,
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

fn raw_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawTrial> {
    Ok(RawTrial {
        id: r.get(0)?,
        number: r.get(1)?,
        state: r.get(2)?,
        plan: r.get(3)?,
        params: r.get(4)?,
        grid_path: r.get(5)?,
        intermediate: r.get(6)?,
        metrics: r.get(7)?,
        value: r.get(8)?,
        error: r.get(9)?,
        worker: r.get(10)?,
        attempts: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

fn load(conn: &Connection, study: i64) -> Result<Vec<TrialRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TRIAL_COLUMNS} FROM tuner_trials WHERE study_id = ?1 ORDER BY number"
    ))?;
    let raws = stmt
        .query_map(params![study], raw_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(RawTrial::decode).collect()
}

impl SqliteStore {
    /// Opens (or creates) the study file. A file that is not an SQLite
    /// database, or holds tables of another schema, is
    /// [`Error::WrongSchema`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let target = format!("sqlite file {}", path.display());
        let wrong = |e: &dyn std::fmt::Display| Error::WrongSchema {
            target: target.clone(),
            message: e.to_string(),
        };
        let conn = Connection::open(&path).map_err(|e| Error::Unreachable {
            target: target.clone(),
            message: e.to_string(),
        })?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // `journal_mode` is the first statement that reads the file: a file
        // that is not a database fails here.
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| wrong(&e))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| wrong(&e))?;
        let store = SqliteStore { conn, path };
        store.ensure_schema().map_err(|e| match e {
            Error::Store(m) => wrong(&m),
            other => other,
        })?;
        Ok(store)
    }

    fn ensure_schema(&self) -> Result<()> {
        let target = format!("sqlite file {}", self.path.display());
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
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
            .map_err(|e| Error::WrongSchema {
                target: target.clone(),
                message: e.to_string(),
            })?;
        if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(Error::WrongSchema {
                target,
                message: format!("schema version {version:?}, this build needs {SCHEMA_VERSION:?}"),
            });
        }
        // The expected columns must all be there.
        tx.prepare(&format!(
            "SELECT {TRIAL_COLUMNS}, token, lease_until, study_id FROM tuner_trials LIMIT 0"
        ))
        .and_then(|_| tx.prepare("SELECT id, name, fingerprint, config FROM tuner_studies LIMIT 0"))
        .map_err(|e| Error::WrongSchema {
            target,
            message: e.to_string(),
        })?;
        tx.commit()?;
        Ok(())
    }

    fn immediate(&mut self) -> Result<rusqlite::Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

impl TrialStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite file {}", self.path.display())
    }

    fn open_study(&mut self, name: &str, fingerprint: &str, config: &str) -> Result<i64> {
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

    fn load_trials(&mut self, study: i64) -> Result<Vec<TrialRecord>> {
        load(&self.conn, study)
    }

    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        token: &str,
        lease: Duration,
        planner: &mut Planner<'_>,
    ) -> Result<ClaimOutcome> {
        let tx = self.immediate()?;
        let t = now();
        let orphan: Option<i64> = tx
            .query_row(
                "SELECT id FROM tuner_trials WHERE study_id = ?1 AND state = 'running' \
                 AND lease_until < ?2 ORDER BY number LIMIT 1",
                params![study, t],
                |r| r.get(0),
            )
            .optional()?;
        let (id, created) = match orphan {
            Some(id) => {
                tx.execute(
                    "UPDATE tuner_trials SET worker = ?2, token = ?3, attempts = attempts + 1, \
                     lease_until = ?4, started_at = ?5, intermediate = '{}', metrics = '{}' \
                     WHERE id = ?1",
                    params![id, worker, token, t + lease.as_secs_f64(), t],
                )?;
                (id, false)
            }
            None => {
                let history = load(&tx, study)?;
                match planner(&history)? {
                    PlanDecision::Wait => return Ok(ClaimOutcome::Wait),
                    PlanDecision::Done => return Ok(ClaimOutcome::Done),
                    PlanDecision::New { number, plan } => {
                        tx.execute(
                            "INSERT INTO tuner_trials (study_id, number, state, plan, worker, \
                             token, attempts, lease_until, started_at) \
                             VALUES (?1, ?2, 'running', ?3, ?4, ?5, 1, ?6, ?7)",
                            params![
                                study,
                                number as i64,
                                serde_json::to_string(&plan)?,
                                worker,
                                token,
                                t + lease.as_secs_f64(),
                                t
                            ],
                        )?;
                        (tx.last_insert_rowid(), true)
                    }
                }
            }
        };
        let history = load(&tx, study)?;
        tx.commit()?;
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

    fn heartbeat(&mut self, trial: i64, token: &str, lease: Duration) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE tuner_trials SET lease_until = ?3 \
             WHERE id = ?1 AND token = ?2 AND state = 'running'",
            params![trial, token, now() + lease.as_secs_f64()],
        )?;
        Ok(n == 1)
    }

    fn update_running(
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

    fn finish(&mut self, trial: i64, token: &str, update: &FinishUpdate) -> Result<bool> {
        let e = EncodedUpdate::new(&update.running)?;
        let n = self.conn.execute(
            "UPDATE tuner_trials SET state = ?3, params = ?4, grid_path = ?5, \
             intermediate = ?6, metrics = ?7, value = ?8, error = ?9, finished_at = ?10 \
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
                now()
            ],
        )?;
        Ok(n == 1)
    }

    fn release(&mut self, trial: i64, token: &str) -> Result<()> {
        let tx = self.immediate()?;
        let n = tx.execute(
            "DELETE FROM tuner_trials WHERE id = ?1 AND token = ?2 AND attempts = 1 \
             AND state = 'running'",
            params![trial, token],
        )?;
        if n == 0 {
            tx.execute(
                "UPDATE tuner_trials SET lease_until = 0 WHERE id = ?1 AND token = ?2 \
                 AND state = 'running'",
                params![trial, token],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
