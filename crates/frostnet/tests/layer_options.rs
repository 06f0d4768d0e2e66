//! The Keras layer options frostnet used to refuse, against Keras: Conv2D and Conv1D `groups`,
//! Conv1D `padding="causal"` and `dilation_rate`, Conv2DTranspose `output_padding`. Each
//! Keras-made model (tools/make_layer_options_reference.py, Keras 3.15.1) loads, predicts within
//! 1e-5 of Keras, trains one SGD step within 1e-5 of Keras and survives a save_keras / load_model
//! round trip; each option's backward passes a finite-difference gradient check; bad values are
//! typed errors naming the layer. Also NASNetMobile's he_normal convolutions, and Embedding
//! `mask_zero=True` with Keras 3's masking (propagation, masked GlobalAveragePooling1D, masked
//! loss and metrics, masks dropped where Keras drops them).

use frostnet::applications::nasnet_mobile;
use frostnet::io::npy::read_npz;
use frostnet::layers::*;
use frostnet::saving::{load_model, model_config, save_keras};
use frostnet::tensor::{random, Padding};
use frostnet::testing::gradient_check;
use frostnet::training::{FitOptions, Loss, Sgd};
use frostnet::{Error, Functional, Mode, Sequential, Tensor};
use std::collections::HashMap;

mod common;
use common::{max_diff, Scratch};

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/layer_options/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn arrays(name: &str) -> HashMap<String, Tensor> {
    read_npz(&fixture(&format!("{name}.npz"))).unwrap()
}

/// The Keras-made models that train (mask_combine, below, only predicts).
const MODELS: [&str; 6] = [
    "conv_groups",
    "conv1d_options",
    "transpose_options",
    "mask_pool",
    "mask_output",
    "mask_dropped",
];

#[test]
fn keras_models_with_the_options_predict_as_keras() {
    for name in MODELS {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let pred = m.predict(&a["x"], 32).unwrap();
        let err = max_diff(&pred, &a["pred"]);
        eprintln!("{name}: predict max abs difference vs Keras {err:.2e}");
        assert!(err < 1e-5, "{name} predict: max abs error {err}");
    }
}

#[test]
fn keras_models_with_the_options_train_one_sgd_step_as_keras() {
    for name in MODELS {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let worst = common::one_sgd_step_matches_keras(name, &mut m, &a);
        eprintln!("{name}: weights after one SGD step, max abs difference vs Keras {worst:.2e}");
    }
}

#[test]
fn keras_models_with_the_options_round_trip_through_save_keras() {
    let dir = Scratch::new("roundtrip");
    for name in MODELS {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let path = dir.path(&format!("{name}.keras"));
        save_keras(&m, &path).unwrap();
        let mut back = load_model(&path).unwrap();
        assert_eq!(model_config(&m), model_config(&back), "{name} config");
        let (p, q) = (
            m.predict(&a["x"], 32).unwrap(),
            back.predict(&a["x"], 32).unwrap(),
        );
        assert_eq!(p.data(), q.data(), "{name}: predictions differ");
    }
}

/// The options as Keras wrote them appear in frostnet's config of the loaded model (what
/// save_keras writes).
#[test]
fn written_configs_carry_the_options_as_keras_writes_them() {
    let layer = |model: &str, layer: &str| {
        let m = load_model(&fixture(&format!("{model}.keras"))).unwrap();
        let cfg = model_config(&m);
        cfg["config"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["config"]["name"] == layer)
            .unwrap()["config"]
            .clone()
    };
    let g3 = layer("conv_groups", "g3");
    assert_eq!(g3["groups"], 3);
    let c = layer("conv1d_options", "causal_dilated_g2");
    assert_eq!(c["padding"], "causal");
    assert_eq!(c["dilation_rate"], serde_json::json!([2]));
    assert_eq!(c["groups"], 2);
    let t = layer("transpose_options", "valid_op");
    assert_eq!(t["output_padding"], serde_json::json!([2, 0]));
    let t = layer("transpose_options", "same_op1");
    assert_eq!(t["output_padding"], serde_json::json!([1, 1]));
}

