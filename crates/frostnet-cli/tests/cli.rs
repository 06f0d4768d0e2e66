//! The `frostnet` command end to end: the tour, summaries identical to Keras's, errors as one
//! line with a non-zero exit, and a tuning study shared by two worker processes.

use std::process::Command;

fn frostnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frostnet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
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
    assert!(out.contains("Non-trainable params: 40 = 40 frozen (batch_normalization: 40, of which 20 moving statistics)"));
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
    assert!(dir.join("digits_mlp-trials/best.safetensors").exists());
    let mut args = vec!["tune", "status"];
    args.extend(common);
    let (ok, status, err) = frostnet(&args);
    assert!(ok, "{err}");
    assert_eq!(
        status.lines().filter(|l| l.contains(" complete ")).count(),
        4,
        "{status}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
