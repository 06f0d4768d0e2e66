//! Issue #11, point 4: `frostnet tune report` writes the study as one HTML page holding every
//! trial (read back here and compared with the store), and fails in one line, writing nothing,
//! for a study that does not exist.

use std::path::Path;

mod common;
use common::{frostnet, ok, scratch};

/// The page's embedded data, after checking that the whole page is well-formed.
fn report_data(path: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the report is well-formed");
    for id in [
        "history",
        "parallel",
        "importance",
        "intermediate",
        "trials",
    ] {
        assert!(
            doc.descendants().any(|n| n.attribute("id") == Some(id)),
            "no #{id}"
        );
    }
    let script = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("study-data"))
        .unwrap();
    serde_json::from_str(script.text().unwrap()).unwrap()
}

#[test]
fn tune_report_writes_every_trial_of_the_store() {
    let dir = scratch("mlp");
    let store = format!("sqlite:{}", dir.join("s.sqlite3").display());
    ok(&frostnet(&[
        "tune", "worker", "--store", &store, "--trials", "3", "--epochs", "2",
    ]));
    let out = dir.join("report.html");
    let o = frostnet(&[
        "tune",
        "report",
        "--store",
        &store,
        "--output",
        out.to_str().unwrap(),
    ]);
    let stdout = ok(&o);
    assert!(
        stdout.starts_with(&format!("wrote {}: 3 trials", out.display())),
        "{stdout}"
    );
    let data = report_data(&out);
    let study = frostnet_tuner::Study::open_existing(
        "digits_mlp",
        &frostnet_tuner::Storage::sqlite(dir.join("s.sqlite3")),
    )
    .unwrap();
    let results = study.results().unwrap();
    let trials = data["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for (t, j) in results.trials.iter().zip(trials) {
        assert_eq!(j["value"].as_f64(), t.value);
        assert_eq!(
            j["intermediate"].as_array().unwrap().len(),
            2,
            "two epochs reported"
        );
        assert_eq!(j["params"]["lr"].as_f64(), t.params["lr"].as_f64());
    }
    assert_eq!(data["objective"], "val_accuracy");
    assert_eq!(data["direction"], "maximize");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tune_report_of_a_missing_study_fails_in_one_line_and_writes_nothing() {
    let dir = scratch("missing");
    let store = format!("sqlite:{}", dir.join("none.sqlite3").display());
    let out = dir.join("report.html");
    let o = frostnet(&[
        "tune",
        "report",
        "--store",
        &store,
        "--study",
        "nope",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("study 'nope' does not exist"), "{err}");
    assert!(!out.exists());
    assert!(!dir.join("none.sqlite3").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
