//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use frostnet_tuner::{Hyperparameters, Scale, SpaceError, TrialContext};

/// The synthetic objective of the tests and of the worker binary:
/// minimum 0 at `x = 3, lr = 1e-2, activation = tanh`.
pub fn loss(x: i64, lr: f64, act: &str) -> f64 {
    (x as f64 - 3.0).powi(2) + (lr.log10() + 2.0).powi(2) + if act == "tanh" { 0.0 } else { 0.5 }
}

/// One-report closure over the synthetic objective.
pub fn quadratic(hp: &mut Hyperparameters, trial: &mut TrialContext) -> Result<(), SpaceError> {
    let x = hp.int("x", 0, 6)?;
    let lr = hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
    let act = hp.choice("activation", &["relu", "tanh", "sigmoid"])?;
    let _ = trial.report(0, &[("loss", loss(x, lr, act))]);
    Ok(())
}

pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

/// The PostgreSQL URL. The PostgreSQL tests are compiled as `#[ignore]`d
/// unless `FROSTNET_PG_URL` is set or `CI=true` (see `build.rs`), so reaching
/// this without a URL means CI forgot to start the server: that fails.
pub fn pg_url(test: &str) -> String {
    match std::env::var("FROSTNET_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "{test}: FROSTNET_PG_URL is not set; start a server with \
             `eval \"$(bash .ci/postgres.sh start)\"` (CI must set it)"
        ),
    }
}

pub const WORKER: &str = env!("CARGO_BIN_EXE_tuner-synthetic-worker");

/// Starts a worker process with `args`, stdout piped.
pub fn spawn_worker(args: &[&str]) -> Child {
    Command::new(WORKER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// Waits for a worker and returns its `BEST` line split as
/// `(number, value, params)`; panics with its stderr if it failed.
pub fn finish_worker(child: Child) -> (u64, f64, String) {
    let out = child.wait_with_output().expect("wait worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "worker failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("BEST "))
        .unwrap_or_else(|| panic!("no BEST line in {stdout}"));
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    (
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
        parts.get(3).unwrap_or(&"").to_string(),
    )
}

/// Counts `start N` / `end N` lines of a worker log.
pub fn log_counts(path: &Path) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut starts = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next().unwrap_or("");
        let n: u64 = match it.next().and_then(|s| s.parse().ok()) {
            Some(n) => n,
            None => continue,
        };
        match kind {
            "start" => *starts.entry(n).or_insert(0) += 1,
            "end" => *ends.entry(n).or_insert(0) += 1,
            _ => {}
        }
    }
    (starts, ends)
}

/// Polls the log until a line `start N ...` appears; returns the line.
pub fn wait_for_start(path: &Path, n: u64, timeout: Duration) -> String {
    let t0 = Instant::now();
    let prefix = format!("start {n}");
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(l) = text
                .lines()
                .find(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == prefix)
            {
                return l.to_string();
            }
        }
        assert!(t0.elapsed() < timeout, "trial {n} never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}
