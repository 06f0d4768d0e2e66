//! The executor's BatchNormalization -> ReLU fusion outside convolution chains
//! (`Model::set_fusion`, models/model.rs): a BN whose only consumer is a plain ReLU
//! (`Activation("relu")` or `ReLU()`) applies it in its own forward and backward passes, in
//! training too. Training with it must leave weights bit-identical to the layer-by-layer path,
//! on one thread (node by node) and on several (models/parallel.rs), and only the planned pairs
//! may fuse.

use frostnet::layers::*;
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Functional, Model, Tensor};

mod common;
use common::{on_threads, randomize, uniform};

/// Branches from one input: a trainable Conv2D -> BN -> `ReLU()` (fused in training; a conv
/// chain in inference), an Add -> BN -> `Activation("relu")`, a BN whose output also feeds the
/// Concatenate (its ReLU must not take it over), a BN before a capped ReLU (not the plain form),
/// then pooling, Dense -> BN -> `Activation("relu")`, Dropout (checks the random stream) and a
/// Dense head.
fn model() -> Model {
    clear_session();
    let mut f = Functional::new();
    let x = f.input(Input::new(&[6, 7, 3]));
    let c1 = f
        .call(
            Conv2D::new(4, 3).padding(Padding::Same).seed(1).named("c1"),
            &[x],
        )
        .unwrap();
    let b1 = f
        .call(BatchNormalization::new().named("b1"), &[c1])
        .unwrap();
    let r1 = f.call(ReLU::new().named("r1"), &[b1]).unwrap();
    let c2 = f.call(Conv2D::new(4, 1).seed(2).named("c2"), &[x]).unwrap();
    let add = f.call(Add::new().named("add"), &[r1, c2]).unwrap();
    let b2 = f
        .call(BatchNormalization::new().named("b2"), &[add])
        .unwrap();
    let r2 = f
        .call(Activation::new(ActivationFn::Relu).named("r2"), &[b2])
        .unwrap();
    let b3 = f
        .call(BatchNormalization::new().named("b3"), &[c2])
        .unwrap();
    let r3 = f
        .call(Activation::new(ActivationFn::Relu).named("r3"), &[b3])
        .unwrap();
    let b4 = f
        .call(BatchNormalization::new().named("b4"), &[r2])
        .unwrap();
    let r4 = f
        .call(ReLU::new().max_value(0.8).named("r4"), &[b4])
        .unwrap();
    let cat = f
        .call(Concatenate::new().named("cat"), &[r3, b3, r4])
        .unwrap();
    let p = f
        .call(GlobalAveragePooling2D::new().named("gap"), &[cat])
        .unwrap();
    let d = f.call(Dense::new(6).seed(3).named("d"), &[p]).unwrap();
    let b5 = f.call(BatchNormalization::new().named("b5"), &[d]).unwrap();
    let r5 = f
        .call(Activation::new(ActivationFn::Relu).named("r5"), &[b5])
        .unwrap();
    let drop = f.call(Dropout::new(0.3).named("drop"), &[r5]).unwrap();
    let y = f
        .call(Dense::new(2).seed(4).named("head"), &[drop])
        .unwrap();
    f.build(&[x], &[y]).unwrap()
}

/// What a run leaves: the weights, the losses, the fused layers of the last training step and
/// of an inference call after it, and that call's output.
type Run = (Vec<Tensor>, Vec<f64>, Vec<String>, Vec<String>, Tensor);

/// Two epochs of `fit` (3 steps each) with everything trainable, then the same with the
/// convolutions and b1, b2 frozen, on `threads` threads, with fusion on or off.
fn train(threads: usize, fusion: bool) -> Run {
    let x = Tensor::from_vec(&[12, 6, 7, 3], uniform(11, 12 * 6 * 7 * 3, -1.0, 1.0)).unwrap();
    let y = Tensor::from_vec(&[12, 2], uniform(12, 24, -1.0, 1.0)).unwrap();
    on_threads(threads, || {
        let mut m = model();
        randomize(&mut m, 3);
        m.set_fusion(fusion);
        m.compile(Adam::new(1e-2), Loss::MeanSquaredError, &[]);
        let opts = || FitOptions {
            batch_size: 4,
            epochs: 2,
            shuffle: true,
            seed: Some(9),
            verbose: 0,
            prefix_cache_bytes: 0,
            ..Default::default()
        };
        let mut loss = m.fit(&x, &y, opts()).unwrap().history["loss"].clone();
        let mut fused = m.last_fused_layers().to_vec();
        for name in ["c1", "b1", "c2", "b2"] {
            m.get_layer_mut(name).unwrap().set_trainable(false);
        }
        loss.extend(m.fit(&x, &y, opts()).unwrap().history["loss"].clone());
        fused.push("|".to_string());
        fused.extend(m.last_fused_layers().iter().cloned());
        let out = m.call(&x).unwrap();
        let inference = m.last_fused_layers().to_vec();
        (m.get_weights(), loss, fused, inference, out)
    })
}

