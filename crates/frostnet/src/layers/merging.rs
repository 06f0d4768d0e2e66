//! Merging layers, which take several tensors: `Concatenate` (along an axis) and the elementwise
//! `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`, which broadcast as Keras does.
//!
//! Incompatible shapes are reported at build time with the layer's name and both shapes, since a
//! wrong branch in an Inception-style block is otherwise hard to find.

use super::registry::LayerEntry;
use super::{check_runtime_shape, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{fmt_batch_shape, Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::{buffer, Tensor, PAR_THRESHOLD};
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
            base: LayerBase::new(CONCATENATE.class_name),
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
        CONCATENATE.class_name
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
        let y = crate::tensor::concatenate(inputs, axis);
        self.cache = ctx
            .keep
            .then(|| inputs.iter().map(|x| x.shape().to_vec()).collect());
        Ok(y)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        let axis = self.sample_axis(dims[0].len() - 1)? + 1;
        let inner: usize = dims[0][axis + 1..].iter().product();
        let blocks: Vec<usize> = dims.iter().map(|d| d[axis] * inner).collect();
        let row: usize = blocks.iter().sum();
        let mut offset = 0;
        let mut out = Vec::with_capacity(dims.len());
        for (k, (d, &b)) in dims.iter().zip(&blocks).enumerate() {
            if need_dx.get(k).copied().unwrap_or(false) {
                let dx = crate::tensor::concatenated_part(grad.data(), row, offset, b);
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

/// The elementwise operation of a broadcasting merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
}

/// Keras's output shape of an elementwise merge: per-sample shapes aligned to the right (a
/// lower-rank input gets axes of size 1 inserted after the batch axis), and along each axis sizes
/// equal or 1 (numpy broadcasting); an unknown size stays unknown.
fn broadcast_shapes(layer: &str, class: &str, inputs: &[Shape]) -> Result<Shape> {
    at_least_one(layer, inputs)?;
    let mut out = inputs[0].clone();
    for s in &inputs[1..] {
        let (long, short) = if s.len() > out.len() {
            (s, &out)
        } else {
            (&out, s)
        };
        let lead = long.len() - short.len();
        let mut next: Shape = long[..lead].to_vec();
        for (&a, &b) in long[lead..].iter().zip(short.iter()) {
            next.push(match (a, b) {
                (None, _) | (_, None) => None,
                (Some(1), b) => b,
                (a, Some(1)) => a,
                (Some(a), Some(b)) if a == b => Some(a),
                _ => return Err(mismatch(layer, class, &inputs[0], s)),
            });
        }
        out = next;
    }
    Ok(out)
}

/// How the inputs of one call map onto the broadcast output: the output dims (batch included)
/// and, per input and output axis, the input's stride along it (0 where the input is broadcast).
struct Plan {
    out: Vec<usize>,
    strides: Vec<Vec<usize>>,
    /// No input is broadcast (ResNet's Add): every input is indexed like the output.
    same: bool,
}

impl Plan {
    fn new(layer: &str, class: &str, dims: &[&[usize]]) -> Result<Plan> {
        let rank = dims.iter().map(|d| d.len()).max().unwrap_or(1).max(1);
        // Lower ranks get 1s after the batch axis, as Keras's `expand_dims(x, 1)`.
        let padded: Vec<Vec<usize>> = dims
            .iter()
            .map(|d| {
                let mut p = d[..1.min(d.len())].to_vec();
                p.extend(std::iter::repeat_n(1, rank - d.len()));
                p.extend_from_slice(&d[1.min(d.len())..]);
                p
            })
            .collect();
        let mut out = vec![1usize; rank];
        for p in &padded {
            for (o, &d) in out.iter_mut().zip(p) {
                if d != 1 {
                    if *o != 1 && *o != d {
                        return Err(Error::ShapeMismatch {
                            context: format!("layer '{layer}' ({class})"),
                            left: crate::error::fmt_dims(dims[0]),
                            right: crate::error::fmt_dims(p),
                        });
                    }
                    *o = d;
                }
            }
        }
        let strides = padded
            .iter()
            .map(|p| crate::tensor::broadcast::strides(p, &out))
            .collect();
        let same = padded.iter().all(|p| *p == out);
        Ok(Plan { out, strides, same })
    }

    fn len(&self) -> usize {
        self.out.iter().product()
    }

    /// Calls `f(output index, per-input offsets)` for every output element in order.
    fn visit(&self, mut f: impl FnMut(usize, &[usize])) {
        let total = self.len();
        if total == 0 {
            return;
        }
        let k = self.strides.len();
        if self.same {
            let mut offs = vec![0usize; k];
            for o in 0..total {
                offs.fill(o);
                f(o, &offs);
            }
            return;
        }
        crate::tensor::broadcast::visit(&self.out, &self.strides, f);
    }
}

/// The state of every elementwise merge: inputs are broadcast against each other as in Keras
/// (see [`broadcast_shapes`]); backward sums each input's gradient over the axes it was
/// broadcast along.
struct Elementwise {
    base: LayerBase,
    op: Op,
    class: &'static str,
    in_shapes: Vec<Shape>,
    /// The input dims of the kept forward pass and, for Multiply, Maximum and Minimum (whose
    /// gradients depend on the values), the inputs themselves.
    cache: Option<(Vec<Vec<usize>>, Vec<Tensor>)>,
}

impl Elementwise {
    fn new(op: Op, class: &'static str) -> Elementwise {
        Elementwise {
            base: LayerBase::new(class),
            op,
            class,
            in_shapes: Vec::new(),
            cache: None,
        }
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        if self.op == Op::Subtract && inputs.len() != 2 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}' (Subtract) must be called on exactly 2 inputs, got {}",
                self.base.name,
                inputs.len()
            )));
        }
        let out = broadcast_shapes(&self.base.name, self.class, inputs)?;
        self.in_shapes = inputs.to_vec();
        self.base.built = true;
        Ok(out)
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_all(&self.base.name, &self.in_shapes, inputs)?;
        let dims: Vec<&[usize]> = inputs.iter().map(|x| x.shape()).collect();
        let plan = Plan::new(&self.base.name, self.class, &dims)?;
        let n = inputs.len() as f32;
        let data: Vec<&[f32]> = inputs.iter().map(|x| x.data()).collect();
        let op = self.op;
        if plan.same {
            // Equal shapes: a plain elementwise fold, in parallel for large tensors.
            let f = |a: f32, b: f32| match op {
                Op::Add | Op::Average => a + b,
                Op::Subtract => a - b,
                Op::Multiply => a * b,
                Op::Maximum => a.max(b),
                Op::Minimum => a.min(b),
            };
            let mut y = buffer::copy_of(data[0]);
            for x in &data[1..] {
                if y.len() >= PAR_THRESHOLD {
                    y.par_iter_mut()
                        .zip(x.par_iter())
                        .for_each(|(a, &b)| *a = f(*a, b));
                } else {
                    y.iter_mut().zip(x.iter()).for_each(|(a, &b)| *a = f(*a, b));
                }
            }
            if op == Op::Average {
                y.iter_mut().for_each(|v| *v /= n);
            }
            self.keep_inputs(inputs, ctx.keep);
            return Tensor::from_vec(&plan.out, y);
        }
        let mut y = buffer::zeroed(plan.len());
        plan.visit(|o, offs| {
            let mut v = data[0][offs[0]];
            for (x, &at) in data.iter().zip(offs).skip(1) {
                let b = x[at];
                v = match op {
                    Op::Add | Op::Average => v + b,
                    Op::Subtract => v - b,
                    Op::Multiply => v * b,
                    Op::Maximum => v.max(b),
                    Op::Minimum => v.min(b),
                };
            }
            y[o] = if op == Op::Average { v / n } else { v };
        });
        self.keep_inputs(inputs, ctx.keep);
        Tensor::from_vec(&plan.out, y)
    }

    /// Keeps what backward needs: the input dims, and the inputs themselves when the gradient
    /// depends on their values.
    fn keep_inputs(&mut self, inputs: &[&Tensor], keep: bool) {
        self.cache = keep.then(|| {
            let dims = inputs.iter().map(|x| x.shape().to_vec()).collect();
            let values = match self.op {
                Op::Add | Op::Subtract | Op::Average => Vec::new(),
                _ => inputs.iter().map(|&x| x.clone()).collect(),
            };
            (dims, values)
        });
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (dims, xs) = take_cache(&mut self.cache, &self.base.name)?;
        let dims: Vec<&[usize]> = dims.iter().map(|d| d.as_slice()).collect();
        let plan = Plan::new(&self.base.name, self.class, &dims)?;
        if grad.shape() != plan.out.as_slice() {
            return Err(Error::ShapeMismatch {
                context: format!("layer '{}' ({}) backward", self.base.name, self.class),
                left: crate::error::fmt_dims(&plan.out),
                right: crate::error::fmt_dims(grad.shape()),
            });
        }
        let g = grad.data();
        let n = dims.len();
        let data: Vec<&[f32]> = xs.iter().map(|x| x.data()).collect();
        let mut out = Vec::with_capacity(n);
        for k in 0..n {
            if !need_dx.get(k).copied().unwrap_or(false) {
                out.push(None);
                continue;
            }
            let mut dx = buffer::zeroed(dims[k].iter().product());
            match self.op {
                Op::Add => plan.visit(|o, offs| dx[offs[k]] += g[o]),
                Op::Average => plan.visit(|o, offs| dx[offs[k]] += g[o] / n as f32),
                Op::Subtract => {
                    let sign = if k == 0 { 1.0 } else { -1.0 };
                    plan.visit(|o, offs| dx[offs[k]] += sign * g[o])
                }
                // The product of the other inputs (no division, so zeros are safe).
                Op::Multiply => plan.visit(|o, offs| {
                    let mut p = g[o];
                    for (j, (x, &at)) in data.iter().zip(offs).enumerate() {
                        if j != k {
                            p *= x[at];
                        }
                    }
                    dx[offs[k]] += p;
                }),
                // The gradient goes to the first input that holds the extreme value, as
                // TensorFlow's pairwise maximum/minimum route ties to their left operand.
                Op::Maximum | Op::Minimum => {
                    let max = self.op == Op::Maximum;
                    plan.visit(|o, offs| {
                        let mut win = 0;
                        for j in 1..n {
                            let (b, w) = (data[j][offs[j]], data[win][offs[win]]);
                            if (max && b > w) || (!max && b < w) {
                                win = j;
                            }
                        }
                        if win == k {
                            dx[offs[k]] += g[o];
                        }
                    })
                }
            }
            out.push(Some(Tensor::from_vec(dims[k], dx)?));
        }
        Ok(out)
    }
}

