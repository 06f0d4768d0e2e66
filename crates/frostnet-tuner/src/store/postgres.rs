//! PostgreSQL trial store: one study shared by workers on several machines.
//!
//! Claims run in one transaction:
//! 1. `SELECT ... FOR UPDATE SKIP LOCKED` picks an orphaned trial (lease run
//!    out) that no other worker is taking over right now;
//! 2. otherwise the study row is locked (`SELECT ... FOR UPDATE`), which
//!    serializes planning: the planner sees every committed trial and the
//!    next trial number is never handed out twice.
//!
//! Times (leases, start/finish) come from the server's clock
//! (`clock_timestamp()`), so workers with skewed clocks agree on expiry.
//! The connection uses no TLS (`NoTls`): run the server on a trusted network
//! or tunnel it.

use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, NoTls, Row};

use super::{
    redact, ClaimOutcome, EncodedUpdate, FinishUpdate, PlanDecision, Planner, RawTrial,
    RunningUpdate, TrialRecord, TrialStore, SCHEMA_VERSION, TRIAL_COLUMNS,
};
use crate::error::{Error, Result};

/// A study store in a PostgreSQL database (tables `tuner_*` in the current
/// schema).
pub struct PostgresStore {
    client: Client,
    target: String,
}

const NOW: &str = "extract(epoch from clock_timestamp())::float8";

const SCHEMA: &str = "
CREATE TABLE tuner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tuner_studies (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE tuner_trials (
    id BIGSERIAL PRIMARY KEY,
    study_id BIGINT NOT NULL REFERENCES tuner_studies(id),
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '[]',
    grid_path TEXT,
    intermediate TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    value DOUBLE PRECISION,
    error TEXT,
    worker TEXT,
    token TEXT,
    attempts BIGINT NOT NULL DEFAULT 1,
    lease_until DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    UNIQUE (study_id, number)
);
CREATE INDEX tuner_trials_running ON tuner_trials (study_id, state, lease_until);
";

/// Arbitrary constant key of the advisory lock taken while creating tables,
/// so that workers starting together do not race on `CREATE TABLE`.
const SCHEMA_LOCK_KEY: i64 = 0x6672_6f73_746e_6574;

/// The error and all its sources, since `postgres::Error`'s own message is
/// often just "error connecting to server".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn raw_from_row(r: &Row) -> Result<RawTrial> {
    Ok(RawTrial {
        id: r.try_get(0)?,
        number: r.try_get(1)?,
        state: r.try_get(2)?,
        plan: r.try_get(3)?,
        params: r.try_get(4)?,
        grid_path: r.try_get(5)?,
        intermediate: r.try_get(6)?,
        metrics: r.try_get(7)?,
        value: r.try_get(8)?,
        error: r.try_get(9)?,
        worker: r.try_get(10)?,
        attempts: r.try_get(11)?,
        started_at: r.try_get(12)?,
        finished_at: r.try_get(13)?,
    })
}

fn load(client: &mut impl postgres::GenericClient, study: i64) -> Result<Vec<TrialRecord>> {
    let rows = client.query(
        &format!("SELECT {TRIAL_COLUMNS} FROM tuner_trials WHERE study_id = $1 ORDER BY number"),
        &[&study],
    )?;
    rows.iter()
        .map(|r| raw_from_row(r).and_then(RawTrial::decode))
        .collect()
}

impl PostgresStore {
    /// Connects to `url` and creates the tables if the database has none.
    ///
    /// An unreachable server is [`Error::Unreachable`] (after a 10 s connect
    /// timeout unless the URL sets `connect_timeout`); a database whose
    /// `tuner_*` tables have another schema is [`Error::WrongSchema`].
    pub fn connect(url: &str) -> Result<Self> {
        let target = format!("postgres {}", redact(url));
        let mut config = postgres::Config::from_str(url).map_err(|e| Error::Unreachable {
            target: target.clone(),
            message: format!("invalid connection string: {}", chain(&e)),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let client = config.connect(NoTls).map_err(|e| Error::Unreachable {
            target: target.clone(),
            message: chain(&e),
        })?;
        let mut store = PostgresStore { client, target };
        store.ensure_schema()?;
        Ok(store)
    }

    fn ensure_schema(&mut self) -> Result<()> {
        let target = self.target.clone();
        let wrong = |message: String| Error::WrongSchema {
            target: target.clone(),
            message,
        };
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])?;
        let tables: Vec<String> = tx
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name LIKE 'tuner\\_%'",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if tables.is_empty() {
            tx.batch_execute(SCHEMA)?;
            tx.execute(
                "INSERT INTO tuner_meta (key, value) VALUES ('schema_version', $1)",
                &[&SCHEMA_VERSION],
            )?;
            tx.commit()?;
            return Ok(());
        }
        if !tables.iter().any(|t| t == "tuner_meta") {
            return Err(wrong(format!(
                "tables {tables:?} exist but not `tuner_meta`"
            )));
        }
        let version: Option<String> = match tx.query_opt(
            "SELECT value::text FROM tuner_meta WHERE key::text = 'schema_version'",
            &[],
        ) {
            Ok(row) => row.map(|r| r.get(0)),
            Err(e) => return Err(wrong(chain(&e))),
        };
        if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(wrong(format!(
                "schema version {version:?}, this build needs {SCHEMA_VERSION:?}"
            )));
        }
        let probe = format!(
            "SELECT {TRIAL_COLUMNS}, token, lease_until, study_id FROM tuner_trials LIMIT 0"
        );
        if let Err(e) = tx.query(probe.as_str(), &[]) {
            return Err(wrong(chain(&e)));
        }
        tx.commit()?;
        Ok(())
    }
}

