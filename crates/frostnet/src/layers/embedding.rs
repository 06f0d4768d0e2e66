//! `Embedding`: maps integer indices to rows of a learned `(input_dim, output_dim)` table.
//!
//! frostnet tensors are f32, so indices arrive as floats; they are truncated toward zero as
//! Keras's cast to int32 does. An index outside `[0, input_dim)` is a typed error naming the
//! layer (TensorFlow on CPU also refuses it).
//!
//! With `mask_zero=True`, index 0 is padding: the layer's output carries a mask (`index != 0`,
//! Keras's `compute_mask`) that the model executor passes on to the layers after it, Keras 3's
//! masking rules (`models/masking.rs`).

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Shape, WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::{random, Tensor};
use serde_json::{json, Value};

const EMBEDDINGS: usize = 0;

/// A lookup table from indices to `output_dim` vectors. Weights: `embeddings (input_dim,
/// output_dim)`, uniform in `[-0.05, 0.05]` (Keras's default initializer).
pub struct Embedding {
    base: LayerBase,
    input_dim: usize,
    output_dim: usize,
    mask_zero: bool,
    seed: Option<u64>,
    in_shape: Shape,
    /// The row index of every input element, for backward.
    cache: Option<Vec<usize>>,
}

impl Embedding {
    pub fn new(input_dim: usize, output_dim: usize) -> Embedding {
        Embedding {
            base: LayerBase::new(EMBEDDING.class_name),
            input_dim,
            output_dim,
            mask_zero: false,
            seed: None,
            in_shape: Vec::new(),
            cache: None,
        }
    }
    /// Seeds the initializer.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Keras's `mask_zero=True`: index 0 means "no token here"; the output's mask (true where
    /// the index is not 0) reaches the layers after it as in Keras 3 (`GlobalAveragePooling1D`
    /// averages the unmasked steps only; the loss and metrics skip masked positions when the
    /// mask reaches the model's output). As in Keras, index 0 still has a row in the table.
    pub fn mask_zero(mut self, m: bool) -> Self {
        self.mask_zero = m;
        self
    }
    /// Whether the layer starts a mask (`mask_zero=True`).
    pub(crate) fn masks(&self) -> bool {
        self.mask_zero
    }
    /// The output mask of this layer on input `x`: `Some(index != 0)` with `mask_zero`.
    pub(crate) fn compute_mask(&self, x: &Tensor) -> Option<Vec<bool>> {
        self.mask_zero
            .then(|| x.data().iter().map(|&v| v.trunc() != 0.0).collect())
    }

    fn rows(&self, x: &Tensor) -> Result<Vec<usize>> {
        x.data()
            .iter()
            .map(|&v| {
                let i = v.trunc();
                if i >= 0.0 && (i as usize) < self.input_dim && v.is_finite() {
                    Ok(i as usize)
                } else {
                    Err(Error::InvalidConfig(format!(
                        "layer '{}': index {v} is outside the table's [0, {})",
                        self.base.name, self.input_dim
                    )))
                }
            })
            .collect()
    }
}

impl Layer for Embedding {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[("embeddings", "embeddings")]
    }
    fn class_name(&self) -> &str {
        EMBEDDING.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': input_dim and output_dim must be positive",
                self.base.name
            )));
        }
        if !self.base.built {
            let mut rng = random::rng(self.seed);
            let n = self.input_dim * self.output_dim;
            let table = random::uniform(&mut rng, n, -0.05, 0.05);
            self.base.add_weight(
                "embeddings",
                Tensor::from_vec(&[self.input_dim, self.output_dim], table)?,
                WeightKind::Param,
            );
            self.base.built = true;
        }
        self.in_shape = s.clone();
        let mut out = s.clone();
        out.push(Some(self.output_dim));
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let rows = self.rows(x)?;
        let d = self.output_dim;
        let table = self.base.w(EMBEDDINGS).data();
        let mut y = Vec::with_capacity(rows.len() * d);
        for &r in &rows {
            y.extend_from_slice(&table[r * d..(r + 1) * d]);
        }
        let mut dims = x.shape().to_vec();
        dims.push(d);
        self.cache = ctx.keep.then_some(rows);
        Tensor::from_vec(&dims, y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let rows = take_cache(&mut self.cache, &self.base.name)?;
        let d = self.output_dim;
        if self.base.wants_grad(EMBEDDINGS) {
            let mut dt = Tensor::zeros(self.base.w(EMBEDDINGS).shape());
            let t = dt.data_mut();
            for (&r, g) in rows.iter().zip(grad.data().chunks(d)) {
                t[r * d..(r + 1) * d]
                    .iter_mut()
                    .zip(g)
                    .for_each(|(a, b)| *a += b);
            }
            self.base.set_grad(EMBEDDINGS, dt);
        }
        // Indices have no gradient; a zero one keeps models that ask for it working.
        let dx = need_dx.first().copied().unwrap_or(false).then(|| {
            let dims = &grad.shape()[..grad.shape().len() - 1];
            Tensor::zeros(dims)
        });
        Ok(vec![dx])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "input_dim": self.input_dim, "output_dim": self.output_dim,
               "embeddings_initializer": {"module": "keras.initializers",
                   "class_name": "RandomUniform",
                   "config": {"seed": null, "minval": -0.05, "maxval": 0.05},
                   "registered_name": null},
               "embeddings_regularizer": null, "activity_regularizer": null,
               "embeddings_constraint": null, "mask_zero": self.mask_zero})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

fn embedding_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("sparse", &[json!(false)])?;
    let input_dim = o.size("input_dim", None)?;
    let output_dim = o.size("output_dim", None)?;
    o.budget(input_dim as u64 * output_dim as u64)?;
    let mask_zero = o.boolean("mask_zero", false)?;
    Ok(Box::new(
        Embedding::new(input_dim, output_dim).mask_zero(mask_zero),
    ))
}

/// `Embedding`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const EMBEDDING: LayerEntry = LayerEntry {
    class_name: "Embedding",
    from_config: embedding_from_config,
};
