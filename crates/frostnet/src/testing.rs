//! A finite-difference gradient checker for any [`Layer`], custom layers included.
//!
//! The check projects the layer's output on a fixed random tensor `r`, so the scalar
//! `L = sum(layer(x) * r)` has `dL/dy = r`; the layer's `backward(r)` must then agree with central
//! differences of `L` for every input element and every trainable weight.
//!
//! One call checks a custom layer, hand-written `backward` or derived from
//! [ops](crate::ops) alike; an unbuilt layer is built from the inputs' shapes first:
//!
//! ```
//! use frostnet::layers::{Initializer, LayerBase, Mode, Shape, WeightKind};
//! use frostnet::ops::{Autodiff, OpsLayer, Scope, Var};
//! use frostnet::{testing::gradient_check, Tensor};
//! struct Gate;
//! impl OpsLayer for Gate {
//!     fn class_name(&self) -> &str { "Gate" }
//!     fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> frostnet::Result<Shape> {
//!         let f = inputs[0].last().copied().flatten().unwrap_or(1);
//!         let init = Initializer::GlorotUniform { seed: Some(1) };
//!         base.add_weight_init("kernel", &[f, f], init, WeightKind::Param, true)?;
//!         Ok(inputs[0].clone())
//!     }
//!     fn forward<'t>(&self, x: &[Var<'t>], w: &mut Scope<'t>) -> frostnet::Result<Var<'t>> {
//!         x[0].mul(&x[0].matmul(&w.weight("kernel")?)?.sigmoid()) // x * sigmoid(x W)
//!     }
//! }
//! let x = Tensor::from_vec(&[2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.2, -0.7])?;
//! let report = gradient_check(&mut Autodiff::new(Gate), &[x], Mode::Train, 1e-2)?;
//! assert!(report.max_rel_error < 1e-2, "{report:?}");
//! # Ok::<(), frostnet::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::layers::{ForwardCtx, Layer, Mode};
use crate::tensor::{random, Tensor};

/// The worst disagreement found, relative to the gradient's scale.
#[derive(Debug, Clone)]
pub struct GradCheckReport {
    /// Largest `|analytic - numeric| / max(1, |analytic|, |numeric|)` over all checked values.
    pub max_rel_error: f64,
    /// Where it occurred (`input 0[12]`, `kernel[3]`).
    pub worst: String,
    /// Number of values compared.
    pub checked: usize,
}

fn run(layer: &mut dyn Layer, xs: &[Tensor], mode: Mode, keep: bool) -> Result<Tensor> {
    let refs: Vec<&Tensor> = xs.iter().collect();
    let mut ctx = ForwardCtx {
        mode,
        keep,
        input_needs_grad: vec![true; xs.len()],
        rng: random::rng(Some(42)),
    };
    layer.forward(&refs, &mut ctx)
}

fn objective(layer: &mut dyn Layer, xs: &[Tensor], r: &Tensor, mode: Mode) -> Result<f64> {
    let y = run(layer, xs, mode, false)?;
    Ok(y.data()
        .iter()
        .zip(r.data())
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum())
}

