//! The layers of issue #14 against Keras: broadcasting merges, activations, activation layers,
//! reshaping layers, Normalization, Embedding, LayerNormalization, UnitNormalization, the 1-D
//! global poolings and Dense on a rank-3 input. Each Keras-made model (tools/
//! make_layers_reference.py, Keras 3.15.1) loads, predicts within 1e-5 of Keras, trains one SGD
//! step within 1e-5 of Keras, and survives a save_keras / load_model round trip; each layer's
//! backward passes a finite-difference gradient check; registry and error cases are covered.

use frostnet::io::npy::read_npz;
use frostnet::layers::*;
use frostnet::saving::{load_model, model_config, save_keras};
use frostnet::tensor::{random, Padding};
use frostnet::testing::gradient_check;
use frostnet::{Error, Functional, Mode, Tensor};
use std::collections::HashMap;

mod common;
use common::{close, Scratch};

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/layers/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn arrays(name: &str) -> HashMap<String, Tensor> {
    read_npz(&fixture(&format!("{name}.npz"))).unwrap()
}

const MODELS: [&str; 10] = [
    "merges",
    "activations",
    "activation_layers",
    "reshaping",
    "embedding",
    "sequence",
    "pooling1d",
    "transpose",
    "conv1d",
    "group_norm",
];

#[test]
fn keras_models_predict_as_keras() {
    for name in MODELS {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let pred = m.predict(&a["x"], 32).unwrap();
        close(&pred, &a["pred"], 1e-5, &format!("{name} predict"));
    }
}

#[test]
fn keras_models_train_one_sgd_step_as_keras() {
    for name in MODELS {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        common::one_sgd_step_matches_keras(name, &mut m, &a);
    }
}

#[test]
fn keras_models_round_trip_through_save_keras() {
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
        assert_eq!(
            p.data(),
            q.data(),
            "{name}: predictions differ after the round trip"
        );
        for (w, v) in m.get_weights().iter().zip(back.get_weights()) {
            assert_eq!(
                w.data(),
                v.data(),
                "{name}: weights differ after the round trip"
            );
        }
    }
}

#[test]
fn keras_writes_activation_names_frostnet_reads() {
    // Keras writes swish as "silu" and hard_swish as "hard_silu"; the aliases parse too.
    let cfg = model_config(&load_model(&fixture("activations.keras")).unwrap());
    let text = cfg.to_string();
    for f in ActivationFn::ALL {
        if f != ActivationFn::GeluTanh {
            assert!(
                text.contains(&format!("\"activation\":\"{}\"", f.as_str())),
                "{f:?} missing from the Keras-made model"
            );
        }
        assert_eq!(ActivationFn::parse(f.as_str()).unwrap(), f);
    }
    assert_eq!(ActivationFn::parse("swish").unwrap(), ActivationFn::Silu);
    assert_eq!(
        ActivationFn::parse("hard_swish").unwrap(),
        ActivationFn::HardSilu
    );
    assert!(ActivationFn::parse("celu").is_err());
}

#[test]
fn gelu_both_forms_match_keras() {
    let a = arrays("activations");
    for (f, key) in [
        (ActivationFn::GeluTanh, "gelu_tanh"),
        (ActivationFn::Gelu, "gelu_exact"),
    ] {
        let mut v = a["grid"].data().to_vec();
        let n = v.len();
        f.apply(&mut v, n);
        close(
            &Tensor::from_slice(&v),
            &a[key],
            1e-6,
            &format!("{f:?} on the grid"),
        );
    }
}

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = random::rng(Some(seed));
    Tensor::from_vec(
        shape,
        random::uniform(&mut r, shape.iter().product(), -1.5, 1.5),
    )
    .unwrap()
}

