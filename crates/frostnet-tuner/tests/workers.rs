//! Real worker processes: resume after `kill -9` on SQLite, and several
//! workers sharing one PostgreSQL study (`#[ignore]`d without
//! `FROSTNET_PG_URL`, failing instead when `CI=true`: see `build.rs`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{finish_worker, log_counts, pg_url, spawn_worker, unique, wait_for_start};
use frostnet_tuner::{Algorithm, Direction, Results, Storage, Study, TrialState};

/// Opens the study the worker binary runs (same fingerprint) to read it.
fn worker_results(storage: Storage, study: &str, algorithm: Algorithm) -> Results {
    Study::builder(study)
        .storage(storage)
        .objective("loss", Direction::Minimize)
        .algorithm(algorithm)
        .max_trials(1)
        .open()
        .unwrap()
        .results()
        .unwrap()
}

/// Every trial ended exactly once; `rerun` started twice, the others once.
fn assert_ran_once(log: &Path, trials: u64, rerun: Option<u64>) {
    let (starts, ends) = log_counts(log);
    for n in 0..trials {
        assert_eq!(
            ends.get(&n),
            Some(&1),
            "trial {n} ended {:?} times",
            ends.get(&n)
        );
        let want = if Some(n) == rerun { 2 } else { 1 };
        assert_eq!(
            starts.get(&n),
            Some(&want),
            "trial {n} started {:?} times",
            starts.get(&n)
        );
    }
    assert_eq!(
        ends.len() as u64,
        trials,
        "unexpected trials in the log: {ends:?}"
    );
}

/// Kills the worker whose pid is on the `start N <pid>` line, among `children`.
fn kill_runner_of(line: &str, children: &mut Vec<std::process::Child>) {
    let pid: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    let i = children
        .iter()
        .position(|c| c.id() == pid)
        .expect("trial run by one of our workers");
    let mut c = children.remove(i);
    // Let it report once and enter its hang, then SIGKILL (no cleanup runs).
    std::thread::sleep(Duration::from_millis(100));
    c.kill().unwrap();
    let status = c.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn sqlite_resume_after_worker_is_killed_mid_trial() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("study.sqlite3");
    let log = dir.path().join("runs.log");
    let (db_s, log_s) = (db.to_str().unwrap(), log.to_str().unwrap());
    let common = [
        "--storage",
        db_s,
        "--study",
        "resume",
        "--algorithm",
        "random",
        "--seed",
        "5",
        "--trials",
        "8",
        "--log",
        log_s,
        "--lease-ms",
        "1500",
        "--heartbeat-ms",
        "100",
        "--poll-ms",
        "20",
        "--sleep-ms",
        "2",
    ];
    let mut args = common.to_vec();
    args.extend(["--hang-on", "3"]);
    let mut children = vec![spawn_worker(&args)];
    let line = wait_for_start(&log, 3, Duration::from_secs(30));
    kill_runner_of(&line, &mut children);

    // The killed worker left trial 3 running with a lease that will run out.
    let storage = Storage::sqlite(&db);
    let mid = worker_results(storage.clone(), "resume", Algorithm::random(5));
    assert_eq!(mid.count(TrialState::Complete), 3);
    // Its process is gone: shown as preempted (not failed), and taken over at once.
    assert_eq!(mid.trials[3].state, TrialState::Preempted);

    let t0 = Instant::now();
    let (best_n, best_v, best_p) = finish_worker(spawn_worker(&common));
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_ran_once(&log, 8, Some(3));
    let r = worker_results(storage, "resume", Algorithm::random(5));
    assert_eq!(r.count(TrialState::Complete), 8, "{r}");
    assert_eq!(r.trials[3].attempts, 2);
    assert!(r
        .trials
        .iter()
        .filter(|t| t.number != 3)
        .all(|t| t.attempts == 1));

    // Same seed, one uninterrupted worker: same best.
    let db2 = dir.path().join("fresh.sqlite3");
    let fresh = [
        "--storage",
        db2.to_str().unwrap(),
        "--study",
        "resume",
        "--algorithm",
        "random",
        "--seed",
        "5",
        "--trials",
        "8",
        "--sleep-ms",
        "1",
    ];
    assert_eq!(
        finish_worker(spawn_worker(&fresh)),
        (best_n, best_v, best_p)
    );
}

