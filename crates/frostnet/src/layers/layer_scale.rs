//! `LayerScale` (Touvron et al., 2021), the layer `keras.applications.convnext` defines: each
//! channel of the last axis multiplied by a learned `gamma`, initialised to a small constant so a
//! residual branch starts close to the identity.

use super::registry::LayerEntry;
use super::WeightKind;
use super::{expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::json;

const GAMMA: usize = 0;

/// `y = x * gamma` with `gamma` of shape `(projection_dim,)`, broadcast on the last axis.
pub struct LayerScale {
    base: LayerBase,
    init_values: f32,
    projection_dim: usize,
    /// The input, kept for the gradient of `gamma`.
    cache: Option<Tensor>,
}

impl LayerScale {
    /// Keras's `LayerScale(init_values, projection_dim)`.
    pub fn new(init_values: f32, projection_dim: usize) -> LayerScale {
        LayerScale {
            base: LayerBase::new(LAYER_SCALE.class_name),
            init_values,
            projection_dim,
            cache: None,
        }
    }
}

impl Layer for LayerScale {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        LAYER_SCALE.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let d = self.projection_dim;
        if d == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': projection_dim must be at least 1",
                self.base.name
            )));
        }
        // `x * gamma` broadcasts, so the last axis must be `projection_dim` (or 1, which Keras
        // would broadcast up; frostnet keeps the output shape equal to the input's).
        if s.last().copied().flatten() != Some(d) {
            return Err(incompatible(
                &self.base.name,
                format!("a last axis of size projection_dim = {d}"),
                s,
            ));
        }
        if !self.base.built {
            self.base.add_weight(
                "gamma",
                Tensor::full(&[d], self.init_values),
                WeightKind::Param,
            );
            self.base.built = true;
        }
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let gamma = self.base.w(GAMMA).data();
        let mut y = x.clone();
        y.data_mut()
            .chunks_mut(gamma.len())
            .for_each(|row| row.iter_mut().zip(gamma).for_each(|(v, g)| *v *= g));
        self.cache = ctx.keep.then(|| x.clone());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = take_cache(&mut self.cache, &self.base.name)?;
        let gamma = self.base.w(GAMMA).data().to_vec();
        let d = gamma.len();
        if self.base.wants_grad(GAMMA) {
            let mut dg = vec![0.0f32; d];
            for (gr, xr) in grad.data().chunks(d).zip(x.data().chunks(d)) {
                for ((a, g), x) in dg.iter_mut().zip(gr).zip(xr) {
                    *a += g * x;
                }
            }
            self.base.set_grad(GAMMA, Tensor::from_vec(&[d], dg)?);
        }
        let mut dx = grad.clone();
        dx.data_mut()
            .chunks_mut(d)
            .for_each(|row| row.iter_mut().zip(&gamma).for_each(|(v, g)| *v *= g));
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "init_values": self.init_values, "projection_dim": self.projection_dim})
    }
    /// Keras defines the class in `keras.applications.convnext`, not `keras.layers`: written
    /// there so Keras finds it again.
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        Some(("keras.src.applications.convnext", "LayerScale"))
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `LayerScale`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const LAYER_SCALE: LayerEntry = LayerEntry {
    class_name: "LayerScale",
    from_config: layer_scale_from_config,
};

fn layer_scale_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let dim = o.size("projection_dim", None)?;
    o.budget(dim as u64)?;
    Ok(Box::new(LayerScale::new(
        o.float("init_values", 1e-6)?,
        dim,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Mode;
    use crate::testing::gradient_check;

    #[test]
    fn multiplies_the_last_axis_by_gamma_and_checks_gradients() {
        let mut l = LayerScale::new(0.5, 3);
        let x = Tensor::from_vec(&[2, 2, 3], (0..12).map(|i| i as f32 - 5.0).collect()).unwrap();
        l.build(&[vec![Some(2), Some(3)]]).unwrap();
        l.set_weights(vec![Tensor::from_vec(&[3], vec![0.5, -2.0, 3.0]).unwrap()])
            .unwrap();
        let y = l.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
        let want: Vec<f32> = x
            .data()
            .iter()
            .enumerate()
            .map(|(i, v)| v * [0.5, -2.0, 3.0][i % 3])
            .collect();
        assert_eq!(y.data(), want.as_slice());
        let report = gradient_check(&mut l, &[x], Mode::Train, 1e-2).unwrap();
        assert!(
            report.checked > 0 && report.max_rel_error < 1e-2,
            "{report:?}"
        );
    }

    #[test]
    fn refuses_a_mismatched_last_axis() {
        let mut l = LayerScale::new(1e-6, 4);
        let e = l.build(&[vec![Some(2), Some(3)]]).unwrap_err();
        assert!(e.to_string().contains("projection_dim"), "{e}");
    }
}
