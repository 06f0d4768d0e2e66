//! `StochasticDepth` (Huang et al., 2016), the layer `keras.applications.convnext` defines: in
//! training, each sample's residual branch is dropped with probability `drop_path_rate` and kept
//! ones are scaled by `1 / (1 - drop_path_rate)`; at inference it is the identity.

use super::registry::LayerEntry;
use super::{expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Mode, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use rand::Rng;
use serde_json::json;

/// Drops whole samples of a residual branch in training.
pub struct StochasticDepth {
    base: LayerBase,
    drop_path_rate: f32,
    /// Per-sample factor (0 or `1 / keep`), kept for backward.
    cache: Option<Vec<f32>>,
}

impl StochasticDepth {
    /// `drop_path_rate` must lie in `[0, 1)`; [`Layer::build`] reports it otherwise.
    pub fn new(drop_path_rate: f32) -> StochasticDepth {
        StochasticDepth {
            base: LayerBase::new(STOCHASTIC_DEPTH.class_name),
            drop_path_rate,
            cache: None,
        }
    }
}

impl Layer for StochasticDepth {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        STOCHASTIC_DEPTH.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': drop_path_rate must be in [0, 1), got {}",
                self.base.name, self.drop_path_rate
            )));
        }
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let n = x.batch();
        let factors: Vec<f32> = if ctx.mode == Mode::Infer {
            vec![1.0; n]
        } else {
            // Keras: `floor(keep + uniform(0, 1))` is 1 with probability `keep`.
            let keep = 1.0 - self.drop_path_rate;
            (0..n)
                .map(|_| {
                    if (keep + ctx.rng.random::<f32>()).floor() >= 1.0 {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mut y = x.clone();
        let per = x.sample_len();
        if per > 0 {
            y.data_mut()
                .chunks_mut(per)
                .zip(&factors)
                .for_each(|(s, f)| s.iter_mut().for_each(|v| *v *= f));
        }
        self.cache = ctx.keep.then_some(factors);
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let factors = take_cache(&mut self.cache, &self.base.name)?;
        let mut dx = grad.clone();
        let per = grad.sample_len();
        if per > 0 {
            dx.data_mut()
                .chunks_mut(per)
                .zip(&factors)
                .for_each(|(s, f)| s.iter_mut().for_each(|v| *v *= f));
        }
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "drop_path_rate": self.drop_path_rate})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `StochasticDepth`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const STOCHASTIC_DEPTH: LayerEntry = LayerEntry {
    class_name: "StochasticDepth",
    from_config: stochastic_depth_from_config,
};

fn stochastic_depth_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let rate = o.float("drop_path_rate", 0.0)?;
    if !(0.0..1.0).contains(&rate) {
        return Err(o.err(format!("drop_path_rate {rate} is not in [0, 1)")));
    }
    Ok(Box::new(StochasticDepth::new(rate)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gradient_check;

    #[test]
    fn identity_at_inference_whole_samples_in_training() {
        let x = Tensor::from_vec(&[64, 3], (0..192).map(|i| i as f32 + 1.0).collect()).unwrap();
        let mut l = StochasticDepth::new(0.5);
        l.build(&[vec![Some(3)]]).unwrap();
        let y = l.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
        assert_eq!(y.data(), x.data());
        let mut ctx = ForwardCtx::infer();
        ctx.mode = Mode::Train;
        let y = l.forward(&[&x], &mut ctx).unwrap();
        let mut dropped = 0;
        for (ys, xs) in y.data().chunks(3).zip(x.data().chunks(3)) {
            // Each sample is all zero or all doubled.
            let f = ys[0] / xs[0];
            assert!(f == 0.0 || f == 2.0, "{f}");
            assert!(ys.iter().zip(xs).all(|(y, x)| *y == x * f));
            dropped += usize::from(f == 0.0);
        }
        assert!(
            (8..=56).contains(&dropped),
            "{dropped} of 64 dropped at rate 0.5"
        );
    }

    #[test]
    fn gradient_check_at_rate_zero_and_bad_rate() {
        let x = Tensor::from_vec(&[2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.0, -0.5]).unwrap();
        let r = gradient_check(&mut StochasticDepth::new(0.0), &[x], Mode::Train, 1e-2).unwrap();
        assert!(r.checked > 0 && r.max_rel_error < 1e-3, "{r:?}");
        let e = StochasticDepth::new(1.0)
            .build(&[vec![Some(3)]])
            .unwrap_err();
        assert!(e.to_string().contains("drop_path_rate"), "{e}");
    }
}