/// Writes frostnet's re-saved models and predictions for
/// `python3 tools/make_layer_options_reference.py --check DIR` (Keras loads what frostnet wrote).
#[test]
#[ignore = "writes files for the Keras-side check; run with FROSTNET_LAYER_OPTIONS_OUT=DIR"]
fn write_round_trip_files() {
    let out = std::env::var("FROSTNET_LAYER_OPTIONS_OUT").expect("set FROSTNET_LAYER_OPTIONS_OUT");
    std::fs::create_dir_all(&out).unwrap();
    for name in MODELS {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        save_keras(&m, &format!("{out}/{name}.keras")).unwrap();
        let y = m.predict(&a["x"], 32).unwrap();
        frostnet::io::npy::write_npy(&format!("{out}/{name}_frostnet.npy"), &y).unwrap();
    }
}

// Gradient checks.

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = random::rng(Some(seed));
    Tensor::from_vec(
        shape,
        random::uniform(&mut r, shape.iter().product(), -1.0, 1.0),
    )
    .unwrap()
}

fn check(layer: &mut dyn Layer, shape: &[usize]) {
    let per: Shape = shape[1..].iter().map(|&d| Some(d)).collect();
    layer.build(&[per]).unwrap();
    let rep = gradient_check(layer, &[rand_tensor(shape, 3)], Mode::Train, 1e-2).unwrap();
    assert!(rep.checked > 0);
    assert!(rep.max_rel_error < 2e-2, "{}: {rep:?}", layer.name());
}

#[test]
fn grouped_conv2d_gradients_match_finite_differences() {
    check(
        &mut Conv2D::new(6, 3)
            .groups(2)
            .padding(Padding::Same)
            .activation(ActivationFn::Tanh)
            .seed(1),
        &[2, 5, 4, 4],
    );
    check(
        &mut Conv2D::with_kernel(3, (2, 3))
            .groups(3)
            .strides2((2, 1))
            .seed(2),
        &[2, 5, 6, 6],
    );
    check(&mut Conv2D::new(6, 1).groups(3).seed(3), &[2, 3, 3, 3]);
}

#[test]
fn conv1d_causal_dilated_grouped_gradients_match_finite_differences() {
    check(
        &mut Conv1D::new(6, 3)
            .causal()
            .dilation_rate(2)
            .groups(2)
            .activation(ActivationFn::Tanh)
            .seed(1),
        &[2, 9, 4],
    );
    check(
        &mut Conv1D::new(3, 2).causal().strides(2).seed(2),
        &[2, 7, 3],
    );
    check(
        &mut Conv1D::new(4, 3)
            .padding(Padding::Same)
            .dilation_rate(3)
            .seed(3),
        &[2, 8, 2],
    );
    check(
        &mut Conv1D::new(2, 2).dilation_rate(3).groups(2).seed(4),
        &[2, 8, 4],
    );
}

#[test]
fn conv2d_transpose_output_padding_gradients_match_finite_differences() {
    check(
        &mut Conv2DTranspose::new(3, 3)
            .strides(2)
            .padding(Padding::Same)
            .output_padding((1, 1))
            .activation(ActivationFn::Tanh)
            .seed(1),
        &[2, 3, 4, 2],
    );
    check(
        &mut Conv2DTranspose::with_kernel(2, (2, 3))
            .strides2((3, 2))
            .output_padding((2, 0))
            .seed(2),
        &[2, 2, 3, 2],
    );
    check(
        &mut Conv2DTranspose::new(2, 4)
            .strides(2)
            .padding(Padding::Same)
            .output_padding((1, 1))
            .seed(3),
        &[1, 3, 2, 3],
    );
}

// Mathematics independent of Keras.

/// Causal padding: output step t depends on input steps <= t only, and with k=1 a causal
/// convolution equals a pointwise one.
#[test]
fn causal_conv1d_never_looks_ahead() {
    let mut conv = Conv1D::new(2, 3).causal().dilation_rate(2).seed(5);
    conv.build(&[vec![Some(8), Some(3)]]).unwrap();
    let x = rand_tensor(&[1, 8, 3], 7);
    let mut ctx = frostnet::layers::ForwardCtx::infer();
    let y = conv.forward(&[&x], &mut ctx).unwrap();
    assert_eq!(y.shape(), &[1, 8, 2]);
    for t in 0..8 {
        // Changing the input after step t leaves outputs 0..=t unchanged.
        let mut x2 = x.clone();
        for v in &mut x2.data_mut()[(t + 1) * 3..] {
            *v += 1.0;
        }
        let y2 = conv.forward(&[&x2], &mut ctx).unwrap();
        assert_eq!(
            y.data()[..(t + 1) * 2],
            y2.data()[..(t + 1) * 2],
            "step {t}"
        );
        if t < 7 {
            assert_ne!(y.data()[(t + 1) * 2..], y2.data()[(t + 1) * 2..]);
        }
    }
}

