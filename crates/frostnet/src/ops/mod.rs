//! Differentiable tensor operations: write a layer's forward pass from these and its backward pass
//! is derived.
//!
//! Every operation on a [`Var`] computes its value at once and, when the [`Tape`] is recording
//! and some input of the operation needs a gradient, also records how to send a gradient back
//! to its inputs. Nothing is recorded otherwise, so a forward pass that no backward pass will
//! follow (inference, a frozen prefix) costs the computation only, and a frozen weight gets no
//! gradient computed for it. The numeric work is done by the same kernels the built-in layers use
//! (`tensor::matmul`, the convolution and pooling kernels, the activation functions).
//!
//! A custom layer implements [`OpsLayer`] (its `build` creates weights with
//! [`LayerBase::add_weight_init`](crate::layers::LayerBase::add_weight_init), its `forward` uses
//! ops) and is used wrapped in [`Autodiff`], which implements [`Layer`](crate::Layer).
//!
//! ```
//! use frostnet::ops::Tape;
//! use frostnet::Tensor;
//! let tape = Tape::new(true);
//! let x = tape.variable(Tensor::from_slice(&[1.0, 2.0, 3.0]));
//! let y = x.mul(&x)?.sum_all()?; // y = sum(x^2)
//! let grads = tape.gradients(&y)?;
//! assert_eq!(grads.of(&x).unwrap().data(), &[2.0, 4.0, 6.0]);
//! # Ok::<(), frostnet::Error>(())
//! ```

mod layer;

pub use layer::{Autodiff, OpsLayer, Scope};

use crate::error::{fmt_dims, Error, Result};
use crate::layers::ActivationFn;
use crate::tensor::conv::{conv2d_backward, conv2d_forward};
use crate::tensor::pool;
use crate::tensor::{matmul, Conv2dGeometry, Padding, Tensor, Transpose};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// How a recorded operation sends its output gradient to its inputs: given the output gradient
/// and, per input, whether that input needs a gradient, the input gradients (`None` where not
/// needed).
type BackFn = Box<dyn Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

struct Node {
    value: Arc<Tensor>,
    parents: Vec<usize>,
    needs_grad: bool,
    back: Option<BackFn>,
}

/// What a backward pass needs of a finished tape: the graph without the values (each recorded
/// operation holds what it needs).
pub(crate) struct Recorded {
    nodes: Vec<(Vec<usize>, bool, Option<BackFn>)>,
}

/// Records the operations on its [`Var`]s.
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
    recording: bool,
    /// Set by `gradients`, which takes the recorded backward functions.
    consumed: Cell<bool>,
}

/// A tensor value on a [`Tape`]. Cheap to copy (a tape reference and an index).
#[derive(Clone, Copy)]
pub struct Var<'t> {
    tape: &'t Tape,
    id: usize,
}

/// Gradients from [`Tape::gradients`].
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient with respect to `v`, if `v` needs one and the output depends on it.
    pub fn of(&self, v: &Var) -> Option<&Tensor> {
        self.grads.get(v.id).and_then(Option::as_ref)
    }
}

impl Tape {
    /// A tape; with `recording` false, ops compute values only (an inference pass).
    pub fn new(recording: bool) -> Tape {
        Tape {
            nodes: RefCell::new(Vec::new()),
            recording,
            consumed: Cell::new(false),
        }
    }

