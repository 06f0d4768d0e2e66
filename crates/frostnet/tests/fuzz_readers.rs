//! Mutated files through every reader of the library, as the CLI uses them: `load_model`
//! (`.keras`, legacy `.h5`, native), `load_weights_into` (`.weights.h5`) and `read_npy`. Any
//! result but a panic is fine; an error must be one line naming the file.
//!
//! 150 cases per reader by default; `FROSTNET_FUZZ_CASES=N` runs more (docs/FUZZING.md records
//! longer runs), `FROSTNET_FUZZ_SEED=N` picks other mutations. The cargo-fuzz targets in `fuzz/`
//! run the same readers under libFuzzer.

use frostnet::saving::{load_model, load_model_with_report, load_weights_into, save_model};

mod common;
use common::Scratch;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> usize {
    std::env::var("FROSTNET_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let seed: u64 = std::env::var("FROSTNET_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_f00d);
        Rng((seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte flips, random bytes, small integers written over length fields, and truncation.
fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    for _ in 0..1 + rng.below(8) {
        let i = rng.below(b.len());
        match rng.below(4) {
            0 => b[i] = rng.next() as u8,
            1 => b[i] ^= 1 << rng.below(8),
            2 => {
                let v = [0u8, 1, 0x7f, 0x80, 0xff][rng.below(5)];
                let end = (i + 1 + rng.below(8)).min(b.len());
                b[i..end].fill(v);
            }
            _ => b[i] = b"0123456789{}[]\",:-() "[rng.below(21)],
        }
    }
    if rng.below(8) == 0 {
        let keep = rng.below(b.len());
        b.truncate(keep);
    }
    b
}

/// Runs `read` on `cases()` mutants of `sources`; returns (errors, successes).
fn run(
    tag: &str,
    sources: &[Vec<u8>],
    mut read: impl FnMut(&str) -> Result<(), frostnet::Error>,
) -> (usize, usize) {
    let dir = Scratch::new(tag);
    let path = dir.path("mutant");
    let mut rng = Rng::new(tag.bytes().map(u64::from).sum());
    let (mut errors, mut ok) = (0, 0);
    for case in 0..cases() {
        let bytes = mutate(&mut rng, &sources[case % sources.len()]);
        std::fs::write(&path, &bytes).unwrap();
        match read(&path) {
            Ok(()) => ok += 1,
            Err(e) => {
                let text = e.to_string();
                assert!(
                    !text.contains('\n') && text.contains(&path),
                    "{tag} case {case}: {text}"
                );
                errors += 1;
            }
        }
    }
    if std::env::var_os("FROSTNET_FUZZ_SHOW").is_some() {
        eprintln!("{tag}: {} cases, {errors} errors, {ok} loaded", cases());
    }
    (errors, ok)
}

fn read_all(names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| std::fs::read(fixture(n)).unwrap())
        .collect()
}

#[test]
fn keras_archives() {
    let (errors, _) = run(
        "keras",
        &read_all(&["cnn_seq.keras", "cnn_func.keras", "cnn_nested.keras"]),
        |p| load_model_with_report(p).map(|_| ()),
    );
    assert!(errors > 0);
}

#[test]
fn legacy_h5() {
    let (errors, _) = run(
        "legacy",
        &read_all(&[
            "cnn_seq_tfkeras.h5",
            "cnn_func_keras3_legacy.h5",
            "cnn_nested_tfkeras.h5",
        ]),
        |p| load_model(p).map(|_| ()),
    );
    assert!(errors > 0);
}

#[test]
fn weights_h5_into_a_built_model() {
    let mut model = load_model(&fixture("cnn_seq.keras")).unwrap();
    let (errors, _) = run(
        "weights",
        &read_all(&["cnn_seq.weights.h5", "cnn_seq_tfkeras_weights_only.h5"]),
        |p| load_weights_into(&mut model, p),
    );
    assert!(errors > 0);
}

#[test]
fn native_files() {
    let dir = Scratch::new("native-src");
    let m = load_model(&fixture("cnn_nested.keras")).unwrap();
    save_model(&m, &dir.path("n.frostnet")).unwrap();
    let sources = vec![std::fs::read(dir.path("n.frostnet")).unwrap()];
    let (errors, _) = run("native", &sources, |p| load_model(p).map(|_| ()));
    assert!(errors > 0);
}

#[test]
fn npy_arrays() {
    let (errors, _) = run(
        "npy",
        &read_all(&["cnn_input.npy", "cnn_seq_output.npy"]),
        |p| frostnet::io::npy::read_npy(p).map(|_| ()),
    );
    assert!(errors > 0);
}
