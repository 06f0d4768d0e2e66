//! Issue #12 point 2: every differentiable op's derived gradient against central finite
//! differences, on odd shapes and broadcasting cases.
//!
//! The scalar checked is `L = sum(op(inputs) * r)` for a fixed `r`, so `dL/d op = r`; the tape's
//! gradient of every input must agree with `(L(x + eps) - L(x - eps)) / 2 eps` element by
//! element, relative to `max(1, |analytic|, |numeric|)`.

use frostnet::layers::ActivationFn;
use frostnet::ops::{Tape, Var};
use frostnet::tensor::Padding;
use frostnet::{Result, Tensor};

/// Deterministic values in about [-2, 2] that stay at least 0.05 away from 0 and from each
/// other's neighbours (kinks of relu/abs, ties of max pooling).
fn values(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let t = ((i as f32 + 1.0) * 0.618_034 + seed as f32 * 0.414_214).fract();
            let v = -2.0 + 4.0 * t;
            if v.abs() < 0.05 {
                v + 0.1
            } else {
                v
            }
        })
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn positive(shape: &[usize], seed: u32) -> Tensor {
    let mut t = values(shape, seed);
    t.data_mut().iter_mut().for_each(|v| *v = v.abs() + 0.5);
    t
}

type Op = dyn for<'t> Fn(&[Var<'t>]) -> Result<Var<'t>>;

fn objective(inputs: &[Tensor], f: &Op, r: &Tensor) -> f64 {
    let tape = Tape::new(false);
    let vars: Vec<Var> = inputs.iter().map(|t| tape.constant(t.clone())).collect();
    let y = f(&vars).unwrap();
    let y = y.value();
    y.data()
        .iter()
        .zip(r.data())
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

/// Checks `f`'s gradients for every input; returns the worst relative error.
fn check(what: &str, inputs: Vec<Tensor>, f: &Op) -> f64 {
    let inputs = &inputs[..];
    let tape = Tape::new(true);
    let vars: Vec<Var> = inputs.iter().map(|t| tape.variable(t.clone())).collect();
    let y = f(&vars).unwrap();
    let r = values(&y.shape(), 99);
    let loss = y.mul(&tape.constant(r.clone())).unwrap().sum_all().unwrap();
    let grads = tape.gradients(&loss).unwrap();
    let eps = 1e-2f32;
    let mut worst = 0f64;
    for (k, v) in vars.iter().enumerate() {
        let g = grads
            .of(v)
            .unwrap_or_else(|| panic!("{what}: no gradient for input {k}"))
            .clone();
        assert_eq!(g.shape(), inputs[k].shape(), "{what}: gradient shape");
        for i in 0..inputs[k].len() {
            let mut xs = inputs.to_vec();
            xs[k].data_mut()[i] += eps;
            let plus = objective(&xs, f, &r);
            xs[k].data_mut()[i] -= 2.0 * eps;
            let minus = objective(&xs, f, &r);
            let numeric = (plus - minus) / (2.0 * eps as f64);
            let analytic = g.data()[i] as f64;
            let rel = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
            assert!(
                rel < 2e-2,
                "{what}: input {k}[{i}] analytic {analytic} numeric {numeric}"
            );
            worst = worst.max(rel);
        }
    }
    worst
}

#[test]
fn elementwise_binary_ops_with_broadcasting() {
    let cases: [(&[usize], &[usize]); 6] = [
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 1, 5], &[1, 3, 1]),
        (&[3], &[]),
        (&[], &[2, 3]),
    ];
    for (sa, sb) in cases {
        let a = values(sa, 1);
        let b = values(sb, 2);
        let bp = positive(sb, 2);
        check("add", vec![a.clone(), b.clone()], &|v| v[0].add(&v[1]));
        check("sub", vec![a.clone(), b.clone()], &|v| v[0].sub(&v[1]));
        check("mul", vec![a.clone(), b.clone()], &|v| v[0].mul(&v[1]));
        check("div", vec![a.clone(), bp], &|v| v[0].div(&v[1]));
    }
    // The same variable on both sides accumulates both contributions.
    check("x*x", vec![values(&[5], 3)], &|v| v[0].mul(&v[0]));
}

#[test]
fn incompatible_broadcast_is_an_error_naming_both_shapes() {
    let tape = Tape::new(true);
    let a = tape.variable(Tensor::zeros(&[2, 3]));
    let b = tape.variable(Tensor::zeros(&[4]));
    let e = a.add(&b).err().unwrap().to_string();
    assert!(e.contains("(2, 3)") && e.contains("(4,)"), "{e}");
}

#[test]
fn elementwise_unary_ops() {
    let x = values(&[3, 5], 4);
    let p = positive(&[3, 5], 4);
    check("log", vec![p.clone()], &|v| Ok(v[0].log()));
    check("sqrt", vec![p], &|v| Ok(v[0].sqrt()));
    check("square", vec![x.clone()], &|v| Ok(v[0].square()));
    check("abs", vec![x.clone()], &|v| Ok(v[0].abs()));
    check("neg", vec![x.clone()], &|v| Ok(v[0].neg()));
    check("scale", vec![x.clone()], &|v| Ok(v[0].scale(-2.5)));
    check("add_scalar", vec![x], &|v| Ok(v[0].add_scalar(0.7)));
}

