//! Issue #12 point 2: custom layers written as ops get their backward pass derived; it agrees with
//! finite differences, trains inside models, and frozen weights or a frozen prefix cost nothing.

use frostnet::layers::{
    Dense, Initializer, Input, Layer, LayerBase, LayerOptions, Mode, Shape, WeightKind,
};
use frostnet::ops::{Autodiff, OpsLayer, Scope, Var};
use frostnet::tensor::Padding;
use frostnet::testing::gradient_check;
use frostnet::training::{Loss, Sgd};
use frostnet::{Functional, Result, Sequential, Tensor};

/// A gated residual block: `x + sigmoid(x W + b) * tanh(x V)`, with a layer-norm-like
/// normalisation by the per-row mean and variance.
struct GatedResidual;

impl OpsLayer for GatedResidual {
    fn class_name(&self) -> &str {
        "GatedResidual"
    }
    fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> Result<Shape> {
        let f = inputs[0].last().copied().flatten().unwrap_or(1);
        for (name, seed) in [("w", 1), ("v", 2)] {
            let init = Initializer::GlorotUniform { seed: Some(seed) };
            base.add_weight_init(name, &[f, f], init, WeightKind::Param, true)?;
        }
        let init = Initializer::RandomUniform {
            min: -0.5,
            max: 0.5,
            seed: Some(3),
        };
        base.add_weight_init("b", &[f], init, WeightKind::Param, true)?;
        Ok(inputs[0].clone())
    }
    fn forward<'t>(&self, x: &[Var<'t>], w: &mut Scope<'t>) -> Result<Var<'t>> {
        let x = &x[0];
        let gate = x.matmul(&w.weight("w")?)?.add(&w.weight("b")?)?.sigmoid();
        let h = x.add(&gate.mul(&x.matmul(&w.weight("v")?)?.tanh())?)?;
        let mean = h.mean(&[1], true)?;
        let centred = h.sub(&mean)?;
        let var = centred.square().mean(&[1], true)?.add_scalar(1e-3);
        centred.div(&var.sqrt())
    }
}

/// Two inputs: a small CNN branch (conv, pooling, global mean) concatenated with a dense branch.
struct TwoBranch;

impl OpsLayer for TwoBranch {
    fn class_name(&self) -> &str {
        "TwoBranch"
    }
    fn build(&mut self, base: &mut LayerBase, _inputs: &[Shape]) -> Result<Shape> {
        let init = Initializer::GlorotUniform { seed: Some(4) };
        base.add_weight_init("kernel", &[3, 3, 2, 3], init, WeightKind::Param, true)?;
        let init = Initializer::GlorotUniform { seed: Some(5) };
        base.add_weight_init("dense", &[4, 2], init, WeightKind::Param, true)?;
        Ok(vec![Some(5)])
    }
    fn forward<'t>(&self, x: &[Var<'t>], w: &mut Scope<'t>) -> Result<Var<'t>> {
        let c = x[0]
            .conv2d(&w.weight("kernel")?, (1, 1), Padding::Same)?
            .relu()
            .max_pool2d((2, 2), (2, 2), Padding::Valid)?
            .avg_pool2d((2, 2), (1, 1), Padding::Same)?
            .mean(&[1, 2], false)?;
        let d = x[1]
            .matmul(&w.weight("dense")?)?
            .activation(frostnet::layers::ActivationFn::Gelu);
        Var::concat(&[c, d], 1)
    }
}

fn values(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| -1.5 + 3.0 * ((i as f32 + 1.0) * 0.618_034 + seed as f32 * 0.3).fract())
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

#[test]
fn composed_custom_layers_pass_the_gradient_check_in_one_call() {
    for mode in [Mode::Train, Mode::Infer] {
        let mut l = Autodiff::new(GatedResidual);
        assert!(!l.is_built());
        let r = gradient_check(&mut l, &[values(&[3, 4], 1)], mode, 1e-2).unwrap();
        assert!(l.is_built());
        assert!(r.max_rel_error < 1e-2, "{r:?}");
        assert_eq!(r.checked, 12 + 16 + 16 + 4);
    }
    let mut l = Autodiff::new(TwoBranch);
    let r = gradient_check(
        &mut l,
        &[values(&[2, 5, 4, 2], 2), values(&[2, 4], 3)],
        Mode::Train,
        1e-2,
    )
    .unwrap();
    assert!(r.max_rel_error < 1e-2, "{r:?}");
}

#[test]
fn frozen_custom_weight_gets_no_gradient_and_the_check_skips_it() {
    let mut l = Autodiff::new(GatedResidual);
    l.build(&[vec![Some(4)]]).unwrap();
    l.base_mut().weight_mut("v").unwrap().set_trainable(false);
    let r = gradient_check(&mut l, &[values(&[3, 4], 1)], Mode::Train, 1e-2).unwrap();
    assert!(r.max_rel_error < 1e-2, "{r:?}");
    assert_eq!(
        r.checked,
        12 + 16 + 4,
        "v is not checked: it has no gradient"
    );
    assert!(l.base().weight("v").unwrap().grad().is_none());
}

#[test]
fn trains_in_a_model_and_a_frozen_custom_prefix_costs_nothing() {
    let x = values(&[16, 4], 5);
    let y = values(&[16, 1], 6);
    let mut m = Sequential::new();
    m.add(Input::new(&[4])).unwrap();
    m.add(Autodiff::new(GatedResidual).named("block")).unwrap();
    m.add(Dense::new(1).seed(1).named("head")).unwrap();
    m.compile(Sgd::new(0.05), Loss::MeanSquaredError, &[]);
    let first = m.train_on_batch(&x, &y).unwrap();
    let mut last = first;
    for _ in 0..30 {
        last = m.train_on_batch(&x, &y).unwrap();
    }
    assert!(last < first * 0.9, "loss {first} -> {last}");
    assert_eq!(m.last_backward_profile(), ["head", "block"]);
    // Freeze the custom block: it becomes a frozen prefix, skipped by backward, bit-identical.
    m.get_layer_mut("block").unwrap().set_trainable(false);
    let before = m.get_layer("block").unwrap().get_weights();
    for _ in 0..3 {
        m.train_on_batch(&x, &y).unwrap();
    }
    assert_eq!(m.last_backward_profile(), ["head"]);
    assert_eq!(m.get_layer("block").unwrap().get_weights(), before);
}

#[test]
fn a_frozen_custom_layer_inside_still_passes_gradients_upstream() {
    let mut g = Functional::new();
    let i = g.input(Input::new(&[4]));
    let a = g.call(Dense::new(4).seed(2).named("first"), &[i]).unwrap();
    let b = g
        .call(
            Autodiff::new(GatedResidual).named("block").trainable(false),
            &[a],
        )
        .unwrap();
    let o = g.call(Dense::new(1).seed(3).named("head"), &[b]).unwrap();
    let mut m = g.build(&[i], &[o]).unwrap();
    m.compile(Sgd::new(0.05), Loss::MeanSquaredError, &[]);
    let before = m.get_layer("block").unwrap().get_weights();
    let first0 = m.get_layer("first").unwrap().get_weights();
    m.train_on_batch(&values(&[8, 4], 7), &values(&[8, 1], 8))
        .unwrap();
    assert_eq!(m.last_backward_profile(), ["head", "block", "first"]);
    assert_eq!(m.get_layer("block").unwrap().get_weights(), before);
    assert_ne!(m.get_layer("first").unwrap().get_weights(), first0);
}
