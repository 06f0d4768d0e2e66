//! The `frostnet` command end to end: the tour, summaries identical to Keras's, errors as one
//! line with a non-zero exit, and a tuning study shared by two worker processes.

use std::process::Command;

fn frostnet(args: &[&str]) -> (bool, String, String) {
    frostnet_with_columns(args, None)
}

/// Runs the CLI with `COLUMNS` set or removed (a summary follows the terminal's width).
fn frostnet_with_columns(args: &[&str], columns: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frostnet"));
    match columns {
        Some(c) => cmd.env("COLUMNS", c),
        None => cmd.env_remove("COLUMNS"),
    };
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn reference_path(name: &str) -> String {
    format!(
        "{}/../frostnet/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn reference(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../frostnet/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn tour_trains_freezes_and_searches() {
    let (ok, out, err) = frostnet(&["tour"]);
    assert!(ok, "{err}");
    // Plain one-line-per-epoch progress when stdout is not a terminal.
    assert!(out.contains("Epoch 1/3\n"), "{out}");
    assert!(out
        .lines()
        .any(|l| l.starts_with("23/23 - ") && l.contains("ms/step - loss: ")));
    assert!(out.contains("Frozen base conv kernel bit-identical after training the head: true"));
    assert!(out.contains("Layers that ran backward in the last step: [\"new_head\"]"));
    assert!(out.contains(
        "Non-trainable params: 40\n  20 frozen weights (batch_normalization: 20)\n  \
         20 BatchNormalization moving statistics in 1 frozen layer\n"
    ));
    assert!(out.contains("best trial: #"));
    assert!(out.contains("seed MLP train step, batch 256:"));
}

#[test]
fn summaries_are_keras_byte_for_byte() {
    let (ok, out, _) = frostnet(&["summary", "--app", "seed_d", "--show-trainable"]);
    assert!(ok);
    assert_eq!(out, reference("seed_cases/keras3_d_show_trainable.txt"));
    let (ok, out, _) = frostnet(&["summary", "--app", "seed_c", "--style", "classic"]);
    assert!(ok);
    assert_eq!(out, reference("seed_cases/tfkeras_c.txt"));
    let (ok, out, _) = frostnet(&["explain", "--app", "inception_v3"]);
    assert!(ok);
    assert!(out.contains("Non-trainable params: 34,432 = BatchNormalization moving statistics in 94 layers (2 x channels each)"));
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let (ok, out, err) = frostnet(&["summary", "--app", "no_such_model"]);
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("frostnet: unknown model 'no_such_model'"));
    let (ok, _, err) = frostnet(&["tune", "--store", "mysql://x", "--trials", "1"]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("--store"),
        "{err}"
    );
}

#[test]
fn keras_files_summarize_predict_and_convert() {
    let fx = |n: &str| {
        format!(
            "{}/../frostnet/tests/fixtures/{n}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    if !std::path::Path::new(&fx("cnn_func.keras")).exists() {
        panic!("missing fixture {}", fx("cnn_func.keras"));
    }
    let (ok, out, err) = frostnet(&["summary", &fx("cnn_func.keras")]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Model: \"cnn_func\""), "{out}");
    let dir = std::env::temp_dir().join(format!("frostnet-cli-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let y = dir.join("y.npy");
    let (ok, _, err) = frostnet(&[
        "predict",
        &fx("cnn_func.keras"),
        "--input",
        &fx("cnn_input.npy"),
        "--output",
        y.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let got = frostnet::io::npy::read_npy(y.to_str().unwrap()).unwrap();
    let want = frostnet::io::npy::read_npy(&fx("cnn_func_output.npy")).unwrap();
    assert!(got.max_abs_diff(&want) < 1e-5);
    // Convert to native and back to .keras; the summary survives both.
    let native = dir.join("m.frostnet");
    let keras = dir.join("m.keras");
    assert!(frostnet(&["convert", &fx("cnn_func.keras"), native.to_str().unwrap()]).0);
    assert!(frostnet(&["convert", native.to_str().unwrap(), keras.to_str().unwrap()]).0);
    let (_, again, _) = frostnet(&["summary", keras.to_str().unwrap()]);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("Optimizer params") && !l.contains("Total params"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&again), strip(&out));
    // A corrupt file: one line, non-zero exit, the file named.
    let bad = dir.join("bad.keras");
    std::fs::write(&bad, b"PK\x03\x04 not really a zip").unwrap();
    let (ok, _, err) = frostnet(&["summary", bad.to_str().unwrap()]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("bad.keras"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_workers_share_one_sqlite_study_and_status_shows_it() {
    let dir = std::env::temp_dir().join(format!("frostnet-cli-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("s.sqlite3").display());
    let common = [
        "--store",
        store.as_str(),
        "--trials",
        "4",
        "--epochs",
        "2",
        "--seed",
        "3",
    ];
    let mut args = vec!["tune", "--workers", "2"];
    args.extend(common);
    let (ok, out, err) = frostnet(&args);
    assert!(ok, "{err}");
    assert!(out.contains("best trial: #"), "{out}");
    let best = dir.join("digits_mlp-trials/best.frostnet");
    // The best model is a whole native model file: it summarizes and predicts from the CLI.
    let (ok, summary, err) = frostnet(&["summary", best.to_str().unwrap()]);
    assert!(ok && summary.starts_with("Model: \"digits_mlp\""), "{err}");
    // Reading needs only the store (and the study, here the default).
    let (ok, status, err) = frostnet(&["tune", "status", "--store", store.as_str()]);
    assert!(ok, "{err}");
    assert_eq!(
        status.lines().filter(|l| l.contains(" complete ")).count(),
        4,
        "{status}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `frostnet summary ... | head -1`: the reader is gone before the summary is written. The pipe's
/// read end is closed before the child starts, so its write fails with EPIPE every time.
#[test]
fn closed_pipe_on_stdout_ends_quietly() {
    for args in [
        &["summary", "--app", "resnet50"][..],
        &["explain", "--app", "seed_d"][..],
        // The tour prints with `println!`: its panic on EPIPE is turned into a quiet exit.
        &["tour"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_frostnet"))
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}

/// Stdout on a full disk: one line naming the problem, status 1, no panic.
#[test]
fn full_disk_on_stdout_is_a_one_line_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        panic!("/dev/full is missing on this system");
    };
    let out = Command::new(env!("CARGO_BIN_EXE_frostnet"))
        .args(["summary", "--app", "seed_d"])
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("frostnet: writing to stdout: No space left on device"),
        "{err}"
    );
}

fn scratch(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("frostnet-cli-h-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

/// `cnn_seq.keras` with its compile config's metrics replaced.
fn keras_with_metrics(path: &str, metrics: serde_json::Value) {
    use std::io::{Read, Write};
    let src = format!(
        "{}/../frostnet/tests/fixtures/cnn_seq.keras",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if name == "config.json" {
            let mut c: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            c["compile_config"]["metrics"] = metrics.clone();
            bytes = c.to_string().into_bytes();
        }
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
}

/// What a file holds but frostnet cannot restore is a warning on stderr naming the file, what
/// was dropped and why; the command still succeeds, as Keras's load_model does.
#[test]
fn dropped_compile_config_is_a_warning_on_stderr() {
    let path = scratch("metrics.keras");
    keras_with_metrics(&path, serde_json::json!(["no_such_metric"]));
    let (ok, out, err) = frostnet(&["summary", &path]);
    assert!(ok, "{err}");
    assert!(!out.contains("Optimizer params"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("frostnet: warning: {path}: compile config"))
            && err.contains("metric \"no_such_metric\" is not implemented"),
        "{err}"
    );
    std::fs::remove_file(&path).ok();
}

/// A malformed .npy header: one line under 200 characters naming the file; `--verbose` adds
/// nothing the one line lacks here but is accepted anywhere on the command line.
#[test]
fn bad_npy_input_is_one_short_line() {
    let model = format!(
        "{}/../frostnet/tests/fixtures/cnn_seq.keras",
        env!("CARGO_MANIFEST_DIR")
    );
    let npy = scratch("bad.npy");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, \n";
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header);
    std::fs::write(&npy, bytes).unwrap();
    let out = scratch("y.npy");
    let (ok, _, err) = frostnet(&["predict", &model, "--input", &npy, "--output", &out]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.len() < 200, "{} chars: {err}", err.len());
    assert!(err.starts_with(&format!("frostnet: {npy}: ")), "{err}");
    assert!(!std::path::Path::new(&out).exists());
    let (ok, _, err) = frostnet(&[
        "--verbose",
        "predict",
        &model,
        "--input",
        &npy,
        "--output",
        &out,
    ]);
    assert!(
        !ok && err.starts_with(&format!("frostnet: {npy}: ")),
        "{err}"
    );
    std::fs::remove_file(&npy).ok();
}

/// `COLUMNS=60 frostnet summary`: Keras's table shrunk to the terminal as rich draws it; without
/// COLUMNS and with stdout a pipe, the canonical wide table. Fixtures made by
/// tools/make_summary_width_reference.py with Keras 3.15.1.
#[test]
fn summary_follows_the_terminal_width() {
    for kind in ["sequential", "functional"] {
        let file = reference_path(&format!("summary_width/{kind}.keras"));
        let (ok, out, err) = frostnet_with_columns(&["summary", &file], Some("60"));
        assert!(ok, "{err}");
        assert_eq!(
            out,
            reference(&format!("summary_width/{kind}_60.txt")),
            "{kind}"
        );
        let (ok, out, err) =
            frostnet_with_columns(&["summary", &file, "--show-trainable"], Some("80"));
        assert!(ok, "{err}");
        assert_eq!(
            out,
            reference(&format!("summary_width/{kind}_80_trainable.txt")),
            "{kind}"
        );
        // Not a terminal and no COLUMNS: Keras's own line length (a 200-column terminal's).
        let (ok, out, err) = frostnet_with_columns(&["summary", &file], None);
        assert!(ok, "{err}");
        assert_eq!(
            out,
            reference(&format!("summary_width/{kind}_200.txt")),
            "{kind}"
        );
    }
}

/// `summary --extras`: VGG16's 15,470,264,320 mult-adds per image (counted from Keras's summary in
/// frostnet's tests/summary_extras.rs) for a batch of 2, and the memory lines.
#[test]
fn summary_extras_counts_mult_adds_and_memory() {
    let (ok, out, err) = frostnet(&["summary", "--app", "vgg16", "--extras", "--batch-size", "2"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(" Mult-adds (batch 2): 30,940,528,640\n"),
        "{out}"
    );
    assert!(out.contains(" Memory, inference (batch 2): "), "{out}");
    assert!(out.contains(" Memory, training step (batch 2): "), "{out}");
    assert!(out.contains("│ block1_conv1 (Conv2D)"), "{out}");
    let (ok, _, err) = frostnet(&["summary", "--app", "vgg16", "--extras", "--batch-size", "0"]);
    assert!(!ok && err.lines().count() <= 3, "{err}");
}