    /// Whether operations are being recorded.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    pub(crate) fn leaf(&self, value: Tensor, needs_grad: bool) -> Var<'_> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value: Arc::new(value),
            parents: Vec::new(),
            needs_grad: needs_grad && self.recording,
            back: None,
        });
        Var {
            tape: self,
            id: nodes.len() - 1,
        }
    }

    /// A value no gradient is asked for (a constant, a mask).
    pub fn constant(&self, value: Tensor) -> Var<'_> {
        self.leaf(value, false)
    }

    /// A value whose gradient [`gradients`](Self::gradients) reports (when recording).
    pub fn variable(&self, value: Tensor) -> Var<'_> {
        self.leaf(value, true)
    }

    /// Adds the result of an operation on `parents`. `back` is only called, and so only keeps
    /// anything alive, when some parent needs a gradient.
    fn push<'t>(
        &'t self,
        value: Tensor,
        parents: &[&Var<'t>],
        back: impl FnOnce() -> BackFn,
    ) -> Result<Var<'t>> {
        self.push_shared(Arc::new(value), parents, back)
    }

    /// [`push`](Self::push) of a value the backward function may share.
    fn push_shared<'t>(
        &'t self,
        value: Arc<Tensor>,
        parents: &[&Var<'t>],
        back: impl FnOnce() -> BackFn,
    ) -> Result<Var<'t>> {
        for p in parents {
            if !std::ptr::eq(p.tape, self) {
                return Err(Error::State(
                    "an operation mixes variables of two different tapes".into(),
                ));
            }
        }
        let needs = self.recording && {
            let nodes = self.nodes.borrow();
            parents.iter().any(|p| nodes[p.id].needs_grad)
        };
        let back = needs.then(back);
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value,
            parents: if needs {
                parents.iter().map(|p| p.id).collect()
            } else {
                Vec::new()
            },
            needs_grad: needs,
            back,
        });
        Ok(Var {
            tape: self,
            id: nodes.len() - 1,
        })
    }

    /// Backpropagates from `output` (seeded with ones, so a scalar output gives its gradient).
    /// This consumes what was recorded: values stay readable, but a second call is an error.
    pub fn gradients(&self, output: &Var) -> Result<Gradients> {
        let seed = Tensor::full(output.value().shape(), 1.0);
        if self.consumed.replace(true) {
            return Err(Error::State(
                "Tape::gradients was already called on this tape".into(),
            ));
        }
        let mut nodes = self.nodes.borrow_mut();
        let graph: Vec<_> = nodes
            .iter_mut()
            .map(|n| (n.parents.clone(), n.needs_grad, n.back.take()))
            .collect();
        drop(nodes);
        let grads = Recorded { nodes: graph }.backward(output.id, seed)?;
        Ok(Gradients { grads })
    }

    /// The graph for a later backward pass; the tape is left empty.
    pub(crate) fn finish(self) -> Recorded {
        Recorded {
            nodes: self
                .nodes
                .into_inner()
                .into_iter()
                .map(|n| (n.parents, n.needs_grad, n.back))
                .collect(),
        }
    }
}

impl Recorded {
    /// Gradient of every node reached from `out` (seeded with `grad`), indexed by node.
    pub(crate) fn backward(self, out: usize, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let n = self.nodes.len();
        let mut acc: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        if out >= n || !self.nodes[out].1 {
            return Ok(acc);
        }
        acc[out] = Some(grad);
        for i in (0..n).rev() {
            let (parents, needs, back) = &self.nodes[i];
            if !needs {
                continue;
            }
            let Some(back) = back else { continue };
            let Some(g) = acc[i].take() else { continue };
            let wanted: Vec<bool> = parents.iter().map(|&p| self.nodes[p].1).collect();
            let gs = back(&g, &wanted)?;
            for (&p, gp) in parents.iter().zip(gs) {
                if let Some(gp) = gp {
                    match &mut acc[p] {
                        Some(a) => a.add_assign(&gp)?,
                        slot => *slot = Some(gp),
                    }
                }
            }
            // A node with a backward function is not a leaf: its gradient is not reported.
        }
        Ok(acc)
    }
}

// ---------------------------------------------------------------------------------------------
// Shape helpers.

fn mismatch(op: &str, a: &[usize], b: &[usize]) -> Error {
    Error::ShapeMismatch {
        context: op.to_string(),
        left: fmt_dims(a),
        right: fmt_dims(b),
    }
}

/// Largest number of elements a broadcast result may have (checked before allocating).
const MAX_BROADCAST: usize = 1 << 31;

/// NumPy's broadcasting of two shapes.
fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let out = broadcast_dims(op, a, b)?;
    match out.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
        Some(n) if n <= MAX_BROADCAST => Ok(out),
        _ => Err(Error::InvalidConfig(format!(
            "{op}: broadcasting {} with {} gives {}, too many elements",
            fmt_dims(a),
            fmt_dims(b),
            fmt_dims(&out)
        ))),
    }
}

