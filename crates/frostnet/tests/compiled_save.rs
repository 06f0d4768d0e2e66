//! `save_keras` saves a compiled model compiled (issue #14, point 6): Keras 3's `compile_config`
//! in `config.json` and the optimizer's variables in `model.weights.h5`, as `model.save` writes
//! them. A model saved by frostnet comes back compiled and resumes training bit-identically to a
//! model that was never saved; Keras 3.15.1 loads the same files compiled, and its `evaluate` and
//! next training step agree with frostnet's (`tools/check_compiled_save_in_keras.py` made the
//! fixtures under `tests/fixtures/compiled_save/` from the files `write_compiled_models_for_keras`
//! writes).

use frostnet::constraints::Constraint;
use frostnet::io::npy::{read_npz, write_npy};
use frostnet::layers::*;
use frostnet::regularizers::{Regularizer, RegularizerOptions};
use frostnet::saving::{load_model, save_keras};
use frostnet::training::{Adam, FitOptions, LearningRate, Loss, Metric, RmsProp, Sgd};
use frostnet::{Model, Sequential, Tensor};

mod common;
use common::Scratch;

fn data() -> (Tensor, Tensor) {
    let x = Tensor::from_vec(
        &[8, 3],
        (0..24)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
            .collect(),
    )
    .unwrap();
    let y = Tensor::from_vec(
        &[8, 2],
        (0..16).map(|i| ((i * 11 % 7) as f32 - 3.0) / 3.0).collect(),
    )
    .unwrap();
    (x, y)
}

/// Compiles `m` with the optimizer a fixture is named after.
fn compile_with(m: &mut Model, name: &str) {
    let (loss, metrics) = (Loss::MeanSquaredError, &[Metric::MeanAbsoluteError]);
    match name {
        "adam" => m.compile(Adam::new(0.01), loss, metrics),
        "adamw" => m.compile(Adam::adamw(0.01).weight_decay(0.05), loss, metrics),
        "sgd" => m.compile(Sgd::new(0.05).momentum(0.9).nesterov(true), loss, metrics),
        "rmsprop" => {
            let mut r = RmsProp::new(0.01);
            r.momentum = 0.5;
            r.centered = true;
            m.compile(r, loss, metrics)
        }
        "schedule" => m.compile(
            Adam::new(LearningRate::ExponentialDecay {
                initial: 0.02,
                decay_steps: 1,
                decay_rate: 0.5,
                staircase: false,
            }),
            loss,
            metrics,
        ),
        other => panic!("{other}"),
    }
}

const NAMES: [&str; 5] = ["adam", "adamw", "sgd", "rmsprop", "schedule"];

/// A small model with BN state, a frozen layer, a regularizer and a constraint, compiled with
/// `opt` and trained two steps (deterministic: seeded initializers, no shuffling).
fn trained(name: &str) -> Model {
    clear_session();
    let mut m = Sequential::named("resumable");
    m.add(Input::new(&[3])).unwrap();
    m.add(
        Dense::new(4)
            .seed(1)
            .activation(ActivationFn::Relu)
            .named("d1")
            .kernel_regularizer(Regularizer::l2(0.01))
            .kernel_constraint(Constraint::max_norm(1.0, 0)),
    )
    .unwrap();
    m.add(BatchNormalization::new().named("bn")).unwrap();
    m.add(Dense::new(3).seed(2).named("frozen").trainable(false))
        .unwrap();
    m.add(Dense::new(2).seed(3).named("out")).unwrap();
    compile_with(&mut m, name);
    let (x, y) = data();
    let opts = FitOptions {
        batch_size: 4,
        shuffle: false,
        verbose: 0,
        ..FitOptions::default()
    };
    m.fit(&x, &y, opts).unwrap();
    m
}

