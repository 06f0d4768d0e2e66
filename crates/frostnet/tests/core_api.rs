//! The core API: weights and their order, explain(), the Sobel prediction, error paths, and the
//! `seed` example's output.

use frostnet::layers::*;
use frostnet::{seed, Error, Functional, Sequential, Tensor};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn sobel_prediction_matches_keras_within_1e5() {
    clear_session();
    let mut m = seed::build("e").unwrap();
    let err = seed::sobel_error(&mut m, &fixture("sobel_conv_keras3.npz")).unwrap();
    assert!(err < 1e-5, "max abs error {err}");
}

#[test]
fn weights_follow_keras_order_and_kinds() {
    clear_session();
    let m = seed::build("d2").unwrap();
    let names: Vec<String> = m.named_weights().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "dense/kernel",
            "dense/bias",
            "batch_normalization/gamma",
            "batch_normalization/beta",
            "batch_normalization/moving_mean",
            "batch_normalization/moving_variance"
        ]
    );
    let bn = m.layer(1).unwrap();
    let kinds: Vec<WeightKind> = bn.weights().iter().map(|w| w.kind()).collect();
    assert_eq!(
        kinds,
        [
            WeightKind::Param,
            WeightKind::Param,
            WeightKind::State,
            WeightKind::State
        ]
    );
    // Re-enabling BN never makes its moving statistics trainable.
    let mut m = seed::build("d2").unwrap();
    m.layer_mut(1).unwrap().set_trainable(true);
    let n: usize = m
        .layer(1)
        .unwrap()
        .non_trainable_weights()
        .iter()
        .map(|w| w.len())
        .sum();
    assert_eq!(n, 20);
}

#[test]
fn explain_accounts_for_every_non_trainable_param() {
    let cases = [
        ("c", "Non-trainable params: 20 = BatchNormalization moving statistics in 1 layer (2 x channels each)"),
        ("a", "Non-trainable params: 1,010 = frozen weights (dense: 1,010)"),
        ("f", "Non-trainable params: 0 (every weight trains)"),
        ("e2", "Non-trainable params: 9 = frozen weights (conv2d: 9)"),
    ];
    for (case, line) in cases {
        clear_session();
        let text = seed::build(case).unwrap().explain();
        assert!(text.lines().any(|l| l == line), "case {case}:\n{text}");
    }
    // A frozen BatchNormalization: gamma and beta (2 x 10) are frozen weights, its moving mean and
    // variance (2 x 10) the state of a frozen layer; one line per cause.
    clear_session();
    let text = seed::build("d").unwrap().explain();
    assert!(
        text.ends_with(
            "Non-trainable params: 40\n  20 frozen weights (batch_normalization: 20)\n  \
             20 BatchNormalization moving statistics in 1 frozen layer\n"
        ),
        "{text}"
    );
    // Frozen layers and BN statistics together.
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[4])).unwrap();
    m.add(Dense::new(3).trainable(false)).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    let text = m.explain();
    assert!(
        text.ends_with(
            "Non-trainable params: 21\n  15 frozen weights (dense: 15)\n  \
             6 BatchNormalization moving statistics in 1 training layer (2 x channels each)\n"
        ),
        "{text}"
    );
}

