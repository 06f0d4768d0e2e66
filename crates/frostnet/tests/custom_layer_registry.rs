//! Issue #12 point 3 and the example: a custom layer class registered by name round-trips
//! through `.keras` and the native format; the example's logic runs as a test.

#[allow(dead_code)]
#[path = "../examples/custom_layer.rs"]
mod example;

use frostnet::layers::custom::{register_layer, registered_layers, LayerConfig};
use frostnet::layers::{Input, Layer, LayerOptions};
use frostnet::ops::Autodiff;
use frostnet::saving::{build_model, load_model, model_config, save_keras};
use frostnet::Sequential;

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("frostnet_test_{}_{name}", std::process::id()))
}

#[test]
fn the_example_learns_scale_3_freezes_bit_identically_and_reloads_both_formats() {
    let dir = tmp("example");
    let o = example::run(&dir).unwrap();
    assert!((o.scale - 3.0).abs() < 1e-4, "{o:?}");
    // 100 full-batch steps of m <- 0.9 m + 0.1 * 63/64 from 0.
    let want = 63.0 / 64.0 * (1.0 - 0.9f64.powi(100));
    assert!((o.input_mean as f64 - want).abs() < 1e-5, "{o:?}");
    assert!(o.frozen_bit_identical && o.reloaded_frozen, "{o:?}");
    assert_eq!((o.keras_reload_diff, o.native_reload_diff), (0.0, 0.0));
    // The .keras config names the class as Keras does for a registered class.
    let bytes = std::fs::read(&o.keras_path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(r#""module":null"#) && text.contains(r#""class_name":"Scale""#));
    assert!(text.contains(r#""registered_name":"frostnet_examples>Scale""#));
    assert!(registered_layers().contains(&example::REGISTERED_NAME.to_string()));
    std::fs::remove_dir_all(dir).ok();
}

fn other_scale(_: &LayerConfig) -> frostnet::Result<Box<dyn Layer>> {
    Ok(Box::new(Autodiff::new(example::Scale { momentum: 0.5 })))
}

#[test]
fn registry_refuses_bad_names_and_loading_names_the_missing_registration() {
    assert!(
        register_layer("pkg>Dense", other_scale).is_err(),
        "shadows a built-in"
    );
    assert!(register_layer("pkg>", other_scale).is_err());
    assert!(register_layer("a>b>C", other_scale).is_err());
    // A model with an unregistered class saves, but loading it says the class is unknown.
    let mut m = Sequential::new();
    m.add(Input::new(&[2])).unwrap();
    m.add(Autodiff::new(Unregistered).named("u")).unwrap();
    let path = tmp("unregistered.keras");
    save_keras(&m, path.to_str().unwrap()).unwrap();
    let e = load_model(path.to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'Unregistered' is not known"), "{e}");
    std::fs::remove_file(path).ok();
    // A Keras file naming a registered class frostnet does not have says what to register.
    register_layer("elsewhere>Unregistered", unregistered_from_config).unwrap();
    let mut config = model_config(&m);
    assert_eq!(
        config.pointer("/config/layers/1/registered_name").unwrap(),
        "elsewhere>Unregistered"
    );
    assert!(build_model(&config, "in memory").is_ok());
    config["config"]["layers"][1]["registered_name"] = "keras_side>Unregistered".into();
    let e = build_model(&config, "in memory").err().unwrap().to_string();
    assert!(
        e.contains("'keras_side>Unregistered'") && e.contains("elsewhere>Unregistered"),
        "{e}"
    );
    config["config"]["layers"][1]["class_name"] = "Missing".into();
    config["config"]["layers"][1]["registered_name"] = "keras_side>Missing".into();
    let e = build_model(&config, "in memory").err().unwrap().to_string();
    assert!(e.contains("register_layer(\"keras_side>Missing\""), "{e}");
}

struct Unregistered;
impl frostnet::ops::OpsLayer for Unregistered {
    fn class_name(&self) -> &str {
        "Unregistered"
    }
    fn build(
        &mut self,
        _: &mut frostnet::layers::LayerBase,
        inputs: &[frostnet::Shape],
    ) -> frostnet::Result<frostnet::Shape> {
        Ok(inputs[0].clone())
    }
    fn forward<'t>(
        &self,
        x: &[frostnet::ops::Var<'t>],
        _: &mut frostnet::ops::Scope<'t>,
    ) -> frostnet::Result<frostnet::ops::Var<'t>> {
        Ok(x[0].tanh())
    }
}

fn unregistered_from_config(_: &LayerConfig) -> frostnet::Result<Box<dyn Layer>> {
    Ok(Box::new(Autodiff::new(Unregistered)))
}

/// The Rust twin of `Gated` in `tools/make_custom_layer_fixture.py`:
/// `y = x * sigmoid(x @ kernel + bias)`, with a running mean of the gate (a `State` weight
/// created first, listed last as in Keras).
struct Gated {
    momentum: f32,
}

impl frostnet::ops::OpsLayer for Gated {
    fn class_name(&self) -> &str {
        "Gated"
    }
    fn build(
        &mut self,
        base: &mut frostnet::layers::LayerBase,
        inputs: &[frostnet::Shape],
    ) -> frostnet::Result<frostnet::Shape> {
        use frostnet::layers::{Initializer, WeightKind};
        let f = inputs[0].last().copied().flatten().unwrap_or(1);
        if !base.built() {
            base.add_weight_init(
                "gate_mean",
                &[f],
                Initializer::Zeros,
                WeightKind::State,
                false,
            )?;
            let glorot = Initializer::GlorotUniform { seed: None };
            base.add_weight_init("kernel", &[f, f], glorot, WeightKind::Param, true)?;
            let uniform = Initializer::RandomUniform {
                min: -0.05,
                max: 0.05,
                seed: None,
            };
            base.add_weight_init("bias", &[f], uniform, WeightKind::Param, true)?;
        }
        Ok(inputs[0].clone())
    }
    fn forward<'t>(
        &self,
        x: &[frostnet::ops::Var<'t>],
        w: &mut frostnet::ops::Scope<'t>,
    ) -> frostnet::Result<frostnet::ops::Var<'t>> {
        let g = x[0]
            .matmul(&w.weight("kernel")?)?
            .add(&w.weight("bias")?)?
            .sigmoid();
        if w.updates_state() {
            let old = w.weight("gate_mean")?;
            let m = self.momentum;
            let new = old.scale(m).add(&g.mean(&[0], false)?.scale(1.0 - m))?;
            w.assign("gate_mean", (*new.value()).clone())?;
        }
        x[0].mul(&g)
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "momentum": self.momentum })
    }
}

fn gated_from_config(c: &LayerConfig) -> frostnet::Result<Box<dyn Layer>> {
    Ok(Box::new(Autodiff::new(Gated {
        momentum: c.float("momentum", 0.5)?,
    })))
}

#[test]
fn loads_a_keras_made_model_with_a_registered_custom_class() {
    register_layer("frostnet_tests>Gated", gated_from_config).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/custom_layer");
    let want = frostnet::io::npy::read_npz(&format!("{dir}/gated.npz")).unwrap();
    let mut m = load_model(&format!("{dir}/gated.keras")).unwrap();
    let layer = m.get_layer("gated").unwrap();
    assert_eq!(layer.class_name(), "Gated");
    for w in layer.weights() {
        assert_eq!(w.value(), &want[w.name()], "weight {}", w.name());
    }
    let names: Vec<&str> = layer.weights().iter().map(|w| w.name()).collect();
    assert_eq!(names, ["kernel", "bias", "gate_mean"]);
    assert_eq!(layer.trainable_weights().len(), 2);
    let y = m.predict(&want["x"], 32).unwrap();
    assert!(
        y.max_abs_diff(&want["y"]) < 1e-5,
        "{}",
        y.max_abs_diff(&want["y"])
    );
    // frostnet's own .keras of it loads again with the same predictions.
    let path = tmp("gated.keras");
    save_keras(&m, path.to_str().unwrap()).unwrap();
    let mut again = load_model(path.to_str().unwrap()).unwrap();
    assert_eq!(again.predict(&want["x"], 32).unwrap(), y);
    std::fs::remove_file(path).ok();
    // Keras's one training call took gate_mean from 0 to 0.5 * mean(gate) with these weights;
    // a training step in frostnet from 0 does the same (the update precedes the optimizer step).
    let layer = m.get_layer_mut("gated").unwrap();
    let i = layer.base().weight_index("gate_mean").unwrap();
    layer.base_mut().weights_mut()[i]
        .assign(frostnet::Tensor::zeros(&[3]))
        .unwrap();
    m.compile(
        frostnet::training::Sgd::new(0.1),
        frostnet::training::Loss::MeanSquaredError,
        &[],
    );
    m.train_on_batch(&want["x"], &want["y"]).unwrap();
    let got = m
        .get_layer("gated")
        .unwrap()
        .base()
        .weight("gate_mean")
        .unwrap()
        .value()
        .clone();
    assert!(got.max_abs_diff(&want["gate_mean"]) < 1e-6, "{got:?}");
}
