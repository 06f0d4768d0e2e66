//! Helpers shared by the integration tests: each test file that needs them says `mod common;`.
//! (Cargo builds every file in `tests/` as its own crate, so this folder, not a file, keeps it
//! from being built as a test of its own.)

// Not every test file uses every helper.
#![allow(dead_code)]

use frostnet::Tensor;
use std::path::{Path, PathBuf};

/// A scratch directory, emptied when made and removed when dropped. The process id in its name
/// keeps concurrent test processes apart; `tag` keeps the tests of one file apart.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("frostnet-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    pub fn dir(&self) -> &Path {
        &self.0
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
    /// The names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts `got` is within `tol` (max abs difference) of `want`, reshaped to `got`'s shape (a
/// Keras fixture may store `(n,)` where frostnet returns `(n, 1)`).
pub fn close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let want = want.clone().reshape(got.shape()).unwrap();
    let err = got.max_abs_diff(&want);
    assert!(err < tol, "{what}: max abs error {err}");
}
