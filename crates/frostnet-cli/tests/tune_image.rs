//! Issue #15, point 7: `frostnet tune --app ... --data DIR` searches the transfer-learning recipe
//! (head units and dropout, learning rates, the fine-tuning layer) on a generated image folder,
//! end to end (MobileNetV2 at 32x32, random base: no download); the study's trials hold those
//! hyperparameters, and `tune status` and `tune report` read it.

use image::{Rgb, RgbImage};
use std::path::Path;

use frostnet_tuner::{ParamValue, Storage, Study, TrialState};

mod common;
use common::{frostnet, ok, scratch};

/// Two classes that differ in colour, PNG and JPEG, various sizes.
fn make_folder(dir: &Path) {
    for (class, colour) in [("red", [220u8, 30, 30]), ("blue", [30, 30, 220])] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..6u32 {
            let (w, h) = (30 + i * 3, 40 - i * 2);
            let img = RgbImage::from_fn(w, h, |x, y| {
                let n = ((x * 7 + y * 13 + i * 5) % 40) as u8;
                Rgb(colour.map(|c| c.saturating_add(n)))
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(class).join(format!("{class}{i}.{ext}")))
                .unwrap();
        }
    }
}

#[test]
fn tune_searches_the_image_recipe_and_status_and_report_read_it() {
    let dir = scratch("search");
    let data = dir.join("photos");
    make_folder(&data);
    let db = dir.join("s.sqlite3");
    let store = format!("sqlite:{}", db.display());
    let args = [
        "tune",
        "--store",
        &store,
        "--study",
        "colours",
        "--app",
        "mobilenet_v2",
        "--weights",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--validation-split",
        "0.25",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "1",
        "--fine-tune-at",
        "none,block_16_expand",
        "--seed",
        "5",
    ];
    let stdout = ok(&frostnet(&args));
    assert!(stdout.contains("best trial: #"), "{stdout}");

    // The study holds two finished trials with the recipe's hyperparameters; the fine-tuning
    // learning rate exists exactly in the trials that fine-tune, and those reported one more
    // epoch (the fine-tuning's).
    let study = Study::open_existing("colours", &Storage::sqlite(&db)).unwrap();
    let records = study.trial_records().unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(
            matches!(r.state, TrialState::Complete | TrialState::Pruned),
            "{r:?}"
        );
        let p: std::collections::BTreeMap<&str, &ParamValue> = r
            .params
            .iter()
            .map(|p| (p.name.as_str(), &p.value))
            .collect();
        let units = p["units"].as_i64().unwrap();
        assert!((64..=512).contains(&units) && units % 64 == 0, "{units}");
        let dropout = p["dropout"].as_f64().unwrap();
        assert!((0.0..=0.5).contains(&dropout), "{dropout}");
        let lr = p["lr"].as_f64().unwrap();
        assert!((1e-4..=1e-2).contains(&lr), "{lr}");
        let at = p["fine_tune_at"].as_str().unwrap();
        assert!(["none", "block_16_expand"].contains(&at), "{at}");
        assert_eq!(p.contains_key("fine_tune_lr"), at != "none", "{p:?}");
        let steps = if at == "none" { 1 } else { 2 };
        if r.state == TrialState::Complete {
            assert_eq!(r.intermediate.len(), steps, "{r:?}");
        }
        let acc = r.value.unwrap();
        assert!((0.0..=1.0).contains(&acc), "{acc}");
    }
    // The best trial's model was saved as a .keras with the class names.
    let best = dir.join("colours-trials/best.keras");
    assert!(best.is_file(), "{stdout}");
    let names = frostnet::applications::transfer::load_class_names(best.to_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(names, ["blue", "red"]);
    let model = frostnet::saving::load_model(best.to_str().unwrap()).unwrap();
    assert!(model.get_layer("head_dense").is_ok());

    // tune status and tune report read the study.
    let status = ok(&frostnet(&[
        "tune", "status", "--store", &store, "--study", "colours",
    ]));
    for col in ["units", "dropout", "lr", "fine_tune_at"] {
        assert!(status.lines().nth(2).unwrap().contains(col), "{status}");
    }
    assert!(status.contains("declared space"), "{status}");
    let report = dir.join("report.html");
    ok(&frostnet(&[
        "tune",
        "report",
        "--store",
        &store,
        "--study",
        "colours",
        "--output",
        report.to_str().unwrap(),
    ]));
    let html = std::fs::read_to_string(&report).unwrap();
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    let script = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("study-data"))
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(script.text().unwrap()).unwrap();
    let trials = data["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    for (t, r) in trials.iter().zip(&records) {
        assert_eq!(t["value"].as_f64(), r.value);
        assert!(t["params"]["units"].is_i64());
    }

    // Reopening the study with another space (the MLP's) is refused, naming the study.
    let o = frostnet(&[
        "tune", "--store", &store, "--study", "colours", "--trials", "1", "--epochs", "1",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("study `colours` already exists"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tune_image_errors_are_one_line() {
    let dir = scratch("errors");
    let store = format!("sqlite:{}", dir.join("s.sqlite3").display());
    let missing = dir.join("nothing-here");
    for (args, expect) in [
        (
            vec![
                "--app",
                "mobilenet_v2",
                "--weights",
                "none",
                "--data",
                missing.to_str().unwrap(),
            ],
            "nothing-here",
        ),
        (
            vec!["--app", "mobilenet_v2", "--data", ".", "--image-size", "16"],
            "--image-size 16",
        ),
        (vec!["--app", "alexnet", "--data", "."], "alexnet"),
        (
            vec![
                "--app",
                "mobilenet_v2",
                "--data",
                ".",
                "--validation-split",
                "0",
            ],
            "--validation-split",
        ),
    ] {
        let mut all = vec!["tune", "--store", &store, "--trials", "1"];
        all.extend(args);
        let o = frostnet(&all);
        assert!(!o.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{all:?}: {err}");
        assert!(err.contains(expect), "{all:?}: {err}");
    }
    assert!(
        !dir.join("s.sqlite3").exists(),
        "a refused search creates no store"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
