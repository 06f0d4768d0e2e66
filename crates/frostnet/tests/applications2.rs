//! EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt against real Keras 3: summaries
//! (`tests/fixtures/applications/<case>_summary.txt.gz`), counts and layer names
//! (`applications2_reference.json`), all written by `tools/make_applications2_reference.py`.

use frostnet::applications::{self as apps, ApplicationOptions, Pooling};
use frostnet::layers::Layer;
use frostnet::tensor::Tensor;
use frostnet::{Model, Result};
use std::io::Read;

mod common;

fn fixture_path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/applications/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn summary_fixture(case: &str) -> String {
    let path = fixture_path(&format!("{case}_summary.txt.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    text
}

fn reference() -> serde_json::Value {
    let path = fixture_path("applications2_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The options the tool passed to Keras for `case` (`include_top`, `pooling`, `input_shape` and
/// the family-specific ones the caller reads).
fn options(want: &serde_json::Value) -> ApplicationOptions {
    let k = &want["kwargs"];
    let mut o = ApplicationOptions::default();
    if let Some(t) = k["include_top"].as_bool() {
        o.include_top = t;
    }
    o.pooling = match k["pooling"].as_str() {
        Some("avg") => Some(Pooling::Avg),
        Some("max") => Some(Pooling::Max),
        _ => None,
    };
    if let Some(s) = k["input_shape"].as_array() {
        let d: Vec<Option<usize>> = s.iter().map(|v| v.as_u64().map(|v| v as usize)).collect();
        o.input_shape = Some([d[0], d[1], d[2]]);
    }
    o
}

/// Builds `case` with `build` and checks model name, counts, layer names and the summary text.
fn check_with(
    case: &str,
    reference: &serde_json::Value,
    build: &dyn Fn(&ApplicationOptions) -> Result<Model>,
) {
    let want = &reference["models"][case];
    assert!(want.is_object(), "{case}: not in the reference");
    let model = build(&options(want)).unwrap_or_else(|e| panic!("{case}: {e}"));
    let want_summary = summary_fixture(case);
    common::assert_application_matches_keras(case, &model, want, "operation_names", &want_summary);
}

fn check(case: &str, reference: &serde_json::Value) {
    let name = case.split("_notop").next().unwrap();
    check_with(case, reference, &|o| apps::build_by_name(name, o));
}

/// Runs `model` on a batch of 2 deterministic images in 0..255 and checks the output shape and
/// that every value is finite.
fn forward_is_finite(model: &mut Model, side: usize, want_shape: &[usize]) {
    let n = 2 * side * side * 3;
    let data: Vec<f32> = (0..n).map(|i| ((i * 37) % 256) as f32).collect();
    let x = Tensor::from_vec(&[2, side, side, 3], data).unwrap();
    let y = model.predict(&x, 2).unwrap();
    assert_eq!(y.shape(), want_shape, "{}", model.name());
    assert!(y.data().iter().all(|v| v.is_finite()), "{}", model.name());
}

#[test]
fn efficientnet_b0_to_b7_match_keras() {
    let r = reference();
    for i in 0..8 {
        check(&format!("efficientnet_b{i}"), &r);
    }
    check("efficientnet_b0_notop", &r);
    check("efficientnet_b3_notop_max_64", &r);
}

#[test]
fn efficientnet_forward_has_keras_shapes() {
    let mut m = apps::efficientnet_b0(&ApplicationOptions {
        input_shape: Some([Some(32), Some(32), Some(3)]),
        classes: 7,
        ..Default::default()
    })
    .unwrap();
    forward_is_finite(&mut m, 32, &[2, 7]);
    let mut m = apps::efficientnet_b1(&ApplicationOptions {
        include_top: false,
        input_shape: Some([Some(33), Some(33), Some(3)]),
        ..Default::default()
    })
    .unwrap();
    forward_is_finite(&mut m, 33, &[2, 2, 2, 1280]);
}

#[test]
fn unknown_variant_and_classes_are_typed_errors() {
    assert!(apps::efficientnet(8, &Default::default()).is_err());
    let e = apps::efficientnet_b0(&ApplicationOptions {
        weights: Some("imagenet".into()),
        classes: 10,
        ..Default::default()
    })
    .err()
    .expect("an error");
    assert!(e.to_string().contains("classes must be 1000"), "{e}");
    let e = apps::build_by_name("efficientnet_b9", &Default::default())
        .err()
        .expect("an error");
    assert!(e.to_string().contains("efficientnet_b9"), "{e}");
}

#[test]
fn efficientnet_v2_matches_keras() {
    let r = reference();
    for v in ["b0", "b1", "b2", "b3", "s"] {
        check(&format!("efficientnet_v2_{v}"), &r);
    }
    check("efficientnet_v2_b0_notop", &r);
    check_with("efficientnet_v2_s_notop_noprep", &r, &|o| {
        apps::efficientnet_v2(
            "s",
            &apps::EfficientNetV2Options {
                app: o.clone(),
                include_preprocessing: false,
            },
        )
    });
}

#[test]
fn efficientnet_v2_forward_has_keras_shapes() {
    let mut m = apps::efficientnet_v2_b0(&ApplicationOptions {
        input_shape: Some([Some(32), Some(32), Some(3)]),
        classes: 5,
        ..Default::default()
    })
    .unwrap();
    forward_is_finite(&mut m, 32, &[2, 5]);
    let mut m = apps::efficientnet_v2_s(&ApplicationOptions {
        include_top: false,
        pooling: Some(Pooling::Max),
        input_shape: Some([Some(32), Some(32), Some(3)]),
        ..Default::default()
    })
    .unwrap();
    forward_is_finite(&mut m, 32, &[2, 1280]);
}

#[test]
fn mobilenet_v3_matches_keras() {
    let r = reference();
    check("mobilenet_v3_small", &r);
    check("mobilenet_v3_large", &r);
    check("mobilenet_v3_small_notop", &r);
    check_with("mobilenet_v3_large_minimalistic_notop", &r, &|o| {
        apps::mobilenet_v3(
            apps::MobileNetV3Size::Large,
            &apps::MobileNetV3Options {
                app: o.clone(),
                minimalistic: true,
                include_preprocessing: false,
                ..Default::default()
            },
        )
    });
    check_with("mobilenet_v3_small_075_minimalistic", &r, &|o| {
        apps::mobilenet_v3(
            apps::MobileNetV3Size::Small,
            &apps::MobileNetV3Options {
                app: o.clone(),
                alpha: 0.75,
                minimalistic: true,
                ..Default::default()
            },
        )
    });
}

#[test]
fn mobilenet_v3_forward_has_keras_shapes() {
    // The default input size is unknown, with the classifier too: any size from 32 runs.
    let mut m = apps::mobilenet_v3_small(&ApplicationOptions {
        classes: 4,
        ..Default::default()
    })
    .unwrap();
    forward_is_finite(&mut m, 40, &[2, 4]);
    let mut m = apps::mobilenet_v3_large(&ApplicationOptions {
        include_top: false,
        ..Default::default()
    })
    .unwrap();
    forward_is_finite(&mut m, 64, &[2, 2, 2, 960]);
    let e = apps::mobilenet_v3_small(&ApplicationOptions {
        input_shape: Some([Some(31), Some(64), Some(3)]),
        ..Default::default()
    })
    .err()
    .expect("an error");
    assert!(e.to_string().contains("at least 32x32"), "{e}");
}

/// The weight formula of `tools/make_applications2_outputs.py` (see its docstring): an integer
/// hash of (array index `k`, element index `j`) mapped to `[-1, 1)`, scaled by the weight's role.
fn formula_weight(name: &str, shape: &[usize], k: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let mask = 0xFFFF_FFFFu64;
    let data: Vec<f32> = (0..n as u64)
        .map(|j| {
            let mut h = (j * 2_654_435_761 + (k as u64 + 1) * 2_246_822_519) & mask;
            h ^= h >> 15;
            h = (h * 2_246_822_507) & mask;
            h ^= h >> 13;
            let s = 2.0 * h as f64 / 4_294_967_296.0 - 1.0;
            let v = if name == "count" {
                0.0
            } else if shape.len() >= 2 {
                let fan_in: usize = if shape.len() == 4 && shape[3] == 1 {
                    shape[0] * shape[1]
                } else {
                    shape[..shape.len() - 1].iter().product()
                };
                s * (6.0 / fan_in as f64).sqrt()
            } else {
                match name {
                    "bias" | "beta" | "moving_mean" | "mean" => 0.1 * s,
                    "moving_variance" | "variance" => 1.0 + 0.25 * s * s,
                    _ => 1.0 + 0.1 * s,
                }
            };
            v as f32
        })
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// Sets the formula weights layer by layer and compares `model`'s prediction on the tool's
/// input with Keras's, within 1e-5 of the largest output magnitude (at least 1).
fn agrees_with_keras(case: &str, mut model: Model) {
    let values: Vec<Tensor> = model
        .named_weights()
        .iter()
        .enumerate()
        .map(|(k, (path, w))| {
            formula_weight(path.rsplit('/').next().unwrap(), w.value().shape(), k)
        })
        .collect();
    model.set_weights(values).unwrap();
    let x = frostnet::io::npy::read_npy(&fixture_path("outputs/input.npy")).unwrap();
    let want = frostnet::io::npy::read_npy(&fixture_path(&format!("outputs/{case}.npy"))).unwrap();
    let got = model.predict(&x, 2).unwrap();
    assert_eq!(got.shape(), want.shape(), "{case}");
    let scale = want.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got.max_abs_diff(&want);
    eprintln!("{case}: max abs difference {err:.2e} (largest |output| {scale:.3})");
    assert!(err <= 1e-5 * scale, "{case}: {err} > 1e-5 * {scale}");
}

fn side48() -> Option<[Option<usize>; 3]> {
    Some([Some(48), Some(48), Some(3)])
}

#[test]
fn efficientnet_predicts_as_keras_with_the_same_weights() {
    agrees_with_keras(
        "efficientnet_b0",
        apps::efficientnet_b0(&ApplicationOptions {
            input_shape: side48(),
            classifier_activation: frostnet::layers::ActivationFn::Linear,
            ..Default::default()
        })
        .unwrap(),
    );
    agrees_with_keras(
        "efficientnet_b0_features",
        apps::efficientnet_b0(&ApplicationOptions {
            include_top: false,
            input_shape: side48(),
            ..Default::default()
        })
        .unwrap(),
    );
    agrees_with_keras(
        "efficientnet_v2_b0_notop",
        apps::efficientnet_v2_b0(&ApplicationOptions {
            include_top: false,
            pooling: Some(Pooling::Avg),
            input_shape: side48(),
            ..Default::default()
        })
        .unwrap(),
    );
}

#[test]
fn mobilenet_v3_predicts_as_keras_with_the_same_weights() {
    agrees_with_keras(
        "mobilenet_v3_small",
        apps::mobilenet_v3_small(&ApplicationOptions {
            classifier_activation: frostnet::layers::ActivationFn::Linear,
            ..Default::default()
        })
        .unwrap(),
    );
    agrees_with_keras(
        "mobilenet_v3_large_minimalistic_notop",
        apps::mobilenet_v3(
            apps::MobileNetV3Size::Large,
            &apps::MobileNetV3Options {
                app: ApplicationOptions {
                    include_top: false,
                    pooling: Some(Pooling::Avg),
                    ..Default::default()
                },
                minimalistic: true,
                ..Default::default()
            },
        )
        .unwrap(),
    );
}

#[test]
fn convnext_tiny_matches_keras() {
    let r = reference();
    check("convnext_tiny", &r);
    check("convnext_tiny_notop", &r);
}

#[test]
fn convnext_tiny_predicts_as_keras_with_the_same_weights() {
    agrees_with_keras(
        "convnext_tiny_notop",
        apps::convnext_tiny(&ApplicationOptions {
            include_top: false,
            pooling: Some(Pooling::Avg),
            input_shape: side48(),
            ..Default::default()
        })
        .unwrap(),
    );
}

#[test]
fn convnext_drop_path_adds_stochastic_depth_layers() {
    let m = apps::convnext_tiny_with(&apps::ConvNeXtOptions {
        app: ApplicationOptions {
            include_top: false,
            input_shape: Some([Some(32), Some(32), Some(3)]),
            ..Default::default()
        },
        drop_path_rate: 0.1,
        ..Default::default()
    })
    .unwrap();
    let layers = m.layers();
    let sd: Vec<&str> = layers
        .iter()
        .filter(|l| l.class_name() == "StochasticDepth")
        .map(|l| l.name())
        .collect();
    // Keras: linspace(0, 0.1, 18) gives the first block rate 0, so it keeps its identity.
    assert_eq!(sd.len(), 17);
    assert_eq!(sd[0], "convnext_tiny_stage_0_block_1_stochastic_depth");
    assert!(layers
        .iter()
        .any(|l| l.name() == "convnext_tiny_stage_0_block_0_identity"));
}

/// EfficientNetB0's stem and first three blocks made by Keras's own `block` code and saved as
/// `.keras` (the tool's `efficientnet_blocks`): frostnet loads it (Normalization's int64 count,
/// swish, the broadcasting `multiply`, `Dropout(noise_shape=(None, 1, 1, 1))`), predicts as Keras
/// does, and writes it back so that it loads again with the same predictions.
#[test]
fn keras_made_efficientnet_blocks_load_predict_and_round_trip() {
    let mut m =
        frostnet::saving::load_model(&fixture_path("outputs/efficientnet_blocks.keras")).unwrap();
    let x = frostnet::io::npy::read_npy(&fixture_path("outputs/input.npy")).unwrap();
    let want =
        frostnet::io::npy::read_npy(&fixture_path("outputs/efficientnet_blocks.npy")).unwrap();
    let got = m.predict(&x, 2).unwrap();
    let err = got.max_abs_diff(&want);
    assert!(err < 1e-5, "{err}");
    let config = frostnet::saving::model_config(&m);
    let drop = config["config"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["config"]["name"] == "block2b_drop")
        .unwrap();
    assert_eq!(
        drop["config"]["noise_shape"],
        serde_json::json!([null, 1, 1, 1])
    );
    let dir = std::env::temp_dir().join(format!("frostnet_effblocks_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("blocks.keras");
    frostnet::saving::save_keras(&m, path.to_str().unwrap()).unwrap();
    let mut back = frostnet::saving::load_model(path.to_str().unwrap()).unwrap();
    assert_eq!(back.predict(&x, 2).unwrap().data(), got.data());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The layers added for these applications write their Keras options and read them back:
/// LayerScale, StochasticDepth, depthwise `Conv2D(groups=C)`, `Dropout(noise_shape)`,
/// per-channel `Rescaling`, `Normalization` with a constant mean and variance.
#[test]
fn new_layer_options_round_trip_through_keras_files() {
    use frostnet::layers::*;
    clear_session();
    let mut g = frostnet::Functional::new();
    let x = g.input(Input::new(&[6, 6, 3]));
    let mut h = g
        .call(Rescaling::per_channel(&[0.5, 2.0, -1.0]).offset(0.25), &[x])
        .unwrap();
    h = g
        .call(
            Normalization::with_mean_variance(&[-1], &[0.1, -0.2, 0.3], &[1.5, 0.5, 2.0]),
            &[h],
        )
        .unwrap();
    h = g
        .call(
            Conv2D::new(3, 3)
                .padding(frostnet::tensor::Padding::Same)
                .groups(3),
            &[h],
        )
        .unwrap();
    h = g.call(LayerScale::new(0.5, 3), &[h]).unwrap();
    h = g.call(StochasticDepth::new(0.2), &[h]).unwrap();
    h = g
        .call(
            Dropout::new(0.3).noise_shape(&[None, Some(1), Some(1), Some(1)]),
            &[h],
        )
        .unwrap();
    let mut m = g.build(&[x], &[h]).unwrap();
    let input = Tensor::from_vec(
        &[2, 6, 6, 3],
        (0..216).map(|i| ((i * 7) % 13) as f32 - 6.0).collect(),
    )
    .unwrap();
    let y = m.predict(&input, 2).unwrap();
    let config = frostnet::saving::model_config(&m);
    let dir = std::env::temp_dir().join(format!("frostnet_apps2_layers_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("layers.keras");
    frostnet::saving::save_keras(&m, path.to_str().unwrap()).unwrap();
    let mut back = frostnet::saving::load_model(path.to_str().unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(frostnet::saving::model_config(&back), config);
    assert_eq!(back.predict(&input, 2).unwrap().data(), y.data());
    let layers = config["config"]["layers"].as_array().unwrap();
    let find = |class: &str| {
        layers
            .iter()
            .find(|l| l["class_name"] == class)
            .unwrap_or_else(|| panic!("{class}"))["config"]
            .clone()
    };
    assert_eq!(
        find("Rescaling")["scale"],
        serde_json::json!([0.5, 2.0, -1.0])
    );
    assert_eq!(
        find("Normalization")["variance"],
        serde_json::json!([1.5, 0.5, 2.0])
    );
    assert_eq!(find("Conv2D")["groups"], 3);
    assert_eq!(find("LayerScale")["projection_dim"], 3);
    assert_eq!(
        find("StochasticDepth")["drop_path_rate"].as_f64().unwrap() as f32,
        0.2
    );
    assert_eq!(
        find("Dropout")["noise_shape"],
        serde_json::json!([null, 1, 1, 1])
    );
}

/// A depthwise `Conv2D(groups=C)` passes the finite-difference gradient check, and a grouping
/// that does not divide the channels is a typed error naming the layer (other groupings: see
/// tests/layer_options.rs).
#[test]
fn grouped_conv2d_gradient_check_and_unsupported_groups() {
    use frostnet::layers::*;
    let x = Tensor::from_vec(
        &[2, 5, 5, 4],
        (0..200)
            .map(|i| (((i * 37) % 23) as f32 - 11.0) / 7.0)
            .collect(),
    )
    .unwrap();
    let mut conv = Conv2D::new(4, 3)
        .strides(2)
        .padding(frostnet::tensor::Padding::Same)
        .groups(4)
        .activation(ActivationFn::Tanh);
    let r =
        frostnet::testing::gradient_check(&mut conv, &[x], frostnet::Mode::Train, 1e-2).unwrap();
    assert!(r.checked > 0 && r.max_rel_error < 2e-2, "{r:?}");
    let e = Conv2D::new(8, 3)
        .groups(8)
        .named("g2")
        .build(&[vec![Some(5), Some(5), Some(4)]])
        .expect_err("an error");
    assert!(
        e.to_string().contains("'g2'") && e.to_string().contains("groups=8"),
        "{e}"
    );
}
