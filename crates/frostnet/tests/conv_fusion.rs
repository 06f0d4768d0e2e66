//! The executor's Conv2D -> BatchNormalization -> activation fusion (models/model.rs) against the
//! layer-by-layer path: bit-identical outputs in inference, and bit-identical weights after
//! training while a BatchNormalization flips between frozen (fused) and trainable (not fused).

use frostnet::layers::*;
use frostnet::tensor::isa::{self, Isa};
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Functional, Model, Tensor};

mod common;
use common::{randomize, uniform};

/// Three fusable chains (bias + BN + Activation, no bias + scale-free BN + leaky capped ReLU,
/// tanh conv + BN without activation), one chain that must not fuse (the conv output also feeds
/// a Concatenate), then pooling, Dropout (checks the random stream) and a Dense head.
fn model() -> Model {
    clear_session();
    let mut f = Functional::new();
    let x = f.input(Input::new(&[9, 11, 3]));
    let c1 = f
        .call(
            Conv2D::new(5, 3)
                .strides(2)
                .padding(Padding::Same)
                .seed(1)
                .named("c1"),
            &[x],
        )
        .unwrap();
    let b1 = f
        .call(BatchNormalization::new().named("b1"), &[c1])
        .unwrap();
    let a1 = f
        .call(Activation::new(ActivationFn::Relu).named("a1"), &[b1])
        .unwrap();
    let c2 = f
        .call(
            Conv2D::with_kernel(4, (1, 3))
                .use_bias(false)
                .seed(2)
                .named("c2"),
            &[a1],
        )
        .unwrap();
    let b2 = f
        .call(BatchNormalization::new().scale(false).named("b2"), &[c2])
        .unwrap();
    let a2 = f
        .call(
            ReLU::new()
                .max_value(1.5)
                .negative_slope(0.1)
                .threshold(0.05)
                .named("a2"),
            &[b2],
        )
        .unwrap();
    let c3 = f
        .call(
            Conv2D::new(3, 1)
                .activation(ActivationFn::Tanh)
                .seed(3)
                .named("c3"),
            &[a2],
        )
        .unwrap();
    let b3 = f
        .call(BatchNormalization::new().named("b3"), &[c3])
        .unwrap();
    let c4 = f
        .call(Conv2D::new(2, 1).seed(4).named("c4"), &[b3])
        .unwrap();
    let b4 = f
        .call(BatchNormalization::new().named("b4"), &[c4])
        .unwrap();
    let cat = f.call(Concatenate::new().named("cat"), &[b4, c4]).unwrap();
    let p = f
        .call(GlobalAveragePooling2D::new().named("gap"), &[cat])
        .unwrap();
    let d = f.call(Dropout::new(0.3).named("drop"), &[p]).unwrap();
    let y = f.call(Dense::new(3).seed(5).named("head"), &[d]).unwrap();
    f.build(&[x], &[y]).unwrap()
}

fn pair(seed: u64) -> (Model, Model) {
    let mut fused = model();
    let mut plain = model();
    randomize(&mut fused, seed);
    randomize(&mut plain, seed);
    plain.set_fusion(false);
    (fused, plain)
}

fn input(seed: u64, batch: usize) -> Tensor {
    Tensor::from_vec(
        &[batch, 9, 11, 3],
        uniform(seed, batch * 9 * 11 * 3, -1.0, 1.0),
    )
    .unwrap()
}

fn fused_inference_is_bit_identical_on_every_isa_and_after_set_weights(levels: Vec<Isa>) {
    let (mut fused, mut plain) = pair(1);
    let x = input(7, 5);
    for isa_level in levels.clone() {
        isa::with_forced(isa_level, || {
            let a = fused.call(&x).unwrap();
            assert_eq!(fused.last_fused_layers(), ["c1", "c2", "c3"]);
            let b = plain.call(&x).unwrap();
            assert!(plain.last_fused_layers().is_empty());
            assert_eq!(a, b, "{isa_level}");
        });
    }
    // New weights (moving statistics included) take effect at once: nothing folded goes stale.
    randomize(&mut fused, 2);
    randomize(&mut plain, 2);
    let a = fused.predict(&x, 2).unwrap();
    let b = plain.predict(&x, 2).unwrap();
    assert_eq!(a, b);
    // and they differ from the first weights' output, so the comparison is not vacuous.
    let (mut first, _) = pair(1);
    assert_ne!(first.predict(&x, 2).unwrap(), a);
}
frostnet::level_tests!(fused_inference_is_bit_identical_on_every_isa_and_after_set_weights);

