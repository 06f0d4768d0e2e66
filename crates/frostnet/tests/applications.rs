//! ResNet50, MobileNetV2 and VGG16 against real Keras 3 (`tests/fixtures/*_summary.txt` and
//! `applications_reference.json`, written by `tools/keras_applications_reference.py`).

use frostnet::applications::{mobilenet_v2, resnet50, vgg16, ApplicationOptions, Pooling};
use frostnet::{Model, Result};

mod common;

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
    let want_summary = fixture(&format!("{case}_summary.txt"));
    common::assert_application_matches_keras(case, &model, want, "layer_names", &want_summary);
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
