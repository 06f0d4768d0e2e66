//! Feeds mutated fixtures to every reader: each must return `Ok` or `Err`,
//! never panic, hang or abort on an allocation. Seeded, so a failure repeats;
//! 300 cases per reader by default, more with `FROSTNET_FUZZ_CASES=N`;
//! `FROSTNET_FUZZ_SEED=N` picks other inputs, and `FROSTNET_FUZZ_SHOW=1`
//! prints every error, to review how they read.
//!
//! Mutations: bit flips, truncation, overwriting a few bytes with extreme
//! length-like values (the kind of field an HDF5 or zip parser trusts to
//! size things), and random bytes. For `.keras` archives, half the cases
//! mutate the `model.weights.h5` member and zip it up again with a valid CRC,
//! so that the HDF5 parser behind the zip is exercised too.

use std::io::{Cursor, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use frostnet_formats::{
    read_any, read_keras_archive, read_legacy_h5, read_weights_h5, Error, LayerWeights,
};

/// Cases per reader; set `FROSTNET_FUZZ_CASES` to run more.
fn cases() -> usize {
    std::env::var("FROSTNET_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// xorshift64: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => b.truncate(rng.below(b.len())),
        2 => {
            for _ in 0..1 + rng.below(4) {
                let width = [1, 2, 4, 8][rng.below(4)];
                let i = rng.below(b.len() - width);
                let value: u64 = match rng.below(5) {
                    0 => u64::MAX,
                    1 => rng.next(),
                    2 => rng.next() % 100_000,
                    3 => 0,
                    _ => 0x7fff_ffff,
                };
                b[i..i + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        _ => {
            for _ in 0..1 + rng.below(32) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
    }
    b
}

/// Mutates the `model.weights.h5` member of a `.keras` zip and rebuilds the
/// zip around it.
fn mutate_inner(rng: &mut Rng, archive: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if name == "model.weights.h5" {
            bytes = mutate(rng, &bytes);
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A successful read must still be self-consistent.
fn check_layers(layers: &[LayerWeights]) {
    for l in layers {
        for w in &l.weights {
            assert_eq!(w.data.len(), w.shape.iter().product::<usize>());
        }
    }
}

type Reader = fn(&Path) -> Result<(), Error>;

fn run(label: &str, seed: u64, files: &[&str], read: Reader) {
    let dir = std::env::temp_dir().join(format!(
        "frostnet-formats-fuzz-{}-{label}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(fixture(f)).unwrap())
        .collect();
    let offset: u64 = std::env::var("FROSTNET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rng = Rng(seed.wrapping_add(offset.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    let (mut ok, mut err) = (0, 0);
    for case in 0..cases() {
        let which = case % files.len();
        let bytes = if files[which].ends_with(".keras") && rng.below(2) == 0 {
            mutate_inner(&mut rng, &originals[which])
        } else {
            mutate(&mut rng, &originals[which])
        };
        let path = dir.join(format!("{label}-{case}.bin"));
        std::fs::write(&path, &bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| read(&path))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                if std::env::var_os("FROSTNET_FUZZ_SHOW").is_some() {
                    eprintln!("{e}");
                }
                assert_eq!(e.file(), path, "{e}");
                assert!(
                    e.to_string().contains(&format!("{label}-{case}.bin")),
                    "{e}"
                );
                err += 1;
            }
            Err(_) => panic!(
                "{label}: case {case} (mutated {}) panicked; input kept at {}",
                files[which],
                path.display()
            ),
        }
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir(&dir).unwrap();
    eprintln!("{label}: {ok} read, {err} refused");
    assert_eq!(ok + err, cases());
}

#[test]
fn keras_archive_reader_survives_mutations() {
    run(
        "archive",
        1,
        &[
            "cnn_seq.keras",
            "cnn_func.keras",
            "cnn_nested.keras",
            "rnn_mix.keras",
        ],
        |p| read_keras_archive(p).map(|a| check_layers(&a.weights.layers)),
    );
}

#[test]
fn weights_h5_reader_survives_mutations() {
    run(
        "weights",
        2,
        &[
            "cnn_seq.weights.h5",
            "cnn_func.weights.h5",
            "cnn_nested.weights.h5",
            "rnn_mix.weights.h5",
            "sub.weights.h5",
        ],
        |p| read_weights_h5(p).map(|w| check_layers(&w.layers)),
    );
}

#[test]
fn legacy_h5_reader_survives_mutations() {
    run(
        "legacy",
        3,
        &[
            "cnn_seq_tfkeras.h5",
            "cnn_func_keras3_legacy.h5",
            "cnn_nested_tfkeras_weights_only.h5",
            "cnn_seq_fixedstr_weights_only.h5",
            "cnn_nested_split_attrs.h5",
            "cnn_seq_libver_latest_weights_only.h5",
        ],
        |p| read_legacy_h5(p).map(|l| check_layers(&l.layers)),
    );
}

#[test]
fn read_any_survives_mutations() {
    run(
        "any",
        4,
        &[
            "cnn_nested.keras",
            "cnn_func.weights.h5",
            "cnn_nested_keras3_legacy.h5",
            "cnn_func_fixedstr.h5",
        ],
        |p| read_any(p).map(|f| check_layers(f.layers())),
    );
}
