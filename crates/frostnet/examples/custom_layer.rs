//! A custom layer the Keras way, with the public API only: a learnable `scale` (a trainable
//! weight) and a running mean of its input (a `State` weight, never trained), its forward pass
//! written with differentiable ops and no hand-written backward.
//!
//! The example trains `y = scale * x` on data made with `y = 3x` until `scale` is 3, freezes the
//! layer and checks that more training leaves it bit-identical, saves the model as `.keras` and
//! in the native format, and loads both back (the class is registered by name, as with
//! `@keras.saving.register_keras_serializable(package="frostnet_examples")` in Keras).
//! `tools/load_custom_layer_in_keras.py` loads the `.keras` file in real Keras.
//!
//! Run: `cargo run --example custom_layer [output directory]`

use frostnet::layers::custom::{register_layer, LayerConfig};
use frostnet::layers::{Initializer, Input, Layer, LayerBase, LayerOptions, Shape, WeightKind};
use frostnet::ops::{Autodiff, OpsLayer, Scope, Var};
use frostnet::saving::{load_model, save_keras, save_model};
use frostnet::training::{FitOptions, Loss, Sgd};
use frostnet::{Model, Result, Sequential, Tensor};

/// `y = x * scale`; in a training pass of a trainable layer it also updates
/// `input_mean <- momentum * input_mean + (1 - momentum) * mean(x)`.
pub struct Scale {
    pub momentum: f32,
}

impl OpsLayer for Scale {
    fn class_name(&self) -> &str {
        "Scale"
    }

    fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> Result<Shape> {
        if !base.built() {
            base.add_weight_init("scale", &[], Initializer::Ones, WeightKind::Param, true)?;
            base.add_weight_init(
                "input_mean",
                &[],
                Initializer::Zeros,
                WeightKind::State,
                false,
            )?;
        }
        Ok(inputs[0].clone())
    }

    fn forward<'t>(&self, inputs: &[Var<'t>], scope: &mut Scope<'t>) -> Result<Var<'t>> {
        let x = &inputs[0];
        if scope.updates_state() {
            let old = scope.weight("input_mean")?.value().data()[0];
            let batch_mean = x.mean_all()?.value().data()[0];
            let m = self.momentum;
            scope.assign(
                "input_mean",
                Tensor::full(&[], m * old + (1.0 - m) * batch_mean),
            )?;
        }
        x.mul(&scope.weight("scale")?)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "momentum": self.momentum })
    }
}

/// Keras's `from_config`: what `load_model` calls for a saved `Scale`.
pub fn scale_from_config(c: &LayerConfig) -> Result<Box<dyn Layer>> {
    let momentum = c.float("momentum", 0.9)?;
    if !(0.0..1.0).contains(&momentum) {
        return Err(c.error(format!("momentum {momentum} is not in [0, 1)")));
    }
    Ok(Box::new(Autodiff::new(Scale { momentum })))
}

/// The registered name, as Keras writes it: `package>ClassName`.
pub const REGISTERED_NAME: &str = "frostnet_examples>Scale";

/// What the example measured.
#[derive(Debug)]
pub struct Outcome {
    pub scale: f32,
    pub input_mean: f32,
    pub frozen_bit_identical: bool,
    pub keras_path: String,
    pub native_path: String,
    /// Largest difference between the trained model's predictions and each loaded copy's.
    pub keras_reload_diff: f32,
    pub native_reload_diff: f32,
    pub reloaded_frozen: bool,
}

fn scale_layer(model: &Model) -> Result<Vec<Tensor>> {
    Ok(model.get_layer("scale")?.get_weights())
}

/// Trains, freezes, saves and reloads; files go to `dir`.
pub fn run(dir: &std::path::Path) -> Result<Outcome> {
    register_layer(REGISTERED_NAME, scale_from_config)?;

    // x = 0, 2/64, ..., 126/64 (mean 63/64), y = 3x.
    let n = 64;
    let xs: Vec<f32> = (0..n).map(|i| 2.0 * i as f32 / n as f32).collect();
    let x = Tensor::from_vec(&[n, 1], xs.clone())?;
    let y = Tensor::from_vec(&[n, 1], xs.iter().map(|v| 3.0 * v).collect())?;

    let mut model = Sequential::named("scaler");
    model.add(Input::new(&[1]))?;
    model.add(Autodiff::new(Scale { momentum: 0.9 }).named("scale"))?;
    model.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let fit = |m: &mut Model, epochs| {
        m.fit(
            &x,
            &y,
            FitOptions {
                batch_size: n, // one full batch per step: every batch mean is the data mean
                epochs,
                verbose: 0,
                ..FitOptions::default()
            },
        )
    };
    fit(&mut model, 100)?;
    let trained = scale_layer(&model)?;
    let (scale, input_mean) = (trained[0].data()[0], trained[1].data()[0]);

    // Freeze it: Keras's `layer.trainable = False`. More training changes nothing, bit for bit.
    model.get_layer_mut("scale")?.set_trainable(false);
    fit(&mut model, 5)?;
    let frozen_bit_identical = scale_layer(&model)? == trained;

    std::fs::create_dir_all(dir).map_err(|e| frostnet::Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let keras_path = dir.join("custom_layer.keras").display().to_string();
    let native_path = dir.join("custom_layer.frostnet").display().to_string();
    save_keras(&model, &keras_path)?;
    save_model(&model, &native_path)?;

    let want = model.predict(&x, 32)?;
    let mut keras = load_model(&keras_path)?;
    let mut native = load_model(&native_path)?;
    let reloaded_frozen = !keras.get_layer("scale")?.is_trainable()
        && !native.get_layer("scale")?.is_trainable()
        && scale_layer(&keras)? == trained
        && scale_layer(&native)? == trained;
    Ok(Outcome {
        scale,
        input_mean,
        frozen_bit_identical,
        keras_reload_diff: keras.predict(&x, 32)?.max_abs_diff(&want),
        native_reload_diff: native.predict(&x, 32)?.max_abs_diff(&want),
        keras_path,
        native_path,
        reloaded_frozen,
    })
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("frostnet_custom_layer"));
    let o = run(&dir)?;
    println!("learned scale {:.6} (target 3)", o.scale);
    println!(
        "running input mean {:.6} (data mean 63/64 = 0.984375, times 1 - 0.9^100)",
        o.input_mean
    );
    println!(
        "frozen layer bit-identical after 5 more epochs: {}",
        o.frozen_bit_identical
    );
    println!(
        "saved {} and {}; reloaded predictions differ by {} and {}; reloaded frozen with the same weights: {}",
        o.keras_path, o.native_path, o.keras_reload_diff, o.native_reload_diff, o.reloaded_frozen
    );
    if (o.scale - 3.0).abs() > 1e-3 || !o.frozen_bit_identical || !o.reloaded_frozen {
        return Err("the example did not reach its known answer".into());
    }
    Ok(())
}
