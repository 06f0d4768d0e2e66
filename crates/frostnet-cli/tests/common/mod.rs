//! Helpers shared by the CLI tests: each test file that needs them says `mod common;`.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `frostnet` binary with `args`, without the `FROSTNET_STORE` of the environment the tests
/// run in (a developer's store must not leak into a test's study).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_frostnet"));
    c.args(args).env_remove("FROSTNET_STORE");
    c
}

/// Runs [`command`] to the end.
pub fn frostnet(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// The run's stdout, after asserting it succeeded (showing stdout and stderr if not).
pub fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// An empty scratch directory for one test (the process id keeps concurrent runs apart).
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("frostnet-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
