//! Issue #13 for `frostnet tune`: reading a study creates nothing and needs only the store and
//! the study (point 6, 10); damage is reported, never started over (6); the last line reads as
//! a user writes values (10); a killed trial resumes from its checkpoint and ends exactly as an
//! uninterrupted one (7); the store reaches workers through the environment, not their command
//! lines (11); a closed pipe ends `tune status` quietly (1).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{frostnet, scratch};

const EXE: &str = env!("CARGO_BIN_EXE_frostnet");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn store_of(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("s.sqlite3").display())
}

/// `tune status` of a store.
fn status(store: &str) -> Output {
    frostnet(&["tune", "status", "--store", store])
}

#[test]
fn status_of_a_missing_store_fails_and_creates_nothing() {
    let dir = scratch("missing");
    let path = dir.join("none.sqlite3");
    let out = status(&format!("sqlite:{}", path.display()));
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        format!(
            "frostnet: study 'digits_mlp' does not exist in {}\n",
            path.display()
        )
    );
    assert!(!path.exists(), "tune status created {}", path.display());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_sqlite_path_is_a_usage_error() {
    for args in [
        &["tune", "status", "--store", "sqlite:"][..],
        &["tune", "--store", "sqlite:", "--trials", "1"][..],
    ] {
        let out = frostnet(args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("needs a path"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_truncated_store_is_reported_and_not_started_over() {
    let dir = scratch("truncated");
    let store = store_of(&dir);
    let run = [
        "tune", "worker", "--store", &store, "--trials", "1", "--epochs", "1",
    ];
    let out = frostnet(&run);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let db = dir.join("s.sqlite3");
    std::fs::write(&db, b"").unwrap();
    let expected = format!(
        "frostnet: {} is not a frostnet study database: ",
        db.display()
    );
    for out in [frostnet(&run), status(&store)] {
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.starts_with(&expected), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the file was rewritten"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_needs_only_the_store_and_the_last_line_reads_as_written() {
    let dir = scratch("status");
    let store = store_of(&dir);
    let out = frostnet(&[
        "tune",
        "--store",
        &store,
        "--algorithm",
        "tpe",
        "--seed",
        "9",
        "--trials",
        "2",
        "--epochs",
        "1",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap();
    // `best trial: #1 lr=0.0065, num_layers=2, units_0=64, ...; model saved to ...`
    let params = last
        .strip_prefix("best trial: #")
        .and_then(|l| l.split_once(' '))
        .and_then(|(_, rest)| rest.split_once("; model saved to "))
        .map(|(p, _)| p)
        .unwrap_or_else(|| panic!("last line: {last}"));
    for kv in params.split(", ") {
        let (k, v) = kv
            .split_once('=')
            .unwrap_or_else(|| panic!("{kv} in {last}"));
        match k {
            "lr" => {
                let lr: f64 = v.parse().unwrap();
                assert!((1e-4..=1e-1).contains(&lr) && !v.contains('e'), "{last}");
                assert!(v.len() <= 8, "more digits than a user writes: {last}");
            }
            _ => assert!(v.parse::<u32>().is_ok(), "{last}"),
        }
    }
    assert!(params.contains("num_layers="), "{last}");

    // Reading: no --algorithm/--seed/--trials/--epochs, and the stored configuration is shown.
    let out = status(&store);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = shown.lines().next().unwrap();
    assert!(
        config.starts_with("configuration: objective val_accuracy (maximize), algorithm tpe("),
        "{config}"
    );
    assert!(config.contains("seed=9"), "{config}");
    assert_eq!(
        shown.lines().filter(|l| l.contains(" complete ")).count(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_on_a_closed_pipe_exits_quietly_and_on_a_full_disk_fails_in_one_line() {
    let dir = scratch("pipe");
    let store = store_of(&dir);
    let out = frostnet(&[
        "tune", "worker", "--store", &store, "--trials", "2", "--epochs", "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for _ in 0..3 {
        let mut child = Command::new(EXE)
            .args(["tune", "status", "--store", &store])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes (`frostnet tune status | head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success(), "{:?}: {err}", out.status);
        assert!(err.is_empty(), "{err}");
    }
    // A full disk is a one-line error, not a panic.
    if Path::new("/dev/full").exists() {
        let out = Command::new(EXE)
            .args(["tune", "status", "--store", &store])
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("frostnet: writing to standard output: "),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `best:` line of `tune status`: the best trial, its value and hyperparameters.
fn best_line(store: &str) -> String {
    let out = status(store);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    s.lines()
        .find(|l| l.starts_with("best: "))
        .unwrap_or_else(|| panic!("{s}"))
        .to_string()
}

#[test]
fn a_killed_trial_resumes_from_its_checkpoint_and_ends_as_if_uninterrupted() {
    let run = |store: &str| -> Vec<String> {
        [
            "tune", "worker", "--store", store, "--trials", "1", "--epochs", "12", "--seed", "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Uninterrupted.
    let a = scratch("resume-a");
    let store_a = store_of(&a);
    let out = Command::new(EXE).args(run(&store_a)).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Killed (SIGKILL) as soon as a checkpoint exists, then run again.
    let b = scratch("resume-b");
    let store_b = store_of(&b);
    let record = b.join("digits_mlp-trials/trial_0.ckpt");
    let mut child = Command::new(EXE)
        .args(run(&store_b))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !record.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint written"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the trial ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = text(&status(&store_b).stdout);
    assert!(killed.contains(" preempted "), "{killed}");

    let t0 = Instant::now();
    let out = Command::new(EXE).args(run(&store_b)).output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The dead worker's 60 s lease was not waited for: its process is gone.
    assert!(t0.elapsed() < Duration::from_secs(50), "{:?}", t0.elapsed());
    assert!(err.contains("resuming trial 0 after epoch"), "{err}");

    assert_eq!(best_line(&store_a), best_line(&store_b));
    // The saved models hold bit-identical weights (training is deterministic: per-epoch seeds,
    // and the checkpoint restores the weights and Adam's state exactly).
    let weights = |d: &Path| -> Vec<(String, Vec<u32>)> {
        let path = d.join("digits_mlp-trials/trial_0.frostnet");
        let m = frostnet::saving::load_model(path.to_str().unwrap()).unwrap();
        m.named_weights()
            .into_iter()
            .map(|(n, w)| (n, w.value().data().iter().map(|v| v.to_bits()).collect()))
            .collect()
    };
    let (wa, wb) = (weights(&a), weights(&b));
    assert!(!wa.is_empty());
    assert!(wa == wb, "the resumed trial's weights differ");
    assert!(
        !record.exists(),
        "the checkpoint of a finished trial was left behind"
    );
    let after = text(&status(&store_b).stdout);
    assert!(after.contains("preempted 1x"), "{after}");
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

/// Every process's command line, to look for a secret in (what `ps` shows other users).
fn command_lines() -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            v.push(text(&c).replace('\0', " "));
        }
    }
    v
}

#[test]
fn workers_get_the_store_from_the_environment_not_their_command_line() {
    let dir = scratch("env");
    // The marker stands for a secret (a URL with a password).
    let store = format!("sqlite:{}", dir.join("marker-s3cret.sqlite3").display());
    let mut child = Command::new(EXE)
        .args(["tune", "--workers", "2", "--trials", "2", "--epochs", "1"])
        .env("FROSTNET_STORE", &store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen_workers = false;
    while child.try_wait().unwrap().is_none() {
        for line in command_lines() {
            assert!(!line.contains("marker-s3cret"), "on a command line: {line}");
            seen_workers |= line.contains("tune worker");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(seen_workers, "the check never saw a worker running");
    assert!(dir.join("marker-s3cret.sqlite3").exists());
    // Reading takes the store from the environment too.
    let out = Command::new(EXE)
        .args(["tune", "status"])
        .env("FROSTNET_STORE", &store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.contains(" complete "))
            .count(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
