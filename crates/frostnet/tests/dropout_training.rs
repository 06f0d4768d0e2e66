//! Dropout in training mode: the forward pass keeps each input with probability `1 - rate` and
//! scales it by `1 / (1 - rate)` (inverted dropout, as Keras); the backward pass must multiply
//! the incoming gradient by that same mask, since `y = x * mask` is linear in `x`.

use frostnet::layers::{Dropout, ForwardCtx, Layer};
use frostnet::tensor::random;
use frostnet::testing::gradient_check;
use frostnet::{Mode, Tensor};

fn train_ctx(seed: u64) -> ForwardCtx {
    ForwardCtx {
        mode: Mode::Train,
        keep: true,
        input_needs_grad: vec![true],
        rng: random::rng(Some(seed)),
    }
}

fn built(rate: f32, n: usize) -> Dropout {
    let mut d = Dropout::new(rate);
    d.build(&[vec![Some(n)]]).unwrap();
    d
}

/// The gradient is the upstream gradient times the mask the forward pass drew: zero where the
/// input was dropped, `g / (1 - rate)` where it was kept.
#[test]
fn training_backward_is_the_forward_mask_times_the_gradient() {
    let (rate, n) = (0.3f32, 4000);
    let mut d = built(rate, n);
    // Nonzero inputs, so that a dropped element is told apart from a kept one by y alone.
    let x = Tensor::from_vec(&[2, n / 2], (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect()).unwrap();
    let y = d.forward(&[&x], &mut train_ctx(11)).unwrap();
    let g = Tensor::from_vec(&[2, n / 2], (0..n).map(|i| (i % 7) as f32 - 3.0).collect()).unwrap();
    let dx = d.backward(&g, &[true]).unwrap().remove(0).unwrap();
    let scale = 1.0 / (1.0 - rate);
    let mut kept = 0usize;
    for i in 0..n {
        let (xi, yi, gi, di) = (x.data()[i], y.data()[i], g.data()[i], dx.data()[i]);
        if yi == 0.0 {
            assert_eq!(di, 0.0, "element {i} was dropped but passes a gradient");
        } else {
            kept += 1;
            assert_eq!(yi, xi * scale, "element {i}");
            assert_eq!(di, gi * scale, "element {i}");
        }
    }
    // Kept fraction ~ Binomial(4000, 0.7): mean 2800, sd 29; 5 sd either side.
    assert!((2655..=2945).contains(&kept), "kept {kept} of {n}");
}

/// Finite differences agree with the analytic gradient for one fixed mask (the checker seeds
/// every forward pass alike, so the function it differentiates is fixed).
#[test]
fn training_backward_matches_finite_differences() {
    for rate in [0.0f32, 0.25, 0.5, 0.9] {
        let mut d = built(rate, 6);
        let x = Tensor::from_vec(
            &[5, 6],
            random::uniform(&mut random::rng(Some(3)), 30, -2.0, 2.0),
        )
        .unwrap();
        let rep = gradient_check(&mut d, &[x], Mode::Train, 1e-2).unwrap();
        assert!(rep.max_rel_error < 1e-3, "rate {rate}: {rep:?}");
        assert_eq!(rep.checked, 30);
    }
}

/// Training mode draws its mask from the context's generator: the same seed, the same mask.
#[test]
fn same_seed_same_mask_in_training() {
    let mut d = built(0.5, 64);
    let x = Tensor::from_vec(&[1, 64], vec![1.0; 64]).unwrap();
    let a = d.forward(&[&x], &mut train_ctx(5)).unwrap();
    let b = d.forward(&[&x], &mut train_ctx(5)).unwrap();
    let c = d.forward(&[&x], &mut train_ctx(6)).unwrap();
    assert_eq!(a.data(), b.data());
    assert_ne!(a.data(), c.data());
    // Inference is the identity whatever the seed.
    let mut ctx = train_ctx(5);
    ctx.mode = Mode::Infer;
    assert_eq!(d.forward(&[&x], &mut ctx).unwrap().data(), x.data());
}