fn broadcast_dims(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let db = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (da, db) {
                _ if da == db => Ok(da),
                (1, d) | (d, 1) => Ok(d),
                _ => Err(mismatch(op, a, b)),
            }
        })
        .collect()
}

/// Per axis of `out`, the stride of the (right-aligned) `shape` that broadcasts to it: 0 on
/// broadcast axes.
fn strides_in(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut s = vec![0; r];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        let ax = i + r - shape.len();
        s[ax] = if shape[i] == 1 && out[ax] != 1 {
            0
        } else {
            stride
        };
        stride *= shape[i];
    }
    s
}

/// Calls `f(i, offset_a, offset_b)` for every row-major index `i` of `out`.
fn walk2(out: &[usize], sa: &[usize], sb: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    let n: usize = out.iter().product();
    let r = out.len();
    let mut idx = vec![0usize; r];
    let (mut oa, mut ob) = (0usize, 0usize);
    for i in 0..n {
        f(i, oa, ob);
        let mut ax = r;
        while ax > 0 {
            ax -= 1;
            idx[ax] += 1;
            oa += sa[ax];
            ob += sb[ax];
            if idx[ax] < out[ax] {
                break;
            }
            oa -= sa[ax] * out[ax];
            ob -= sb[ax] * out[ax];
            idx[ax] = 0;
        }
    }
}

/// Sums `g` (of shape `from`) down to `to`, which broadcasts to `from`.
fn reduce_to(g: &Tensor, to: &[usize]) -> Tensor {
    if g.shape() == to {
        return g.clone();
    }
    let mut out = Tensor::zeros(to);
    let s = strides_in(to, g.shape());
    let zero = vec![0; g.shape().len()];
    let (gd, od) = (g.data(), out.data_mut());
    walk2(g.shape(), &s, &zero, |i, o, _| od[o] += gd[i]);
    out
}

/// `value` broadcast to `to`.
fn broadcast_to(value: &Tensor, to: &[usize]) -> Tensor {
    if value.shape() == to {
        return value.clone();
    }
    let mut out = Tensor::zeros(to);
    let s = strides_in(value.shape(), to);
    let zero = vec![0; to.len()];
    let (vd, od) = (value.data(), out.data_mut());
    walk2(to, &s, &zero, |i, o, _| od[i] = vd[o]);
    out
}

