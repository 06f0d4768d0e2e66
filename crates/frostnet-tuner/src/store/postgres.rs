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
    corrupt_cell, redact, ClaimOutcome, EncodedUpdate, FinishUpdate, Holder, PlanDecision, Planner,
    RawTrial, RunningUpdate, TrialRecord, TrialState, TrialStore, SCHEMA_VERSION, TRIAL_COLUMNS,
    V2_COLUMNS,
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
    failures INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    pid INTEGER,
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

fn raw_from_row(r: &Row, store: &str) -> Result<RawTrial> {
    let id: i64 = r.try_get(0)?;
    let col = |e: postgres::Error, column: &str| corrupt_cell(store, id, column, chain(&e));
    Ok(RawTrial {
        id,
        number: r.try_get(1).map_err(|e| col(e, "number"))?,
        state: r.try_get(2).map_err(|e| col(e, "state"))?,
        plan: r.try_get(3).map_err(|e| col(e, "plan"))?,
        params: r.try_get(4).map_err(|e| col(e, "params"))?,
        grid_path: r.try_get(5).map_err(|e| col(e, "grid_path"))?,
        intermediate: r.try_get(6).map_err(|e| col(e, "intermediate"))?,
        metrics: r.try_get(7).map_err(|e| col(e, "metrics"))?,
        value: r.try_get(8).map_err(|e| col(e, "value"))?,
        error: r.try_get(9).map_err(|e| col(e, "error"))?,
        worker: r.try_get(10).map_err(|e| col(e, "worker"))?,
        attempts: r.try_get(11).map_err(|e| col(e, "attempts"))?,
        started_at: r.try_get(12).map_err(|e| col(e, "started_at"))?,
        finished_at: r.try_get(13).map_err(|e| col(e, "finished_at"))?,
        failures: r
            .try_get::<_, i32>(14)
            .map_err(|e| col(e, "failures"))?
            .into(),
        preemptions: r
            .try_get::<_, i32>(15)
            .map_err(|e| col(e, "preemptions"))?
            .into(),
        host: r.try_get(16).map_err(|e| col(e, "host"))?,
        pid: r
            .try_get::<_, Option<i32>>(17)
            .map_err(|e| col(e, "pid"))?
            .map(i64::from),
        lease_until: r.try_get(18).map_err(|e| col(e, "lease_until"))?,
        released: r.try_get(19).map_err(|e| col(e, "token"))?,
    })
}

fn load(
    client: &mut impl postgres::GenericClient,
    study: i64,
    store: &str,
) -> Result<Vec<TrialRecord>> {
    let rows = client.query(
        &format!("SELECT {TRIAL_COLUMNS} FROM tuner_trials WHERE study_id = $1 ORDER BY number"),
        &[&study],
    )?;
    rows.iter()
        .map(|r| raw_from_row(r, store).and_then(|raw| raw.decode(store)))
        .collect()
}

/// `$PGPASSFILE`, else `~/.pgpass`, as libpq looks for it.
fn passfile_path() -> Option<std::path::PathBuf> {
    match std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(p) => Some(p.into()),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| std::path::Path::new(&h).join(".pgpass")),
    }
}

/// The password for a connection string without one, as libpq finds it:
/// `PGPASSWORD` (given as `env`), else the first matching line of the
/// password file. Keeping the password out of the URL keeps it off command
/// lines (`ps`) and out of shell histories.
fn password_for(
    config: &postgres::Config,
    env: Option<String>,
    passfile: Option<std::path::PathBuf>,
) -> Option<String> {
    if env.is_some() {
        return env;
    }
    let path = passfile?;
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            // libpq's rule: a password file others can read is not used.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "WARNING: password file \"{}\" has group or world access; permissions \
                 should be u=rw (0600) or less",
                path.display()
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    // A socket directory (or no host) matches `localhost`, as in libpq.
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| std::env::var("PGUSER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or(&user).to_string();
    pgpass_lookup(&text, [&host, &port, &db, &user])
}

/// The password of the first line of a `.pgpass` text whose fields
/// `host:port:database:user` match `want` (`*` matches anything; `\:` and
/// `\\` are a literal colon and backslash; `#` starts a comment line).
fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    'lines: for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields: Vec<String> = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        fields.last_mut()?.push(n);
                    }
                }
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut()?.push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        for (field, want) in fields.iter().zip(want) {
            if field != "*" && field != want {
                continue 'lines;
            }
        }
        return fields.pop();
    }
    None
}

impl PostgresStore {
    /// Connects to `url` and creates the tables if the database has none.
    ///
    /// An unreachable server is [`Error::Unreachable`] (after a 10 s connect
    /// timeout unless the URL sets `connect_timeout`); a database whose
    /// `tuner_*` tables have another schema is [`Error::WrongSchema`].
    pub fn connect(url: &str) -> Result<Self> {
        let mut store = Self::connect_only(url)?;
        store.ensure_schema()?;
        Ok(store)
    }

