//! Layers that only move values around: `Flatten`, `Permute`, `RepeatVector`, `UpSampling2D`
//! (nearest neighbour) and `Cropping2D`. (`Reshape` and `ZeroPadding2D` have their own files.)

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, ForwardCtx, Layer, LayerBase, Shape,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::saving::keras_config::MAX_DIM;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Flattens each sample to one axis (`(None, 28, 28, 1)` -> `(None, 784)`), in row-major order, as
/// Keras does for channels-last data.
pub struct Flatten {
    base: LayerBase,
    in_shape: Shape,
    in_dims: Vec<usize>,
}

impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

impl Flatten {
    pub fn new() -> Flatten {
        Flatten {
            base: LayerBase::new(FLATTEN.class_name),
            in_shape: Vec::new(),
            in_dims: Vec::new(),
        }
    }
}

impl Layer for Flatten {
    /// Shapes only.
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
        FLATTEN.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if s.is_empty() {
            return Err(incompatible(
                &self.base.name,
                "at least one axis besides the batch",
                s,
            ));
        }
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(vec![s.iter().try_fold(1usize, |a, d| d.map(|d| a * d))])
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        self.in_dims = x.shape().to_vec();
        x.clone().reshape(&[x.batch(), x.sample_len()])
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone().reshape(&self.in_dims)?)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "data_format": "channels_last"})
    }
}

// Keras config reading.

/// `Flatten`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const FLATTEN: LayerEntry = LayerEntry {
    class_name: "Flatten",
    from_config: flatten_from_config,
};

fn flatten_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    Ok(Box::new(Flatten::new()))
}

// ---------------------------------------------------------------------------------------------

/// Calls `f(source index, destination index)` for a transpose of row-major `dims` by `perm`
/// (output axis `i` is input axis `perm[i]`).
fn transpose_indices(dims: &[usize], perm: &[usize], mut f: impl FnMut(usize, usize)) {
    let r = dims.len();
    let mut in_strides = vec![1usize; r];
    for a in (0..r.saturating_sub(1)).rev() {
        in_strides[a] = in_strides[a + 1] * dims[a + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n: usize = dims.iter().product();
    let mut idx = vec![0usize; r];
    let mut at = 0;
    for o in 0..n {
        f(at, o);
        for ax in (0..r).rev() {
            idx[ax] += 1;
            at += st[ax];
            if idx[ax] < out_dims[ax] {
                break;
            }
            at -= st[ax] * out_dims[ax];
            idx[ax] = 0;
        }
    }
}

fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let out_dims: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let mut y = vec![0.0f32; x.len()];
    transpose_indices(x.shape(), perm, |src, dst| y[dst] = x.data()[src]);
    Tensor::from_vec(&out_dims, y)
}

/// Reorders the per-sample axes: `dims` is a permutation of `1..=rank` (Keras counts the batch
/// axis as 0), e.g. `(2, 1)` swaps the two axes of a sequence.
pub struct Permute {
    base: LayerBase,
    dims: Vec<usize>,
    in_shape: Shape,
}

impl Permute {
    pub fn new(dims: &[usize]) -> Permute {
        Permute {
            base: LayerBase::new(PERMUTE.class_name),
            dims: dims.to_vec(),
            in_shape: Vec::new(),
        }
    }
    /// The permutation over the full shape, batch axis first.
    fn full_perm(&self) -> Vec<usize> {
        std::iter::once(0)
            .chain(self.dims.iter().copied())
            .collect()
    }
}

impl Layer for Permute {
    /// Shapes only.
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
        PERMUTE.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let mut sorted = self.dims.clone();
        sorted.sort_unstable();
        if sorted != (1..=s.len()).collect::<Vec<_>>() {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': dims {:?} is not a permutation of 1..={} for an input of rank {}",
                self.base.name,
                self.dims,
                s.len(),
                s.len() + 1
            )));
        }
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(self.dims.iter().map(|&d| s[d - 1]).collect())
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_runtime_shape(&self.base.name, &self.in_shape, inputs[0])?;
        transpose(inputs[0], &self.full_perm())
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let perm = self.full_perm();
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(vec![Some(transpose(grad, &inverse)?)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "dims": self.dims})
    }
}

