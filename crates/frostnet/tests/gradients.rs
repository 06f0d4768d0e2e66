//! Finite-difference gradient checks for every layer and option.

use frostnet::layers::*;
use frostnet::tensor::{random, Padding};
use frostnet::testing::gradient_check;
use frostnet::{Mode, Tensor};

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = random::rng(Some(seed));
    Tensor::from_vec(
        shape,
        random::uniform(&mut r, shape.iter().product(), -1.0, 1.0),
    )
    .unwrap()
}

fn check(layer: &mut dyn Layer, input: &[usize], mode: Mode) {
    let dims: Shape = input[1..].iter().map(|&d| Some(d)).collect();
    layer.build(&[dims]).unwrap();
    let x = rand_tensor(input, 3);
    let rep = gradient_check(layer, &[x], mode, 1e-2).unwrap();
    assert!(rep.checked > 0);
    assert!(rep.max_rel_error < 2e-2, "{}: {rep:?}", layer.name());
}

#[test]
fn dense_all_activations_with_and_without_bias() {
    for f in [
        ActivationFn::Linear,
        ActivationFn::Relu,
        ActivationFn::Sigmoid,
        ActivationFn::Tanh,
        ActivationFn::Softmax,
    ] {
        for bias in [true, false] {
            check(
                &mut Dense::new(4).activation(f).use_bias(bias).seed(1),
                &[3, 5],
                Mode::Train,
            );
        }
    }
    // Rank-3 input: Dense applies to the last axis.
    check(&mut Dense::new(2).seed(2), &[2, 3, 4], Mode::Train);
}

#[test]
fn conv2d_strides_padding_activation_bias() {
    for (k, s, p) in [
        ((3, 3), (1, 1), Padding::Same),
        ((3, 3), (2, 2), Padding::Valid),
        ((2, 3), (2, 1), Padding::Same),
        ((1, 1), (1, 1), Padding::Valid),
        ((1, 1), (2, 2), Padding::Same),
    ] {
        for (f, bias) in [
            (ActivationFn::Linear, true),
            (ActivationFn::Linear, false),
            (ActivationFn::Tanh, true),
            (ActivationFn::Tanh, false),
        ] {
            let mut c = Conv2D::with_kernel(3, k)
                .strides2(s)
                .padding(p)
                .activation(f)
                .use_bias(bias)
                .seed(4);
            check(&mut c, &[2, 5, 6, 2], Mode::Train);
        }
    }
}

/// Conv2D with enough channels for the backward engines of `tensor::conv_backward` other than
/// col2im: the stride-phase input gradient through the direct kernel (8 in, 12 out; strides 1,
/// 2 and mixed, odd sizes) and the direct kernel gradient (<= 8 input channels), next to the
/// gemm kernel gradient (16 input channels).
#[test]
fn conv2d_backward_engines() {
    for (c, k, s, p) in [
        (8, (3, 3), (2, 2), Padding::Valid),
        (8, (3, 3), (1, 1), Padding::Same),
        (8, (2, 3), (2, 1), Padding::Same),
        (16, (3, 3), (2, 2), Padding::Same),
    ] {
        let mut conv = Conv2D::with_kernel(12, k)
            .strides2(s)
            .padding(p)
            .use_bias(false)
            .seed(6);
        check(&mut conv, &[1, 7, 9, c], Mode::Train);
    }
}

#[test]
fn batch_normalization_in_both_modes() {
    // Training mode: gradients flow through the batch statistics.
    check(&mut BatchNormalization::new(), &[6, 3], Mode::Train);
    check(&mut BatchNormalization::new(), &[2, 3, 3, 2], Mode::Train);
    check(
        &mut BatchNormalization::new().scale(false),
        &[5, 4],
        Mode::Train,
    );
    // Inference mode: moving statistics are constants.
    check(&mut BatchNormalization::new(), &[4, 3], Mode::Infer);
    // Frozen BN inside training runs in inference mode: only the input gradient, no weight grads.
    let mut frozen = BatchNormalization::new().trainable(false);
    check(&mut frozen, &[4, 3], Mode::Train);
    assert!(frozen.weights().iter().all(|w| w.grad().is_none()));
}

#[test]
fn shape_only_and_activation_layers() {
    check(&mut Flatten::new(), &[2, 3, 2, 2], Mode::Train);
    for f in [
        ActivationFn::Relu,
        ActivationFn::Sigmoid,
        ActivationFn::Tanh,
        ActivationFn::Softmax,
    ] {
        check(&mut Activation::new(f), &[3, 4], Mode::Train);
    }
    // Dropout in inference is the identity; in training the checker sees one fixed mask (seeded).
    check(&mut Dropout::new(0.5), &[4, 5], Mode::Infer);
}

#[test]
fn conv2d_relu_away_from_the_kink() {
    // Central differences straddle ReLU's kink for outputs within eps of zero; a small step keeps
    // the comparison about the layer, not about the kink.
    let mut c = Conv2D::new(3, 3)
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .use_bias(false)
        .seed(4);
    c.build(&[vec![Some(5), Some(6), Some(2)]]).unwrap();
    let rep = gradient_check(&mut c, &[rand_tensor(&[2, 5, 6, 2], 3)], Mode::Train, 1e-3).unwrap();
    assert!(rep.max_rel_error < 2e-2, "{rep:?}");
}