#[test]
fn incompatible_input_names_the_layer_and_both_shapes() {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[28, 28])).unwrap();
    let e = m.add(Conv2D::new(4, 3)).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("(None, 28, 28)"), "{e}");
    // A too-small image for a valid convolution.
    let mut m = Sequential::new();
    m.add(Input::new(&[2, 2, 1])).unwrap();
    let e = m
        .add(Conv2D::new(4, 3).named("big_kernel"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("big_kernel") && e.contains("(None, 2, 2, 1)"),
        "{e}"
    );
    // Predict with the wrong feature shape.
    let mut m = seed::build("f").unwrap();
    let e = m.predict(&Tensor::zeros(&[2, 100]), 8).unwrap_err();
    assert!(matches!(e, Error::IncompatibleShape { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("(None, 256)") && e.contains("(2, 100)"), "{e}");
}

#[test]
fn set_weights_checks_count_and_shapes_before_changing_anything() {
    clear_session();
    let mut m = seed::build("c").unwrap();
    let before = m.get_weights();
    let e = m.set_weights(before[..3].to_vec()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WeightCount {
                expected: 6,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
    let mut wrong = before.clone();
    wrong[5] = Tensor::zeros(&[11]);
    wrong[0] = Tensor::full(&[100, 10], 7.0);
    let e = m.set_weights(wrong).unwrap_err().to_string();
    assert!(
        e.contains("batch_normalization/moving_variance")
            && e.contains("(10,)")
            && e.contains("(11,)"),
        "{e}"
    );
    assert_eq!(
        m.get_weights()[0].data(),
        before[0].data(),
        "a failed set_weights changed a weight"
    );
}

#[test]
fn lookups_and_names_fail_with_typed_errors() {
    clear_session();
    let mut m = seed::build("c").unwrap();
    assert!(matches!(
        m.get_layer("nope"),
        Err(Error::UnknownLayer { .. })
    ));
    assert!(matches!(
        m.layer(5),
        Err(Error::LayerIndex {
            index: 5,
            len: 2,
            ..
        })
    ));
    assert_eq!(
        m.get_layer("batch_normalization").unwrap().class_name(),
        "BatchNormalization"
    );
    let e = m.add(Dense::new(3).named("dense")).unwrap_err();
    assert!(matches!(e, Error::DuplicateLayerName { .. }), "{e}");
    // A Sequential without any input shape.
    let mut s = Sequential::new();
    assert!(matches!(s.add(Dense::new(3)), Err(Error::InvalidConfig(_))));
    // A functional output that depends on an input not given to the model.
    let mut g = Functional::new();
    let a = g.input(Input::new(&[3]));
    let b = g.input(Input::new(&[3]));
    let y = g.call(Dense::new(2), &[b]).unwrap();
    let e = g.build(&[a], &[y]).err().unwrap().to_string();
    assert!(e.contains("disconnected"), "{e}");
    // Dropout's rate.
    let mut s = Sequential::new();
    s.add(Input::new(&[3])).unwrap();
    assert!(s.add(Dropout::new(1.5)).is_err());
}

#[test]
fn default_names_follow_keras_3_counters() {
    clear_session();
    let a = Dense::new(1);
    let b = Dense::new(1);
    let c = BatchNormalization::new();
    let s = Sequential::new();
    let t = Sequential::new();
    assert_eq!(
        [a.name(), b.name(), c.name(), s.name(), t.name()],
        [
            "dense",
            "dense_1",
            "batch_normalization",
            "sequential",
            "sequential_1"
        ]
    );
    let i = Input::new(&[2]);
    assert_eq!(i.name(), "input_layer");
    clear_session();
    assert_eq!(Dense::new(1).name(), "dense");
    // An explicit name does not use up a default one, as in Keras.
    let named = Dense::new(1).named("head");
    assert_eq!([named.name(), Dense::new(1).name()], ["head", "dense_1"]);
}

#[test]
fn seed_example_prints_exactly_the_reference_summaries() {
    // Cargo builds examples for `cargo test`; find the binary next to this test's.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join("seed");
    if !bin.exists() {
        // `cargo test --workspace` (the README's command) builds examples; a filtered run may not.
        eprintln!(
            "skipped: {} not built (run the whole test suite)",
            bin.display()
        );
        return;
    }
    let out = std::process::Command::new(&bin).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = String::new();
    for case in ["a", "b", "c", "d", "e", "f"] {
        want +=
            &std::fs::read_to_string(fixture(&format!("seed_cases/keras3_{case}.txt"))).unwrap();
    }
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

/// `Tensor::rand`/`randn`/`uniform`/`ones`, as `keras.random` and `torch.rand*`: seeded and
/// repeatable, and with the moments of their distributions (100,000 samples: the mean of U(0,1) is
/// 1/2 and its variance 1/12; N(0,1)'s are 0 and 1, within 5 standard errors).
#[test]
fn random_constructors_have_their_distributions() {
    let n = 100_000;
    let moments = |t: &Tensor| {
        let mean = t.data().iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = t
            .data()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        (mean, var)
    };
    let u = Tensor::rand(&[n], 3);
    assert_eq!(u.shape(), &[n]);
    assert_eq!(u, Tensor::rand(&[n], 3));
    assert_ne!(u, Tensor::rand(&[n], 4));
    let (mean, var) = moments(&u);
    assert!(
        (mean - 0.5).abs() < 5.0 * (1.0 / 12.0 / n as f64).sqrt(),
        "{mean}"
    );
    assert!((var - 1.0 / 12.0).abs() < 0.002, "{var}");
    let g = Tensor::randn(&[100, 1000], 5);
    let (mean, var) = moments(&g);
    assert!(mean.abs() < 5.0 / (n as f64).sqrt(), "{mean}");
    assert!((var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(), "{var}");
    let w = Tensor::uniform(&[1000], -2.0, 3.0, 1).unwrap();
    assert!(w.data().iter().all(|v| (-2.0..3.0).contains(v)));
    assert!(matches!(
        Tensor::uniform(&[3], 1.0, 1.0, None),
        Err(frostnet::Error::InvalidConfig(_))
    ));
    assert_eq!(Tensor::ones(&[2, 2]).data(), &[1.0; 4]);
}