// Errors.

fn build_err(layer: &mut dyn Layer, shape: Shape) -> String {
    match layer.build(&[shape]) {
        Err(e @ (Error::InvalidConfig(_) | Error::IncompatibleShape { .. })) => e.to_string(),
        other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bad_option_values_are_typed_errors_naming_the_layer() {
    let msg = build_err(
        &mut Conv2D::new(6, 3).groups(4).named("bad_groups"),
        vec![Some(5), Some(5), Some(4)],
    );
    assert!(
        msg.contains("bad_groups") && msg.contains("groups=4"),
        "{msg}"
    );
    let msg = build_err(
        &mut Conv2D::new(4, 3).groups(3).named("bad_groups2"),
        vec![Some(5), Some(5), Some(6)],
    );
    assert!(msg.contains("bad_groups2"), "{msg}");
    let msg = build_err(
        &mut Conv2D::new(4, 3).groups(0).named("zero_groups"),
        vec![Some(5), Some(5), Some(4)],
    );
    assert!(msg.contains("zero_groups"), "{msg}");
    let msg = build_err(
        &mut Conv1D::new(4, 3).groups(3).named("c1_groups"),
        vec![Some(5), Some(4)],
    );
    assert!(msg.contains("c1_groups"), "{msg}");
    let msg = build_err(
        &mut Conv1D::new(4, 3)
            .dilation_rate(2)
            .strides(2)
            .named("dil_stride"),
        vec![Some(9), Some(4)],
    );
    assert!(
        msg.contains("dil_stride") && msg.contains("dilation_rate"),
        "{msg}"
    );
    let msg = build_err(
        &mut Conv1D::new(4, 3).dilation_rate(4).named("too_short"),
        vec![Some(8), Some(4)],
    );
    assert!(
        msg.contains("too_short") && msg.contains("9 steps"),
        "{msg}"
    );
    let msg = build_err(
        &mut Conv2DTranspose::new(2, 3)
            .strides(2)
            .output_padding((2, 1))
            .named("op_too_big"),
        vec![Some(3), Some(3), Some(2)],
    );
    assert!(
        msg.contains("op_too_big") && msg.contains("output_padding"),
        "{msg}"
    );
    // `same`, an even kernel and output_padding 0: TensorFlow's convolution cannot map the
    // (h - 1) * stride output back to h rows; Keras's call fails too.
    let msg = build_err(
        &mut Conv2DTranspose::new(2, 2)
            .strides(2)
            .padding(Padding::Same)
            .output_padding((0, 1))
            .named("op_unmappable"),
        vec![Some(3), Some(3), Some(2)],
    );
    assert!(msg.contains("op_unmappable"), "{msg}");
}

/// Bad values in a Keras config are file errors naming the layer, never panics.
#[test]
fn bad_option_values_in_keras_files_are_errors() {
    let src = fixture("conv_groups.keras");
    let archive = frostnet_formats::read_keras_archive(&src).unwrap();
    for (layer, key, value) in [
        ("g2", "groups", serde_json::json!(3)),
        ("g2", "groups", serde_json::json!(0)),
        ("g3", "groups", serde_json::json!(-1)),
        ("g2", "dilation_rate", serde_json::json!([2, 2])),
    ] {
        let mut config = archive.config.clone();
        let layers = config["config"]["layers"].as_array_mut().unwrap();
        let l = layers
            .iter_mut()
            .find(|l| l["config"]["name"] == layer)
            .unwrap();
        l["config"][key] = value.clone();
        match frostnet::saving::build_model(&config, "conv_groups.keras") {
            Err(e) => assert!(e.to_string().contains(layer), "{key}={value}: {e}"),
            Ok(_) => panic!("{layer}: {key}={value} accepted"),
        }
    }
    let archive = frostnet_formats::read_keras_archive(fixture("transpose_options.keras")).unwrap();
    let mut config = archive.config.clone();
    config["config"]["layers"][1]["config"]["output_padding"] = serde_json::json!([1, "a"]);
    let e = frostnet::saving::build_model(&config, "t.keras")
        .err()
        .unwrap();
    assert!(e.to_string().contains("same_op1"), "{e}");
}

// NASNetMobile's initialisers.

/// Keras builds NASNet's Conv2Ds with `kernel_initializer="he_normal"` (a normal truncated at
/// two standard deviations, variance 2 / fan_in) and its separable convolutions with the
/// glorot-uniform default; fresh frostnet weights follow the same distributions.
#[test]
fn nasnet_mobile_fresh_weights_use_keras_initialisers() {
    let m = nasnet_mobile(&Default::default()).unwrap();
    let stats = |name: &str| {
        let w = m
            .named_weights()
            .into_iter()
            .find(|(p, _)| p == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
            .value()
            .clone();
        let n = w.len() as f64;
        let var = w.data().iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
        let max = w.data().iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        (w.shape().to_vec(), var, max)
    };
    // he_normal: variance 2 / fan_in, |w| <= 2 stddev (stddev = sqrt(2 / fan_in) / 0.8796).
    for name in [
        "stem_conv1/kernel",
        "normal_conv_1_0/kernel",
        "reduction_conv_1_reduce_4/kernel",
    ] {
        let (shape, var, max) = stats(name);
        let fan_in: usize = shape[..3].iter().product();
        let want = 2.0 / fan_in as f64;
        assert!(
            (var / want - 1.0).abs() < 0.12,
            "{name}: variance {var} vs he_normal's {want}"
        );
        let bound = 2.0 * want.sqrt() / 0.879_625_661;
        assert!(max <= bound * 1.0001, "{name}: {max} beyond {bound}");
    }
    // The separable convolutions keep glorot-uniform: variance limit^2 / 3.
    let (shape, var, max) = stats("separable_conv_1_normal_left1_0/pointwise_kernel");
    let (fan_in, fan_out) = (shape[2], shape[3]);
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    assert!((var / (limit * limit / 3.0) - 1.0).abs() < 0.12, "{var}");
    assert!(max <= limit);
}

/// A model with the options built in frostnet (not loaded) trains: the loss falls.
#[test]
fn a_model_with_the_options_trains() {
    let mut m = Sequential::new();
    m.add(Input::new(&[8, 4])).unwrap();
    m.add(
        Conv1D::new(4, 3)
            .causal()
            .dilation_rate(2)
            .groups(2)
            .activation(ActivationFn::Tanh)
            .seed(1),
    )
    .unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(1).seed(2)).unwrap();
    m.compile(Sgd::new(0.05), Loss::MeanSquaredError, &[]);
    let x = rand_tensor(&[16, 8, 4], 9);
    let y = rand_tensor(&[16, 1], 10);
    let opts = FitOptions {
        batch_size: 16,
        epochs: 20,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    };
    let h = m.fit(&x, &y, opts).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[19] < loss[0] * 0.8, "{loss:?}");
}

// Masking (Embedding mask_zero=True).

/// The mask reaching the output is Keras's (`ids != 0`), and `evaluate`'s loss and metric count
/// only the unmasked steps, as Keras's do (Keras's unmasked mse differs by ~0.015 here).
#[test]
fn masked_output_loss_and_metrics_match_keras() {
    let a = arrays("mask_output");
    let mut m = load_model(&fixture("mask_output.keras")).unwrap();
    m.predict(&a["x"], 32).unwrap();
    let want: Vec<bool> = a["mask"].data().iter().map(|&v| v != 0.0).collect();
    assert_eq!(m.output_mask(0), Some(&want[..]));
    m.compile(
        Sgd::new(0.1),
        Loss::MeanSquaredError,
        &[frostnet::training::Metric::MeanAbsoluteError],
    );
    let logs = m.evaluate(&a["x"], &a["y"], 32).unwrap();
    let (loss, mae) = (logs["loss"] as f32, logs["mae"] as f32);
    let (k_loss, k_mae) = (a["eval"].data()[0], a["eval"].data()[1]);
    eprintln!("mask_output: evaluate loss {loss} vs Keras {k_loss}, mae {mae} vs Keras {k_mae}");
    assert!(
        (loss - k_loss).abs() < 1e-5,
        "loss {loss} vs Keras {k_loss}"
    );
    assert!((mae - k_mae).abs() < 1e-5, "mae {mae} vs Keras {k_mae}");
}

/// Layers that do not support masking drop it, as in Keras: no mask reaches the output.
#[test]
fn masks_are_dropped_where_keras_drops_them() {
    let a = arrays("mask_dropped");
    let mut m = load_model(&fixture("mask_dropped.keras")).unwrap();
    m.predict(&a["x"], 32).unwrap();
    assert_eq!(m.output_mask(0), None);
    let a = arrays("mask_pool");
    let mut m = load_model(&fixture("mask_pool.keras")).unwrap();
    m.predict(&a["x"], 32).unwrap();
    assert_eq!(
        m.output_mask(0),
        None,
        "GlobalAveragePooling1D consumes the mask"
    );
}

fn masked_pool_model(extra: Option<Box<dyn Layer>>) -> frostnet::Model {
    let mut g = Functional::new();
    let x = g.input(Input::new(&[5]));
    let e = g
        .call(Embedding::new(7, 3).mask_zero(true).seed(1), &[x])
        .unwrap();
    let mut h = g
        .call(Dense::new(4).activation(ActivationFn::Tanh).seed(2), &[e])
        .unwrap();
    if let Some(l) = extra {
        h = g.call_boxed(l, &[h]).unwrap();
    }
    let p = g.call(GlobalAveragePooling1D::new(), &[h]).unwrap();
    let out = g.call(Dense::new(2).seed(3), &[p]).unwrap();
    g.build(&[x], &[out]).unwrap()
}

/// Ids with zeros (masked steps) at the ends and in the middle, offset by 0.5 so that a
/// finite-difference step never changes the row an id selects.
fn ids() -> Tensor {
    Tensor::from_vec(
        &[3, 5],
        vec![
            3.5, 0.5, 2.5, 6.5, 1.5, //
            4.5, 5.5, 1.5, 0.5, 0.5, //
            2.5, 0.5, 0.5, 0.5, 0.5,
        ],
    )
    .unwrap()
}

/// The masked mean and its backward (through Dense and the embedding table) against finite
/// differences; and the masked mean is the mean of the unmasked steps only.
#[test]
fn masked_global_average_pooling_gradients_match_finite_differences() {
    let mut m = masked_pool_model(None);
    let rep = gradient_check(&mut m, &[ids()], Mode::Train, 1e-2).unwrap();
    assert!(rep.checked > 0);
    assert!(rep.max_rel_error < 2e-2, "{rep:?}");
    // Changing a masked step's id changes nothing; an unmasked one does.
    let base = m.predict(&ids(), 32).unwrap();
    let mut x = ids();
    x.data_mut()[0] = 5.5; // unmasked step of sample 0
    assert_ne!(m.predict(&x, 32).unwrap().data()[..2], base.data()[..2]);
}

/// Where Keras's values depend on the mask in ways frostnet does not compute, the forward pass is
/// a typed error naming the layer; a BatchNormalization on its moving statistics passes it on.
#[test]
fn unsupported_masked_layers_are_typed_errors() {
    let mut m = masked_pool_model(Some(Box::new(Softmax::new().named("masked_softmax"))));
    match m.predict(&ids(), 32) {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("masked_softmax"), "{msg}"),
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    }
    let mut m = masked_pool_model(Some(Box::new(BatchNormalization::new().named("bn"))));
    m.predict(&ids(), 32).unwrap();
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let y = rand_tensor(&[3, 2], 4);
    let opts = FitOptions {
        batch_size: 3,
        epochs: 1,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    };
    match m.fit(&ids(), &y, opts) {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("'bn'"), "{msg}"),
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    }
}

/// How merges combine masks, against the masks Keras attaches to a model's outputs: `Add` ORs
/// two masks, `Average` with an unmasked input has none, `Concatenate` counts an unmasked input
/// as all true and ORs.
#[test]
fn merges_combine_masks_as_keras() {
    let a = arrays("mask_combine");
    let mut m = load_model(&fixture("mask_combine.keras")).unwrap();
    let mut rng = random::rng(Some(0));
    let outs = m
        .run_forward(
            &[&a["ids1"], &a["ids2"], &a["feats"]],
            Mode::Infer,
            false,
            &[],
            &mut rng,
        )
        .unwrap();
    for (i, name) in ["add", "avg", "cat", "cat2"].iter().enumerate() {
        let err = max_diff(&outs[i], &a[*name]);
        assert!(err < 1e-6, "{name}: {err}");
        let want: Option<Vec<bool>> = a
            .get(&format!("{name}_mask"))
            .map(|t| t.data().iter().map(|&v| v != 0.0).collect());
        assert_eq!(
            m.output_mask(i).map(<[bool]>::to_vec),
            want,
            "{name}'s mask"
        );
    }
    // The case is discriminating: the two inputs' masks differ.
    assert_ne!(a["ids1"].data(), a["ids2"].data());
}
