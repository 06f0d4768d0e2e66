//! InceptionV3 against what Keras 3 and tf-keras print and count (`tests/fixtures/inception_v3*`,
//! copied from the Keras reference captures).

use frostnet::applications::{inception_v3, InceptionV3Options, Pooling};
use frostnet::layers::{clear_session, ActivationFn, Dense, Layer};
use frostnet::{Error, Functional, Model, SummaryOptions, SummaryStyle, Tensor};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&fixture("inception_v3.json")).unwrap()
}

fn top() -> Model {
    inception_v3(&InceptionV3Options::default()).unwrap()
}

/// `include_top=False, pooling='avg'`, no input shape: Keras's fine-tuning base.
fn notop_avg() -> Model {
    inception_v3(&InceptionV3Options {
        include_top: false,
        pooling: Some(Pooling::Avg),
        ..Default::default()
    })
    .unwrap()
}

fn counts(m: &Model) -> (usize, usize, usize) {
    let t: usize = m.trainable_weights().iter().map(|w| w.len()).sum();
    let n: usize = m.non_trainable_weights().iter().map(|w| w.len()).sum();
    (t + n, t, n)
}

fn summary(m: &Model, style: SummaryStyle, show_trainable: bool) -> String {
    m.summary_with(&SummaryOptions {
        show_trainable,
        style,
        ..Default::default()
    })
}