/// Values 0.1 apart in a random order, shifted by `0.025 * k` for input `k`: elements of
/// different inputs (k < 4) are at least 0.025 apart, so a step of 0.01 swaps no max/min.
fn distinct_tensor(shape: &[usize], seed: u64, k: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let mut r = random::rng(Some(seed));
    let p = random::permutation(&mut r, n);
    let data = p
        .iter()
        .map(|&i| (i as f32 - n as f32 / 2.0) * 0.1 + 0.025 * k as f32 + 0.005)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn per_sample(shape: &[usize]) -> Shape {
    shape[1..].iter().map(|&d| Some(d)).collect()
}

fn check(layer: &mut dyn Layer, inputs: Vec<Tensor>) {
    let shapes: Vec<Shape> = inputs.iter().map(|t| per_sample(t.shape())).collect();
    layer.build(&shapes).unwrap();
    let rep = gradient_check(layer, &inputs, Mode::Train, 1e-2).unwrap();
    assert!(rep.checked > 0);
    assert!(rep.max_rel_error < 2e-2, "{}: {rep:?}", layer.name());
}

#[test]
fn activations_pass_gradient_checks_in_dense_and_activation() {
    for f in ActivationFn::ALL {
        check(
            &mut Dense::new(3).activation(f).seed(1),
            vec![rand_tensor(&[2, 4], 7)],
        );
        check(&mut Activation::new(f), vec![rand_tensor(&[2, 5], 8)]);
    }
    // Convolutions keep the pre-activation for the functions that need it.
    for f in [
        ActivationFn::Silu,
        ActivationFn::Gelu,
        ActivationFn::Mish,
        ActivationFn::HardSilu,
    ] {
        check(
            &mut Conv2D::new(2, 2).activation(f).seed(2),
            vec![rand_tensor(&[1, 3, 3, 2], 9)],
        );
        check(
            &mut DepthwiseConv2D::new(2).activation(f).seed(2),
            vec![rand_tensor(&[1, 3, 3, 2], 9)],
        );
        check(
            &mut SeparableConv2D::new(2, 2).activation(f).seed(2),
            vec![rand_tensor(&[1, 3, 3, 2], 9)],
        );
    }
}

#[test]
fn merges_pass_gradient_checks_with_broadcasting() {
    let shapes: [&[&[usize]]; 4] = [
        &[&[2, 3, 3, 2], &[2, 1, 1, 2]],
        &[&[2, 3, 3, 2], &[2, 2]],
        &[&[2, 1, 3, 2], &[2, 3, 1, 2], &[2, 2]],
        &[&[2, 4], &[2, 4]],
    ];
    for (i, dims) in shapes.iter().enumerate() {
        let inputs = |seed: u64| -> Vec<Tensor> {
            dims.iter()
                .enumerate()
                .map(|(k, d)| distinct_tensor(d, seed + k as u64, k))
                .collect()
        };
        check(&mut Add::new(), inputs(10 * i as u64));
        check(&mut Multiply::new(), inputs(10 * i as u64 + 1));
        check(&mut Average::new(), inputs(10 * i as u64 + 2));
        // Values at least 0.025 apart across all inputs: the step (0.01) moves no winner.
        check(&mut Maximum::new(), inputs(10 * i as u64 + 3));
        check(&mut Minimum::new(), inputs(10 * i as u64 + 4));
        if dims.len() == 2 {
            check(&mut Subtract::new(), inputs(10 * i as u64 + 5));
        }
    }
}

#[test]
fn merge_broadcasting_follows_keras_shapes_and_errors() {
    let mut g = Functional::new();
    let x = g.input(Input::with_shape(vec![None, Some(4), Some(3)]));
    let s = g.input(Input::new(&[1, 1, 3]));
    let v = g.input(Input::new(&[3]));
    let m = g.call(Multiply::new(), &[x, s]).unwrap();
    assert_eq!(g.shape(m).unwrap(), &vec![None, Some(4), Some(3)]);
    let a = g.call(Add::new(), &[s, v]).unwrap();
    assert_eq!(g.shape(a).unwrap(), &vec![Some(1), Some(1), Some(3)]);
    let bad = g.input(Input::new(&[4, 2]));
    match g.call(Add::new().named("bad_add"), &[x, bad]) {
        Err(Error::ShapeMismatch { context, .. }) => assert!(context.contains("bad_add")),
        other => panic!("expected a shape mismatch, got {:?}", other.map(|_| ())),
    }
    match g.call(Subtract::new(), &[x, s, v]) {
        Err(Error::InvalidConfig(m)) => assert!(m.contains("exactly 2 inputs")),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
    // Values: (1, 2, 3) * (1, 1, 3) broadcasts the second over the rows.
    let mut mul = Multiply::new();
    mul.build(&[vec![Some(2), Some(3)], vec![Some(1), Some(3)]])
        .unwrap();
    let p = Tensor::from_vec(&[1, 2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    let q = Tensor::from_vec(&[1, 1, 3], vec![10., 100., 1000.]).unwrap();
    let y = mul.forward(&[&p, &q], &mut ForwardCtx::infer()).unwrap();
    assert_eq!(y.data(), &[10., 200., 3000., 40., 500., 6000.]);
}

#[test]
fn activation_and_shape_layers_pass_gradient_checks() {
    check(&mut LeakyReLU::new(0.3), vec![rand_tensor(&[2, 5], 1)]);
    check(&mut ELU::new(0.7), vec![rand_tensor(&[2, 5], 2)]);
    check(&mut Softmax::new(), vec![rand_tensor(&[2, 5], 3)]);
    check(&mut Identity::new(), vec![rand_tensor(&[2, 5], 4)]);
    let mut p = PReLU::new().shared_axes(&[1, 2]);
    p.build(&[vec![Some(3), Some(3), Some(2)]]).unwrap();
    p.set_weights(vec![Tensor::from_vec(&[1, 1, 2], vec![0.2, 0.4]).unwrap()])
        .unwrap();
    check(&mut p, vec![rand_tensor(&[2, 3, 3, 2], 5)]);
    check(&mut PReLU::new(), vec![rand_tensor(&[2, 4], 6)]);
    check(
        &mut UpSampling2D::new((2, 3)),
        vec![rand_tensor(&[2, 2, 2, 2], 7)],
    );
    check(
        &mut Cropping2D::new(((1, 0), (0, 2))),
        vec![rand_tensor(&[2, 3, 4, 2], 8)],
    );
    check(
        &mut Permute::new(&[3, 1, 2]),
        vec![rand_tensor(&[2, 2, 3, 4], 9)],
    );
    check(&mut RepeatVector::new(3), vec![rand_tensor(&[2, 4], 10)]);
    let mut n = Normalization::new();
    n.adapt(&rand_tensor(&[6, 3, 2], 11)).unwrap();
    check(&mut n, vec![rand_tensor(&[2, 3, 2], 12)]);
    check(
        &mut Normalization::with_axis(&[1]).invert(true),
        vec![rand_tensor(&[2, 3, 2], 13)],
    );
    let mut ln = LayerNormalization::new();
    ln.build(&[vec![Some(3), Some(4)]]).unwrap();
    ln.set_weights(vec![
        rand_tensor(&[1, 4], 14).reshape(&[4]).unwrap(),
        rand_tensor(&[1, 4], 15).reshape(&[4]).unwrap(),
    ])
    .unwrap();
    check(&mut ln, vec![rand_tensor(&[2, 3, 4], 16)]);
    check(
        &mut LayerNormalization::new().center(false).scale(false),
        vec![rand_tensor(&[2, 5], 17)],
    );
    check(
        &mut UnitNormalization::new(),
        vec![rand_tensor(&[2, 3, 4], 18)],
    );
    check(
        &mut GlobalAveragePooling1D::new(),
        vec![rand_tensor(&[2, 5, 3], 19)],
    );
    check(
        &mut GlobalMaxPooling1D::new().keepdims(true),
        vec![distinct_tensor(&[2, 5, 3], 20, 0)],
    );
    for padding in [Padding::Valid, Padding::Same] {
        check(
            &mut MaxPooling1D::new(3, 2, padding),
            vec![distinct_tensor(&[2, 7, 3], 21, 0)],
        );
        check(
            &mut AveragePooling1D::new(2, 1, padding),
            vec![rand_tensor(&[2, 5, 3], 22)],
        );
    }
    check(
        &mut ZeroPadding1D::new((2, 1)),
        vec![rand_tensor(&[2, 4, 3], 23)],
    );
}

#[test]
fn embedding_gradient_check_and_bad_index() {
    // The table's gradient; indices are truncated like Keras's cast to int, so the output is
    // piecewise constant in them: at .5 the central difference sees the zero gradient returned.
    let idx = Tensor::from_vec(&[2, 3], vec![0.5, 2.5, 2.5, 4.5, 1.5, 0.5]).unwrap();
    let mut e = Embedding::new(5, 3).seed(3);
    e.build(&[vec![Some(3)]]).unwrap();
    let rep = gradient_check(&mut e, &[idx], Mode::Train, 1e-2).unwrap();
    assert!(rep.max_rel_error < 2e-2, "{rep:?}");
    let bad = Tensor::from_vec(&[1, 3], vec![0., 5., 1.]).unwrap();
    match e.forward(&[&bad], &mut ForwardCtx::infer()) {
        Err(Error::InvalidConfig(m)) => assert!(m.contains("index 5"), "{m}"),
        other => panic!("expected an index error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn normalization_adapt_matches_keras_and_count_loads_from_int64() {
    let a = arrays("reshaping");
    let m = load_model(&fixture("reshaping.keras")).unwrap();
    let keras = m.get_layer("norm").unwrap().get_weights();
    // Keras's weights: mean, variance and the int64 count (0 in Keras 3), read as a scalar.
    assert_eq!(keras.len(), 3);
    assert_eq!(keras[2].shape(), &[] as &[usize]);
    assert_eq!(keras[2].data(), &[0.0]);
    let mut n = Normalization::new();
    n.adapt(&a["adapt"]).unwrap();
    let ours = n.get_weights();
    close(&ours[0], &keras[0], 1e-5, "adapted mean");
    close(&ours[1], &keras[1], 1e-5, "adapted variance");
}

#[test]
fn registry_lists_every_new_class() {
    let names: Vec<&str> = frostnet::layers::registry::class_names().collect();
    for class in [
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "Identity",
        "UpSampling2D",
        "Cropping2D",
        "Permute",
        "RepeatVector",
        "Normalization",
        "Embedding",
        "LayerNormalization",
        "UnitNormalization",
        "GlobalAveragePooling1D",
        "GlobalMaxPooling1D",
        "GaussianNoise",
        "GaussianDropout",
        "SpatialDropout2D",
        "MaxPooling1D",
        "AveragePooling1D",
        "ZeroPadding1D",
        "Conv2DTranspose",
        "Conv1D",
        "GroupNormalization",
    ] {
        assert!(names.contains(&class), "{class} is not registered");
    }
}

/// Writes each fixture model re-saved by frostnet (`<name>.keras`) and frostnet's prediction on
/// the fixture input (`<name>_frostnet.npy`) to `$FROSTNET_LAYERS_OUT`, for
/// `python3 tools/make_layers_reference.py --check DIR`, which loads them with Keras.
#[test]
#[ignore = "writes files for a Keras check run by hand (needs Python and Keras)"]
fn write_layers_roundtrip_files() {
    let out = std::env::var("FROSTNET_LAYERS_OUT").expect("set FROSTNET_LAYERS_OUT");
    std::fs::create_dir_all(&out).unwrap();
    for name in MODELS.iter().chain(&["noise"]) {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        save_keras(&m, &format!("{out}/{name}.keras")).unwrap();
        let y = m.predict(&a["x"], 32).unwrap();
        frostnet::io::npy::write_npy(&format!("{out}/{name}_frostnet.npy"), &y).unwrap();
    }
}

#[test]
fn lambda_layer_is_an_error_that_names_it_and_says_why() {
    let src = fixture("activation_layers.keras");
    let archive = frostnet_formats::read_keras_archive(&src).unwrap();
    let mut config = archive.config.clone();
    let layers = config["config"]["layers"].as_array_mut().unwrap();
    let ident = layers
        .iter_mut()
        .find(|l| l["class_name"] == "Identity")
        .unwrap();
    ident["class_name"] = "Lambda".into();
    ident["config"]["function"] = serde_json::json!({"class_name": "__lambda__",
        "config": {"code": "4wEAAAAAAAAA", "defaults": null, "closure": null}});
    match frostnet::saving::build_model(&config, "lambda.keras") {
        Err(Error::File { message, .. }) => {
            assert!(message.contains("'ident'"), "{message}");
            assert!(message.contains("Python code"), "{message}");
        }
        other => panic!("expected a file error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn noise_layers_pass_through_at_inference_as_keras() {
    let dir = Scratch::new("noise");
    let a = arrays("noise");
    let mut m = load_model(&fixture("noise.keras")).unwrap();
    close(
        &m.predict(&a["x"], 32).unwrap(),
        &a["pred"],
        1e-5,
        "noise predict",
    );
    let path = dir.path("noise.keras");
    save_keras(&m, &path).unwrap();
    let back = load_model(&path).unwrap();
    assert_eq!(model_config(&m), model_config(&back));
}

/// Mean and standard deviation.
fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn train_forward(layer: &mut dyn Layer, x: &Tensor) -> Tensor {
    layer.build(&[per_sample(x.shape())]).unwrap();
    let mut ctx = ForwardCtx::infer();
    ctx.mode = Mode::Train;
    ctx.keep = true;
    layer.forward(&[x], &mut ctx).unwrap()
}

#[test]
fn noise_layers_have_keras_statistics_in_training() {
    let x = Tensor::full(&[100, 50, 40], 2.0);
    // GaussianNoise: x + N(0, 0.3^2).
    let y = train_forward(&mut GaussianNoise::new(0.3), &x);
    let d: Vec<f32> = y.data().iter().map(|v| v - 2.0).collect();
    let (mean, sd) = moments(&d);
    assert!(mean.abs() < 0.01 && (sd - 0.3).abs() < 0.01, "{mean} {sd}");
    // GaussianDropout(0.2): x * N(1, 0.2 / 0.8).
    let y = train_forward(&mut GaussianDropout::new(0.2), &x);
    let r: Vec<f32> = y.data().iter().map(|v| v / 2.0).collect();
    let (mean, sd) = moments(&r);
    assert!(
        (mean - 1.0).abs() < 0.01 && (sd - 0.5).abs() < 0.01,
        "{mean} {sd}"
    );
    // SpatialDropout2D(0.4): whole channels of an image are dropped, the rest scaled by 1/0.6.
    let x = Tensor::full(&[200, 3, 3, 50], 1.0);
    let y = train_forward(&mut SpatialDropout2D::new(0.4), &x);
    let mut dropped = 0;
    for img in y.data().chunks(3 * 3 * 50) {
        for c in 0..50 {
            let vals: Vec<f32> = (0..9).map(|p| img[p * 50 + c]).collect();
            assert!(
                vals.iter().all(|&v| v == vals[0]),
                "a channel is not dropped as a whole"
            );
            assert!(vals[0] == 0.0 || (vals[0] - 1.0 / 0.6).abs() < 1e-6);
            dropped += usize::from(vals[0] == 0.0);
        }
    }
    let frac = dropped as f64 / (200.0 * 50.0);
    assert!((frac - 0.4).abs() < 0.02, "dropped fraction {frac}");
    // Inference: unchanged.
    let mut ctx = ForwardCtx::infer();
    let mut l = SpatialDropout2D::new(0.4);
    l.build(&[per_sample(x.shape())]).unwrap();
    assert_eq!(l.forward(&[&x], &mut ctx).unwrap().data(), x.data());
}

#[test]
fn noise_layers_pass_gradient_checks_in_training() {
    check(&mut GaussianNoise::new(0.5), vec![rand_tensor(&[2, 5], 30)]);
    check(
        &mut GaussianDropout::new(0.3),
        vec![rand_tensor(&[2, 5], 31)],
    );
    check(
        &mut SpatialDropout2D::new(0.5),
        vec![rand_tensor(&[2, 2, 2, 4], 32)],
    );
}

/// Prints the time of merge forwards: equal shapes (ResNet's Add, against a plain
/// `Tensor::add_assign`) and a squeeze-and-excitation broadcast. Run with `--release`.
#[test]
#[ignore = "timing, run by hand with --release"]
fn merge_timings() {
    let t = |f: &mut dyn FnMut()| {
        f();
        let start = std::time::Instant::now();
        for _ in 0..5 {
            f();
        }
        start.elapsed().as_secs_f64() / 5.0 * 1e3
    };
    let a = rand_tensor(&[8, 56, 56, 256], 1);
    let b = rand_tensor(&[8, 56, 56, 256], 2);
    let s = rand_tensor(&[8, 1, 1, 256], 3);
    let mut add = Add::new();
    add.build(&[per_sample(a.shape()), per_sample(b.shape())])
        .unwrap();
    let mut mul = Multiply::new();
    mul.build(&[per_sample(a.shape()), per_sample(s.shape())])
        .unwrap();
    let plain = t(&mut || {
        let mut y = a.clone();
        y.add_assign(&b).unwrap();
    });
    let ours = t(&mut || {
        add.forward(&[&a, &b], &mut ForwardCtx::infer()).unwrap();
    });
    let se = t(&mut || {
        mul.forward(&[&a, &s], &mut ForwardCtx::infer()).unwrap();
    });
    println!(
        "6.4M elements: clone+add_assign {plain:.2} ms, Add {ours:.2} ms, \
         SE Multiply (.., 256) * (1, 1, 256) {se:.2} ms"
    );
}