fn check_axis(op: &str, axis: usize, rank: usize) -> Result<()> {
    if axis >= rank {
        return Err(Error::InvalidConfig(format!(
            "{op}: axis {axis} is out of range for a tensor of rank {rank}"
        )));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

impl<'t> Var<'t> {
    /// The value (shared, not copied).
    pub fn value(&self) -> Arc<Tensor> {
        self.tape.nodes.borrow()[self.id].value.clone()
    }
    /// The value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.id].value.shape().to_vec()
    }
    /// Whether a gradient flows to this value in the backward pass.
    pub fn needs_grad(&self) -> bool {
        self.tape.nodes.borrow()[self.id].needs_grad
    }
    /// The tape this value is on (to create constants next to it).
    pub fn tape(&self) -> &'t Tape {
        self.tape
    }
    /// A constant on the same tape.
    pub fn constant(&self, value: Tensor) -> Var<'t> {
        self.tape.constant(value)
    }

    fn binary(&self, other: &Var<'t>, op: Bin) -> Result<Var<'t>> {
        let name = match op {
            Bin::Add => "add",
            Bin::Sub => "sub",
            Bin::Mul => "mul",
            Bin::Div => "div",
        };
        let (a, b) = (self.value(), other.value());
        let out = broadcast_shape(name, a.shape(), b.shape())?;
        let (sa, sb) = (strides_in(a.shape(), &out), strides_in(b.shape(), &out));
        let mut y = Tensor::zeros(&out);
        {
            let (ad, bd, yd) = (a.data(), b.data(), y.data_mut());
            let f: fn(f32, f32) -> f32 = match op {
                Bin::Add => |x, y| x + y,
                Bin::Sub => |x, y| x - y,
                Bin::Mul => |x, y| x * y,
                Bin::Div => |x, y| x / y,
            };
            if a.shape() == b.shape() {
                yd.iter_mut()
                    .zip(ad.iter().zip(bd))
                    .for_each(|(y, (&x, &z))| *y = f(x, z));
            } else {
                walk2(&out, &sa, &sb, |i, oa, ob| yd[i] = f(ad[oa], bd[ob]));
            }
        }
        self.tape.push(y, &[self, other], move || {
            Box::new(move |g: &Tensor, need: &[bool]| {
                let gd = g.data();
                let mut ga = need[0].then(|| Tensor::zeros(a.shape()));
                let mut gb = need[1].then(|| Tensor::zeros(b.shape()));
                let (ad, bd) = (a.data(), b.data());
                match op {
                    Bin::Add | Bin::Sub => {
                        let sign = if matches!(op, Bin::Sub) { -1.0 } else { 1.0 };
                        ga = need[0].then(|| reduce_to(g, a.shape()));
                        gb = need[1].then(|| {
                            let mut t = reduce_to(g, b.shape());
                            t.data_mut().iter_mut().for_each(|v| *v *= sign);
                            t
                        });
                    }
                    Bin::Mul => walk2(g.shape(), &sa, &sb, |i, oa, ob| {
                        if let Some(ga) = ga.as_mut() {
                            ga.data_mut()[oa] += gd[i] * bd[ob];
                        }
                        if let Some(gb) = gb.as_mut() {
                            gb.data_mut()[ob] += gd[i] * ad[oa];
                        }
                    }),
                    Bin::Div => walk2(g.shape(), &sa, &sb, |i, oa, ob| {
                        if let Some(ga) = ga.as_mut() {
                            ga.data_mut()[oa] += gd[i] / bd[ob];
                        }
                        if let Some(gb) = gb.as_mut() {
                            gb.data_mut()[ob] -= gd[i] * ad[oa] / (bd[ob] * bd[ob]);
                        }
                    }),
                }
                Ok(vec![ga, gb])
            })
        })
    }

    /// `self + other`, with NumPy broadcasting.
    pub fn add(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary(other, Bin::Add)
    }
    /// `self - other`, with NumPy broadcasting.
    pub fn sub(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary(other, Bin::Sub)
    }
    /// `self * other` elementwise, with NumPy broadcasting.
    pub fn mul(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary(other, Bin::Mul)
    }
    /// `self / other` elementwise, with NumPy broadcasting.
    pub fn div(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary(other, Bin::Div)
    }

    /// An elementwise function `f` with derivative `df(x, y)` (input and output).
    fn unary(&self, f: impl Fn(f32) -> f32, df: fn(f32, f32, f32) -> f32, c: f32) -> Var<'t> {
        let x = self.value();
        let mut y = (*x).clone();
        y.data_mut().iter_mut().for_each(|v| *v = f(*v));
        let y = Arc::new(y);
        let yk = y.clone();
        let v = self.tape.push_shared(y, &[self], move || {
            Box::new(move |g: &Tensor, _: &[bool]| {
                let mut d = g.clone();
                d.data_mut()
                    .iter_mut()
                    .zip(x.data().iter().zip(yk.data()))
                    .for_each(|(d, (&x, &y))| *d *= df(x, y, c));
                Ok(vec![Some(d)])
            })
        });
        v.expect("one parent on its own tape")
    }

    /// Natural logarithm.
    pub fn log(&self) -> Var<'t> {
        self.unary(f32::ln, |x, _, _| 1.0 / x, 0.0)
    }
    /// Square root.
    pub fn sqrt(&self) -> Var<'t> {
        self.unary(f32::sqrt, |_, y, _| 0.5 / y, 0.0)
    }
    /// `x * x`.
    pub fn square(&self) -> Var<'t> {
        self.unary(|v| v * v, |x, _, _| 2.0 * x, 0.0)
    }
    /// `|x|` (derivative 0 at 0, as TensorFlow's).
    pub fn abs(&self) -> Var<'t> {
        self.unary(
            f32::abs,
            |x, _, _| x.signum() * (x != 0.0) as u8 as f32,
            0.0,
        )
    }
    /// `-x`.
    pub fn neg(&self) -> Var<'t> {
        self.unary(|v| -v, |_, _, _| -1.0, 0.0)
    }
    /// `x * c` for a constant `c`.
    pub fn scale(&self, c: f32) -> Var<'t> {
        self.unary(move |v| v * c, |_, _, c| c, c)
    }
    /// `x + c` for a constant `c`.
    pub fn add_scalar(&self, c: f32) -> Var<'t> {
        self.unary(move |v| v + c, |_, _, _| 1.0, c)
    }

    /// Applies an activation with Keras's definition (softmax over the last axis), using the
    /// same kernels as the `Activation` layer.
    pub fn activation(&self, f: ActivationFn) -> Var<'t> {
        let x = self.value();
        let row = x.shape().last().copied().unwrap_or(1);
        let mut y = (*x).clone();
        f.apply(y.data_mut(), row);
        let y = Arc::new(y);
        let saved = if f.saves_input() { x } else { y.clone() };
        let v = self.tape.push_shared(y, &[self], move || {
            Box::new(move |g: &Tensor, _: &[bool]| {
                let mut d = g.clone();
                f.backward(saved.data(), d.data_mut(), row);
                Ok(vec![Some(d)])
            })
        });
        v.expect("one parent on its own tape")
    }
    pub fn relu(&self) -> Var<'t> {
        self.activation(ActivationFn::Relu)
    }
    pub fn sigmoid(&self) -> Var<'t> {
        self.activation(ActivationFn::Sigmoid)
    }
    pub fn tanh(&self) -> Var<'t> {
        self.activation(ActivationFn::Tanh)
    }
    pub fn exp(&self) -> Var<'t> {
        self.activation(ActivationFn::Exponential)
    }
    /// Softmax over the last axis.
    pub fn softmax(&self) -> Var<'t> {
        self.activation(ActivationFn::Softmax)
    }

    /// Sum over `axes` (kept as size 1 with `keepdims`).
    pub fn sum(&self, axes: &[usize], keepdims: bool) -> Result<Var<'t>> {
        self.reduce(axes, keepdims, false)
    }
    /// Mean over `axes` (kept as size 1 with `keepdims`).
    pub fn mean(&self, axes: &[usize], keepdims: bool) -> Result<Var<'t>> {
        self.reduce(axes, keepdims, true)
    }
    /// Sum of all elements, as a scalar (shape `[]`).
    pub fn sum_all(&self) -> Result<Var<'t>> {
        let axes: Vec<usize> = (0..self.shape().len()).collect();
        self.reduce(&axes, false, false)
    }
    /// Mean of all elements, as a scalar (shape `[]`).
    pub fn mean_all(&self) -> Result<Var<'t>> {
        let axes: Vec<usize> = (0..self.shape().len()).collect();
        self.reduce(&axes, false, true)
    }

    fn reduce(&self, axes: &[usize], keepdims: bool, mean: bool) -> Result<Var<'t>> {
        let x = self.value();
        let shape = x.shape().to_vec();
        for &a in axes {
            check_axis("sum/mean", a, shape.len())?;
        }
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        let kept: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
            .collect();
        let count: usize = axes.iter().map(|&a| shape[a]).product::<usize>().max(1);
        let mut y = reduce_to(&x, &kept);
        if mean {
            let inv = 1.0 / count as f32;
            y.data_mut().iter_mut().for_each(|v| *v *= inv);
        }
        let out: Vec<usize> = if keepdims {
            kept.clone()
        } else {
            shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        };
        let y = y.reshape(&out)?;
        self.tape.push(y, &[self], move || {
            Box::new(move |g: &Tensor, _: &[bool]| {
                let g = g.clone().reshape(&kept)?;
                let mut d = broadcast_to(&g, &shape);
                if mean {
                    let inv = 1.0 / count as f32;
                    d.data_mut().iter_mut().for_each(|v| *v *= inv);
                }
                Ok(vec![Some(d)])
            })
        })
    }

    /// The same values under another shape with as many elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var<'t>> {
        let x = self.value();
        let from = x.shape().to_vec();
        let y = (*x).clone().reshape(shape)?;
        self.tape.push(y, &[self], move || {
            Box::new(move |g: &Tensor, _: &[bool]| Ok(vec![Some(g.clone().reshape(&from)?)]))
        })
    }

    /// Permutes the axes: output axis `i` is input axis `perm[i]` (NumPy's `transpose`).
    pub fn transpose(&self, perm: &[usize]) -> Result<Var<'t>> {
        let x = self.value();
        let r = x.shape().len();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::InvalidConfig(format!(
                "transpose: {perm:?} is not a permutation of the {r} axes of {}",
                fmt_dims(x.shape())
            )));
        }
        let y = permute(&x, perm);
        let mut inv = vec![0; r];
        perm.iter().enumerate().for_each(|(i, &p)| inv[p] = i);
        self.tape.push(y, &[self], move || {
            Box::new(move |g: &Tensor, _: &[bool]| Ok(vec![Some(permute(g, &inv))]))
        })
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis: usize, start: usize, end: usize) -> Result<Var<'t>> {
        let x = self.value();
        let shape = x.shape().to_vec();
        check_axis("slice", axis, shape.len())?;
        if start >= end || end > shape[axis] {
            return Err(Error::InvalidConfig(format!(
                "slice: {start}..{end} is empty or past axis {axis} of {}",
                fmt_dims(&shape)
            )));
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let (full, part) = (shape[axis] * inner, (end - start) * inner);
        let mut data = Vec::with_capacity(outer * part);
        for o in 0..outer {
            let b = o * full + start * inner;
            data.extend_from_slice(&x.data()[b..b + part]);
        }
        let mut out = shape.clone();
        out[axis] = end - start;
        let y = Tensor::from_vec(&out, data)?;
        self.tape.push(y, &[self], move || {
            Box::new(move |g: &Tensor, _: &[bool]| {
                let mut d = Tensor::zeros(&shape);
                for o in 0..outer {
                    let b = o * full + start * inner;
                    d.data_mut()[b..b + part].copy_from_slice(&g.data()[o * part..(o + 1) * part]);
                }
                Ok(vec![Some(d)])
            })
        })
    }

    /// Concatenates `parts` along `axis`; all other axes must agree.
    pub fn concat(parts: &[Var<'t>], axis: usize) -> Result<Var<'t>> {
        let first = parts
            .first()
            .ok_or_else(|| Error::InvalidConfig("concat: nothing to concatenate".into()))?;
        let values: Vec<Arc<Tensor>> = parts.iter().map(Var::value).collect();
        let shape0 = values[0].shape().to_vec();
        check_axis("concat", axis, shape0.len())?;
        for v in &values {
            let s = v.shape();
            let same = s.len() == shape0.len()
                && s.iter()
                    .zip(&shape0)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same {
                return Err(mismatch("concat", &shape0, s));
            }
        }
        let outer: usize = shape0[..axis].iter().product();
        let widths: Vec<usize> = values
            .iter()
            .map(|v| v.shape()[axis..].iter().product())
            .collect();
        let mut out = shape0.clone();
        out[axis] = values.iter().map(|v| v.shape()[axis]).sum();
        let mut data = Vec::with_capacity(out.iter().product());
        for o in 0..outer {
            for (v, &w) in values.iter().zip(&widths) {
                data.extend_from_slice(&v.data()[o * w..(o + 1) * w]);
            }
        }
        let y = Tensor::from_vec(&out, data)?;
        let shapes: Vec<Vec<usize>> = values.iter().map(|v| v.shape().to_vec()).collect();
        let refs: Vec<&Var<'t>> = parts.iter().collect();
        first.tape.push(y, &refs, move || {
            Box::new(move |g: &Tensor, need: &[bool]| {
                let total: usize = widths.iter().sum();
                let mut offset = 0;
                let mut grads = Vec::with_capacity(shapes.len());
                for ((s, &w), &n) in shapes.iter().zip(&widths).zip(need) {
                    grads.push(if n {
                        let mut d = Vec::with_capacity(outer * w);
                        for o in 0..outer {
                            let b = o * total + offset;
                            d.extend_from_slice(&g.data()[b..b + w]);
                        }
                        Some(Tensor::from_vec(s, d)?)
                    } else {
                        None
                    });
                    offset += w;
                }
                Ok(grads)
            })
        })
    }

    /// Matrix product over the last two axes: `self (..., m, k)` times `other (k, n)` (any
    /// leading axes of `self`, as Keras's Dense), or batched when both have the same rank >= 3
    /// and equal leading axes.
    pub fn matmul(&self, other: &Var<'t>) -> Result<Var<'t>> {
        let (a, b) = (self.value(), other.value());
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        let bad = || mismatch("matmul", &sa, &sb);
        if sa.is_empty() || sb.len() < 2 {
            return Err(bad());
        }
        let k = sa[sa.len() - 1];
        let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != kb {
            return Err(bad());
        }
        // Batched: (batch, m, k) x (batch, k, n); else one (rows, k) x (k, n).
        let (batches, m) = if sb.len() == 2 {
            (1, a.len() / k.max(1))
        } else {
            if sa.len() != sb.len() || sa[..sa.len() - 2] != sb[..sb.len() - 2] {
                return Err(bad());
            }
            (sb[..sb.len() - 2].iter().product(), sa[sa.len() - 2])
        };
        if k == 0 {
            return Err(bad());
        }
        let mut out = sa.clone();
        *out.last_mut().expect("rank checked") = n;
        let mut y = Tensor::zeros(&out);
        for bi in 0..batches {
            matmul(
                &a.data()[bi * m * k..(bi + 1) * m * k],
                Transpose::No,
                &b.data()[bi * k * n..(bi + 1) * k * n],
                Transpose::No,
                &mut y.data_mut()[bi * m * n..(bi + 1) * m * n],
                m,
                k,
                n,
                false,
            );
        }
        self.tape.push(y, &[self, other], move || {
            Box::new(move |g: &Tensor, need: &[bool]| {
                let mut da = need[0].then(|| Tensor::zeros(&sa));
                let mut db = need[1].then(|| Tensor::zeros(&sb));
                for bi in 0..batches {
                    let gb = &g.data()[bi * m * n..(bi + 1) * m * n];
                    if let Some(da) = da.as_mut() {
                        matmul(
                            gb,
                            Transpose::No,
                            &b.data()[bi * k * n..(bi + 1) * k * n],
                            Transpose::Yes,
                            &mut da.data_mut()[bi * m * k..(bi + 1) * m * k],
                            m,
                            n,
                            k,
                            false,
                        );
                    }
                    if let Some(db) = db.as_mut() {
                        matmul(
                            &a.data()[bi * m * k..(bi + 1) * m * k],
                            Transpose::Yes,
                            gb,
                            Transpose::No,
                            &mut db.data_mut()[bi * k * n..(bi + 1) * k * n],
                            k,
                            m,
                            n,
                            false,
                        );
                    }
                }
                Ok(vec![da, db])
            })
        })
    }

    /// 2-D convolution of an NHWC input with an HWIO kernel (Keras's layouts and padding).
    pub fn conv2d(
        &self,
        kernel: &Var<'t>,
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var<'t>> {
        let (x, w) = (self.value(), kernel.value());
        let ks = w.shape().to_vec();
        let bad = || mismatch("conv2d (NHWC input, HWIO kernel)", x.shape(), &ks);
        if ks.len() != 4
            || x.shape().len() != 4
            || ks[2] != x.shape()[3]
            || strides.0 == 0
            || strides.1 == 0
        {
            return Err(bad());
        }
        let g = Conv2dGeometry::new(x.shape(), (ks[0], ks[1]), strides, padding).ok_or_else(bad)?;
        let filters = ks[3];
        let y = Tensor::from_vec(
            &[g.n, g.oh, g.ow, filters],
            conv2d_forward(x.data(), &g, w.data(), filters, &[]),
        )?;
        self.tape.push(y, &[self, kernel], move || {
            Box::new(move |dy: &Tensor, need: &[bool]| {
                let mut dk = need[1].then(|| Tensor::zeros(&ks));
                let dx = conv2d_backward(
                    x.data(),
                    &g,
                    w.data(),
                    filters,
                    dy.data(),
                    dk.as_mut().map(|t| t.data_mut()),
                    need[0],
                );
                let dx = dx.map(|d| Tensor::from_vec(x.shape(), d)).transpose()?;
                Ok(vec![dx, dk])
            })
        })
    }

    fn pool_geometry(
        &self,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Conv2dGeometry> {
        let s = self.shape();
        let bad = || {
            Error::InvalidConfig(format!(
                "pooling {pool:?} with strides {strides:?} does not fit an NHWC input of shape {}",
                fmt_dims(&s)
            ))
        };
        if pool.0 == 0 || pool.1 == 0 || strides.0 == 0 || strides.1 == 0 {
            return Err(bad());
        }
        Conv2dGeometry::new(&s, pool, strides, padding).ok_or_else(bad)
    }

    /// Max pooling over NHWC windows (TensorFlow's window placement).
    pub fn max_pool2d(
        &self,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var<'t>> {
        let g = self.pool_geometry(pool, strides, padding)?;
        let x = self.value();
        let (y, arg) = pool::max_pool2d_forward(x.data(), &g, self.needs_grad());
        let y = Tensor::from_vec(&[g.n, g.oh, g.ow, g.c], y)?;
        let shape = x.shape().to_vec();
        self.tape.push(y, &[self], move || {
            Box::new(move |dy: &Tensor, _: &[bool]| {
                let dx = pool::max_pool2d_backward(dy.data(), arg.as_deref().unwrap_or(&[]), &g);
                Ok(vec![Some(Tensor::from_vec(&shape, dx)?)])
            })
        })
    }

    /// Average pooling over NHWC windows; padded positions are not counted (as Keras).
    pub fn avg_pool2d(
        &self,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var<'t>> {
        let g = self.pool_geometry(pool, strides, padding)?;
        let x = self.value();
        let y = Tensor::from_vec(
            &[g.n, g.oh, g.ow, g.c],
            pool::avg_pool2d_forward(x.data(), &g),
        )?;
        let shape = x.shape().to_vec();
        self.tape.push(y, &[self], move || {
            Box::new(move |dy: &Tensor, _: &[bool]| {
                let dx = pool::avg_pool2d_backward(dy.data(), &g);
                Ok(vec![Some(Tensor::from_vec(&shape, dx)?)])
            })
        })
    }
}

/// `x` with its axes permuted (output axis `i` is input axis `perm[i]`).
fn permute(x: &Tensor, perm: &[usize]) -> Tensor {
    let shape = x.shape();
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let s: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let zero = vec![0; out.len()];
    let mut y = Tensor::zeros(&out);
    let (xd, yd) = (x.data(), y.data_mut());
    walk2(&out, &s, &zero, |i, o, _| yd[i] = xd[o]);
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_rules_follow_numpy() {
        assert_eq!(
            broadcast_shape("t", &[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shape("t", &[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shape("t", &[2, 3], &[4]).is_err());
        assert!(broadcast_shape("t", &[1 << 20, 1], &[1, 1 << 20]).is_err());
    }

    #[test]
    fn nothing_is_recorded_when_no_input_needs_a_gradient() {
        let tape = Tape::new(true);
        let a = tape.constant(Tensor::from_slice(&[1.0, 2.0]));
        let b = a.mul(&a).unwrap().exp();
        assert!(!b.needs_grad());
        assert!(tape.nodes.borrow().iter().all(|n| n.back.is_none()));
        // Gradients consume the record; values stay readable; a second call is an error.
        let x = tape.variable(Tensor::from_slice(&[3.0]));
        let y = x.square();
        assert_eq!(tape.gradients(&y).unwrap().of(&x).unwrap().data(), &[6.0]);
        assert_eq!(y.value().data(), &[9.0]);
        assert!(tape.gradients(&y).is_err());
        let off = Tape::new(false);
        let v = off.variable(Tensor::from_slice(&[1.0]));
        assert!(!v.square().needs_grad());
    }
}
