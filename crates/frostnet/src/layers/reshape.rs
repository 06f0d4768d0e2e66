//! `Reshape`: gives each sample a new shape with the same number of elements; one axis may be
//! `-1`, inferred (Keras's `target_shape`).

use super::registry::LayerEntry;
use super::{expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::{Opts, MAX_DIM};
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Reshapes each sample to `target_shape` (the batch axis excluded).
pub struct Reshape {
    base: LayerBase,
    target_shape: Vec<isize>,
    /// Input dims, kept for backward.
    cache: Option<Vec<usize>>,
}

impl Reshape {
    /// `target_shape` per sample; at most one entry may be `-1`.
    pub fn new(target_shape: &[isize]) -> Reshape {
        Reshape {
            base: LayerBase::new(RESHAPE.class_name),
            target_shape: target_shape.to_vec(),
            cache: None,
        }
    }

    /// Resolves the target for `elements` per sample (`None` if unknown).
    fn resolve(&self, elements: Option<usize>) -> Result<Shape> {
        let unknown: Vec<usize> = (0..self.target_shape.len())
            .filter(|&i| self.target_shape[i] == -1)
            .collect();
        if unknown.len() > 1 || self.target_shape.iter().any(|&d| d < -1) {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': target_shape {:?} may contain at most one -1 and no other negative \
                 size",
                self.base.name, self.target_shape
            )));
        }
        let known: usize = self
            .target_shape
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .product();
        let mut out: Shape = self
            .target_shape
            .iter()
            .map(|&d| (d >= 0).then_some(d as usize))
            .collect();
        let fail = |e: usize| {
            Error::InvalidConfig(format!(
                "layer '{}': cannot reshape {e} values per sample into target_shape {:?}",
                self.base.name, self.target_shape
            ))
        };
        match (unknown.first(), elements) {
            (Some(&i), Some(e)) => {
                if known == 0 || e % known != 0 {
                    return Err(fail(e));
                }
                out[i] = Some(e / known);
            }
            (None, Some(e)) if e != known => return Err(fail(e)),
            _ => {}
        }
        Ok(out)
    }
}

impl Layer for Reshape {
    /// A shape.
    fn kept_for_backward(&self, _inputs: &[u64], _output: u64) -> u64 {
        0
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        RESHAPE.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let elements = s.iter().try_fold(1usize, |a, d| d.map(|d| a * d));
        self.resolve(None)?;
        let out = self.resolve(elements).map_err(|_| {
            incompatible(
                &self.base.name,
                format!("a shape with as many values as {:?}", self.target_shape),
                s,
            )
        })?;
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let target = self.resolve(Some(x.sample_len()))?;
        let mut dims = vec![x.batch()];
        dims.extend(target.iter().map(|d| d.unwrap_or(0)));
        self.cache = ctx.keep.then(|| x.shape().to_vec());
        x.clone().reshape(&dims)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        Ok(vec![Some(grad.clone().reshape(&dims)?)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "target_shape": self.target_shape})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

// Keras config reading.

/// `Reshape`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const RESHAPE: LayerEntry = LayerEntry {
    class_name: "Reshape",
    from_config: reshape_from_config,
};

fn reshape_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let t = o
        .get("target_shape")
        .and_then(Value::as_array)
        .ok_or_else(|| o.err("missing 'target_shape'"))?;
    let dims = t
        .iter()
        .map(|d| {
            d.as_i64()
                .filter(|&d| d == -1 || (1..=MAX_DIM as i64).contains(&d))
                .map(|d| d as isize)
                .ok_or_else(|| o.err(format!("target_shape entry {d} is not a size")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Reshape::new(&dims)))
}
