//! Issue 10, point 3: no allocation in the steady state. After a model's first step, every
//! activation- or gradient-sized buffer a step needs comes back from `tensor::buffer`'s pool:
//! the pool's miss counter stops growing, for training (everything trains), for a frozen base
//! with a trainable head, and for inference. Own test binary with one test, because the pool
//! and its counters are process-wide and other tests would allocate beside it.

use frostnet::layers::*;
use frostnet::tensor::buffer;
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Model, Sequential, Tensor};

/// A small CNN whose activations are all above the pool's 32 KB threshold at batch 8:
/// Conv + BN + ReLU, a strided conv, max pooling, a 1x1 conv, global pooling and a head.
fn cnn() -> Model {
    let mut m = Sequential::new();
    m.add(Input::new(&[48, 48, 8])).unwrap();
    m.add(Conv2D::new(32, 3).padding(Padding::Same).seed(1))
        .unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(Activation::new(ActivationFn::Relu)).unwrap();
    m.add(Conv2D::new(32, 3).strides(2).padding(Padding::Same).seed(2))
        .unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Conv2D::new(64, 1).seed(3)).unwrap();
    m.add(GlobalAveragePooling2D::new()).unwrap();
    m.add(Dense::new(3).seed(4)).unwrap();
    m
}

/// The three convolutions' outputs (589,824, 147,456 and 73,728 values at batch 8) are above the
/// pool's threshold of 65,536 values, so every step takes at least three buffers from it.
///
/// Runs `step` twice to reach the steady state, then three more times, and returns how many
/// pool misses the last three caused (and how many hits, to show the pool was used at all).
fn misses_after_warm_up(mut step: impl FnMut()) -> (usize, usize) {
    step();
    step();
    let before = buffer::stats();
    for _ in 0..3 {
        step();
    }
    let after = buffer::stats();
    (after.misses - before.misses, after.hits - before.hits)
}

#[test]
fn training_and_inference_steps_allocate_nothing_large_after_the_first() {
    let x = Tensor::randn(&[8, 48, 48, 8], 7);
    let y = Tensor::rand(&[8, 3], 8);

    let mut m = cnn();
    m.compile(Adam::new(1e-3), Loss::MeanSquaredError, &[]);
    let (misses, hits) = misses_after_warm_up(|| {
        m.train_on_batch(&x, &y).unwrap();
    });
    assert_eq!(
        misses, 0,
        "training steps 3-5 allocated {misses} large buffers"
    );
    assert!(
        hits >= 3 * 3,
        "the pool served only {hits} requests in 3 steps"
    );

    // The transfer-learning case: the convolutional base frozen (BN in inference mode, fused
    // into its convolution), the head trains.
    for i in 0..7 {
        m.layer_mut(i).unwrap().set_trainable(false);
    }
    m.compile(Sgd::new(0.01), Loss::MeanSquaredError, &[]);
    let (misses, hits) = misses_after_warm_up(|| {
        m.train_on_batch(&x, &y).unwrap();
    });
    assert_eq!(
        misses, 0,
        "frozen-base steps 3-5 allocated {misses} large buffers"
    );
    assert!(
        hits >= 3 * 3,
        "the pool served only {hits} requests in 3 steps"
    );

    let (misses, hits) = misses_after_warm_up(|| {
        m.predict(&x, 8).unwrap();
    });
    assert_eq!(
        misses, 0,
        "predict calls 3-5 allocated {misses} large buffers"
    );
    assert!(
        hits >= 3 * 3,
        "the pool served only {hits} requests in 3 calls"
    );
}
