//! The executor runs independent branches side by side (models/parallel.rs). That must change
//! nothing: outputs, the fused-layer list, the random stream (Dropout in training mode) and the
//! weights after training are bit-identical to a run on one thread, where the executor goes node
//! by node.

use frostnet::layers::*;
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Functional, Model, Tensor};

mod common;
use common::{on_threads, randomize, uniform};

/// An Inception-like block: a fused stem, four branches (1x1; 1x1 -> 3x3 with Dropout; 3x3
/// average pool -> 1x1; 3x3 max pool) joined by a Concatenate, a second level of branches on
/// top, then global pooling.
fn base() -> Model {
    clear_session();
    let mut f = Functional::new();
    let x = f.input(Input::new(&[13, 11, 3]));
    let conv_bn = |f: &mut Functional, filters: usize, k: usize, x, name: &str| {
        let c = f
            .call(
                Conv2D::new(filters, k)
                    .padding(Padding::Same)
                    .use_bias(false)
                    .named(&format!("{name}_conv")),
                &[x],
            )
            .unwrap();
        common::bn_relu(f, c, name)
    };
    let stem = conv_bn(&mut f, 8, 3, x, "stem");
    let a = conv_bn(&mut f, 4, 1, stem, "a");
    let b1 = conv_bn(&mut f, 5, 1, stem, "b1");
    let b1 = f.call(Dropout::new(0.4).named("drop"), &[b1]).unwrap();
    let b2 = conv_bn(&mut f, 6, 3, b1, "b2");
    let pool = f
        .call(
            AveragePooling2D::new(3)
                .strides(1)
                .padding(Padding::Same)
                .named("avg"),
            &[stem],
        )
        .unwrap();
    let c = conv_bn(&mut f, 3, 1, pool, "c");
    let d = f
        .call(
            MaxPooling2D::new(3)
                .strides(1)
                .padding(Padding::Same)
                .named("max"),
            &[stem],
        )
        .unwrap();
    let cat = f
        .call(Concatenate::new().named("mixed"), &[a, b2, c, d])
        .unwrap();
    let e1 = conv_bn(&mut f, 4, 1, cat, "e1");
    let e2 = conv_bn(&mut f, 4, 3, cat, "e2");
    let cat2 = f
        .call(Concatenate::new().named("mixed2"), &[e1, e2, cat])
        .unwrap();
    let y = f
        .call(GlobalAveragePooling2D::new().named("gap"), &[cat2])
        .unwrap();
    f.build(&[x], &[y]).unwrap()
}

fn input(seed: u64, batch: usize) -> Tensor {
    Tensor::from_vec(
        &[batch, 13, 11, 3],
        uniform(seed, batch * 13 * 11 * 3, -1.0, 1.0),
    )
    .unwrap()
}

#[test]
fn inference_is_bit_identical_to_one_thread() {
    let x = input(1, 3);
    let run = |threads| {
        on_threads(threads, || {
            let mut m = base();
            randomize(&mut m, 1);
            let y = m.call(&x).unwrap();
            (y, m.last_fused_layers().to_vec())
        })
    };
    let (want, want_fused) = run(1);
    let mut sorted = want_fused.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "a_conv",
            "b1_conv",
            "b2_conv",
            "c_conv",
            "e1_conv",
            "e2_conv",
            "stem_conv"
        ]
    );
    for threads in [2, 3, 4] {
        let (got, fused) = run(threads);
        assert_eq!(got, want, "{threads} threads");
        assert_eq!(fused, want_fused, "{threads} threads");
    }
    // Not vacuous: other weights give other outputs.
    let other = on_threads(2, || {
        let mut m = base();
        randomize(&mut m, 2);
        m.call(&x).unwrap()
    });
    assert_ne!(other, want);
}

/// Two epochs of `fit` of the base under a Dense head on `threads` threads: the weights after
/// and the losses. A `frozen` base (its Dropout still active in training mode) runs without
/// keeping anything and is recomputed every epoch (no prefix cache); otherwise everything
/// trains (BatchNormalization on batch statistics, gradients through every branch) and each
/// layer keeps its backward cache while the branches run side by side.
fn train(threads: usize, frozen: bool) -> (Vec<Tensor>, Vec<f64>) {
    let x = input(3, 8);
    let y = Tensor::from_vec(&[8, 2], uniform(4, 16, -1.0, 1.0)).unwrap();
    on_threads(threads, || {
        let mut b = base();
        randomize(&mut b, 5);
        b.set_trainable(!frozen);
        let mut f = Functional::new();
        let inp = f.input(Input::new(&[13, 11, 3]));
        let feats = f.call(b, &[inp]).unwrap();
        let out = f
            .call(Dense::new(2).seed(6).named("head"), &[feats])
            .unwrap();
        let mut m = f.build(&[inp], &[out]).unwrap();
        m.compile(Adam::new(1e-2), Loss::MeanSquaredError, &[]);
        let opts = FitOptions {
            batch_size: 4,
            epochs: 2,
            shuffle: true,
            seed: Some(7),
            verbose: 0,
            prefix_cache_bytes: 0,
            ..Default::default()
        };
        let hist = m.fit(&x, &y, opts).unwrap();
        (m.get_weights(), hist.history["loss"].clone())
    })
}

#[test]
fn training_a_head_on_a_frozen_branchy_base_matches_one_thread() {
    assert_eq!(train(3, true), train(1, true));
}

#[test]
fn training_the_whole_branchy_model_matches_one_thread() {
    let want = train(1, false);
    assert_eq!(train(3, false), want);
    // Not vacuous: the base trained.
    assert_ne!(want.0, train(1, true).0);
}
