//! `summary_extras`: mult-adds exact against a count derived from Keras's own summaries, the
//! `Partial` trainable cell, and the CLI's `summary --extras`.
//!
//! The mult-adds of a convolution or dense layer are its kernel's size (its params less the bias,
//! one per output channel) times the positions the kernel is applied at (every output dimension
//! but the channels): both read off the row Keras prints for the layer.

use frostnet::applications::{inception_v3, resnet50, vgg16, ApplicationOptions};
use frostnet::layers::Layer;
use frostnet::saving::load_model;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Sum over Keras's summary rows of Conv2D and Dense layers of `(params - bias) * positions`.
/// `conv_bias`: whether the application's convolutions have biases (InceptionV3's do not).
fn mult_adds_from_keras_summary(text: &str, conv_bias: bool) -> u64 {
    let mut total = 0u64;
    // A row may wrap over several lines; its first line holds the shape and the count, the
    // class name may end up on a later line.
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('├') || line.starts_with('└') || line.starts_with('┡') {
            continue;
        }
        if !line.starts_with('│') {
            continue;
        }
        let cells: Vec<&str> = line.split('│').map(str::trim).collect();
        let (name, shape, params) = (cells[1], cells[2], cells[3]);
        if !params.is_empty() {
            rows.push((name.to_string(), shape.to_string(), params.to_string()));
        } else if let Some(last) = rows.last_mut() {
            last.0 = format!("{} {name}", last.0);
        }
    }
    for (name, shape, params) in rows {
        let conv = name.ends_with("(Conv2D)");
        if !conv && !name.ends_with("(Dense)") {
            continue;
        }
        let dims: Vec<u64> = shape
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .skip(1) // None, the batch
            .map(|d| d.parse().unwrap())
            .collect();
        let (channels, positions) = dims.split_last().unwrap();
        let params: u64 = params.replace(',', "").parse().unwrap();
        let bias = if conv && !conv_bias { 0 } else { *channels };
        total += (params - bias) * positions.iter().product::<u64>();
    }
    total
}

#[test]
fn mult_adds_are_exact_for_inception_resnet_and_vgg() {
    let cases: [(&str, Build, bool); 3] = [
        ("inception_v3", inception_v3, false),
        ("resnet50", resnet50, true),
        ("vgg16", vgg16, true),
    ];
    for (name, build, conv_bias) in cases {
        let keras = fixture(&format!("{name}_summary.txt"));
        let want = mult_adds_from_keras_summary(&keras, conv_bias);
        let model = build(&ApplicationOptions::default()).unwrap();
        assert_eq!(model.mult_adds(1), Some(want), "{name}");
        assert_eq!(model.mult_adds(32), Some(32 * want), "{name}");
        let text = model.summary_extras(32, None);
        let line = format!(" Mult-adds (batch 32): {}\n", thousands(32 * want));
        assert!(text.contains(&line), "{name}: {line}");
    }
    // The published figures, as a check on the derivation itself: VGG16 15.47 G, ResNet50
    // 3.86 G, InceptionV3 5.71 G multiply-accumulates per 224/224/299 image.
    let vgg = mult_adds_from_keras_summary(&fixture("vgg16_summary.txt"), true);
    assert_eq!(vgg, 15_470_264_320);
    let resnet = mult_adds_from_keras_summary(&fixture("resnet50_summary.txt"), true);
    assert!((3_850_000_000..3_880_000_000).contains(&resnet), "{resnet}");
    let inception = mult_adds_from_keras_summary(&fixture("inception_v3_summary.txt"), false);
    assert!(
        (5_700_000_000..5_730_000_000).contains(&inception),
        "{inception}"
    );
}

/// An application's builder.
type Build = fn(&ApplicationOptions) -> frostnet::Result<frostnet::Model>;

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Keras prints `Y` for a nested model as soon as its own flag is set; the extras say `Partial`
/// when some of its learnable weights are frozen, and the memory lines add up.
#[test]
fn partly_frozen_nested_model_is_partial() {
    let path = format!(
        "{}/tests/fixtures/cnn_nested.keras",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut model = load_model(&path).unwrap();
    let row = |text: &str, name: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("│ {name} ")))
            .unwrap_or_else(|| panic!("no row {name} in\n{text}"))
            .to_string()
    };
    // As saved: the base is frozen.
    let text = model.summary_extras(4, None);
    assert!(
        row(&text, "base")
            .trim_end_matches('│')
            .trim_end()
            .ends_with('N'),
        "{text}"
    );
    // Unfreeze the base, then freeze its first layer with weights again.
    let base = model.get_layer_mut("base").unwrap();
    base.set_trainable(true);
    let inner = base.as_model_mut().unwrap();
    let first = (0..inner.len())
        .find(|&i| !inner.layer(i).unwrap().weights().is_empty())
        .unwrap();
    inner.layer_mut(first).unwrap().set_trainable(false);
    let text = model.summary_extras(4, None);
    assert!(row(&text, "base").contains(" Partial "), "{text}");
    assert!(row(&text, "head").contains(" Y "), "{text}");
    assert!(row(&text, "gap").contains(" - "), "{text}");

    let mem = model.memory_estimate(4).unwrap();
    let params: u64 = model.weights().iter().map(|w| w.len() as u64 * 4).sum();
    let trainable: u64 = model
        .trainable_weights()
        .iter()
        .map(|w| w.len() as u64 * 4)
        .sum();
    assert_eq!(mem.params, params);
    assert_eq!(mem.gradients, trainable);
    assert_eq!(
        mem.training_step(),
        mem.params
            + mem.gradients
            + mem.optimizer_state
            + mem.activations_kept
            + mem.training_activations
    );
}
