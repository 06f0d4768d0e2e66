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
