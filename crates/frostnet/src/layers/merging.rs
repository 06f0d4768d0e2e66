//! Merging layers, which take several tensors: `Concatenate` (along an axis), `Add` and
//! `Multiply` (elementwise, same shapes).
//!
//! Incompatible shapes are reported at build time with the layer's name and both shapes, since a
//! wrong branch in an Inception-style block is otherwise hard to find.

use super::{check_runtime_shape, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{fmt_batch_shape, Error, Result};
use crate::tensor::{Tensor, PAR_THRESHOLD};
use rayon::prelude::*;
use serde_json::json;

/// The error for two input shapes that cannot be merged.
fn mismatch(layer: &str, what: &str, left: &Shape, right: &Shape) -> Error {
    Error::ShapeMismatch {
        context: format!("layer '{layer}' ({what})"),
        left: fmt_batch_shape(left),
        right: fmt_batch_shape(right),
    }
}

fn at_least_one(layer: &str, inputs: &[Shape]) -> Result<()> {
    if inputs.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "layer '{layer}' must be called on a list of at least one input"
        )));
    }
    Ok(())
}

/// Checks the runtime shapes of all inputs against the built ones.
fn check_all(layer: &str, built: &[Shape], xs: &[&Tensor]) -> Result<()> {
    if built.len() != xs.len() || xs.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "layer '{layer}' was built for {} inputs, got {} (build it before calling it)",
            built.len(),
            xs.len()
        )));
    }
    for (b, x) in built.iter().zip(xs) {
        check_runtime_shape(layer, b, x)?;
    }
    if let Some(bad) = xs.iter().find(|x| x.shape()[0] != xs[0].shape()[0]) {
        return Err(Error::ShapeMismatch {
            context: format!("layer '{layer}': batch sizes"),
            left: crate::error::fmt_dims(xs[0].shape()),
            right: crate::error::fmt_dims(bad.shape()),
        });
    }
    Ok(())
}

/// Joins its inputs along `axis` (Keras's default `-1`, the channels). All other axes must agree.
pub struct Concatenate {
    base: LayerBase,
    axis: isize,
    in_shapes: Vec<Shape>,
    /// Per input, its size along the axis (for splitting the gradient).
    cache: Option<Vec<Vec<usize>>>,
}

impl Default for Concatenate {
    fn default() -> Self {
        Self::new()
    }
}

impl Concatenate {
    /// Along the last axis.
    pub fn new() -> Concatenate {
        Concatenate::with_axis(-1)
    }
    /// Along `axis`, counted over the full shape with the batch axis (`-1` is the last axis; the
    /// batch axis 0 cannot be used).
    pub fn with_axis(axis: isize) -> Concatenate {
        Concatenate {
            base: LayerBase::new("Concatenate"),
            axis,
            in_shapes: Vec::new(),
            cache: None,
        }
    }

    /// The axis as an index into the per-sample shape (of `rank` axes).
    fn sample_axis(&self, rank: usize) -> Result<usize> {
        let full = rank as isize + 1;
        let a = if self.axis < 0 {
            self.axis + full
        } else {
            self.axis
        };
        if a <= 0 || a >= full {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': axis {} is out of range for inputs of rank {full} (the batch axis \
                 cannot be concatenated)",
                self.base.name, self.axis
            )));
        }
        Ok(a as usize - 1)
    }
}

impl Layer for Concatenate {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Concatenate"
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        at_least_one(&self.base.name, inputs)?;
        let first = &inputs[0];
        let axis = self.sample_axis(first.len())?;
        let what = format!("Concatenate on axis {}", self.axis);
        let mut out = first.clone();
        for s in &inputs[1..] {
            let same_elsewhere = s.len() == first.len()
                && s.iter()
                    .zip(first.iter())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a.is_none() || b.is_none() || a == b);
            if !same_elsewhere {
                return Err(mismatch(&self.base.name, &what, first, s));
            }
            out[axis] = match (out[axis], s[axis]) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            // A size known in any input is known in the output.
            for (i, (o, d)) in out.iter_mut().zip(s).enumerate() {
                if i != axis && o.is_none() {
                    *o = *d;
                }
            }
        }
        self.in_shapes = inputs.to_vec();
        self.base.built = true;
        Ok(out)
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_all(&self.base.name, &self.in_shapes, inputs)?;
        let dims0 = inputs[0].shape();
        let axis = self.sample_axis(dims0.len() - 1)? + 1;
        for x in &inputs[1..] {
            let d = x.shape();
            if (0..dims0.len()).any(|i| i != axis && d[i] != dims0[i]) {
                return Err(Error::ShapeMismatch {
                    context: format!(
                        "layer '{}' (Concatenate on axis {})",
                        self.base.name, self.axis
                    ),
                    left: crate::error::fmt_dims(dims0),
                    right: crate::error::fmt_dims(d),
                });
            }
        }
        let outer: usize = dims0[..axis].iter().product();
        let inner: usize = dims0[axis + 1..].iter().product();
        // Per input, the contiguous block it contributes to each outer index.
        let blocks: Vec<usize> = inputs.iter().map(|x| x.shape()[axis] * inner).collect();
        let row: usize = blocks.iter().sum();
        let mut out_dims = dims0.to_vec();
        out_dims[axis] = inputs.iter().map(|x| x.shape()[axis]).sum();
        let mut y = vec![0.0f32; outer * row];
        let fill = |o: usize, dst: &mut [f32]| {
            let mut at = 0;
            for (x, &b) in inputs.iter().zip(&blocks) {
                dst[at..at + b].copy_from_slice(&x.data()[o * b..(o + 1) * b]);
                at += b;
            }
        };
        if row > 0 {
            if y.len() >= PAR_THRESHOLD {
                y.par_chunks_mut(row)
                    .enumerate()
                    .for_each(|(o, d)| fill(o, d));
            } else {
                y.chunks_mut(row).enumerate().for_each(|(o, d)| fill(o, d));
            }
        }
        self.cache = ctx
            .keep
            .then(|| inputs.iter().map(|x| x.shape().to_vec()).collect());
        Tensor::from_vec(&out_dims, y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        let axis = self.sample_axis(dims[0].len() - 1)? + 1;
        let outer: usize = dims[0][..axis].iter().product();
        let inner: usize = dims[0][axis + 1..].iter().product();
        let blocks: Vec<usize> = dims.iter().map(|d| d[axis] * inner).collect();
        let row: usize = blocks.iter().sum();
        let mut offset = 0;
        let mut out = Vec::with_capacity(dims.len());
        for (k, (d, &b)) in dims.iter().zip(&blocks).enumerate() {
            if need_dx.get(k).copied().unwrap_or(false) {
                let mut dx = vec![0.0f32; outer * b];
                if b > 0 {
                    dx.chunks_mut(b).enumerate().for_each(|(o, dst)| {
                        dst.copy_from_slice(&grad.data()[o * row + offset..o * row + offset + b])
                    });
                }
                out.push(Some(Tensor::from_vec(d, dx)?));
            } else {
                out.push(None);
            }
            offset += b;
        }
        Ok(out)
    }

    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "axis": self.axis})
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// Checks that all elementwise-merge inputs have one shape, and returns it.
fn same_shapes(layer: &str, class: &str, inputs: &[Shape]) -> Result<Shape> {
    at_least_one(layer, inputs)?;
    let mut out = inputs[0].clone();
    for s in &inputs[1..] {
        let ok = s.len() == out.len()
            && s.iter()
                .zip(&out)
                .all(|(a, b)| a.is_none() || b.is_none() || a == b);
        if !ok {
            return Err(mismatch(layer, class, &inputs[0], s));
        }
        for (o, d) in out.iter_mut().zip(s) {
            if o.is_none() {
                *o = *d;
            }
        }
    }
    Ok(out)
}

