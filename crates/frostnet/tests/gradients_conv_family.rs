//! Finite-difference gradient checks for the pooling, merging, padding, rescaling, ReLU,
//! depthwise/separable convolution and reshape layers, each option; and for a small Inception-like
//! model trained through branches and a merge (gradients summed at fan-out).

use frostnet::layers::*;
use frostnet::tensor::{random, Padding};
use frostnet::testing::gradient_check;
use frostnet::{Error, Functional, Mode, Tensor};

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = random::rng(Some(seed));
    Tensor::from_vec(
        shape,
        random::uniform(&mut r, shape.iter().product(), -1.0, 1.0),
    )
    .unwrap()
}

/// Values 0.05 apart (in a random order) and 0.0125 away from every multiple of 0.05: a step of
/// 1e-2 can neither swap a max-pooling winner nor cross a ReLU kink placed on such a multiple.
fn distinct_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut r = random::rng(Some(seed));
    let p = random::permutation(&mut r, n);
    let data = p
        .iter()
        .map(|&i| (i as f32 - n as f32 / 2.0) * 0.05 + 0.0125)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn per_sample(shape: &[usize]) -> Shape {
    shape[1..].iter().map(|&d| Some(d)).collect()
}

/// Builds `layer` on `inputs` and checks its backward against central differences.
fn check_inputs(layer: &mut dyn Layer, inputs: Vec<Tensor>, eps: f32) {
    let shapes: Vec<Shape> = inputs.iter().map(|t| per_sample(t.shape())).collect();
    layer.build(&shapes).unwrap();
    let rep = gradient_check(layer, &inputs, Mode::Train, eps).unwrap();
    assert!(rep.checked > 0);
    assert!(rep.max_rel_error < 2e-2, "{}: {rep:?}", layer.name());
}

fn check(layer: &mut dyn Layer, shape: &[usize]) {
    check_inputs(layer, vec![rand_tensor(shape, 3)], 1e-2);
}

fn check_distinct(layer: &mut dyn Layer, shape: &[usize]) {
    check_inputs(layer, vec![distinct_tensor(shape, 5)], 1e-2);
}

/// Pool size, strides (`None`: the pool size) and padding.
type Window = ((usize, usize), Option<(usize, usize)>, Padding);

const WINDOWS: [Window; 6] = [
    ((2, 2), None, Padding::Valid),
    ((2, 2), None, Padding::Same),
    ((3, 3), Some((2, 2)), Padding::Valid),
    ((3, 3), Some((1, 1)), Padding::Same),
    ((3, 3), Some((2, 2)), Padding::Same),
    ((2, 3), Some((2, 1)), Padding::Same),
];

#[test]
fn max_pooling2d_pool_strides_padding() {
    for (pool, strides, padding) in WINDOWS {
        let mut l = MaxPooling2D::with_pool(pool).padding(padding);
        if let Some(s) = strides {
            l = l.strides2(s);
        }
        check_distinct(&mut l, &[2, 5, 7, 3]);
    }
}

#[test]
fn average_pooling2d_pool_strides_padding() {
    for (pool, strides, padding) in WINDOWS {
        let mut l = AveragePooling2D::with_pool(pool).padding(padding);
        if let Some(s) = strides {
            l = l.strides2(s);
        }
        check(&mut l, &[2, 5, 7, 3]);
    }
}