impl TrialStore for PostgresStore {
    fn describe(&self) -> String {
        self.target.clone()
    }

    fn open_study(&mut self, name: &str, fingerprint: &str, config: &str) -> Result<i64> {
        let mut tx = self.client.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO tuner_studies (name, fingerprint, config, created_at) \
                 VALUES ($1, $2, $3, {NOW}) ON CONFLICT (name) DO NOTHING"
            ),
            &[&name, &fingerprint, &config],
        )?;
        let row = tx.query_one(
            "SELECT id, fingerprint, config FROM tuner_studies WHERE name = $1",
            &[&name],
        )?;
        let (id, fp, stored): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        if fp != fingerprint {
            // Rolls back; the INSERT above did nothing since the name existed.
            drop(tx);
            return Err(Error::FingerprintMismatch {
                study: name.into(),
                stored_fingerprint: fp,
                stored,
                requested_fingerprint: fingerprint.into(),
                requested: config.into(),
            });
        }
        tx.commit()?;
        Ok(id)
    }

    fn load_trials(&mut self, study: i64) -> Result<Vec<TrialRecord>> {
        load(&mut self.client, study)
    }

    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        token: &str,
        lease: Duration,
        planner: &mut Planner<'_>,
    ) -> Result<ClaimOutcome> {
        let lease_s = lease.as_secs_f64();
        let mut tx = self.client.transaction()?;
        let orphan = tx.query_opt(
            &format!(
                "SELECT id FROM tuner_trials WHERE study_id = $1 AND state = 'running' \
                 AND lease_until < {NOW} ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED"
            ),
            &[&study],
        )?;
        let (id, created) = match orphan {
            Some(row) => {
                let id: i64 = row.get(0);
                tx.execute(
                    &format!(
                        "UPDATE tuner_trials SET worker = $2, token = $3, attempts = attempts + 1, \
                         lease_until = {NOW} + $4, started_at = {NOW}, intermediate = '{{}}', \
                         metrics = '{{}}' WHERE id = $1"
                    ),
                    &[&id, &worker, &token, &lease_s],
                )?;
                (id, false)
            }
            None => {
                tx.query_one(
                    "SELECT id FROM tuner_studies WHERE id = $1 FOR UPDATE",
                    &[&study],
                )?;
                let history = load(&mut tx, study)?;
                match planner(&history)? {
                    PlanDecision::Wait => return Ok(ClaimOutcome::Wait),
                    PlanDecision::Done => return Ok(ClaimOutcome::Done),
                    PlanDecision::New { number, plan } => {
                        let row = tx.query_one(
                            &format!(
                                "INSERT INTO tuner_trials (study_id, number, state, plan, worker, \
                                 token, attempts, lease_until, started_at) \
                                 VALUES ($1, $2, 'running', $3, $4, $5, 1, {NOW} + $6, {NOW}) \
                                 RETURNING id"
                            ),
                            &[
                                &study,
                                &(number as i64),
                                &serde_json::to_string(&plan)?,
                                &worker,
                                &token,
                                &lease_s,
                            ],
                        )?;
                        (row.get::<_, i64>(0), true)
                    }
                }
            }
        };
        let history = load(&mut tx, study)?;
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
        let n = self.client.execute(
            &format!(
                "UPDATE tuner_trials SET lease_until = {NOW} + $3 \
                 WHERE id = $1 AND token = $2 AND state = 'running'"
            ),
            &[&trial, &token, &lease.as_secs_f64()],
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
        let n = self.client.execute(
            &format!(
                "UPDATE tuner_trials SET lease_until = {NOW} + $3, params = $4, grid_path = $5, \
                 intermediate = $6, metrics = $7 \
                 WHERE id = $1 AND token = $2 AND state = 'running'"
            ),
            &[
                &trial,
                &token,
                &lease.as_secs_f64(),
                &e.params,
                &e.grid_path,
                &e.intermediate,
                &e.metrics,
            ],
        )?;
        Ok(n == 1)
    }

    fn finish(&mut self, trial: i64, token: &str, update: &FinishUpdate) -> Result<bool> {
        let e = EncodedUpdate::new(&update.running)?;
        let n = self.client.execute(
            &format!(
                "UPDATE tuner_trials SET state = $3, params = $4, grid_path = $5, \
                 intermediate = $6, metrics = $7, value = $8, error = $9, finished_at = {NOW} \
                 WHERE id = $1 AND token = $2 AND state = 'running'"
            ),
            &[
                &trial,
                &token,
                &update.state.as_str(),
                &e.params,
                &e.grid_path,
                &e.intermediate,
                &e.metrics,
                &update.value,
                &update.error,
            ],
        )?;
        Ok(n == 1)
    }

    fn release(&mut self, trial: i64, token: &str) -> Result<()> {
        let mut tx = self.client.transaction()?;
        let n = tx.execute(
            "DELETE FROM tuner_trials WHERE id = $1 AND token = $2 AND attempts = 1 \
             AND state = 'running'",
            &[&trial, &token],
        )?;
        if n == 0 {
            tx.execute(
                "UPDATE tuner_trials SET lease_until = 0 WHERE id = $1 AND token = $2 \
                 AND state = 'running'",
                &[&trial, &token],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