/// Three workers share one study: every trial runs once and the best is
/// the one a single worker finds with the same seed.
fn pg_multi_worker(algorithm: &str, trials: &str, alg: Algorithm, test: &str) {
    let url = pg_url(test);
    let dir = tempfile::tempdir().unwrap();
    let study = unique(&format!("multi-{algorithm}"));
    let log = dir.path().join("runs.log");
    let args = [
        "--storage",
        url.as_str(),
        "--study",
        study.as_str(),
        "--algorithm",
        algorithm,
        "--seed",
        "11",
        "--trials",
        trials,
        "--log",
        log.to_str().unwrap(),
        "--sleep-ms",
        "3",
        "--poll-ms",
        "10",
    ];
    let workers: Vec<_> = (0..3).map(|_| spawn_worker(&args)).collect();
    let bests: Vec<_> = workers.into_iter().map(finish_worker).collect();
    assert!(
        bests.iter().all(|b| *b == bests[0]),
        "workers disagree: {bests:?}"
    );
    let r = worker_results(Storage::postgres(url.clone()), &study, alg.clone());
    let n = r.trials.len() as u64;
    assert_ran_once(&log, n, None);
    assert!(r
        .trials
        .iter()
        .all(|t| t.state == TrialState::Complete && t.attempts == 1));
    let worker_names: std::collections::BTreeSet<_> =
        r.trials.iter().filter_map(|t| t.worker.clone()).collect();
    eprintln!("{test}: {n} trials run by {} workers", worker_names.len());

    let single = unique(&format!("single-{algorithm}"));
    let one = [
        "--storage",
        url.as_str(),
        "--study",
        single.as_str(),
        "--algorithm",
        algorithm,
        "--seed",
        "11",
        "--trials",
        trials,
        "--sleep-ms",
        "0",
    ];
    let single_best = finish_worker(spawn_worker(&one));
    let r1 = worker_results(Storage::postgres(url), &single, alg);
    if algorithm == "hyperband" {
        // Trial numbers follow the order slots were claimed in; the slots,
        // their values and budgets are the same.
        assert_eq!(
            (single_best.1, &single_best.2),
            (bests[0].1, &bests[0].2),
            "same best as one worker"
        );
        let slots = |r: &Results| {
            let mut v: Vec<String> = r
                .trials
                .iter()
                .map(|t| format!("{:?} {:?} {:?}", t.max_epochs, t.params, t.value))
                .collect();
            v.sort();
            v
        };
        assert_eq!(slots(&r), slots(&r1), "same trials as one worker");
    } else {
        assert_eq!(single_best, bests[0], "same best as one worker");
        let params = |r: &Results| {
            let mut v: Vec<_> = r
                .trials
                .iter()
                .map(|t| (t.number, t.params.clone(), t.value))
                .collect();
            v.sort_by_key(|x| x.0);
            v
        };
        assert_eq!(params(&r), params(&r1), "same trials as one worker");
    }
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_three_workers_hyperband_match_one_worker() {
    pg_multi_worker(
        "hyperband",
        "100",
        Algorithm::hyperband(11, 9, 3),
        "postgres_three_workers_hyperband",
    );
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_three_workers_random_match_one_worker() {
    pg_multi_worker(
        "random",
        "15",
        Algorithm::random(11),
        "postgres_three_workers_random",
    );
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_three_workers_grid_match_one_worker() {
    pg_multi_worker(
        "grid",
        "20",
        Algorithm::grid(),
        "postgres_three_workers_grid",
    );
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_worker_killed_mid_trial_study_completes() {
    let url = pg_url("postgres_worker_killed_mid_trial");
    let dir = tempfile::tempdir().unwrap();
    let study = unique("kill");
    let log = dir.path().join("runs.log");
    let args = [
        "--storage",
        url.as_str(),
        "--study",
        study.as_str(),
        "--algorithm",
        "random",
        "--seed",
        "2",
        "--trials",
        "10",
        "--log",
        log.to_str().unwrap(),
        "--sleep-ms",
        "3",
        "--lease-ms",
        "1500",
        "--heartbeat-ms",
        "100",
        "--poll-ms",
        "20",
        "--hang-on",
        "2",
    ];
    let mut children: Vec<_> = (0..2).map(|_| spawn_worker(&args)).collect();
    let line = wait_for_start(&log, 2, Duration::from_secs(30));
    kill_runner_of(&line, &mut children);
    // The survivor takes trial 2 over once its lease runs out.
    let survivor = children.pop().unwrap();
    let best = finish_worker(survivor);
    assert_ran_once(&log, 10, Some(2));
    let r = worker_results(Storage::postgres(url.clone()), &study, Algorithm::random(2));
    assert_eq!(r.count(TrialState::Complete), 10, "{r}");
    assert_eq!(r.trials[2].attempts, 2);

    let single = unique("kill-single");
    let one = [
        "--storage",
        url.as_str(),
        "--study",
        single.as_str(),
        "--algorithm",
        "random",
        "--seed",
        "2",
        "--trials",
        "10",
        "--sleep-ms",
        "0",
    ];
    assert_eq!(finish_worker(spawn_worker(&one)), best);
}

#[test]
#[cfg_attr(
    not(frostnet_pg_tests),
    ignore = "needs PostgreSQL: set FROSTNET_PG_URL (eval \"$(bash .ci/postgres.sh start)\")"
)]
fn postgres_fingerprint_and_schema_errors() {
    let url = pg_url("postgres_fingerprint_and_schema_errors");
    let name = unique("fp");
    let open = |seed| {
        Study::builder(name.clone())
            .storage(Storage::postgres(url.clone()))
            .objective("loss", Direction::Minimize)
            .algorithm(Algorithm::random(seed))
            .max_trials(3)
            .open()
    };
    let mut s = open(1).unwrap();
    let before = s.optimize(common::quadratic).unwrap();
    match open(2) {
        Err(frostnet_tuner::Error::FingerprintMismatch { .. }) => {}
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("changed study opened"),
    }
    assert_eq!(open(1).unwrap().results().unwrap(), before);

    // A schema holding `tuner_meta` of another version.
    let schema = unique("wrong").replace('-', "_");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.tuner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO {schema}.tuner_meta VALUES ('schema_version', '42');"
        ))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let wrong_url = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let err = Storage::postgres(wrong_url).connect().err().unwrap();
    assert!(
        matches!(err, frostnet_tuner::Error::WrongSchema { .. }),
        "{err}"
    );
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

/// A trial that runs longer than its lease without reporting keeps it: the
/// heartbeat thread renews it, so a second worker never steals the trial.
#[test]
fn heartbeat_keeps_long_trials_owned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hb.sqlite3");
    let runs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..2)
        .map(|w| {
            let (db, runs) = (db.clone(), runs.clone());
            std::thread::spawn(move || {
                let mut study = Study::builder("long")
                    .storage(Storage::sqlite(&db))
                    .objective("loss", Direction::Minimize)
                    .algorithm(Algorithm::random(1))
                    .max_trials(3)
                    .lease_timeout(Duration::from_millis(500))
                    .heartbeat_interval(Duration::from_millis(50))
                    .poll_interval(Duration::from_millis(10))
                    .worker_name(format!("w{w}"))
                    .open()
                    .unwrap();
                study
                    .optimize(|hp, t| -> Result<(), frostnet_tuner::SpaceError> {
                        let x = hp.int("x", 0, 9)?;
                        runs.lock().unwrap().push(t.number());
                        if t.number() == 0 {
                            // Three leases long, silent.
                            std::thread::sleep(Duration::from_millis(1200));
                        }
                        let _ = t.report(0, &[("loss", x as f64)]);
                        Ok(())
                    })
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<Results> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut runs = runs.lock().unwrap().clone();
    runs.sort_unstable();
    assert_eq!(runs, vec![0, 1, 2], "every trial ran once");
    assert_eq!(
        results[0], results[1],
        "both workers return the same results"
    );
    assert!(results[0].trials.iter().all(|t| t.attempts == 1));
    assert!(results[0].trials[0].duration.unwrap() >= Duration::from_millis(1200));
}

/// Three processes share one SQLite file (claims under `BEGIN IMMEDIATE`):
/// every trial runs once, and the best is a single worker's.
#[test]
fn sqlite_three_worker_processes_share_a_study() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.sqlite3");
    let log = dir.path().join("runs.log");
    let args = [
        "--storage",
        db.to_str().unwrap(),
        "--study",
        "shared",
        "--algorithm",
        "random",
        "--seed",
        "21",
        "--trials",
        "15",
        "--log",
        log.to_str().unwrap(),
        "--sleep-ms",
        "3",
        "--poll-ms",
        "10",
    ];
    let workers: Vec<_> = (0..3).map(|_| spawn_worker(&args)).collect();
    let bests: Vec<_> = workers.into_iter().map(finish_worker).collect();
    assert!(bests.iter().all(|b| *b == bests[0]), "{bests:?}");
    assert_ran_once(&log, 15, None);
    let r = worker_results(Storage::sqlite(&db), "shared", Algorithm::random(21));
    assert_eq!(r.count(TrialState::Complete), 15);

    let single = dir.path().join("single.sqlite3");
    let one = [
        "--storage",
        single.to_str().unwrap(),
        "--study",
        "shared",
        "--seed",
        "21",
        "--trials",
        "15",
        "--sleep-ms",
        "0",
    ];
    assert_eq!(finish_worker(spawn_worker(&one)), bests[0]);
}