/// Checks `layer.backward` against central differences with step `eps`, in `mode`. A layer not
/// built yet is built for the inputs' per-sample shapes (the batch axis dropped).
///
/// Moving statistics that a training-mode forward updates are restored after every evaluation,
/// so the check sees one fixed function.
pub fn gradient_check(
    layer: &mut dyn Layer,
    inputs: &[Tensor],
    mode: Mode,
    eps: f32,
) -> Result<GradCheckReport> {
    if !layer.is_built() {
        let shapes: Vec<crate::Shape> = inputs
            .iter()
            .map(|t| crate::layers::shape_of(t.shape().get(1..).unwrap_or(&[])))
            .collect();
        layer.build(&shapes)?;
    }
    let saved = layer.get_weights();
    let y = run(layer, inputs, mode, true)?;
    let mut rng = random::rng(Some(7));
    let r = Tensor::from_vec(y.shape(), random::uniform(&mut rng, y.len(), -1.0, 1.0))?;
    let dxs = layer.backward(&r, &vec![true; inputs.len()])?;
    let grads: Vec<Option<Tensor>> = layer.weights().iter().map(|w| w.grad().cloned()).collect();
    layer.set_weights(saved.clone())?;

    let mut report = GradCheckReport {
        max_rel_error: 0.0,
        worst: String::new(),
        checked: 0,
    };
    let mut note = |analytic: f64, numeric: f64, what: String| {
        let rel = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
        report.checked += 1;
        if rel > report.max_rel_error {
            report.max_rel_error = rel;
            report.worst = format!("{what}: analytic {analytic:.6}, numeric {numeric:.6}");
        }
    };
    for (k, dx) in dxs.iter().enumerate() {
        let Some(dx) = dx else {
            return Err(Error::State(format!(
                "layer '{}' returned no gradient for input {k}",
                layer.name()
            )));
        };
        for i in 0..inputs[k].len() {
            let mut xs = inputs.to_vec();
            xs[k].data_mut()[i] += eps;
            let plus = objective(layer, &xs, &r, mode)?;
            layer.set_weights(saved.clone())?;
            xs[k].data_mut()[i] -= 2.0 * eps;
            let minus = objective(layer, &xs, &r, mode)?;
            layer.set_weights(saved.clone())?;
            note(
                dx.data()[i] as f64,
                (plus - minus) / (2.0 * eps as f64),
                format!("input {k}[{i}]"),
            );
        }
    }
    let names: Vec<(String, bool)> = layer
        .weights()
        .iter()
        .map(|w| (w.name().to_string(), w.is_trainable()))
        .collect();
    for (wi, (name, trainable)) in names.iter().enumerate() {
        if !trainable {
            continue;
        }
        let Some(g) = &grads[wi] else {
            return Err(Error::State(format!(
                "layer '{}' stored no gradient for '{name}'",
                layer.name()
            )));
        };
        for i in 0..saved[wi].len() {
            let mut ws = saved.clone();
            ws[wi].data_mut()[i] += eps;
            layer.set_weights(ws.clone())?;
            let plus = objective(layer, inputs, &r, mode)?;
            ws[wi].data_mut()[i] -= 2.0 * eps;
            layer.set_weights(ws)?;
            let minus = objective(layer, inputs, &r, mode)?;
            note(
                g.data()[i] as f64,
                (plus - minus) / (2.0 * eps as f64),
                format!("{name}[{i}]"),
            );
        }
        layer.set_weights(saved.clone())?;
    }
    Ok(report)
}

/// One `#[test]` per kernel level, for tests that force the dispatch to every instruction set.
///
/// After `fn name(levels: Vec<Isa>) { ... }` (no `#[test]`; the body iterates over `levels` as
/// it would over [`Isa::supported`](crate::tensor::isa::Isa::supported)),
/// `level_tests!(name);` defines the tests `name::portable`, `name::avx2` and `name::avx512`,
/// each calling `name` with that one level. A level the CPU that built the tests lacks is marked
/// ignored with the reason (see the crate's `build.rs`), so a machine without AVX-512 reports
/// those kernels as not tested instead of passing without them.
#[doc(hidden)]
#[macro_export]
macro_rules! level_tests {
    ($name:ident) => {
        // A module may share the function's name: they live in different namespaces.
        mod $name {
            use $crate::tensor::isa::Isa;

            #[test]
            fn portable() {
                super::$name($crate::testing::only(Isa::Portable))
            }

            #[test]
            #[cfg_attr(
                not(frostnet_cpu_avx2),
                ignore = "this CPU lacks AVX2+FMA (or is not x86-64): those kernels cannot run here"
            )]
            fn avx2() {
                super::$name($crate::testing::only(Isa::Avx2))
            }

            #[test]
            #[cfg_attr(
                not(frostnet_cpu_avx512),
                ignore = "this CPU lacks AVX-512F (or is not x86-64): those kernels cannot run here"
            )]
            fn avx512() {
                super::$name($crate::testing::only(Isa::Avx512))
            }
        }
    };
}

/// `[level]`, for [`level_tests!`].
///
/// # Panics
/// If this CPU cannot run `level` (a test binary moved to a narrower CPU than the one that built
/// it): the level's test fails rather than passing without its kernels.
#[doc(hidden)]
pub fn only(level: crate::tensor::isa::Isa) -> Vec<crate::tensor::isa::Isa> {
    assert!(
        level.is_supported(),
        "this CPU lacks {level}: its kernels cannot be tested here (a test built on another CPU, \
         or run with --ignored)"
    );
    vec![level]
}
