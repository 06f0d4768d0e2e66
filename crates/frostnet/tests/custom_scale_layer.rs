//! `CustomScaleLayer` (InceptionResNetV2's scaled residual) against Keras 3.15.1: a Keras-made
//! `.keras` model (`tools/keras_applications_more_reference.py --layer`) loads, predicts and
//! trains one SGD step within 1e-5 of Keras, survives a save_keras / load_model round trip with
//! Keras's module and registered name, and the backward pass passes a finite-difference check.

use frostnet::io::npy::read_npz;
use frostnet::layers::{CustomScaleLayer, Layer};
use frostnet::saving::{load_model, model_config, save_keras};
use frostnet::tensor::random;
use frostnet::testing::gradient_check;
use frostnet::training::{FitOptions, Loss, Sgd};
use frostnet::{Error, Mode, Tensor};
use std::collections::HashMap;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/applications/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn arrays() -> HashMap<String, Tensor> {
    read_npz(&fixture("custom_scale_layer.npz")).unwrap()
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    let want = want.clone().reshape(got.shape()).unwrap();
    let err = got.max_abs_diff(&want);
    assert!(err < 1e-5, "{what}: max abs error {err}");
}

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = random::rng(Some(seed));
    Tensor::from_vec(
        shape,
        random::uniform(&mut r, shape.iter().product(), -1.5, 1.5),
    )
    .unwrap()
}

#[test]
fn keras_model_predicts_and_trains_as_keras() {
    let a = arrays();
    let mut m = load_model(&fixture("custom_scale_layer.keras")).unwrap();
    let layer = &m.layers()[2];
    assert_eq!(
        (layer.name(), layer.class_name()),
        ("scale", "CustomScaleLayer")
    );
    close(&m.predict(&a["x"], 32).unwrap(), &a["pred"], "predict");
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
    assert!((loss - a["loss"].data()[0]).abs() < 1e-5, "loss {loss}");
    let weights = m.get_weights();
    assert_eq!(weights.len(), 4);
    for (i, w) in weights.iter().enumerate() {
        close(w, &a[&format!("after_{i}")], &format!("weight {i}"));
    }
}

#[test]
fn round_trip_keeps_keras_module_and_scale() {
    let a = arrays();
    let mut m = load_model(&fixture("custom_scale_layer.keras")).unwrap();
    let cfg = model_config(&m);
    let layer = &cfg["config"]["layers"][2];
    assert_eq!(layer["class_name"], "CustomScaleLayer");
    assert_eq!(
        layer["module"],
        "keras.src.applications.inception_resnet_v2"
    );
    assert_eq!(layer["registered_name"], "CustomScaleLayer");
    assert!((layer["config"]["scale"].as_f64().unwrap() - 0.17).abs() < 1e-7);
    let dir = std::env::temp_dir().join(format!("frostnet-csl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("csl.keras").to_string_lossy().into_owned();
    save_keras(&m, &path).unwrap();
    let mut back = load_model(&path).unwrap();
    // Keras loads what frostnet wrote: `python3 tools/keras_applications_more_reference.py
    // --check FILE` (FROSTNET_CSL_OUT=FILE keeps the file for it).
    if let Ok(out) = std::env::var("FROSTNET_CSL_OUT") {
        std::fs::copy(&path, out).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(model_config(&m), model_config(&back));
    assert_eq!(
        m.predict(&a["x"], 32).unwrap().data(),
        back.predict(&a["x"], 32).unwrap().data()
    );
}

#[test]
fn gradient_check_passes() {
    for (scale, seed) in [(0.17f32, 1u64), (1.0, 2), (-0.3, 3)] {
        let mut layer = CustomScaleLayer::new(scale);
        let inputs = [
            rand_tensor(&[2, 3, 3, 4], seed),
            rand_tensor(&[2, 3, 3, 4], seed + 10),
        ];
        let r = gradient_check(&mut layer, &inputs, Mode::Train, 1e-2).unwrap();
        assert!(r.max_rel_error < 1e-3, "scale {scale}: {r:?}");
        assert!(r.checked > 0);
    }
}

#[test]
fn forward_is_x_plus_scaled_residual_and_bad_inputs_are_refused() {
    let mut layer = CustomScaleLayer::new(0.5);
    let shape = vec![Some(2)];
    layer.build(&[shape.clone(), shape.clone()]).unwrap();
    let x = Tensor::from_vec(&[1, 2], vec![1.0, -2.0]).unwrap();
    let r = Tensor::from_vec(&[1, 2], vec![4.0, 6.0]).unwrap();
    let mut ctx = frostnet::layers::ForwardCtx::infer();
    let y = layer.forward(&[&x, &r], &mut ctx).unwrap();
    assert_eq!(y.data(), &[3.0, 1.0]);
    let mut other = CustomScaleLayer::new(0.5);
    let e = other.build(&[vec![Some(2)], vec![Some(3)]]).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = other.build(&[vec![Some(2)]]).unwrap_err();
    assert!(e.to_string().contains("expects 2 input"), "{e}");
}
