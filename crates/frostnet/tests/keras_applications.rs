//! ResNet101/152, ResNet50V2/101V2/152V2, Xception, DenseNet121/169/201, MobileNet and
//! InceptionResNetV2 against real Keras 3.15.1: summaries byte for byte, exact total / trainable /
//! non-trainable counts, layer names and output shapes, from
//! `tests/fixtures/applications/*.gz`, written by `tools/keras_applications_more_reference.py`
//! (`weights=None`). Then a forward pass on a small input: the shape Keras gives and finite values.

use flate2::read::GzDecoder;
use frostnet::applications::{
    densenet121, densenet169, densenet201, inception_resnet_v2, mobilenet, mobilenet_with,
    nasnet_mobile, resnet101, resnet101_v2, resnet152, resnet152_v2, resnet50_v2, xception,
    ApplicationOptions, MobileNetOptions, Pooling,
};
use frostnet::layers::{ActivationFn, Layer};
use frostnet::tensor::random;
use frostnet::{Error, Model, Result, Tensor};
use std::io::Read;
use std::sync::OnceLock;

fn gz(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/applications/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut s = String::new();
    GzDecoder::new(f)
        .read_to_string(&mut s)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    s
}

fn reference() -> &'static serde_json::Value {
    static R: OnceLock<serde_json::Value> = OnceLock::new();
    R.get_or_init(|| serde_json::from_str(&gz("reference.json.gz")).unwrap())
}

fn shape(s: &[Option<usize>]) -> serde_json::Value {
    serde_json::json!(s)
}

fn notop(pooling: Option<Pooling>) -> ApplicationOptions {
    ApplicationOptions {
        include_top: false,
        pooling,
        ..Default::default()
    }
}

fn sized(h: usize, w: usize) -> Option<[Option<usize>; 3]> {
    Some([Some(h), Some(w), Some(3)])
}

/// `model` against the Keras facts of `case`: name, counts, layers, output shape, summary text.
fn check_model(case: &str, model: &Model) {
    let want = &reference()["models"][case];
    assert!(want.is_object(), "no Keras reference for {case}");
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
        "{case}: total / trainable / non-trainable"
    );
    let layers = model.layers();
    let names: Vec<&str> = layers.iter().map(|l| l.name()).collect();
    let want_names: Vec<&str> = want["layer_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, want_names, "{case}: layer names");
    let mut out = vec![None];
    out.extend(model.output_shapes()[0].iter().copied());
    assert_eq!(shape(&out), want["output_shape"], "{case}: output shape");
    let got = model.summary();
    let want_summary = gz(&format!("{case}_summary.txt.gz"));
    if got != want_summary {
        let line = got
            .lines()
            .zip(want_summary.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| got.lines().count().min(want_summary.lines().count()));
        panic!(
            "{case} summary differs at line {}:\n got: {:?}\nwant: {:?}",
            line + 1,
            got.lines().nth(line),
            want_summary.lines().nth(line)
        );
    }
}

fn check(case: &str, build: fn(&ApplicationOptions) -> Result<Model>, opts: ApplicationOptions) {
    check_model(case, &build(&opts).unwrap());
}

/// A forward pass on two random images of `h x w`: the expected output shape, finite values,
/// and rows of probabilities when the top is included.
fn forward(
    build: fn(&ApplicationOptions) -> Result<Model>,
    opts: ApplicationOptions,
    want: &[usize],
) {
    let shape = opts.input_shape.expect("a static input shape");
    let (h, w) = (shape[0].unwrap(), shape[1].unwrap());
    let mut model = build(&opts).unwrap();
    let mut rng = random::rng(Some(3));
    let x = Tensor::from_vec(
        &[2, h, w, 3],
        random::uniform(&mut rng, 2 * h * w * 3, -1.0, 1.0),
    )
    .unwrap();
    let y = model.predict(&x, 2).unwrap();
    assert_eq!(y.shape(), want, "{}", model.name());
    assert!(y.data().iter().all(|v| v.is_finite()), "{}", model.name());
    if opts.include_top && opts.classifier_activation == ActivationFn::Softmax {
        for row in y.data().chunks(want[1]) {
            let s: f32 = row.iter().sum();
            assert!(
                (s - 1.0).abs() < 1e-4,
                "{}: softmax row sums to {s}",
                model.name()
            );
        }
    }
}

#[test]
fn resnet101_and_resnet152_match_keras() {
    check("resnet101", resnet101, Default::default());
    check("resnet101_notop", resnet101, notop(Some(Pooling::Avg)));
    check("resnet152", resnet152, Default::default());
    check("resnet152_notop", resnet152, notop(Some(Pooling::Max)));
}

#[test]
fn resnet_v2_matches_keras() {
    check("resnet50_v2", resnet50_v2, Default::default());
    check("resnet50_v2_notop", resnet50_v2, notop(Some(Pooling::Avg)));
    check(
        "resnet50_v2_small_nopool",
        resnet50_v2,
        ApplicationOptions {
            input_shape: sized(64, 48),
            ..notop(None)
        },
    );
    check("resnet101_v2", resnet101_v2, Default::default());
    check(
        "resnet101_v2_notop",
        resnet101_v2,
        notop(Some(Pooling::Max)),
    );
    check("resnet152_v2", resnet152_v2, Default::default());
    check(
        "resnet152_v2_notop",
        resnet152_v2,
        notop(Some(Pooling::Avg)),
    );
}