/// Declares one public elementwise merge layer over [`Elementwise`].
macro_rules! elementwise_layer {
    ($(#[$doc:meta])* $t:ident, $op:expr, $entry:ident, $from:ident) => {
        $(#[$doc])*
        pub struct $t(Elementwise);

        impl Default for $t {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $t {
            pub fn new() -> $t {
                $t(Elementwise::new($op, $entry.class_name))
            }
        }

        impl Layer for $t {
            fn base(&self) -> &LayerBase {
                &self.0.base
            }
            fn base_mut(&mut self) -> &mut LayerBase {
                &mut self.0.base
            }
            fn class_name(&self) -> &str {
                $entry.class_name
            }
            fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
                self.0.build(inputs)
            }
            fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
                self.0.forward(inputs, ctx)
            }
            fn backward(
                &mut self,
                grad: &Tensor,
                need_dx: &[bool],
            ) -> Result<Vec<Option<Tensor>>> {
                self.0.backward(grad, need_dx)
            }
            fn config(&self) -> serde_json::Value {
                json!({"name": self.0.base.name, "trainable": self.0.base.trainable})
            }
            fn clear_cache(&mut self) {
                self.0.cache = None;
            }
        }

        fn $from(_o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
            Ok(Box::new($t::new()))
        }
    };
}

elementwise_layer!(
    /// Sums its inputs elementwise (ResNet's shortcut), broadcasting as Keras does.
    Add, Op::Add, ADD, add_from_config
);
elementwise_layer!(
    /// The first input minus the second (exactly two inputs), broadcasting as Keras does.
    Subtract, Op::Subtract, SUBTRACT, subtract_from_config
);
elementwise_layer!(
    /// Multiplies its inputs elementwise (gating; squeeze-and-excitation multiplies
    /// `(None, H, W, C)` by `(None, 1, 1, C)`), broadcasting as Keras does.
    Multiply, Op::Multiply, MULTIPLY, multiply_from_config
);
elementwise_layer!(
    /// The mean of its inputs elementwise, broadcasting as Keras does.
    Average, Op::Average, AVERAGE, average_from_config
);
elementwise_layer!(
    /// The elementwise maximum of its inputs, broadcasting as Keras does.
    Maximum, Op::Maximum, MAXIMUM, maximum_from_config
);
elementwise_layer!(
    /// The elementwise minimum of its inputs, broadcasting as Keras does.
    Minimum, Op::Minimum, MINIMUM, minimum_from_config
);

// Keras config reading.

/// `Concatenate`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const CONCATENATE: LayerEntry = LayerEntry {
    class_name: "Concatenate",
    from_config: concatenate_from_config,
};

/// `Add`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const ADD: LayerEntry = LayerEntry {
    class_name: "Add",
    from_config: add_from_config,
};

/// `Multiply`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const MULTIPLY: LayerEntry = LayerEntry {
    class_name: "Multiply",
    from_config: multiply_from_config,
};

fn concatenate_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let axis = match o.get("axis") {
        None => -1,
        Some(v) => v
            .as_i64()
            .filter(|a| a.abs() <= 64)
            .ok_or_else(|| o.err(format!("axis {v} is not an integer")))?,
    };
    Ok(Box::new(Concatenate::with_axis(axis as isize)))
}

/// `Subtract`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const SUBTRACT: LayerEntry = LayerEntry {
    class_name: "Subtract",
    from_config: subtract_from_config,
};

/// `Average`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const AVERAGE: LayerEntry = LayerEntry {
    class_name: "Average",
    from_config: average_from_config,
};

/// `Maximum`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const MAXIMUM: LayerEntry = LayerEntry {
    class_name: "Maximum",
    from_config: maximum_from_config,
};

/// `Minimum`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const MINIMUM: LayerEntry = LayerEntry {
    class_name: "Minimum",
    from_config: minimum_from_config,
};
