//! Losses against finite differences and closed forms; optimizer updates against Keras's rules
//! written out by hand; learning-rate schedules against their formulas.

use frostnet::layers::{clear_session, Dense, Input};
use frostnet::training::*;
use frostnet::{Sequential, Tensor};

fn t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

#[test]
fn loss_gradients_match_finite_differences() {
    let cases: Vec<(Loss, Tensor, Tensor)> = vec![
        (
            Loss::MeanSquaredError,
            t(&[2, 3], &[0.1, -0.4, 0.9, 1.5, 0.2, -0.3]),
            t(&[2, 3], &[0.0, 0.5, 1.0, 1.0, 0.0, 0.0]),
        ),
        (
            Loss::MeanAbsoluteError,
            t(&[2, 2], &[0.1, -0.4, 0.9, 1.5]),
            t(&[2, 2], &[0.0, 0.5, 1.0, 1.0]),
        ),
        (
            Loss::BinaryCrossentropy { from_logits: false },
            t(&[3, 1], &[0.2, 0.7, 0.9]),
            t(&[3, 1], &[0.0, 1.0, 1.0]),
        ),
        (
            Loss::BinaryCrossentropy { from_logits: true },
            t(&[3, 1], &[-1.2, 0.7, 2.5]),
            t(&[3, 1], &[0.0, 1.0, 0.0]),
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: false },
            t(&[2, 3], &[0.2, 0.5, 0.3, 0.1, 0.1, 0.8]),
            t(&[2, 3], &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: true },
            t(&[2, 3], &[0.2, -1.5, 0.3, 2.1, 0.1, 0.8]),
            t(&[2, 3], &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]),
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            t(&[2, 3], &[0.2, 0.5, 0.3, 0.1, 0.1, 0.8]),
            t(&[2], &[1.0, 2.0]),
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            t(&[2, 3], &[0.2, -1.5, 0.3, 2.1, 0.1, 0.8]),
            t(&[2, 1], &[1.0, 0.0]),
        ),
    ];
    for (loss, p, y) in cases {
        let (_, g) = loss.compute(&p, &y).unwrap();
        for i in 0..p.len() {
            let eps = 1e-3;
            let mut plus = p.clone();
            plus.data_mut()[i] += eps;
            let mut minus = p.clone();
            minus.data_mut()[i] -= eps;
            let numeric = (loss.compute(&plus, &y).unwrap().0
                - loss.compute(&minus, &y).unwrap().0)
                / (2.0 * eps);
            assert!(
                (numeric - g.data()[i]).abs() < 2e-3,
                "{loss:?}[{i}]: {numeric} vs {}",
                g.data()[i]
            );
        }
    }
}

#[test]
fn loss_values_match_closed_forms() {
    let (l, _) = Loss::MeanSquaredError
        .compute(&t(&[2, 1], &[1.0, 3.0]), &t(&[2, 1], &[0.0, 1.0]))
        .unwrap();
    assert!((l - 2.5).abs() < 1e-6);
    let (l, _) = Loss::BinaryCrossentropy { from_logits: false }
        .compute(&t(&[1, 1], &[0.5]), &t(&[1, 1], &[1.0]))
        .unwrap();
    assert!((l - std::f32::consts::LN_2).abs() < 1e-6);
    let (l, _) = Loss::SparseCategoricalCrossentropy { from_logits: true }
        .compute(&t(&[1, 2], &[0.0, 0.0]), &t(&[1], &[1.0]))
        .unwrap();
    assert!((l - std::f32::consts::LN_2).abs() < 1e-6);
    // Labels out of range are an error, not a silent wrong answer.
    assert!(Loss::SparseCategoricalCrossentropy { from_logits: true }
        .compute(&t(&[1, 2], &[0.0, 0.0]), &t(&[1], &[2.0]))
        .is_err());
}

/// A one-weight model whose gradient is known: Dense(1, no bias) on x = 1 with MSE against y = 0
/// gives dL/dw = 2w.
fn scalar_model(w: f32) -> frostnet::Model {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[1])).unwrap();
    m.add(Dense::new(1).use_bias(false)).unwrap();
    m.layer_mut(0)
        .unwrap()
        .set_weights(vec![t(&[1, 1], &[w])])
        .unwrap();
    m
}

