//! Measures what deriving the backward pass costs: the same network trained with a built-in
//! `Dense` and with a Dense written as ops (`Autodiff`), interleaved, one batch per step.
//!
//! Run: `cargo run --release --example ops_overhead`

use frostnet::layers::{ActivationFn, Dense, Initializer, Input, LayerBase, Shape, WeightKind};
use frostnet::ops::{Autodiff, OpsLayer, Scope, Var};
use frostnet::training::{Loss, Sgd};
use frostnet::{Model, Result, Sequential, Tensor};
use std::time::Instant;

struct OpsDense {
    units: usize,
}

impl OpsLayer for OpsDense {
    fn class_name(&self) -> &str {
        "OpsDense"
    }
    fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> Result<Shape> {
        let f = inputs[0].last().copied().flatten().unwrap_or(1);
        let glorot = Initializer::GlorotUniform { seed: Some(1) };
        base.add_weight_init("kernel", &[f, self.units], glorot, WeightKind::Param, true)?;
        base.add_weight_init(
            "bias",
            &[self.units],
            Initializer::Zeros,
            WeightKind::Param,
            true,
        )?;
        Ok(vec![Some(self.units)])
    }
    fn forward<'t>(&self, x: &[Var<'t>], w: &mut Scope<'t>) -> Result<Var<'t>> {
        Ok(x[0]
            .matmul(&w.weight("kernel")?)?
            .add(&w.weight("bias")?)?
            .relu())
    }
}

fn model(ops: bool, width: usize) -> Result<Model> {
    let mut m = Sequential::new();
    m.add(Input::new(&[width]))?;
    if ops {
        m.add(Autodiff::new(OpsDense { units: width }))?;
    } else {
        m.add(Dense::new(width).activation(ActivationFn::Relu).seed(1))?;
    }
    m.add(Dense::new(10).seed(2))?;
    m.compile(Sgd::new(0.01), Loss::MeanSquaredError, &[]);
    Ok(m)
}

fn main() -> Result<()> {
    for (width, batch, steps) in [(64, 32, 400), (512, 64, 40)] {
        let x = Tensor::full(&[batch, width], 0.1);
        let y = Tensor::full(&[batch, 10], 0.5);
        let mut ms = [model(false, width)?, model(true, width)?];
        let mut best = [f64::MAX; 2];
        for _round in 0..5 {
            for (k, m) in ms.iter_mut().enumerate() {
                let t = Instant::now();
                for _ in 0..steps {
                    m.train_on_batch(&x, &y)?;
                }
                best[k] = best[k].min(t.elapsed().as_secs_f64() / steps as f64);
            }
        }
        println!(
            "width {width}, batch {batch}: built-in Dense {:.1} us/step, ops Dense {:.1} us/step, ratio {:.2}",
            best[0] * 1e6,
            best[1] * 1e6,
            best[1] / best[0]
        );
    }
    Ok(())
}