#[test]
fn pooling_shapes_and_keras_semantics() {
    // strides default to pool_size; valid drops the remainder, same rounds up.
    let mut l = MaxPooling2D::new(2);
    assert_eq!(
        l.build(&[vec![Some(5), Some(7), Some(3)]]).unwrap(),
        vec![Some(2), Some(3), Some(3)]
    );
    let mut l = AveragePooling2D::new(2).padding(Padding::Same);
    assert_eq!(
        l.build(&[vec![Some(5), None, Some(3)]]).unwrap(),
        vec![Some(3), None, Some(3)]
    );
    // Average pooling with same padding divides by the real inputs only (Keras/TF): ones stay ones.
    let mut l = AveragePooling2D::new(3).strides(1).padding(Padding::Same);
    l.build(&[vec![Some(4), Some(4), Some(2)]]).unwrap();
    let y = l
        .forward(
            &[&Tensor::full(&[1, 4, 4, 2], 1.0)],
            &mut ForwardCtx::infer(),
        )
        .unwrap();
    assert!(y.data().iter().all(|&v| (v - 1.0).abs() < 1e-6));
    // Max pooling with same padding never picks the padding, even for all-negative inputs.
    let mut l = MaxPooling2D::new(2).padding(Padding::Same);
    l.build(&[vec![Some(3), Some(3), Some(1)]]).unwrap();
    let y = l
        .forward(
            &[&Tensor::full(&[1, 3, 3, 1], -5.0)],
            &mut ForwardCtx::infer(),
        )
        .unwrap();
    assert!(y.data().iter().all(|&v| v == -5.0));
    // A window larger than a known input is a typed error naming the layer.
    let mut l = MaxPooling2D::new(3).named("pool");
    match l.build(&[vec![Some(2), Some(2), Some(1)]]) {
        Err(Error::IncompatibleShape { layer, .. }) => assert_eq!(layer, "pool"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        MaxPooling2D::new(0).build(&[vec![Some(4), Some(4), Some(1)]]),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn global_pooling_with_and_without_keepdims() {
    for keep in [false, true] {
        check(
            &mut GlobalAveragePooling2D::new().keepdims(keep),
            &[2, 3, 4, 3],
        );
        check_distinct(&mut GlobalMaxPooling2D::new().keepdims(keep), &[2, 3, 4, 3]);
    }
    let mut l = GlobalAveragePooling2D::new();
    assert_eq!(
        l.build(&[vec![None, None, Some(5)]]).unwrap(),
        vec![Some(5)]
    );
    let mut l = GlobalMaxPooling2D::new().keepdims(true);
    assert_eq!(
        l.build(&[vec![None, None, Some(5)]]).unwrap(),
        vec![Some(1), Some(1), Some(5)]
    );
}

#[test]
fn concatenate_on_each_axis() {
    let a = rand_tensor(&[2, 3, 4, 2], 1);
    let b = rand_tensor(&[2, 3, 4, 3], 2);
    let c = rand_tensor(&[2, 3, 4, 1], 3);
    check_inputs(
        &mut Concatenate::new(),
        vec![a.clone(), b.clone(), c.clone()],
        1e-2,
    );
    check_inputs(
        &mut Concatenate::with_axis(3),
        vec![a.clone(), b.clone()],
        1e-2,
    );
    // Rows and columns.
    check_inputs(
        &mut Concatenate::with_axis(1),
        vec![rand_tensor(&[2, 3, 4, 2], 4), rand_tensor(&[2, 1, 4, 2], 5)],
        1e-2,
    );
    check_inputs(
        &mut Concatenate::with_axis(-2),
        vec![rand_tensor(&[2, 3, 4, 2], 6), rand_tensor(&[2, 3, 2, 2], 7)],
        1e-2,
    );
    // Output shape; unknown sizes stay unknown.
    let mut l = Concatenate::new();
    assert_eq!(
        l.build(&[vec![None, Some(4), Some(2)], vec![None, Some(4), Some(3)]])
            .unwrap(),
        vec![None, Some(4), Some(5)]
    );
}

#[test]
fn merging_incompatible_shapes_name_the_layer_and_both_shapes() {
    let err = Concatenate::new()
        .named("cat")
        .build(&[
            vec![Some(4), Some(4), Some(3)],
            vec![Some(5), Some(5), Some(2)],
        ])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    assert!(
        msg.contains("'cat'") && msg.contains("(None, 4, 4, 3)") && msg.contains("(None, 5, 5, 2)"),
        "{msg}"
    );
    let err = Add::new()
        .named("plus")
        .build(&[vec![Some(4)], vec![Some(5)]])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("'plus'") && msg.contains("(None, 4)") && msg.contains("(None, 5)"),
        "{msg}"
    );
    let err = Multiply::new()
        .named("times")
        .build(&[vec![Some(2), Some(3)], vec![Some(3), Some(2)]])
        .unwrap_err();
    assert!(err.to_string().contains("'times'"), "{err}");
    // The batch axis cannot be concatenated.
    assert!(matches!(
        Concatenate::with_axis(0).build(&[vec![Some(2)], vec![Some(2)]]),
        Err(Error::InvalidConfig(_))
    ));
    // Mismatched sizes at run time (unknown at build time) are typed errors too.
    let mut cat = Concatenate::new();
    cat.build(&[vec![None, Some(2)], vec![None, Some(2)]])
        .unwrap();
    let r = cat.forward(
        &[&Tensor::zeros(&[1, 3, 2]), &Tensor::zeros(&[1, 4, 2])],
        &mut ForwardCtx::infer(),
    );
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
}

#[test]
fn add_and_multiply_two_and_three_inputs() {
    for n in [2, 3] {
        let xs: Vec<Tensor> = (0..n).map(|i| rand_tensor(&[2, 3, 4], 10 + i)).collect();
        check_inputs(&mut Add::new(), xs.clone(), 1e-2);
        check_inputs(&mut Multiply::new(), xs, 1e-2);
    }
}

#[test]
fn zero_padding2d_symmetric_and_asymmetric() {
    check(&mut ZeroPadding2D::new(1), &[2, 3, 4, 2]);
    check(&mut ZeroPadding2D::symmetric(2, 0), &[2, 3, 4, 2]);
    check(
        &mut ZeroPadding2D::with_padding(((0, 1), (2, 1))),
        &[2, 3, 4, 2],
    );
    let mut l = ZeroPadding2D::with_padding(((0, 1), (2, 1)));
    assert_eq!(
        l.build(&[vec![Some(3), None, Some(2)]]).unwrap(),
        vec![Some(4), None, Some(2)]
    );
    l.build(&[vec![Some(1), Some(1), Some(1)]]).unwrap();
    let y = l
        .forward(
            &[&Tensor::full(&[1, 1, 1, 1], 7.0)],
            &mut ForwardCtx::infer(),
        )
        .unwrap();
    assert_eq!(y.shape(), &[1, 2, 4, 1]);
    assert_eq!(y.data(), &[0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn rescaling_scale_and_offset() {
    check(&mut Rescaling::new(1.0 / 255.0), &[2, 3, 2]);
    check(&mut Rescaling::new(1.0 / 127.5).offset(-1.0), &[2, 3, 2]);
    let mut l = Rescaling::new(0.5).offset(1.0);
    l.build(&[vec![Some(2)]]).unwrap();
    let y = l
        .forward(
            &[&Tensor::from_vec(&[1, 2], vec![2.0, -4.0]).unwrap()],
            &mut ForwardCtx::infer(),
        )
        .unwrap();
    assert_eq!(y.data(), &[2.0, -1.0]);
}

#[test]
fn relu_options_as_keras() {
    let opts: [(Option<f32>, f32, f32); 6] = [
        (None, 0.0, 0.0),
        (Some(0.5), 0.0, 0.0),
        (None, 0.2, 0.0),
        (None, 0.0, 0.5),
        (Some(1.0), 0.3, 0.5),
        (Some(6.0), 0.1, 0.0),
    ];
    for (max, slope, threshold) in opts {
        let mut l = ReLU::new().negative_slope(slope).threshold(threshold);
        if let Some(m) = max {
            l = l.max_value(m);
        }
        check_distinct(&mut l, &[2, 4, 5]);
    }
    // Keras's values: f(x) = max_value above it, x above the threshold, slope * (x - threshold) below.
    let mut l = ReLU::new()
        .max_value(1.0)
        .negative_slope(0.5)
        .threshold(0.25);
    l.build(&[vec![Some(5)]]).unwrap();
    let x = Tensor::from_vec(&[1, 5], vec![-1.0, 0.0, 0.25, 0.5, 3.0]).unwrap();
    let y = l.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
    assert_eq!(y.data(), &[-0.625, -0.125, 0.0, 0.5, 1.0]);
    for bad in [
        ReLU::new().max_value(-1.0),
        ReLU::new().negative_slope(-0.1),
        ReLU::new().threshold(-0.5),
    ] {
        let mut bad = bad;
        assert!(matches!(
            bad.build(&[vec![Some(2)]]),
            Err(Error::InvalidConfig(_))
        ));
    }
    assert!(ReLU::new().name().starts_with("re_lu"));
}

#[test]
fn depthwise_conv2d_options() {
    for (k, s, p, dm) in [
        ((3, 3), (1, 1), Padding::Same, 1),
        ((3, 3), (2, 2), Padding::Valid, 2),
        ((2, 3), (2, 1), Padding::Same, 3),
        ((1, 1), (1, 1), Padding::Valid, 2),
    ] {
        for (f, bias) in [
            (ActivationFn::Linear, true),
            (ActivationFn::Linear, false),
            (ActivationFn::Tanh, true),
        ] {
            let mut l = DepthwiseConv2D::with_kernel(k)
                .strides2(s)
                .padding(p)
                .depth_multiplier(dm)
                .activation(f)
                .use_bias(bias)
                .seed(4);
            check(&mut l, &[2, 5, 6, 2]);
        }
    }
    // Enough channels and width for the intrinsics kernels' vector blocks and 4-pixel tiles
    // (19 channels: a whole 16- or 8-wide block plus scalar channels).
    for (k, s) in [((3, 3), (1, 1)), ((5, 5), (2, 2))] {
        let mut l = DepthwiseConv2D::with_kernel(k)
            .strides2(s)
            .padding(Padding::Same)
            .seed(5);
        check(&mut l, &[1, 5, 11, 19]);
    }
    let mut l = DepthwiseConv2D::new(3).depth_multiplier(2);
    assert_eq!(
        l.build(&[vec![Some(5), Some(5), Some(4)]]).unwrap(),
        vec![Some(3), Some(3), Some(8)]
    );
    assert_eq!(l.count_params(), 3 * 3 * 4 * 2 + 8);
    assert_eq!(l.weights()[0].name(), "kernel");
}

#[test]
fn separable_conv2d_options() {
    for (k, s, p, dm) in [
        ((3, 3), (1, 1), Padding::Same, 1),
        ((3, 3), (2, 2), Padding::Valid, 2),
        ((2, 3), (2, 1), Padding::Same, 1),
    ] {
        for (f, bias) in [
            (ActivationFn::Linear, true),
            (ActivationFn::Linear, false),
            (ActivationFn::Tanh, true),
        ] {
            let mut l = SeparableConv2D::with_kernel(3, k)
                .strides2(s)
                .padding(p)
                .depth_multiplier(dm)
                .activation(f)
                .use_bias(bias)
                .seed(4);
            check(&mut l, &[2, 5, 6, 2]);
        }
    }
    let mut l = SeparableConv2D::new(16, 3).depth_multiplier(2);
    l.build(&[vec![Some(5), Some(5), Some(4)]]).unwrap();
    assert_eq!(l.count_params(), 3 * 3 * 4 * 2 + 8 * 16 + 16);
    let names: Vec<&str> = l.weights().iter().map(|w| w.name()).collect();
    assert_eq!(names, ["depthwise_kernel", "pointwise_kernel", "bias"]);
}

#[test]
fn frozen_convolutions_store_no_weight_gradients() {
    let mut l = SeparableConv2D::new(2, 3).seed(1).trainable(false);
    check(&mut l, &[1, 4, 4, 2]);
    assert!(l.weights().iter().all(|w| w.grad().is_none()));
    let mut l = DepthwiseConv2D::new(3).seed(1).trainable(false);
    check(&mut l, &[1, 4, 4, 2]);
    assert!(l.weights().iter().all(|w| w.grad().is_none()));
}

#[test]
fn reshape_with_and_without_inferred_axis() {
    check(&mut Reshape::new(&[12]), &[2, 3, 4]);
    check(&mut Reshape::new(&[2, -1]), &[2, 3, 4]);
    check(&mut Reshape::new(&[-1, 2, 3]), &[2, 3, 4]);
    let mut l = Reshape::new(&[-1, 2]);
    assert_eq!(
        l.build(&[vec![Some(3), Some(4)]]).unwrap(),
        vec![Some(6), Some(2)]
    );
    assert_eq!(
        l.build(&[vec![None, Some(4)]]).unwrap(),
        vec![None, Some(2)]
    );
    assert!(matches!(
        Reshape::new(&[5])
            .named("r")
            .build(&[vec![Some(3), Some(4)]]),
        Err(Error::IncompatibleShape { .. })
    ));
    assert!(matches!(
        Reshape::new(&[-1, -1]).build(&[vec![Some(3), Some(4)]]),
        Err(Error::InvalidConfig(_))
    ));
}

/// input -> three conv branches (one of them a pooling branch, one two convs deep) ->
/// Concatenate -> MaxPooling2D -> GlobalAveragePooling2D -> Dense. The input fans out to three
/// branches and `mid` to two, so the executor must sum gradients at both fan-outs.
fn inception_block() -> frostnet::Model {
    let mut g = Functional::new();
    let x = g.input(Input::new(&[6, 6, 3]));
    let tanh = ActivationFn::Tanh;
    let b1 = g
        .call(Conv2D::new(2, 1).activation(tanh).seed(1), &[x])
        .unwrap();
    let mid = g
        .call(Conv2D::new(3, 1).activation(tanh).seed(2), &[x])
        .unwrap();
    let b2 = g
        .call(
            Conv2D::new(2, 3)
                .padding(Padding::Same)
                .activation(tanh)
                .seed(3),
            &[mid],
        )
        .unwrap();
    let b2b = g
        .call(
            Conv2D::with_kernel(2, (1, 3))
                .padding(Padding::Same)
                .activation(tanh)
                .seed(4),
            &[mid],
        )
        .unwrap();
    let pool = g
        .call(
            AveragePooling2D::new(3).strides(1).padding(Padding::Same),
            &[x],
        )
        .unwrap();
    let b3 = g
        .call(Conv2D::new(2, 1).activation(tanh).seed(5), &[pool])
        .unwrap();
    let cat = g.call(Concatenate::new(), &[b1, b2, b2b, b3]).unwrap();
    let p = g.call(MaxPooling2D::new(2), &[cat]).unwrap();
    let gap = g.call(GlobalAveragePooling2D::new(), &[p]).unwrap();
    let y = g.call(Dense::new(3).seed(6), &[gap]).unwrap();
    g.build(&[x], &[y]).unwrap()
}

#[test]
fn inception_like_block_trains_through_branches_and_merge() {
    let mut model = inception_block();
    assert_eq!(model.output_shapes(), vec![vec![Some(3)]]);
    let x = rand_tensor(&[2, 6, 6, 3], 11);
    let rep = gradient_check(&mut model, &[x], Mode::Train, 1e-3).unwrap();
    // Every input value and every weight of every branch was compared.
    let weights: usize = model.weights().iter().map(|w| w.len()).sum();
    assert_eq!(rep.checked, 2 * 6 * 6 * 3 + weights);
    assert!(rep.max_rel_error < 2e-2, "{rep:?}");
}

#[test]
fn gradients_sum_at_fan_out() {
    // y = a(x) * b(x) + a(x): x fans out to two Dense layers and a(x) to Multiply and Add.
    let mut g = Functional::new();
    let x = g.input(Input::new(&[4]));
    let a = g.call(Dense::new(3).seed(1), &[x]).unwrap();
    let b = g.call(Dense::new(3).seed(2), &[x]).unwrap();
    let m = g.call(Multiply::new(), &[a, b]).unwrap();
    let y = g.call(Add::new(), &[m, a]).unwrap();
    let mut model = g.build(&[x], &[y]).unwrap();
    let rep = gradient_check(&mut model, &[rand_tensor(&[3, 4], 2)], Mode::Train, 1e-2).unwrap();
    assert!(rep.max_rel_error < 2e-2, "{rep:?}");
}

/// Forward values against real Keras 3 (`tools/keras_conv_family_reference.py` wrote the file).
mod keras_values {
    use super::*;
    use frostnet::io::npy::read_npz;
    use std::collections::HashMap;

    fn reference() -> HashMap<String, Tensor> {
        read_npz(&format!(
            "{}/tests/fixtures/conv_family_keras3.npz",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Builds `layer` on the inputs, optionally sets weights, and compares its output.
    fn run(layer: &mut dyn Layer, xs: &[&Tensor], weights: Option<Vec<Tensor>>, want: &Tensor) {
        let shapes: Vec<Shape> = xs.iter().map(|t| per_sample(t.shape())).collect();
        layer.build(&shapes).unwrap();
        if let Some(w) = weights {
            layer.set_weights(w).unwrap();
        }
        let y = layer.forward(xs, &mut ForwardCtx::infer()).unwrap();
        assert_eq!(y.shape(), want.shape(), "{}", layer.name());
        let diff = y.max_abs_diff(want);
        assert!(diff < 1e-5, "{}: max abs diff {diff}", layer.name());
    }

    #[test]
    fn pooling_padding_and_merging_match_keras() {
        let r = reference();
        let x = &r["x"];
        /// (fixture key, pool size, strides, padding)
        type Case = (
            &'static str,
            (usize, usize),
            Option<(usize, usize)>,
            Padding,
        );
        let cases: [Case; 6] = [
            ("p2_valid", (2, 2), None, Padding::Valid),
            ("p2_same", (2, 2), None, Padding::Same),
            ("p3s2_valid", (3, 3), Some((2, 2)), Padding::Valid),
            ("p3s2_same", (3, 3), Some((2, 2)), Padding::Same),
            ("p3s1_same", (3, 3), Some((1, 1)), Padding::Same),
            ("p23s21_same", (2, 3), Some((2, 1)), Padding::Same),
        ];
        for (key, pool, strides, padding) in cases {
            let mut m = MaxPooling2D::with_pool(pool).padding(padding).named(key);
            let mut a = AveragePooling2D::with_pool(pool)
                .padding(padding)
                .named(key);
            if let Some(s) = strides {
                m = m.strides2(s);
                a = a.strides2(s);
            }
            run(&mut m, &[x], None, &r[&format!("max_{key}")]);
            run(&mut a, &[x], None, &r[&format!("avg_{key}")]);
        }
        run(&mut GlobalAveragePooling2D::new(), &[x], None, &r["gap"]);
        run(&mut GlobalMaxPooling2D::new(), &[x], None, &r["gmp"]);
        run(
            &mut ZeroPadding2D::with_padding(((0, 1), (2, 1))),
            &[x],
            None,
            &r["zero_padding_0121"],
        );
        run(
            &mut Concatenate::new(),
            &[x, &r["cat_b"]],
            None,
            &r["concatenate"],
        );
        let x2 = x.slice_batch(0, 2);
        let first_rows = Tensor::from_vec(
            &[2, 2, 6, 3],
            (0..2)
                .flat_map(|n| x2.data()[n * 126..n * 126 + 36].to_vec())
                .collect(),
        )
        .unwrap();
        run(
            &mut Concatenate::with_axis(1),
            &[x, &first_rows],
            None,
            &r["concatenate_axis1"],
        );
    }

    #[test]
    fn relu_options_match_keras() {
        let r = reference();
        let x = &r["relu_input"];
        for (key, l) in [
            ("default", ReLU::new()),
            ("max1", ReLU::new().max_value(1.0)),
            ("slope", ReLU::new().negative_slope(0.2)),
            ("threshold", ReLU::new().threshold(0.5)),
            (
                "all",
                ReLU::new()
                    .max_value(2.0)
                    .negative_slope(0.3)
                    .threshold(0.5),
            ),
        ] {
            let mut l = l.named(key);
            run(&mut l, &[x], None, &r[&format!("relu_{key}")]);
        }
    }

    #[test]
    fn depthwise_and_separable_convolutions_match_keras() {
        let r = reference();
        let x = &r["x"];
        let w = |key: &str, names: &[&str]| -> Option<Vec<Tensor>> {
            Some(
                names
                    .iter()
                    .map(|n| r[&format!("{key}_{n}")].clone())
                    .collect(),
            )
        };
        let dw = ["kernel", "bias"];
        run(
            &mut DepthwiseConv2D::new(3)
                .padding(Padding::Same)
                .depth_multiplier(2),
            &[x],
            w("dw_s1_same_dm2", &dw),
            &r["dw_s1_same_dm2"],
        );
        run(
            &mut DepthwiseConv2D::new(3).strides(2),
            &[x],
            w("dw_s2_valid", &dw),
            &r["dw_s2_valid"],
        );
        run(
            &mut DepthwiseConv2D::with_kernel((2, 3)).padding(Padding::Same),
            &[x],
            w("dw_k23_same", &dw),
            &r["dw_k23_same"],
        );
        let sep = ["depthwise_kernel", "pointwise_kernel", "bias"];
        run(
            &mut SeparableConv2D::new(4, 3)
                .padding(Padding::Same)
                .depth_multiplier(2),
            &[x],
            w("sep_s1_same_dm2", &sep),
            &r["sep_s1_same_dm2"],
        );
        run(
            &mut SeparableConv2D::new(5, 3).strides(2),
            &[x],
            w("sep_s2_valid", &sep),
            &r["sep_s2_valid"],
        );
    }
}