    /// Connects for reading `study`: the session is read-only
    /// (`default_transaction_read_only`) and nothing is created; a database
    /// without the tuner's tables is [`Error::StudyNotFound`].
    pub fn connect_read_only(url: &str, study: &str) -> Result<Self> {
        let mut store = Self::connect_only(url)?;
        store
            .client
            .batch_execute("SET default_transaction_read_only = on")?;
        let row = store.client.query_one(
            "SELECT to_regclass('tuner_meta') IS NOT NULL AND \
             to_regclass('tuner_studies') IS NOT NULL",
            &[],
        )?;
        if !row.get::<_, bool>(0) {
            return Err(Error::StudyNotFound {
                study: study.into(),
                store: store.location(),
            });
        }
        store.check_version()?;
        Ok(store)
    }

    fn connect_only(url: &str) -> Result<Self> {
        let target = format!("postgres {}", redact(url));
        let mut config = postgres::Config::from_str(url).map_err(|e| Error::Unreachable {
            target: target.clone(),
            message: format!("invalid connection string: {}", chain(&e)),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_password().is_none() {
            // The `postgres` crate reads no environment: do what libpq does.
            let env = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty());
            if let Some(password) = password_for(&config, env, passfile_path()) {
                config.password(password);
            }
        }
        let client = config.connect(NoTls).map_err(|e| Error::Unreachable {
            target: target.clone(),
            message: chain(&e),
        })?;
        Ok(PostgresStore { client, target })
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
        let version: Option<String> = tx
            .query_opt(
                "SELECT value::text FROM tuner_meta WHERE key::text = 'schema_version'",
                &[],
            )
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if version.as_deref() == Some("1") {
            // Version 1 lacks the failure/preemption counts and the holder.
            for column in V2_COLUMNS {
                tx.batch_execute(&format!("ALTER TABLE tuner_trials ADD COLUMN {column}"))?;
            }
            tx.execute(
                "UPDATE tuner_meta SET value = $1 WHERE key = 'schema_version'",
                &[&SCHEMA_VERSION],
            )?;
            tx.commit()?;
        } else {
            drop(tx);
        }
        self.check_version()
    }

    /// Checks the schema version and the columns of existing tables.
    fn check_version(&mut self) -> Result<()> {
        let target = self.target.clone();
        let wrong = |message: String| Error::WrongSchema {
            target: target.clone(),
            message,
        };
        let mut tx = self.client.transaction()?;
        let version: Option<String> = match tx.query_opt(
            "SELECT value::text FROM tuner_meta WHERE key::text = 'schema_version'",
            &[],
        ) {
            Ok(row) => row.map(|r| r.get(0)),
            Err(e) => return Err(wrong(chain(&e))),
        };
        if version.as_deref() == Some("1") {
            return Err(wrong(
                "schema version \"1\" (an older frostnet): run a worker on it once to upgrade it"
                    .into(),
            ));
        }
        if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(wrong(format!(
                "schema version {version:?}, this build needs {SCHEMA_VERSION:?}"
            )));
        }
        let probe = format!("SELECT {TRIAL_COLUMNS}, token, study_id FROM tuner_trials LIMIT 0");
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

    fn location(&self) -> String {
        self.target
            .strip_prefix("postgres ")
            .unwrap_or(&self.target)
            .to_string()
    }

    fn find_study(&mut self, name: &str) -> Result<Option<(i64, String)>> {
        let row = self.client.query_opt(
            "SELECT id, config FROM tuner_studies WHERE name = $1",
            &[&name],
        )?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
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
        load(&mut self.client, study, &self.target)
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
        let lease_s = lease.as_secs_f64();
        let target = self.target.clone();
        let mut tx = self.client.transaction()?;
        // (id, preempted): a lease that ran out while held, or one given back.
        let mut orphan: Option<(i64, bool)> = tx
            .query_opt(
                &format!(
                    "SELECT id, token IS NOT NULL FROM tuner_trials WHERE study_id = $1 \
                     AND state = 'running' AND lease_until < {NOW} ORDER BY number LIMIT 1 \
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&study],
            )?
            .map(|r| (r.get(0), r.get(1)));
        if orphan.is_none() {
            // A lease still running, held by a process of this host that is gone.
            let held = tx.query(
                "SELECT id, pid FROM tuner_trials WHERE study_id = $1 AND state = 'running' \
                 AND token IS NOT NULL AND host = $2 AND pid IS NOT NULL ORDER BY number \
                 FOR UPDATE SKIP LOCKED",
                &[&study, &holder.host],
            )?;
            orphan = held
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i32>(1)))
                .find(|&(_, pid)| {
                    u32::try_from(pid).is_ok_and(|p| holder.holder_is_dead(&holder.host, p))
                })
                .map(|(id, _)| (id, true));
        }
        let pid = i32::try_from(holder.pid).ok();
        let (id, created) = match orphan {
            Some((id, preempted)) => {
                tx.execute(
                    &format!(
                        "UPDATE tuner_trials SET worker = $2, token = $3, attempts = attempts + 1, \
                         lease_until = {NOW} + $4, started_at = {NOW}, intermediate = '{{}}', \
                         metrics = '{{}}', preemptions = preemptions + $5, host = $6, pid = $7 \
                         WHERE id = $1"
                    ),
                    &[
                        &id,
                        &worker,
                        &token,
                        &lease_s,
                        &(preempted as i32),
                        &holder.host,
                        &pid,
                    ],
                )?;
                (id, false)
            }
            None => {
                tx.query_one(
                    "SELECT id FROM tuner_studies WHERE id = $1 FOR UPDATE",
                    &[&study],
                )?;
                let history = load(&mut tx, study, &target)?;
                match planner(&history)? {
                    PlanDecision::Wait => return Ok(ClaimOutcome::Wait),
                    PlanDecision::Done => return Ok(ClaimOutcome::Done),
                    PlanDecision::New { number, plan } => {
                        let row = tx.query_one(
                            &format!(
                                "INSERT INTO tuner_trials (study_id, number, state, plan, worker, \
                                 token, attempts, lease_until, started_at, host, pid) \
                                 VALUES ($1, $2, 'running', $3, $4, $5, 1, {NOW} + $6, {NOW}, \
                                 $7, $8) RETURNING id"
                            ),
                            &[
                                &study,
                                &(number as i64),
                                &serde_json::to_string(&plan)?,
                                &worker,
                                &token,
                                &lease_s,
                                &holder.host,
                                &pid,
                            ],
                        )?;
                        (row.get::<_, i64>(0), true)
                    }
                }
            }
        };
        let history = load(&mut tx, study, &target)?;
        tx.commit()?;
        ClaimOutcome::claimed(history, id, created)
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
        let n = if update.retry {
            self.client.execute(
                &format!(
                    "UPDATE tuner_trials SET failures = failures + 1, params = $3, \
                     grid_path = $4, intermediate = $5, metrics = $6, error = $7, \
                     finished_at = {NOW}, lease_until = 0, token = NULL \
                     WHERE id = $1 AND token = $2 AND state = 'running'"
                ),
                &[
                    &trial,
                    &token,
                    &e.params,
                    &e.grid_path,
                    &e.intermediate,
                    &e.metrics,
                    &update.error,
                ],
            )?
        } else {
            let failed = (update.state == TrialState::Failed) as i32;
            self.client.execute(
                &format!(
                    "UPDATE tuner_trials SET state = $3, params = $4, grid_path = $5, \
                     intermediate = $6, metrics = $7, value = $8, error = $9, \
                     finished_at = {NOW}, failures = failures + $10 \
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
                    &failed,
                ],
            )?
        };
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
                "UPDATE tuner_trials SET lease_until = 0, token = NULL WHERE id = $1 \
                 AND token = $2 AND state = 'running'",
                &[&trial, &token],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> postgres::Config {
        postgres::Config::from_str(url).unwrap()
    }

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\n\
                    db.example:5432:other:alice:wrong\n\
                    db.example:5432:*:alice:pa\\:ss\\\\word\n\
                    *:*:*:*:fallback\n";
        let want = ["db.example", "5432", "study", "alice"];
        assert_eq!(pgpass_lookup(text, want).as_deref(), Some("pa:ss\\word"));
        assert_eq!(
            pgpass_lookup(text, ["other", "1", "x", "bob"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("short:line\n", want), None);
        // A password may hold unescaped colons after the fourth.
        assert_eq!(
            pgpass_lookup("h:1:d:u:a:b\n", ["h", "1", "d", "u"]).as_deref(),
            Some("a:b")
        );
    }

    #[test]
    fn password_from_env_then_private_passfile() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "127.0.0.1:6000:frost:tuner:from-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = config("postgres://tuner@127.0.0.1:6000/frost");
        // PGPASSWORD wins over the file.
        assert_eq!(
            password_for(&c, Some("from-env".into()), Some(file.clone())).as_deref(),
            Some("from-env")
        );
        assert_eq!(
            password_for(&c, None, Some(file.clone())).as_deref(),
            Some("from-file")
        );
        // No line for another port.
        let other = config("postgres://tuner@127.0.0.1:6001/frost");
        assert_eq!(password_for(&other, None, Some(file.clone())), None);
        // A file others can read is ignored, as libpq does.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(password_for(&c, None, Some(file.clone())), None);
        assert_eq!(
            password_for(&c, None, Some(dir.path().join("missing"))),
            None
        );
    }
}