fn run(opt: impl Optimizer + 'static, steps: usize) -> Vec<f32> {
    let mut m = scalar_model(1.0);
    m.compile(opt, Loss::MeanSquaredError, &[]);
    let (x, y) = (t(&[1, 1], &[1.0]), t(&[1, 1], &[0.0]));
    (0..steps)
        .map(|_| {
            m.train_on_batch(&x, &y).unwrap();
            m.get_weights()[0].data()[0]
        })
        .collect()
}

#[test]
fn optimizer_updates_follow_keras_rules() {
    // SGD: w -= lr * 2w.
    let got = run(Sgd::new(0.1), 2);
    assert!(
        (got[0] - 0.8).abs() < 1e-6 && (got[1] - 0.64).abs() < 1e-6,
        "{got:?}"
    );
    // SGD momentum 0.9: m = 0.9m - lr g; w += m.
    let got = run(Sgd::new(0.1).momentum(0.9), 2);
    let (mut w, mut m) = (1.0f32, 0.0f32);
    for g in got {
        m = 0.9 * m - 0.1 * 2.0 * w;
        w += m;
        assert!((g - w).abs() < 1e-6);
    }
    // Nesterov: w += 0.9 m - lr g.
    let got = run(Sgd::new(0.1).momentum(0.9).nesterov(true), 2);
    let (mut w, mut m) = (1.0f32, 0.0f32);
    for g in got {
        let grad = 2.0 * w;
        m = 0.9 * m - 0.1 * grad;
        w += 0.9 * m - 0.1 * grad;
        assert!((g - w).abs() < 1e-6);
    }
    // Adam's first step moves by lr (bias-corrected m / sqrt(v) = sign(g)).
    let got = run(Adam::new(0.01), 1);
    assert!((got[0] - 0.99).abs() < 1e-5, "{got:?}");
    // AdamW decays first: w = 1 - lr*wd*1, then the Adam step.
    let got = run(Adam::adamw(0.01), 1);
    assert!(
        (got[0] - (1.0 - 0.01 * 0.004 - 0.01)).abs() < 1e-5,
        "{got:?}"
    );
    // RMSprop first step: v = 0.1 g^2, w -= lr g / sqrt(v + eps).
    let got = run(RmsProp::new(0.01), 1);
    let g = 2.0f32;
    assert!(
        (got[0] - (1.0 - 0.01 * g / (0.1 * g * g + 1e-7).sqrt())).abs() < 1e-5,
        "{got:?}"
    );
}

#[test]
fn schedules_match_their_formulas() {
    let e = LearningRate::ExponentialDecay {
        initial: 0.1,
        decay_steps: 10,
        decay_rate: 0.5,
        staircase: false,
    };
    assert!((e.at(10) - 0.05).abs() < 1e-7 && (e.at(5) - 0.1 * 0.5f32.sqrt()).abs() < 1e-7);
    let s = LearningRate::ExponentialDecay {
        initial: 0.1,
        decay_steps: 10,
        decay_rate: 0.5,
        staircase: true,
    };
    assert_eq!(s.at(9), 0.1);
    let c = LearningRate::CosineDecay {
        initial: 1.0,
        decay_steps: 100,
        alpha: 0.0,
    };
    assert!(
        (c.at(0) - 1.0).abs() < 1e-7
            && (c.at(50) - 0.5).abs() < 1e-6
            && c.at(100).abs() < 1e-7
            && c.at(500).abs() < 1e-7
    );
    // A schedule drives the optimizer: SGD with exponential decay.
    let got = run(
        Sgd::new(LearningRate::ExponentialDecay {
            initial: 0.1,
            decay_steps: 1,
            decay_rate: 0.5,
            staircase: true,
        }),
        2,
    );
    assert!(
        (got[0] - 0.8).abs() < 1e-6 && (got[1] - 0.8 * (1.0 - 0.05 * 2.0)).abs() < 1e-6,
        "{got:?}"
    );
}