/// Checks at run time that all inputs have the first input's dims.
fn same_dims(layer: &str, class: &str, xs: &[&Tensor]) -> Result<()> {
    for x in &xs[1..] {
        if x.shape() != xs[0].shape() {
            return Err(Error::ShapeMismatch {
                context: format!("layer '{layer}' ({class})"),
                left: crate::error::fmt_dims(xs[0].shape()),
                right: crate::error::fmt_dims(x.shape()),
            });
        }
    }
    Ok(())
}

/// Sums its inputs elementwise (ResNet's shortcut). All inputs must have the same shape.
pub struct Add {
    base: LayerBase,
    in_shapes: Vec<Shape>,
    /// Number of inputs seen by the kept forward pass.
    cache: Option<usize>,
}

impl Default for Add {
    fn default() -> Self {
        Self::new()
    }
}

impl Add {
    pub fn new() -> Add {
        Add {
            base: LayerBase::new("Add"),
            in_shapes: Vec::new(),
            cache: None,
        }
    }
}

impl Layer for Add {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Add"
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let out = same_shapes(&self.base.name, "Add", inputs)?;
        self.in_shapes = inputs.to_vec();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_all(&self.base.name, &self.in_shapes, inputs)?;
        same_dims(&self.base.name, "Add", inputs)?;
        let mut y = inputs[0].clone();
        for x in &inputs[1..] {
            y.add_assign(x)?;
        }
        self.cache = ctx.keep.then_some(inputs.len());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let n = take_cache(&mut self.cache, &self.base.name)?;
        Ok((0..n)
            .map(|k| {
                need_dx
                    .get(k)
                    .copied()
                    .unwrap_or(false)
                    .then(|| grad.clone())
            })
            .collect())
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// Multiplies its inputs elementwise (gating, squeeze-and-excitation). Same shapes required.
pub struct Multiply {
    base: LayerBase,
    in_shapes: Vec<Shape>,
    cache: Option<Vec<Tensor>>,
}

impl Default for Multiply {
    fn default() -> Self {
        Self::new()
    }
}

impl Multiply {
    pub fn new() -> Multiply {
        Multiply {
            base: LayerBase::new("Multiply"),
            in_shapes: Vec::new(),
            cache: None,
        }
    }
}

impl Layer for Multiply {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Multiply"
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let out = same_shapes(&self.base.name, "Multiply", inputs)?;
        self.in_shapes = inputs.to_vec();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_all(&self.base.name, &self.in_shapes, inputs)?;
        same_dims(&self.base.name, "Multiply", inputs)?;
        let mut y = inputs[0].clone();
        for x in &inputs[1..] {
            y.data_mut()
                .iter_mut()
                .zip(x.data())
                .for_each(|(a, b)| *a *= b);
        }
        self.cache = ctx
            .keep
            .then(|| inputs.iter().map(|&x| x.clone()).collect());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let xs = take_cache(&mut self.cache, &self.base.name)?;
        let mut out = Vec::with_capacity(xs.len());
        for k in 0..xs.len() {
            if !need_dx.get(k).copied().unwrap_or(false) {
                out.push(None);
                continue;
            }
            // d(prod)/dx_k = product of the other inputs (no division, so zeros are safe).
            let mut dx = grad.clone();
            for (j, x) in xs.iter().enumerate() {
                if j != k {
                    dx.data_mut()
                        .iter_mut()
                        .zip(x.data())
                        .for_each(|(a, b)| *a *= b);
                }
            }
            out.push(Some(dx));
        }
        Ok(out)
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}