fn permute_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let dims = o
        .get("dims")
        .and_then(Value::as_array)
        .ok_or_else(|| o.err("missing 'dims'"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .filter(|&d| (1..=64).contains(&d))
                .map(|d| d as usize)
                .ok_or_else(|| o.err(format!("dims entry {d} is not an axis")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Permute::new(&dims)))
}

/// `Permute`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const PERMUTE: LayerEntry = LayerEntry {
    class_name: "Permute",
    from_config: permute_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Repeats a vector `n` times: `(None, features)` -> `(None, n, features)`.
pub struct RepeatVector {
    base: LayerBase,
    n: usize,
    in_shape: Shape,
}

impl RepeatVector {
    pub fn new(n: usize) -> RepeatVector {
        RepeatVector {
            base: LayerBase::new(REPEAT_VECTOR.class_name),
            n,
            in_shape: Vec::new(),
        }
    }
}

impl Layer for RepeatVector {
    /// Shapes only.
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
        REPEAT_VECTOR.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if s.len() != 1 {
            return Err(incompatible(&self.base.name, "(None, features)", s));
        }
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(vec![Some(self.n), s[0]])
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let f = x.sample_len();
        let mut y = Vec::with_capacity(x.len() * self.n);
        for row in x.data().chunks(f.max(1)).take(x.batch()) {
            for _ in 0..self.n {
                y.extend_from_slice(row);
            }
        }
        Tensor::from_vec(&[x.batch(), self.n, f], y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (b, f) = (grad.batch(), *grad.shape().last().unwrap_or(&0));
        let mut dx = vec![0.0f32; b * f];
        if f > 0 {
            for (i, row) in grad.data().chunks(f).enumerate() {
                let d = &mut dx[(i / self.n) * f..(i / self.n + 1) * f];
                d.iter_mut().zip(row).for_each(|(a, g)| *a += g);
            }
        }
        Ok(vec![Some(Tensor::from_vec(&[b, f], dx)?)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "n": self.n})
    }
}

fn repeat_vector_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(RepeatVector::new(o.size("n", None)?)))
}

/// `RepeatVector`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const REPEAT_VECTOR: LayerEntry = LayerEntry {
    class_name: "RepeatVector",
    from_config: repeat_vector_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Repeats every row `size.0` times and every column `size.1` times (Keras's `nearest`
/// interpolation) on NHWC images.
pub struct UpSampling2D {
    base: LayerBase,
    size: (usize, usize),
    in_shape: Shape,
}

impl UpSampling2D {
    pub fn new(size: (usize, usize)) -> UpSampling2D {
        UpSampling2D {
            base: LayerBase::new(UP_SAMPLING2D.class_name),
            size,
            in_shape: Vec::new(),
        }
    }

    /// Calls `f(input index, output index)` for every output element of an `(n, h, w, c)` input.
    fn visit(&self, dims: &[usize], mut f: impl FnMut(usize, usize)) {
        let [n, h, w, c] = dims[..] else { return };
        let (sh, sw) = self.size;
        let (oh, ow) = (h * sh, w * sw);
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let src = ((b * h + oy / sh) * w + ox / sw) * c;
                    let dst = ((b * oh + oy) * ow + ox) * c;
                    for ch in 0..c {
                        f(src + ch, dst + ch);
                    }
                }
            }
        }
    }
}

impl Layer for UpSampling2D {
    /// Shapes only.
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
        UP_SAMPLING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let [h, w, c] = s[..] else {
            return Err(incompatible(
                &self.base.name,
                "(None, height, width, channels)",
                s,
            ));
        };
        if self.size.0 == 0 || self.size.1 == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': size {:?} must be positive",
                self.base.name, self.size
            )));
        }
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(vec![
            h.map(|h| h * self.size.0),
            w.map(|w| w * self.size.1),
            c,
        ])
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let d = x.shape();
        let out = [d[0], d[1] * self.size.0, d[2] * self.size.1, d[3]];
        let mut y = vec![0.0f32; out.iter().product()];
        self.visit(d, |s, o| y[o] = x.data()[s]);
        Tensor::from_vec(&out, y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = grad.shape();
        let dims = [g[0], g[1] / self.size.0, g[2] / self.size.1, g[3]];
        let mut dx = vec![0.0f32; dims.iter().product()];
        self.visit(&dims, |s, o| dx[s] += grad.data()[o]);
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "size": [self.size.0, self.size.1], "data_format": "channels_last",
               "interpolation": "nearest"})
    }
}

