//! Issue #13, point 7: trials that crash. A panic in the objective fails its
//! trial (with the message) instead of the worker; a failed trial is retried
//! at most `max_retries` times and then never claimed again; a trial whose
//! worker died is preempted (not failed) and taken over at once when its
//! holder is provably gone; a worker that must wait says what for.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{spawn_worker, wait_for_start, WORKER};
use frostnet_tuner::{Algorithm, Direction, Error, SpaceError, Storage, Study, TrialState};

fn builder(path: &Path) -> frostnet_tuner::StudyBuilder {
    Study::builder("crash")
        .storage(Storage::sqlite(path))
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(1))
        .max_trials(5)
}

/// Runs the study with an objective that panics on trial `bad` and fails
/// (returns an error) on the first attempt of trial `flaky`; returns the
/// results and the number of calls per trial.
fn run_crashing(
    path: &Path,
    max_retries: Option<u32>,
) -> (frostnet_tuner::Results, BTreeMap<u64, u32>) {
    let calls = RefCell::new(BTreeMap::<u64, u32>::new());
    let mut b = builder(path);
    if let Some(n) = max_retries {
        b = b.max_retries(n);
    }
    let mut study = b.open().unwrap();
    let results = study
        .optimize(|hp, t| -> Result<(), String> {
            let x = hp.int("x", 0, 6).map_err(|e| e.to_string())?;
            let n = t.number();
            let count = {
                let mut c = calls.borrow_mut();
                let e = c.entry(n).or_insert(0);
                *e += 1;
                *e
            };
            if n == 2 {
                // What `Dense::new(0)` did with a sampled `units = 0`.
                panic!("units must be > 0, got 0");
            }
            if n == 3 && count == 1 {
                return Err("loss diverged".into());
            }
            let _ = t.report(0, &[("loss", (x as f64 - 3.0).powi(2))]);
            Ok(())
        })
        .expect("the other trials complete");
    (results, calls.into_inner())
}

#[test]
fn a_panicking_trial_fails_with_its_message_and_is_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let (r, calls) = run_crashing(&path, None);
    // Default max_retries = 1: the panicking trial ran twice, then stayed failed.
    assert_eq!(calls[&2], 2, "{calls:?}");
    let t2 = &r.trials[2];
    assert_eq!(t2.state, TrialState::Failed);
    assert_eq!(
        t2.error.as_deref(),
        Some("panicked: units must be > 0, got 0")
    );
    assert_eq!((t2.attempts, t2.failures, t2.preemptions), (2, 2, 0));
    // The trial that failed once completed on its retry.
    assert_eq!(calls[&3], 2);
    let t3 = &r.trials[3];
    assert_eq!(t3.state, TrialState::Complete);
    assert_eq!((t3.failures, t3.error.as_deref()), (1, None));
    assert!(r.to_string().contains("failed 1x before"), "{r}");
    for n in [0, 1, 4] {
        assert_eq!(calls[&n], 1);
        assert_eq!(r.trials[n as usize].state, TrialState::Complete);
    }

    // Running the finished study again claims nothing: failed stays failed.
    let (_, again) = run_crashing(&path, None);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn max_retries_zero_runs_a_failing_trial_once() {
    let dir = tempfile::tempdir().unwrap();
    let (r, calls) = run_crashing(&dir.path().join("s.sqlite3"), Some(0));
    assert_eq!((calls[&2], calls[&3]), (1, 1), "{calls:?}");
    assert_eq!(r.trials[3].state, TrialState::Failed);
    assert_eq!(r.trials[3].error.as_deref(), Some("loss diverged"));
}

#[test]
fn an_always_panicking_objective_does_not_take_the_worker_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut study = builder(&dir.path().join("s.sqlite3")).open().unwrap();
    let mut calls = 0;
    let err = study
        .optimize(|hp, _| -> Result<(), SpaceError> {
            calls += 1;
            hp.int("units", 0, 0)?;
            panic!("Dense: units must be > 0");
        })
        .unwrap_err();
    match &err {
        Error::NoCompletedTrial { last_error, .. } => {
            assert_eq!(last_error, "panicked: Dense: units must be > 0")
        }
        other => panic!("{other}"),
    }
    // 5 trials, each run 1 + max_retries = 2 times.
    assert_eq!(calls, 10);
    let r = study.results().unwrap();
    assert_eq!(r.count(TrialState::Failed), 5);
}

fn worker_args<'a>(db: &'a str, log: &'a str, lease_ms: &'a str) -> Vec<&'a str> {
    vec![
        "--storage",
        db,
        "--study",
        "dead",
        "--algorithm",
        "random",
        "--seed",
        "5",
        "--trials",
        "4",
        "--log",
        log,
        "--lease-ms",
        lease_ms,
        "--heartbeat-ms",
        "200",
        "--poll-ms",
        "20",
        "--sleep-ms",
        "2",
    ]
}

fn results(db: &Path) -> frostnet_tuner::Results {
    Study::open_existing("dead", &Storage::sqlite(db))
        .unwrap()
        .results()
        .unwrap()
}

/// A worker killed mid-trial on this host: its lease (60 s) has not run out,
/// but its process is gone, so the next worker takes the trial over at once.
#[test]
fn a_dead_holder_on_this_host_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite3");
    let log = dir.path().join("runs.log");
    let args = worker_args(db.to_str().unwrap(), log.to_str().unwrap(), "60000");
    let mut hang = args.clone();
    hang.extend(["--hang-on", "1"]);
    let mut child = spawn_worker(&hang);
    wait_for_start(&log, 1, Duration::from_secs(30));
    // Let the hanging attempt report once (the trial's state is stored).
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mid = results(&db);
    assert_eq!(mid.trials[1].state, TrialState::Preempted, "{mid}");

    let t0 = Instant::now();
    let out = spawn_worker(&args).wait_with_output().unwrap();
    let waited = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        waited < Duration::from_secs(30),
        "waited {waited:?} for a dead worker's 60 s lease"
    );
    let r = results(&db);
    assert_eq!(r.count(TrialState::Complete), 4, "{r}");
    let t1 = &r.trials[1];
    assert_eq!((t1.attempts, t1.preemptions, t1.failures), (2, 1, 0));
    assert!(r.to_string().contains("preempted 1x"), "{r}");
}

/// A lease held by a process elsewhere cannot be proved dead: the worker
/// waits for it to run out and says what it waits for.
#[test]
fn a_waiting_worker_says_what_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite3");
    let log = dir.path().join("runs.log");
    let args = worker_args(db.to_str().unwrap(), log.to_str().unwrap(), "60000");
    let mut hang = args.clone();
    hang.extend(["--hang-on", "1"]);
    let mut child = spawn_worker(&hang);
    wait_for_start(&log, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // Pretend the holder runs on another machine, its lease 3 s from now.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        c.execute(
            "UPDATE tuner_trials SET host = 'elsewhere', pid = 4242, lease_until = ?1 \
             WHERE number = 1",
            [now + 3.0],
        )
        .unwrap();
    }
    let t0 = Instant::now();
    let out = std::process::Command::new(WORKER)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(t0.elapsed() >= Duration::from_millis(2500), "did not wait");
    let line = stderr
        .lines()
        .find(|l| l.contains("waits for trial 1 "))
        .unwrap_or_else(|| panic!("no wait notice in {stderr}"));
    assert!(line.contains("pid 4242 on elsewhere"), "{line}");
    assert!(line.contains("lease expires in"), "{line}");
    let r = results(&db);
    assert_eq!(r.count(TrialState::Complete), 4, "{r}");
    assert_eq!(r.trials[1].preemptions, 1);
}
