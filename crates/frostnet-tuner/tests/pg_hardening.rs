//! Issue #13 points 6 and 7 on PostgreSQL: reading creates nothing, failed
//! trials are retried once, a version-1 store is upgraded, and a dead
//! worker's trial on this host is taken over at once. `#[ignore]`d without
//! `FROSTNET_PG_URL` (failing instead when `CI=true`: see `build.rs`).

mod common;

use std::time::{Duration, Instant};

use common::{pg_url, spawn_worker, unique, wait_for_start};
use frostnet_tuner::{Algorithm, Direction, Error, Storage, Study, TrialState};

/// A URL whose tables live in a new, empty schema of their own.
fn private_schema(url: &str, prefix: &str) -> String {
    let schema = unique(prefix).replace('-', "_");
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

fn builder(url: &str, name: &str) -> frostnet_tuner::StudyBuilder {
    Study::builder(name)
        .storage(Storage::postgres(url))
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(1))
        .max_trials(4)
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_reading_creates_nothing_and_failed_trials_retry_once() {
    let url = private_schema(&pg_url("postgres_reading_creates_nothing"), "ro");
    // No tables at all: not found, and none are created.
    let err = Study::open_existing("s", &Storage::postgres(&url))
        .err()
        .unwrap();
    assert!(matches!(err, Error::StudyNotFound { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("study 's' does not exist in postgres://"));
    let mut study = builder(&url, "s").open().unwrap();
    let mut calls = [0u32; 4];
    let r = study
        .optimize(|hp, t| -> Result<(), String> {
            let x = hp.int("x", 0, 6).map_err(|e| e.to_string())?;
            calls[t.number() as usize] += 1;
            if t.number() == 1 {
                panic!("boom");
            }
            let _ = t.report(0, &[("loss", x as f64)]);
            Ok(())
        })
        .unwrap();
    assert_eq!(calls, [1, 2, 1, 1]);
    assert_eq!(r.trials[1].state, TrialState::Failed);
    assert_eq!(r.trials[1].error.as_deref(), Some("panicked: boom"));
    assert_eq!(r.trials[1].failures, 2);

    let read = Study::open_existing("s", &Storage::postgres(&url)).unwrap();
    assert_eq!(read.results().unwrap(), r);
    assert_eq!(
        read.configuration(),
        "objective loss (minimize), algorithm random(seed=1), pruner none"
    );
    let err = Study::open_existing("other", &Storage::postgres(&url))
        .err()
        .unwrap();
    assert!(matches!(err, Error::StudyNotFound { .. }), "{err}");
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_version_1_store_is_upgraded_by_a_worker() {
    let base = pg_url("postgres_version_1_store_is_upgraded");
    let url = private_schema(&base, "v1");
    let mut study = builder(&url, "s").open().unwrap();
    let before = study.optimize(common::quadratic).unwrap();
    drop(study);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "ALTER TABLE tuner_trials DROP COLUMN failures, DROP COLUMN preemptions, \
             DROP COLUMN host, DROP COLUMN pid; \
             UPDATE tuner_meta SET value = '1' WHERE key = 'schema_version'",
        )
        .unwrap();
    let err = Study::open_existing("s", &Storage::postgres(&url))
        .err()
        .unwrap();
    assert!(matches!(err, Error::WrongSchema { .. }), "{err}");
    let mut study = builder(&url, "s").max_trials(5).open().unwrap();
    assert_eq!(study.results().unwrap(), before);
    let r = study.optimize(common::quadratic).unwrap();
    assert_eq!(r.trials.len(), 5);
    assert_eq!(&r.trials[..4], &before.trials[..]);
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_dead_holder_on_this_host_is_taken_over_at_once() {
    let url = pg_url("postgres_dead_holder");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let name = unique("dead");
    let args = [
        "--storage",
        url.as_str(),
        "--study",
        name.as_str(),
        "--trials",
        "4",
        "--seed",
        "3",
        "--log",
        log.to_str().unwrap(),
        "--lease-ms",
        "60000",
        "--heartbeat-ms",
        "200",
        "--poll-ms",
        "20",
    ];
    let mut hang = args.to_vec();
    hang.extend(["--hang-on", "2"]);
    let mut child = spawn_worker(&hang);
    wait_for_start(&log, 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = Instant::now();
    let out = spawn_worker(&args).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let r = Study::open_existing(&name, &Storage::postgres(&url))
        .unwrap()
        .results()
        .unwrap();
    assert_eq!(r.count(TrialState::Complete), 4, "{r}");
    assert_eq!((r.trials[2].preemptions, r.trials[2].failures), (1, 0));
}
