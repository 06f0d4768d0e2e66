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

/// The largest absolute difference between `got` and `want`, reshaped to `got`'s shape (a Keras
/// fixture may store `(n,)` where frostnet returns `(n, 1)`).
pub fn max_diff(got: &Tensor, want: &Tensor) -> f32 {
    got.max_abs_diff(&want.clone().reshape(got.shape()).unwrap())
}

/// Asserts `got` is within `tol` (max abs difference) of `want` (see [`max_diff`]).
pub fn close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let err = max_diff(got, want);
    assert!(err < tol, "{what}: max abs error {err}");
}

/// Trains `m` one full-batch SGD(0.1) step with mean squared error on the fixture's `x` and `y`,
/// as the fixture scripts do in Keras, and asserts that the loss equals Keras's `loss` and every
/// weight its `after_i` within 1e-5 (and that Keras has no weight frostnet lacks). Returns the
/// largest weight difference.
pub fn one_sgd_step_matches_keras(
    name: &str,
    m: &mut frostnet::Model,
    a: &std::collections::HashMap<String, Tensor>,
) -> f32 {
    use frostnet::training::{FitOptions, Loss, Sgd};
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let opts = FitOptions {
        batch_size: a["x"].batch(),
        epochs: 1,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    };
    let h = m.fit(&a["x"], &a["y"], opts).unwrap();
    let loss = h.get("loss").unwrap()[0] as f32;
    let want = a["loss"].data()[0];
    assert!(
        (loss - want).abs() < 1e-5,
        "{name}: loss {loss} vs Keras {want}"
    );
    let weights = m.get_weights();
    assert!(!a.contains_key(&format!("after_{}", weights.len())));
    let names = m.named_weights();
    let mut worst = 0.0f32;
    for (i, w) in weights.iter().enumerate() {
        let err = max_diff(w, &a[&format!("after_{i}")]);
        assert!(
            err < 1e-5,
            "{name} weight {i} ({}): max abs error {err}",
            names[i].0
        );
        worst = worst.max(err);
    }
    worst
}

/// Asserts two texts (summaries) are equal, naming the first line that differs.
pub fn assert_same_text(got: &str, want: &str, what: &str) {
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{what}: summary differs at line {}:\n got: {:?}\nwant: {:?}",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

/// Asserts a built application agrees with Keras's record of it (`want`, one model's entry of an
/// applications reference JSON): model name, total/trainable/non-trainable counts, the layer
/// names (under `names_key`) and the summary text.
pub fn assert_application_matches_keras(
    case: &str,
    model: &frostnet::Model,
    want: &serde_json::Value,
    names_key: &str,
    want_summary: &str,
) {
    use frostnet::layers::Layer;
    let t: usize = model.trainable_weights().iter().map(|w| w.len()).sum();
    let n: usize = model.non_trainable_weights().iter().map(|w| w.len()).sum();
    assert_eq!(model.name(), want["model_name"].as_str().unwrap(), "{case}");
    assert_eq!(
        (t + n, t, n),
        (
            want["total"].as_u64().unwrap() as usize,
            want["trainable"].as_u64().unwrap() as usize,
            want["non_trainable"].as_u64().unwrap() as usize
        ),
        "{case}"
    );
    let layers = model.layers();
    let names: Vec<&str> = layers.iter().map(|l| l.name()).collect();
    let want_names: Vec<&str> = want[names_key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, want_names, "{case}");
    assert_same_text(&model.summary(), want_summary, case);
}

/// `n` fixed, varied numbers in `[lo, hi)` from a small LCG (test data, not statistics).
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// `BatchNormalization` then `Activation("relu")` on `x`, named `{name}_bn` and `{name}_relu`:
/// InceptionV3's tail of every convolution.
pub fn bn_relu(
    f: &mut frostnet::Functional,
    x: frostnet::models::SymbolicTensor,
    name: &str,
) -> frostnet::models::SymbolicTensor {
    use frostnet::layers::{Activation, ActivationFn, BatchNormalization, LayerOptions};
    let b = f
        .call(BatchNormalization::new().named(&format!("{name}_bn")), &[x])
        .unwrap();
    f.call(
        Activation::new(ActivationFn::Relu).named(&format!("{name}_relu")),
        &[b],
    )
    .unwrap()
}

/// Sets every weight of `m` to fixed, varied values (BatchNormalization's moving variances
/// positive, so every BN and epilogue step does real work), the same for the same seed.
pub fn randomize(m: &mut frostnet::Model, seed: u64) {
    let values = m
        .named_weights()
        .into_iter()
        .enumerate()
        .map(|(i, (path, w))| {
            let (lo, hi) = if path.ends_with("moving_variance") {
                (0.2, 3.0)
            } else {
                (-0.8, 0.8)
            };
            let n = w.shape().iter().product();
            Tensor::from_vec(w.shape(), uniform(seed * 100 + i as u64, n, lo, hi)).unwrap()
        })
        .collect();
    m.set_weights(values).unwrap();
}

/// Runs `f` on a fresh rayon pool of `threads` threads.
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