fn up_sampling2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    o.require("interpolation", &[json!("nearest")])?;
    Ok(Box::new(UpSampling2D::new(o.pair("size", Some((2, 2)))?)))
}

/// `UpSampling2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const UP_SAMPLING2D: LayerEntry = LayerEntry {
    class_name: "UpSampling2D",
    from_config: up_sampling2d_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Removes `((top, bottom), (left, right))` rows and columns from NHWC images.
pub struct Cropping2D {
    base: LayerBase,
    cropping: ((usize, usize), (usize, usize)),
    in_shape: Shape,
}

impl Cropping2D {
    pub fn new(cropping: ((usize, usize), (usize, usize))) -> Cropping2D {
        Cropping2D {
            base: LayerBase::new(CROPPING2D.class_name),
            cropping,
            in_shape: Vec::new(),
        }
    }

    /// Calls `f(input index, output index)` for every kept element of an `(n, h, w, c)` input.
    fn visit(&self, dims: &[usize], mut f: impl FnMut(usize, usize)) {
        let [n, h, w, c] = dims[..] else { return };
        let ((t, b), (l, r)) = self.cropping;
        let (oh, ow) = (h - t - b, w - l - r);
        for img in 0..n {
            for oy in 0..oh {
                let src = ((img * h + oy + t) * w + l) * c;
                let dst = (img * oh + oy) * ow * c;
                for i in 0..ow * c {
                    f(src + i, dst + i);
                }
            }
        }
    }
}

impl Layer for Cropping2D {
    /// Shapes only.
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
        CROPPING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let ((t, b), (l, r)) = self.cropping;
        let crop = |len: Option<usize>, a: usize, z: usize| -> Result<Option<usize>> {
            match len {
                None => Ok(None),
                Some(n) if n > a + z => Ok(Some(n - a - z)),
                Some(_) => Err(incompatible(
                    &self.base.name,
                    format!("spatial size larger than the cropping {:?}", self.cropping),
                    s,
                )),
            }
        };
        let [h, w, c] = s[..] else {
            return Err(incompatible(
                &self.base.name,
                "(None, height, width, channels)",
                s,
            ));
        };
        let out = vec![crop(h, t, b)?, crop(w, l, r)?, c];
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let d = x.shape();
        let ((t, b), (l, r)) = self.cropping;
        if d[1] <= t + b || d[2] <= l + r {
            return Err(Error::IncompatibleShape {
                layer: self.base.name.clone(),
                expected: format!("spatial size larger than the cropping {:?}", self.cropping),
                got: crate::error::fmt_dims(d),
            });
        }
        let out = [d[0], d[1] - t - b, d[2] - l - r, d[3]];
        let mut y = vec![0.0f32; out.iter().product()];
        self.visit(d, |s, o| y[o] = x.data()[s]);
        Tensor::from_vec(&out, y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = grad.shape();
        let ((t, b), (l, r)) = self.cropping;
        let dims = [g[0], g[1] + t + b, g[2] + l + r, g[3]];
        let mut dx = vec![0.0f32; dims.iter().product()];
        self.visit(&dims, |s, o| dx[s] = grad.data()[o]);
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> Value {
        let ((t, b), (l, r)) = self.cropping;
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "cropping": [[t, b], [l, r]], "data_format": "channels_last"})
    }
}

fn cropping2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    let n = |v: &Value| match v.as_u64() {
        Some(n) if n <= MAX_DIM => Ok(n as usize),
        _ => Err(o.err(format!("cropping {v} is not a size"))),
    };
    // An int, a pair (symmetric per axis) or a pair of pairs, as ZeroPadding2D's padding.
    let c = match o.get("cropping") {
        None => ((0, 0), (0, 0)),
        Some(Value::Array(a)) if a.len() == 2 => match (&a[0], &a[1]) {
            (Value::Array(h), Value::Array(w)) if h.len() == 2 && w.len() == 2 => {
                ((n(&h[0])?, n(&h[1])?), (n(&w[0])?, n(&w[1])?))
            }
            (h, w) => {
                let (h, w) = (n(h)?, n(w)?);
                ((h, h), (w, w))
            }
        },
        Some(v) => {
            let p = n(v)?;
            ((p, p), (p, p))
        }
    };
    Ok(Box::new(Cropping2D::new(c)))
}

/// `Cropping2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const CROPPING2D: LayerEntry = LayerEntry {
    class_name: "Cropping2D",
    from_config: cropping2d_from_config,
};