fn assert_same(got: &str, want: &str, what: &str) {
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{what} differs at line {}:\n got: {:?}\nwant: {:?}",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

/// tf-keras names the input layer `input_1` where Keras 3 and frostnet say `input_layer`. That is
/// the only name that differs, and both strings below keep their column widths, so renaming it in
/// the capture gives the classic table of frostnet's names (checked against the reference's own
/// renamed capture in `classic_summaries_match_byte_for_byte`).
fn with_keras3_input_name(tfkeras: &str) -> String {
    tfkeras
        .replace(" input_1 (InputLayer)    ", " input_layer (InputLayer)")
        .replace("['input_1[0][0]']    ", "['input_layer[0][0]']")
}

#[test]
fn keras3_summaries_match_byte_for_byte() {
    assert_same(
        &summary(&top(), SummaryStyle::Keras3, false),
        &fixture("inception_v3_summary.txt"),
        "inception_v3_summary.txt",
    );
    assert_same(
        &summary(&notop_avg(), SummaryStyle::Keras3, false),
        &fixture("inception_v3_notop_summary.txt"),
        "inception_v3_notop_summary.txt",
    );
}

#[test]
fn classic_summaries_match_byte_for_byte() {
    let want = fixture("inception_v3_summary_tfkeras_k3names.txt");
    // The renaming reproduces the reference's own k3names capture of the full model...
    assert_eq!(
        with_keras3_input_name(&fixture("inception_v3_summary_tfkeras.txt")),
        want
    );
    assert_same(
        &summary(&top(), SummaryStyle::Classic, false),
        &want,
        "inception_v3_summary_tfkeras_k3names.txt",
    );
    // ...and is used for the headless model, whose k3names capture in the reference was taken
    // from a different model (a 299x299 input, built after the full model in the same session,
    // hence `conv2d_94`...), not from `include_top=False, pooling='avg'` with no input shape.
    assert_same(
        &summary(&notop_avg(), SummaryStyle::Classic, false),
        &with_keras3_input_name(&fixture("inception_v3_notop_summary_tfkeras.txt")),
        "inception_v3_notop_summary_tfkeras.txt (input_1 renamed)",
    );
}

#[test]
fn counts_layers_and_names_match_keras() {
    let r = reference();
    for (model, key, total, trainable, layers) in [
        (top(), "include_top", 23_851_784, 23_817_352, 313),
        (notop_avg(), "notop_avg", 21_802_784, 21_768_352, 312),
    ] {
        let want = &r["keras3"]["InceptionV3"][key];
        assert_eq!(model.name(), "inception_v3");
        assert_eq!(counts(&model), (total, trainable, 34_432), "{key}");
        assert_eq!(model.layers().len(), layers, "{key}");
        let layers = model.layers();
        let names: Vec<&str> = layers.iter().map(|l| l.name()).collect();
        let want_names: Vec<&str> = want["layer_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, want_names, "{key}");
        let bn = model
            .layers()
            .iter()
            .filter(|l| l.class_name() == "BatchNormalization")
            .count();
        assert_eq!(bn, 94);
        let weights = model.weights().len();
        assert_eq!(weights as u64, want["n_weight_tensors"].as_u64().unwrap());
        for (class, n) in want["layer_type_counts"].as_object().unwrap() {
            let got = model
                .layers()
                .iter()
                .filter(|l| l.class_name() == class)
                .count();
            assert_eq!(got as u64, n.as_u64().unwrap(), "{key}: {class}");
        }
        assert_eq!(model.layers()[248].name(), "mixed8");
        assert_eq!(model.layers()[249].name(), "conv2d_80");
    }
    assert_eq!(top().output_shapes(), vec![vec![Some(1000)]]);
    assert_eq!(
        top().input_shapes(),
        vec![vec![Some(299), Some(299), Some(3)]]
    );
    assert_eq!(notop_avg().input_shapes(), vec![vec![None, None, Some(3)]]);
}

/// Keras's fine-tuning recipe: `Model(base.input, Dense(200)(Dense(1024)(base.output)))`, so the
/// new model lists the base's layers inline.
fn finetune_model() -> Model {
    clear_session();
    let (mut g, inputs, outputs) = Functional::from_model(notop_avg());
    let x = g
        .call(Dense::new(1024).activation(ActivationFn::Relu), &outputs)
        .unwrap();
    let y = g
        .call(Dense::new(200).activation(ActivationFn::Softmax), &[x])
        .unwrap();
    g.build(&inputs, &[y]).unwrap()
}

#[test]
fn fine_tuning_counts_and_summaries_match_keras() {
    let mut m = finetune_model();
    assert_eq!(m.name(), "functional");
    assert_eq!(m.layers().len(), 314);
    assert_eq!(counts(&m), (24_105_960, 24_071_528, 34_432));
    // base.trainable = False: all of the base's 312 layers.
    m.set_trainable_range(0..312, false).unwrap();
    assert_eq!(counts(&m), (24_105_960, 2_303_176, 21_802_784));
    m.set_trainable_range(0..312, true).unwrap();
    // for layer in model.layers[:249]: layer.trainable = False
    m.set_trainable_range(0..249, false).unwrap();
    assert_eq!(counts(&m), (24_105_960, 13_418_056, 10_687_904));
    assert_eq!(m.layers()[249].name(), "conv2d_80");
    assert_same(
        &summary(&m, SummaryStyle::Keras3, true),
        &fixture("inception_v3_finetune_summary.txt"),
        "inception_v3_finetune_summary.txt",
    );
    // tf-keras calls the input `input_1` (see with_keras3_input_name) and a `Model(inputs,
    // outputs)` `model` where Keras 3 says `functional`: compared after renaming both.
    let tfkeras = fixture("inception_v3_finetune_summary_tfkeras.txt");
    let want = with_keras3_input_name(&tfkeras).replacen(
        "Model: \"model\"\n",
        "Model: \"functional\"\n",
        1,
    );
    assert_same(
        &summary(&m, SummaryStyle::Classic, true),
        &want,
        "inception_v3_finetune_summary_tfkeras.txt (input_1 and model renamed)",
    );
}

#[test]
fn explain_attributes_non_trainable_params_to_batch_norm_statistics() {
    let text = top().explain();
    assert!(
        text.lines().any(|l| l
            == "Non-trainable params: 34,432 = BatchNormalization moving statistics in 94 layers \
                (2 x channels each)"),
        "{text}"
    );
}

/// `explain()` on the fine-tuning recipe (`layers[:249]` frozen) splits the 10,687,904
/// non-trainable params into three causes, each counted here from Keras's own summary: rows whose
/// `Trainable` column is `N` are frozen; a BatchNormalization row of `c` channels holds `2c`
/// moving statistics and the rest (beta; InceptionV3's BN has no gamma) is learnable.
#[test]
fn explain_splits_a_partly_frozen_network_by_cause() {
    let keras = fixture("inception_v3_finetune_summary.txt");
    // Rows wrap: the first line holds shape, params and flag; the class may be on the next.
    let mut rows: Vec<(String, String, usize, String)> = Vec::new();
    for line in keras.lines().filter(|l| l.starts_with('│')) {
        let cells: Vec<&str> = line.split('│').map(str::trim).collect();
        match cells[3].replace(',', "").parse::<usize>() {
            Ok(params) => rows.push((
                cells[1].to_string(),
                cells[2].to_string(),
                params,
                cells[5].to_string(),
            )),
            Err(_) => {
                if let Some(last) = rows.last_mut() {
                    last.0 = format!("{} {}", last.0, cells[1]);
                }
            }
        }
    }
    let (mut frozen_weights, mut frozen_stats, mut frozen_bn, mut training_stats, mut training_bn) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for (name, shape, params, flag) in &rows {
        let bn = name.ends_with("(BatchNormalization)");
        let channels: usize = shape
            .trim_end_matches(')')
            .rsplit(", ")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        match (flag.as_str(), bn) {
            ("N", true) => {
                frozen_weights += params - 2 * channels;
                frozen_stats += 2 * channels;
                frozen_bn += 1;
            }
            ("N", false) => frozen_weights += params,
            ("Y", true) => {
                training_stats += 2 * channels;
                training_bn += 1;
            }
            _ => {}
        }
    }
    assert_eq!(frozen_weights + frozen_stats + training_stats, 10_687_904);
    let mut m = finetune_model();
    m.set_trainable_range(0..249, false).unwrap();
    let text = m.explain();
    let th = |n: usize| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    };
    let lines: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(lines[0], "Non-trainable params: 10,687,904", "{text}");
    assert!(
        lines[1].starts_with(&format!("  {} frozen weights in ", th(frozen_weights))),
        "{text}"
    );
    assert_eq!(
        lines[2],
        format!(
            "  {} BatchNormalization moving statistics in {frozen_bn} frozen layers",
            th(frozen_stats)
        ),
        "{text}"
    );
    assert_eq!(
        lines[3],
        format!(
            "  {} BatchNormalization moving statistics in {training_bn} training layers (2 x channels each)",
            th(training_stats)
        ),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
}

#[test]
fn input_shape_rules_follow_keras() {
    let small = inception_v3(&InceptionV3Options {
        include_top: false,
        input_shape: Some([Some(74), Some(120), Some(3)]),
        ..Default::default()
    });
    match small {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("at least 75x75"), "{msg}"),
        other => panic!(
            "expected an error, got {:?}",
            other.map(|m| m.name().to_string())
        ),
    }
    // The classifier needs a static shape.
    assert!(matches!(
        inception_v3(&InceptionV3Options {
            input_shape: Some([None, None, Some(3)]),
            ..Default::default()
        }),
        Err(Error::InvalidConfig(_))
    ));
    // ImageNet weights with a classifier need Keras's 1000 classes (checked before any download).
    assert!(matches!(
        inception_v3(&InceptionV3Options {
            weights: Some("imagenet".into()),
            classes: 10,
            ..Default::default()
        }),
        Err(Error::InvalidConfig(_))
    ));
    // Max pooling head and no head.
    let m = inception_v3(&InceptionV3Options {
        include_top: false,
        pooling: Some(Pooling::Max),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.output_shapes(), vec![vec![Some(2048)]]);
    assert_eq!(
        m.layers().last().unwrap().class_name(),
        "GlobalMaxPooling2D"
    );
    let m = inception_v3(&InceptionV3Options {
        include_top: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.output_shapes(), vec![vec![None, None, Some(2048)]]);
    assert_eq!(m.layers().len(), 311);
}

#[test]
fn smallest_input_runs_forward() {
    let mut m = inception_v3(&InceptionV3Options {
        include_top: false,
        pooling: Some(Pooling::Avg),
        input_shape: Some([Some(75), Some(75), Some(3)]),
        ..Default::default()
    })
    .unwrap();
    let y = m.call(&Tensor::full(&[1, 75, 75, 3], 0.5)).unwrap();
    assert_eq!(y.shape(), &[1, 2048]);
    assert!(!y.has_non_finite());
    // A wrong image size is a typed error, not a panic.
    assert!(m.call(&Tensor::zeros(&[1, 80, 75, 3])).is_err());
}