fn bits(m: &Model) -> Vec<Vec<u32>> {
    m.get_weights()
        .iter()
        .map(|t| t.data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn a_saved_compiled_model_resumes_training_bit_identically() {
    let dir = Scratch::new("resume");
    let (x, y) = data();
    for name in NAMES {
        let mut original = trained(name);
        let path = dir.path(&format!("{name}.keras"));
        save_keras(&original, &path).unwrap();
        let mut loaded = load_model(&path).unwrap();
        let opt = loaded
            .optimizer_mut()
            .unwrap_or_else(|| panic!("{name}: loads uncompiled"));
        assert_eq!(opt.iterations(), 2, "{name}");
        assert_eq!(
            loaded.evaluate(&x, &y, 4).unwrap(),
            original.evaluate(&x, &y, 4).unwrap(),
            "{name}"
        );
        for step in 0..2 {
            let a = original
                .train_on_batch(&x.slice_batch(0, 4), &y.slice_batch(0, 4))
                .unwrap();
            let b = loaded
                .train_on_batch(&x.slice_batch(0, 4), &y.slice_batch(0, 4))
                .unwrap();
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name}: loss of resumed step {step}"
            );
            assert_eq!(
                bits(&original),
                bits(&loaded),
                "{name}: weights after resumed step {step}"
            );
        }
    }
}

#[test]
fn compile_config_is_written_in_keras_3_form() {
    let dir = Scratch::new("config");
    let m = trained("adam");
    let path = dir.path("m.keras");
    save_keras(&m, &path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("config.json").unwrap(), &mut s).unwrap();
    let cfg: frostnet::serde_json::Value = frostnet::serde_json::from_str(&s).unwrap();
    let cc = &cfg["compile_config"];
    assert_eq!(cc["optimizer"]["class_name"], "Adam");
    assert_eq!(cc["optimizer"]["module"], "keras.optimizers");
    assert_eq!(cc["loss"], "mean_squared_error");
    assert_eq!(cc["metrics"], frostnet::serde_json::json!(["mae"]));
    assert_eq!(
        cc["optimizer"]["config"]["beta_2"].as_f64().unwrap() as f32,
        0.999
    );
    // An uncompiled model is saved without one, as Keras saves it.
    let mut plain = Sequential::new();
    plain.add(Input::new(&[2])).unwrap();
    plain.add(Dense::new(1)).unwrap();
    save_keras(&plain, &path).unwrap();
    assert!(load_model(&path).unwrap().optimizer_mut().is_none());
}

/// Keras 3.15.1 loaded each file `write_compiled_models_for_keras` writes, compiled, and ran
/// `evaluate` and one `train_on_batch` on it: frostnet's numbers on the same files agree.
#[test]
fn keras_loads_the_files_compiled_and_resumes_as_frostnet() {
    let dir = Scratch::new("keras");
    let (x, y) = data();
    for name in NAMES {
        let want = read_npz(&format!(
            "{}/tests/fixtures/compiled_save/{name}_keras.npz",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let path = dir.path(&format!("{name}.keras"));
        save_keras(&trained(name), &path).unwrap();
        let mut m = load_model(&path).unwrap();
        let logs = m.evaluate(&x, &y, 4).unwrap();
        let close = |a: f64, b: f32, what: &str| {
            assert!(
                (a as f32 - b).abs() < 1e-5,
                "{name} {what}: frostnet {a} vs Keras {b}"
            )
        };
        close(
            logs["loss"],
            want["evaluate_loss"].data()[0],
            "evaluate loss",
        );
        close(logs["mae"], want["evaluate_mae"].data()[0], "evaluate mae");
        let loss = m
            .train_on_batch(&x.slice_batch(0, 4), &y.slice_batch(0, 4))
            .unwrap();
        close(loss as f64, want["step_loss"].data()[0], "step loss");
        for (i, w) in m.get_weights().iter().enumerate() {
            let k = &want[&format!("after_{i}")];
            let err = w.max_abs_diff(&k.clone().reshape(w.shape()).unwrap());
            assert!(
                err < 1e-5,
                "{name}: weight {i} after the resumed step differs by {err}"
            );
        }
    }
}

/// Writes the files for `tools/check_compiled_save_in_keras.py`.
#[test]
#[ignore = "writes files for the Keras check: FROSTNET_COMPILED_OUT=DIR cargo test --test compiled_save -- --ignored"]
fn write_compiled_models_for_keras() {
    let dir = std::env::var("FROSTNET_COMPILED_OUT").expect("FROSTNET_COMPILED_OUT");
    std::fs::create_dir_all(&dir).unwrap();
    let (x, y) = data();
    write_npy(&format!("{dir}/x.npy"), &x).unwrap();
    write_npy(&format!("{dir}/y.npy"), &y).unwrap();
    for name in NAMES {
        save_keras(&trained(name), &format!("{dir}/{name}.keras")).unwrap();
    }
}
