//! ResNet50, MobileNetV2 and VGG16 against real Keras 3 (`tests/fixtures/*_summary.txt` and
//! `applications_reference.json`, written by `tools/keras_applications_reference.py`).

use frostnet::applications::{mobilenet_v2, resnet50, vgg16, ApplicationOptions, Pooling};
use frostnet::layers::Layer;
use frostnet::{Model, Result};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn notop() -> ApplicationOptions {
    ApplicationOptions {
        include_top: false,
        pooling: Some(Pooling::Avg),
        ..Default::default()
    }
}

fn check(case: &str, build: fn(&ApplicationOptions) -> Result<Model>, opts: ApplicationOptions) {
    let reference: serde_json::Value =
        serde_json::from_str(&fixture("applications_reference.json")).unwrap();
    let want = &reference["models"][case];
    let model = build(&opts).unwrap();
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
    let want_names: Vec<&str> = want["layer_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, want_names, "{case}");
    let got = model.summary();
    let want_summary = fixture(&format!("{case}_summary.txt"));
    if got != want_summary {
        let line = got
            .lines()
            .zip(want_summary.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{case} summary differs at line {}:\n got: {:?}\nwant: {:?}",
            line + 1,
            got.lines().nth(line),
            want_summary.lines().nth(line)
        );
    }
}

#[test]
fn resnet50_matches_keras() {
    check("resnet50", resnet50, Default::default());
    check("resnet50_notop", resnet50, notop());
}

#[test]
fn mobilenet_v2_matches_keras() {
    check("mobilenet_v2", mobilenet_v2, Default::default());
    check("mobilenet_v2_notop", mobilenet_v2, notop());
}

#[test]
fn vgg16_matches_keras() {
    check("vgg16", vgg16, Default::default());
    check("vgg16_notop", vgg16, notop());
}
