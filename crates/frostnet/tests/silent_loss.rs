//! Nothing in a file is dropped silently: damaged data is an error, and what frostnet cannot
//! restore (a compile config naming a metric it lacks) is returned as a typed warning. The
//! archives are crafted from the Keras-written fixtures.

use frostnet::saving::{load_model, load_model_with_report};
use frostnet::Error;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!("frostnet-loss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

/// The members of a `.keras` archive, in order.
fn members(path: &str) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().unwrap().to_string(), bytes)
        })
        .collect()
}

fn write_archive(path: &str, members: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(name.as_str(), stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// `fixture` with its `config.json` changed by `edit`.
fn with_config(fixture_name: &str, out: &str, edit: impl FnOnce(&mut Value)) {
    let mut m = members(&fixture(fixture_name));
    let entry = m.iter_mut().find(|(n, _)| n == "config.json").unwrap();
    let mut config: Value = serde_json::from_slice(&entry.1).unwrap();
    edit(&mut config);
    entry.1 = config.to_string().into_bytes();
    write_archive(out, &m);
}

/// `cnn_seq.keras` was saved compiled with Adam after training, so it has optimizer state.
/// Truncating its `model.weights.h5` anywhere must either fail to load or load everything:
/// never load the layers and quietly drop the optimizer (the summary would lose its
/// "Optimizer params" line).
#[test]
fn truncated_weights_never_load_without_their_optimizer_state() {
    let original = load_model(&fixture("cnn_seq.keras")).unwrap();
    let summary = original.summary();
    assert!(summary.contains("Optimizer params"), "{summary}");
    let m = members(&fixture("cnn_seq.keras"));
    let weights = &m.iter().find(|(n, _)| n == "model.weights.h5").unwrap().1;
    let path = scratch("truncated.keras");
    let (mut errors, mut full) = (0, 0);
    for cut in (0..weights.len()).step_by(61) {
        let mut t = m.clone();
        t.iter_mut()
            .find(|(n, _)| n == "model.weights.h5")
            .unwrap()
            .1
            .truncate(cut);
        write_archive(&path, &t);
        match load_model_with_report(&path) {
            Err(Error::File { .. }) => errors += 1,
            Err(other) => panic!("cut at {cut}: not a file error: {other}"),
            Ok((model, report)) => {
                assert_eq!(model.summary(), summary, "cut at {cut}: {report:?}");
                assert!(report.warnings.is_empty(), "cut at {cut}: {report:?}");
                full += 1;
            }
        }
    }
    assert!(errors > 0, "{errors} errors, {full} full loads");
    std::fs::remove_file(&path).ok();
}

#[test]
fn unknown_metrics_load_uncompiled_with_a_warning_naming_them() {
    let path = scratch("metrics.keras");
    with_config("cnn_seq.keras", &path, |c| {
        c["compile_config"]["metrics"] = serde_json::json!(["accuracy", "f7_no_such_metric"]);
    });
    let (model, report) = load_model_with_report(&path).unwrap();
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    let w = report.warnings[0].to_string();
    assert!(
        w.starts_with("compile config and optimizer state (the model loads uncompiled) not restored: metric \"f7_no_such_metric\" is not implemented"),
        "{w}"
    );
    assert!(!model.summary().contains("Optimizer params"));

    // An absurd value: the warning still fits on a line.
    with_config("cnn_seq.keras", &path, |c| {
        c["compile_config"]["metrics"] = serde_json::json!([vec![vec![1.5; 1000]; 10]]);
    });
    let (_, report) = load_model_with_report(&path).unwrap();
    let w = report.warnings[0].to_string();
    assert!(w.len() < 200 && !w.contains('\n'), "{} chars: {w}", w.len());
    assert!(w.ends_with("is not implemented in frostnet"), "{w}");

    // An optimizer frostnet lacks.
    with_config("cnn_seq.keras", &path, |c| {
        c["compile_config"]["optimizer"]["class_name"] = "Adafactor".into();
    });
    let (_, report) = load_model_with_report(&path).unwrap();
    assert!(
        report.warnings[0].reason.contains("optimizer Adafactor"),
        "{report:?}"
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn a_legacy_h5_training_config_is_reported_not_dropped_silently() {
    let (_, report) = load_model_with_report(&fixture("cnn_seq_tfkeras.h5")).unwrap();
    let has_training_config = frostnet_formats::read_legacy_h5(fixture("cnn_seq_tfkeras.h5"))
        .unwrap()
        .training_config
        .is_some();
    assert_eq!(report.warnings.len(), usize::from(has_training_config));
    // A file restored in full reports nothing.
    let (_, report) = load_model_with_report(&fixture("cnn_seq.keras")).unwrap();
    assert!(report.warnings.is_empty(), "{report:?}");
}

/// Every layer is called once, so node 0 is the only node a `keras_history` can point at.
#[test]
fn keras_history_node_index_pointing_nowhere_is_an_error() {
    let path = scratch("history.keras");
    let mut changed = false;
    with_config("cnn_func.keras", &path, |c| {
        fn first_history(v: &mut Value) -> Option<&mut Value> {
            match v {
                Value::Object(o) => {
                    if o.contains_key("keras_history") {
                        return o.get_mut("keras_history");
                    }
                    o.values_mut().find_map(first_history)
                }
                Value::Array(a) => a.iter_mut().find_map(first_history),
                _ => None,
            }
        }
        let layers = &mut c["config"]["layers"];
        let h = first_history(layers).expect("a Functional config has keras_history entries");
        h[1] = 3.into();
        changed = true;
    });
    assert!(changed);
    let e = load_model(&path).err().unwrap();
    let text = e.to_string();
    assert!(
        matches!(e, Error::File { .. })
            && text.contains("node 3 of '")
            && text.contains("only node 0"),
        "{text}"
    );
    // The same in the model's output_layers.
    with_config("cnn_func.keras", &path, |c| {
        // A single output is a flat triple `["dense", 0, 0]`, several are a list of them.
        let out = &mut c["config"]["output_layers"];
        if out[0].is_string() {
            out[1] = 1.into();
        } else {
            out[0][1] = 1.into();
        }
    });
    let text = load_model(&path).err().unwrap().to_string();
    assert!(text.contains("output_layers"), "{text}");
    std::fs::remove_file(&path).ok();
}