/// Training with the fusion leaves every weight (moving statistics included), loss and output
/// bit-identical to the layer-by-layer path, node by node and with branches side by side, and
/// fuses exactly b1 + r1, b2 + r2 and b5 + r5 while they train.
///
/// When b1 and b2 are frozen (second phase), their inputs get no gradient (the convolutions are
/// frozen too and the input needs none), so c1 -> b1 -> r1 becomes a conv chain; b2 normalises
/// with its moving statistics but follows an Add, so it still applies r2 itself.
#[test]
fn training_with_bn_relu_fusion_is_bit_identical_to_unfused() {
    let want = train(1, false);
    assert!(want.2.iter().all(|s| s == "|") && want.3.is_empty());
    for threads in [1, 2, 3] {
        let got = train(threads, true);
        assert_eq!(
            got.2,
            ["b1", "b2", "b5", "|", "c1", "b2", "b5"],
            "{threads}"
        );
        assert_eq!(got.3, ["c1", "b2", "b5"], "{threads} threads: inference");
        assert_eq!(got.0, want.0, "{threads} threads: weights");
        assert_eq!(got.1, want.1, "{threads} threads: losses");
        assert_eq!(got.4, want.4, "{threads} threads: output");
    }
    // Not vacuous: the weights changed, BNs' moving statistics included.
    let on = on_threads(1, || {
        let mut m = model();
        randomize(&mut m, 3);
        m.get_weights()
    });
    assert_eq!(on.len(), want.0.len());
    for (k, (a, b)) in on.iter().zip(&want.0).enumerate() {
        assert_ne!(a, b, "weight {k} did not change");
    }
}

/// Fusion needs the ReLU to be the BN's only consumer and the BN's value to be needed nowhere
/// else: not when the BN is also a model output, and not in a model with Keras masks.
#[test]
fn bn_relu_fusion_only_when_the_relu_is_the_only_use() {
    let x = Tensor::from_vec(&[3, 5], uniform(1, 15, -1.0, 1.0)).unwrap();
    let dense_bn_relu = |also_bn: bool| {
        clear_session();
        let mut f = Functional::new();
        let i = f.input(Input::new(&[5]));
        let d = f.call(Dense::new(4).seed(1).named("d"), &[i]).unwrap();
        let b = f.call(BatchNormalization::new().named("b"), &[d]).unwrap();
        let r = f
            .call(Activation::new(ActivationFn::Relu).named("r"), &[b])
            .unwrap();
        let outs = if also_bn { vec![b, r] } else { vec![r] };
        let mut m = f.build(&[i], &outs).unwrap();
        randomize(&mut m, 2);
        m
    };
    let run = |m: &mut Model| {
        let mut rng = frostnet::tensor::random::rng(Some(0));
        let ys = m.run_forward(&[&x], Mode::Train, true, &[false], &mut rng);
        (ys.unwrap(), m.last_fused_layers().to_vec())
    };
    let (alone, fused) = run(&mut dense_bn_relu(false));
    assert_eq!(fused, ["b"]);
    let (both, fused) = run(&mut dense_bn_relu(true));
    assert!(fused.is_empty(), "{fused:?}");
    assert_eq!(both[1], alone[0]);
    assert!(
        both[0].data().iter().any(|&v| v < 0.0),
        "the BN's own value"
    );

    // Keras masks: an Embedding with mask_zero, then Dense -> BN -> ReLU on every step.
    clear_session();
    let mut g = Functional::new();
    let i = g.input(Input::new(&[4]));
    let e = g
        .call(Embedding::new(6, 3).mask_zero(true).seed(1), &[i])
        .unwrap();
    let d = g.call(Dense::new(4).seed(2), &[e]).unwrap();
    let b = g.call(BatchNormalization::new(), &[d]).unwrap();
    let r = g.call(ReLU::new(), &[b]).unwrap();
    let p = g.call(GlobalAveragePooling1D::new(), &[r]).unwrap();
    let mut m = g.build(&[i], &[p]).unwrap();
    let ids = Tensor::from_vec(&[2, 4], vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 5.0]).unwrap();
    m.call(&ids).unwrap();
    assert!(m.last_fused_layers().is_empty());
}