#[test]
fn resnets_run_forward_on_small_inputs() {
    forward(
        resnet101,
        ApplicationOptions {
            input_shape: sized(32, 32),
            classes: 7,
            ..Default::default()
        },
        &[2, 7],
    );
    forward(
        resnet50_v2,
        ApplicationOptions {
            input_shape: sized(64, 48),
            ..notop(None)
        },
        &[2, 2, 2, 2048],
    );
    forward(
        resnet152_v2,
        ApplicationOptions {
            input_shape: sized(32, 40),
            ..notop(Some(Pooling::Max))
        },
        &[2, 2048],
    );
}

#[test]
fn xception_matches_keras_and_runs() {
    check("xception", xception, Default::default());
    check("xception_notop", xception, notop(Some(Pooling::Avg)));
    let small = ApplicationOptions {
        input_shape: sized(71, 80),
        ..notop(None)
    };
    check("xception_small_nopool", xception, small.clone());
    forward(xception, small, &[2, 3, 3, 2048]);
    // Keras's minimum size, 71.
    let e = xception(&ApplicationOptions {
        input_shape: sized(70, 80),
        ..notop(None)
    })
    .err()
    .expect("refused");
    assert!(
        matches!(&e, Error::InvalidConfig(m) if m.contains("71x71")),
        "{e}"
    );
}

#[test]
fn densenets_match_keras() {
    check("densenet121", densenet121, Default::default());
    check("densenet121_notop", densenet121, notop(Some(Pooling::Avg)));
    check("densenet169", densenet169, Default::default());
    check("densenet169_notop", densenet169, notop(Some(Pooling::Max)));
    check("densenet201", densenet201, Default::default());
    check("densenet201_notop", densenet201, notop(Some(Pooling::Avg)));
}

#[test]
fn densenet_runs_forward_on_a_small_input() {
    forward(
        densenet121,
        ApplicationOptions {
            input_shape: sized(32, 32),
            classes: 5,
            ..Default::default()
        },
        &[2, 5],
    );
}

#[test]
fn mobilenet_matches_keras_with_every_alpha() {
    check("mobilenet", mobilenet, Default::default());
    check("mobilenet_notop", mobilenet, notop(Some(Pooling::Avg)));
    let cases = [
        (
            "mobilenet_alpha050_128",
            MobileNetOptions {
                alpha: 0.5,
                base: ApplicationOptions {
                    input_shape: sized(128, 128),
                    classes: 10,
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        (
            "mobilenet_alpha075_notop_max",
            MobileNetOptions {
                alpha: 0.75,
                base: notop(Some(Pooling::Max)),
                ..Default::default()
            },
        ),
        (
            "mobilenet_alpha025_nopool",
            MobileNetOptions {
                alpha: 0.25,
                base: ApplicationOptions {
                    input_shape: sized(33, 40),
                    ..notop(None)
                },
                ..Default::default()
            },
        ),
    ];
    for (case, opts) in cases {
        check_model(case, &mobilenet_with(&opts).unwrap());
    }
}

#[test]
fn mobilenet_runs_forward_and_refuses_bad_options() {
    forward(
        mobilenet,
        ApplicationOptions {
            input_shape: sized(32, 36),
            classes: 4,
            ..Default::default()
        },
        &[2, 4],
    );
    let bad = MobileNetOptions {
        alpha: 0.0,
        ..Default::default()
    };
    assert!(matches!(mobilenet_with(&bad), Err(Error::InvalidConfig(_))));
    // Keras has ImageNet weights only for four alphas; refused before any download.
    let odd = MobileNetOptions {
        alpha: 0.3,
        base: ApplicationOptions {
            weights: Some("imagenet".into()),
            ..notop(None)
        },
        ..Default::default()
    };
    let e = mobilenet_with(&odd).err().expect("refused");
    assert!(e.to_string().contains("alpha"), "{e}");
}

#[test]
fn inception_resnet_v2_matches_keras() {
    check(
        "inception_resnet_v2",
        inception_resnet_v2,
        Default::default(),
    );
    check(
        "inception_resnet_v2_notop",
        inception_resnet_v2,
        notop(Some(Pooling::Avg)),
    );
}

#[test]
fn inception_resnet_v2_runs_forward_on_its_smallest_input() {
    forward(
        inception_resnet_v2,
        ApplicationOptions {
            input_shape: sized(75, 75),
            classes: 3,
            ..Default::default()
        },
        &[2, 3],
    );
}

#[test]
fn nasnet_mobile_matches_keras_and_runs() {
    check("nasnet_mobile", nasnet_mobile, Default::default());
    check(
        "nasnet_mobile_notop",
        nasnet_mobile,
        notop(Some(Pooling::Avg)),
    );
    forward(
        nasnet_mobile,
        ApplicationOptions {
            input_shape: sized(32, 32),
            classes: 6,
            ..Default::default()
        },
        &[2, 6],
    );
}

#[test]
fn imagenet_with_other_classes_is_refused_before_downloading() {
    let opts = ApplicationOptions {
        classes: 10,
        weights: Some("imagenet".into()),
        ..Default::default()
    };
    type Build = fn(&ApplicationOptions) -> Result<Model>;
    for build in [
        resnet101 as Build,
        resnet50_v2,
        xception,
        densenet121,
        inception_resnet_v2,
        nasnet_mobile,
    ] {
        let e = build(&opts).err().expect("refused");
        assert!(e.to_string().contains("classes must be 1000"), "{e}");
    }
}
