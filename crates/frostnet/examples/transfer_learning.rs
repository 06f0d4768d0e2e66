//! Transfer learning with InceptionV3, the classic Keras recipe:
//!
//! 1. an InceptionV3 base without its classifier (random weights, or `--weights FILE` once Keras
//!    weight files load), frozen, under a new head trained for a few steps;
//! 2. then fine-tuning: freeze `layers[:249]`, unfreeze the rest (the top two inception blocks),
//!    lower the learning rate, train again.
//!
//! The data are the bundled digits, upsampled to 75x75 (InceptionV3's minimum) with three channels.
//! Summaries with the "Trainable" column show each stage.
//!
//! Run: `cargo run --release --example transfer_learning`

use frostnet::applications::{inception_v3, InceptionV3Options, Pooling};
use frostnet::datasets::load_digits;
use frostnet::layers::{ActivationFn, Dense};
use frostnet::training::{Adam, FitOptions, Loss, Metric, Sgd};
use frostnet::{Functional, SummaryOptions, Tensor};
use std::time::Instant;

/// Nearest-neighbour resize of `(n, 8, 8, 1)` digits to `(n, size, size, 3)`.
fn upsample(images: &Tensor, size: usize) -> frostnet::Result<Tensor> {
    let n = images.batch();
    let src = images.data();
    let mut out = Vec::with_capacity(n * size * size * 3);
    for i in 0..n {
        for y in 0..size {
            for x in 0..size {
                let v = src[i * 64 + (y * 8 / size) * 8 + x * 8 / size];
                out.extend([v, v, v]);
            }
        }
    }
    Tensor::from_vec(&[n, size, size, 3], out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let digits = load_digits()?;
    let x = upsample(&digits.images.slice_batch(0, samples), 75)?;
    let y = digits.labels.slice_batch(0, samples);
    let show = SummaryOptions {
        show_trainable: true,
        ..Default::default()
    };

    // The base: InceptionV3 without its classifier, global average pooling.
    let base = inception_v3(&InceptionV3Options {
        include_top: false,
        pooling: Some(Pooling::Avg),
        input_shape: Some([Some(75), Some(75), Some(3)]),
        ..Default::default()
    })?;
    let (mut graph, inputs, outputs) = Functional::from_model(base);
    let h = graph.call(Dense::new(64).activation(ActivationFn::Relu), &outputs)?;
    let out = graph.call(Dense::new(10).activation(ActivationFn::Softmax), &[h])?;
    let mut model = graph.build(&inputs, &[out])?;
    let base_layers = model.len() - 2;

    println!("Stage 1: base frozen, new head trains");
    model.set_trainable_range(0..base_layers, false)?;
    let tail = model.summary_with(&show);
    println!(
        "{}",
        tail.lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    model.compile(
        Adam::new(1e-3),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let t = Instant::now();
    model.fit(
        &x,
        &y,
        FitOptions {
            epochs: 2,
            batch_size: 8,
            seed: Some(1),
            verbose: 2,
            ..Default::default()
        },
    )?;
    println!(
        "stage 1: {:.1} s; backward ran in {:?}\n",
        t.elapsed().as_secs_f64(),
        model.last_backward_profile()
    );

    println!("Stage 2: freeze layers[:249], unfreeze the rest, lower learning rate");
    model.set_trainable_range(0..249, false)?;
    model.set_trainable_range(249..model.len(), true)?;
    println!(
        "layers[248] = {}, layers[249] = {}",
        model.layer(248)?.name(),
        model.layer(249)?.name()
    );
    let text = model.summary_with(&show);
    println!(
        "{}",
        text.lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    print!("{}", model.explain());
    model.compile(
        Sgd::new(1e-4).momentum(0.9),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let t = Instant::now();
    model.fit(
        &x,
        &y,
        FitOptions {
            epochs: 1,
            batch_size: 8,
            seed: Some(2),
            verbose: 2,
            ..Default::default()
        },
    )?;
    println!(
        "stage 2: {:.1} s; {} layers ran backward",
        t.elapsed().as_secs_f64(),
        model.last_backward_profile().len()
    );
    Ok(())
}