#[test]
fn training_with_bn_flipping_between_frozen_and_trainable_matches_unfused() {
    let (mut fused, mut plain) = pair(3);
    let x = input(11, 12);
    let y = Tensor::from_vec(&[12, 3], uniform(12, 36, -1.0, 1.0)).unwrap();
    let opts = || FitOptions {
        batch_size: 4,
        epochs: 2,
        shuffle: true,
        seed: Some(9),
        verbose: 0,
        // The frozen prefix would be served from fit's prefix cache after the first epoch, and
        // the last step would run no convolution at all: this test is about fusion.
        prefix_cache_bytes: 0,
        ..Default::default()
    };
    // Phase 1: convolutions and BNs frozen, head (and Dropout) train: c1-c3 run fused in fit.
    // Phase 2: b1 and b2 train (batch statistics): no convolution fuses (c1 and c2 feed a
    // training BN, and gradients flow back through c3 to b2). b1, outside any chain, applies its
    // plain ReLU a1 itself (`Model::set_fusion`); b2's ReLU is leaky, capped and thresholded, and
    // b3 and b4 feed no ReLU, so they do not.
    // Phase 3: frozen again, with the moving statistics phase 2 changed.
    let frozen = ["c1", "b1", "c2", "b2", "c3", "b3", "c4", "b4"];
    let phases: [(&[&str], &[&str]); 3] = [
        (&[], &["c1", "c2", "c3"]),
        (&["b1", "b2"], &["b1"]),
        (&[], &["c1", "c2", "c3"]),
    ];
    for m in [&mut fused, &mut plain] {
        m.compile(Adam::new(1e-2), Loss::MeanSquaredError, &[]);
    }
    for (trainable, want_fused) in phases {
        for m in [&mut fused, &mut plain] {
            for name in frozen {
                m.get_layer_mut(name)
                    .unwrap()
                    .set_trainable(trainable.contains(&name));
            }
            m.fit(&x, &y, opts()).unwrap();
        }
        assert_eq!(fused.last_fused_layers(), want_fused);
        assert!(plain.last_fused_layers().is_empty());
        assert_eq!(fused.get_weights(), plain.get_weights());
        // Inference with whatever the BNs are now (trainable ones run inference mode too).
        let a = fused.call(&x).unwrap();
        assert_eq!(fused.last_fused_layers(), ["c1", "c2", "c3"]);
        assert_eq!(a, plain.call(&x).unwrap());
    }
    // Phase 2 really changed b1's moving statistics (so phase 3 fused with new ones).
    let (before, _) = pair(3);
    let mv = |m: &Model| {
        m.named_weights()
            .into_iter()
            .find(|(p, _)| p == "b1/moving_mean")
            .map(|(_, w)| w.value().clone())
            .unwrap()
    };
    assert_ne!(mv(&before), mv(&fused));
}

/// InceptionV3's pool branch: 3x3 average pooling (stride 1, `same`) of 12 channels, then a 1x1
/// convolution to 5, BN and ReLU. Fused, the pooling runs after the convolution over 5 channels
/// (`Model::set_fusion`): the same weighted sums in another order, so the outputs agree with the
/// layer-by-layer path to f32 rounding. A second branch keeps the pooling first (its 1x1
/// convolution has a tanh of its own) and must stay bit-identical.
fn average_pooling_before_a_pointwise_convolution_runs_after_it_within_rounding(levels: Vec<Isa>) {
    let build = || {
        clear_session();
        let mut f = Functional::new();
        let x = f.input(Input::new(&[7, 9, 12]));
        let branch = |f: &mut Functional, name: &str, act: ActivationFn| {
            let p = f
                .call(
                    AveragePooling2D::new(3)
                        .strides(1)
                        .padding(Padding::Same)
                        .named(&format!("{name}_pool")),
                    &[x],
                )
                .unwrap();
            let c = f
                .call(Conv2D::new(5, 1).activation(act).seed(8).named(name), &[p])
                .unwrap();
            common::bn_relu(f, c, name)
        };
        let a = branch(&mut f, "moved", ActivationFn::Linear);
        let b = branch(&mut f, "kept", ActivationFn::Tanh);
        let y = f.call(Concatenate::new(), &[a, b]).unwrap();
        f.build(&[x], &[y]).unwrap()
    };
    let (mut fused, mut plain) = (build(), build());
    randomize(&mut fused, 4);
    randomize(&mut plain, 4);
    plain.set_fusion(false);
    let x = Tensor::from_vec(&[3, 7, 9, 12], uniform(5, 3 * 7 * 9 * 12, -2.0, 2.0)).unwrap();
    for isa_level in levels.clone() {
        isa::with_forced(isa_level, || {
            let got = fused.call(&x).unwrap();
            let mut names = fused.last_fused_layers().to_vec();
            names.sort();
            assert_eq!(names, ["kept", "moved"]);
            let want = plain.call(&x).unwrap();
            // Channels 0..5: the moved pooling; 5..10: the tanh branch.
            let (mut worst, mut positive) = (0.0f32, 0);
            for (g, w) in got.data().chunks(10).zip(want.data().chunks(10)) {
                assert_eq!(
                    g[5..],
                    w[5..],
                    "{isa_level}: the tanh branch pools first, as unfused"
                );
                for (a, b) in g[..5].iter().zip(&w[..5]) {
                    worst = worst.max((a - b).abs() / b.abs().max(1.0));
                    positive += usize::from(*b > 0.0);
                }
            }
            assert!(worst <= 1e-6, "{isa_level}: relative difference {worst:e}");
            // The pooling did move: in Keras's order the fused values would be bit-identical.
            assert!(worst > 0.0, "{isa_level}: bit-identical");
            // Not vacuous: the moved branch has real values (not all cut by its ReLU).
            assert!(positive > 100, "{positive} positive values");
        });
    }
}
frostnet::level_tests!(
    average_pooling_before_a_pointwise_convolution_runs_after_it_within_rounding
);