#[test]
fn every_activation() {
    let x = values(&[4, 7], 5);
    for f in ActivationFn::ALL {
        // Keep away from the kinks at ±3 (hard sigmoid) and 6 (relu6): the inputs are in [-2, 2].
        check(
            f.as_str(),
            vec![x.clone()],
            &move |v| Ok(v[0].activation(f)),
        );
    }
    check("relu", vec![x.clone()], &|v| Ok(v[0].relu()));
    check("sigmoid", vec![x.clone()], &|v| Ok(v[0].sigmoid()));
    check("tanh", vec![x.clone()], &|v| Ok(v[0].tanh()));
    check("exp", vec![x.clone()], &|v| Ok(v[0].exp()));
    check("softmax", vec![x], &|v| Ok(v[0].softmax()));
}

#[test]
fn reductions_over_axes() {
    let x = values(&[2, 3, 5], 6);
    for axes in [&[0usize][..], &[1], &[2], &[0, 2], &[0, 1, 2]] {
        for keep in [false, true] {
            check("sum", vec![x.clone()], &move |v| v[0].sum(axes, keep));
            check("mean", vec![x.clone()], &move |v| v[0].mean(axes, keep));
        }
    }
    check("sum_all", vec![x.clone()], &|v| v[0].sum_all());
    check("mean_all", vec![x.clone()], &|v| v[0].mean_all());
    let tape = Tape::new(false);
    let v = tape.constant(x);
    assert!(v.sum(&[3], false).is_err());
    assert_eq!(v.sum(&[1], true).unwrap().shape(), [2, 1, 5]);
    assert_eq!(v.mean(&[0, 2], false).unwrap().shape(), [3]);
    // A repeated axis counts once.
    let once = v.mean(&[1], false).unwrap().value();
    assert_eq!(v.mean(&[1, 1], false).unwrap().value(), once);
}

#[test]
fn shape_ops() {
    let x = values(&[2, 3, 4], 7);
    check("reshape", vec![x.clone()], &|v| v[0].reshape(&[4, 6]));
    check("transpose", vec![x.clone()], &|v| {
        v[0].transpose(&[2, 0, 1])
    });
    check("transpose2", vec![x.clone()], &|v| {
        v[0].transpose(&[1, 0, 2])
    });
    check("slice axis 1", vec![x.clone()], &|v| v[0].slice(1, 1, 3));
    check("slice axis 2", vec![x.clone()], &|v| v[0].slice(2, 0, 3));
    let y = values(&[2, 5, 4], 8);
    check("concat axis 1", vec![x.clone(), y], &|v| {
        Var::concat(&v[..2], 1)
    });
    let z = values(&[2, 3, 1], 9);
    check("concat last", vec![x.clone(), z], &|v| Var::concat(v, 2));
    // Values, not only gradients: transpose matches the definition.
    let tape = Tape::new(false);
    let t = tape.constant(x.clone()).transpose(&[2, 0, 1]).unwrap();
    let t = t.value();
    assert_eq!(t.shape(), [4, 2, 3]);
    // out[k][i][j] = x[i][j][k]
    assert_eq!(t.data()[(3 * 2 + 1) * 3 + 2], x.data()[(3 + 2) * 4 + 3]);
    let bad = tape.constant(x);
    assert!(bad.transpose(&[0, 0, 1]).is_err());
    assert!(bad.slice(1, 2, 2).is_err());
}

#[test]
fn matmul_plain_leading_axes_and_batched() {
    check(
        "matmul 2d",
        vec![values(&[3, 5], 10), values(&[5, 2], 11)],
        &|v| v[0].matmul(&v[1]),
    );
    check(
        "matmul (..., k) x (k, n)",
        vec![values(&[2, 3, 5], 12), values(&[5, 4], 13)],
        &|v| v[0].matmul(&v[1]),
    );
    check(
        "batched matmul",
        vec![values(&[2, 3, 5], 14), values(&[2, 5, 3], 15)],
        &|v| v[0].matmul(&v[1]),
    );
    // Value check against the definition.
    let tape = Tape::new(false);
    let a = tape.constant(Tensor::from_vec(&[1, 2], vec![1., 2.]).unwrap());
    let b = tape.constant(Tensor::from_vec(&[2, 2], vec![3., 4., 5., 6.]).unwrap());
    assert_eq!(a.matmul(&b).unwrap().value().data(), &[13., 16.]);
    assert!(b.matmul(&a).is_err());
}

#[test]
fn conv2d_and_pooling() {
    for (padding, strides) in [
        (Padding::Valid, (1, 1)),
        (Padding::Same, (1, 1)),
        (Padding::Same, (2, 2)),
        (Padding::Valid, (2, 1)),
    ] {
        check(
            "conv2d",
            vec![values(&[2, 5, 6, 3], 16), values(&[3, 2, 3, 4], 17)],
            &move |v| v[0].conv2d(&v[1], strides, padding),
        );
        check(
            "conv2d 1x1",
            vec![values(&[1, 4, 3, 2], 18), values(&[1, 1, 2, 3], 19)],
            &move |v| v[0].conv2d(&v[1], strides, padding),
        );
        check("max_pool2d", vec![values(&[2, 5, 6, 3], 20)], &move |v| {
            v[0].max_pool2d((2, 3), strides, padding)
        });
        check("avg_pool2d", vec![values(&[2, 5, 6, 3], 21)], &move |v| {
            v[0].avg_pool2d((3, 2), strides, padding)
        });
    }
}

#[test]
fn composition_reaches_every_input_once_per_use() {
    // y = tanh(x @ w + b) * x[:, :2] / (1 + mean(x^2))
    check(
        "composed",
        vec![values(&[4, 3], 22), values(&[3, 2], 23), values(&[2], 24)],
        &|v| {
            let h = v[0].matmul(&v[1])?.add(&v[2])?.tanh();
            let s = v[0].slice(1, 0, 2)?;
            let d = v[0].square().mean(&[1], true)?.add_scalar(1.0);
            h.mul(&s)?.div(&d)
        },
    );
}
