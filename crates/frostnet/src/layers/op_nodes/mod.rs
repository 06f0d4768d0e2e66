//! Keras 3 op nodes: calls of `keras.ops` functions and tensor operators on symbolic tensors
//! (`x + 3.0`, `3.0 - x`, `x / 2`, `x * y`, `keras.ops.mean(x, axis)`), which a Keras 3 functional
//! graph records as nodes of module `keras.src.ops.numpy` with classes such as `Add` or `Mean`.
//! `keras.applications.MobileNetV3` writes its hard sigmoid as `ReLU(6)(x + 3.0) * (1 / 6)` and
//! ConvNeXt its residuals as `inputs + x`, so a Keras-saved file of either holds such nodes.
//!
//! Such a node is not a layer in Keras (it has no weights and is not in `model.layers`), but
//! `summary()` prints it as one, and its constant operands are not in its config: they sit in the
//! node's call (`inbound_nodes[0].args`, e.g. `[<keras tensor>, 3.0]`). frostnet builds each node
//! as a layer: the binary arithmetic kinds share [`BinaryOp`] (each kind's file holds its class
//! name and derivatives), reductions have their own layer ([`mean::Mean`]). They are found in the
//! registry's op table (the class names `Add` / `Multiply` are also merge layers of
//! `keras.layers`; Keras tells the two apart by module) and write themselves back as Keras does,
//! so a file frostnet saves loads in Keras.

pub mod absolute;
pub mod add;
pub mod divide;
pub mod exp;
pub mod maximum;
pub mod mean;
pub mod minimum;
pub mod multiply;
pub mod negative;
pub mod power;
pub mod sqrt;
pub mod square;
pub mod subtract;
pub mod sum;
pub mod true_divide;

use super::{take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// The module Keras writes for the `keras.ops.numpy` operations.
pub(crate) const NUMPY_MODULE: &str = "keras.src.ops.numpy";

/// One elementwise binary op kind (`Add`, `Subtract`, ...): its Keras class name, its value and
/// its partial derivatives with respect to each operand at `(a, b)`.
pub struct BinaryKind {
    pub(crate) class_name: &'static str,
    pub(crate) f: fn(f32, f32) -> f32,
    pub(crate) da: fn(f32, f32) -> f32,
    pub(crate) db: fn(f32, f32) -> f32,
    /// Whether the derivatives depend on the operands' values (kept by forward for backward).
    pub(crate) needs_values: bool,
}

/// One operand of a binary op node: the next tensor input, or a constant Keras stored in the
/// call (`3.0`, or `2` for `x / 2`; the JSON value is kept so it is written back unchanged).
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Input,
    Const { value: f32, json: Value },
}

impl Operand {
    /// A float constant, written as a JSON float.
    pub fn constant(value: f64) -> Operand {
        Operand::Const {
            value: value as f32,
            json: json!(value),
        }
    }
}

/// `y = f(a, b)` with numpy broadcasting, where each of `a`, `b` is an input tensor or a constant.
pub struct BinaryOp {
    base: LayerBase,
    kind: &'static BinaryKind,
    operands: [Operand; 2],
    /// Per input (in call order): its dims, and its values when the derivatives need them.
    cache: Option<Vec<(Vec<usize>, Option<Tensor>)>>,
}

impl BinaryOp {
    /// An op node of `kind` on two operands (at least one [`Operand::Input`]), named as Keras
    /// names the op (`add`, `add_1`, ...).
    pub fn new(kind: &'static BinaryKind, a: Operand, b: Operand) -> BinaryOp {
        BinaryOp {
            base: LayerBase::new(kind.class_name),
            kind,
            operands: [a, b],
            cache: None,
        }
    }
    fn n_inputs(&self) -> usize {
        self.operands
            .iter()
            .filter(|o| **o == Operand::Input)
            .count()
    }
    fn mismatch(&self, a: String, b: String) -> Error {
        Error::ShapeMismatch {
            context: format!(
                "op node '{}' ({}): operands do not broadcast",
                self.base.name, self.kind.class_name
            ),
            left: a,
            right: b,
        }
    }
}

/// numpy's broadcast of two full shapes (batch axis included), aligned to the right; `None` is an
/// unknown size. `Err(())` when two known sizes differ and neither is 1.
fn broadcast_shape(a: &[Option<usize>], b: &[Option<usize>]) -> std::result::Result<Shape, ()> {
    let r = a.len().max(b.len());
    let at = |s: &[Option<usize>], i: usize| {
        let lead = r - s.len();
        if i < lead {
            Some(1)
        } else {
            s[i - lead]
        }
    };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (Some(1), d) | (d, Some(1)) => Ok(d),
            (Some(x), Some(y)) if x == y => Ok(Some(x)),
            (Some(_), Some(_)) => Err(()),
            _ => Ok(None),
        })
        .collect()
}

/// Row-major strides of `dims` aligned to the right of `out` (numpy), 0 along the axes where
/// `dims` is broadcast.
fn strides_in(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let mut aligned = vec![1usize; out.len() - dims.len()];
    aligned.extend_from_slice(dims);
    crate::tensor::broadcast::strides(&aligned, out)
}

/// Calls `f(output index, offset in a, offset in b)` for every element of `out`, in order.
pub(crate) fn visit(
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    crate::tensor::broadcast::visit(out, &[sa.to_vec(), sb.to_vec()], |o, offs| {
        f(o, offs[0], offs[1])
    });
}

impl Layer for BinaryOp {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        self.kind.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        if inputs.len() != self.n_inputs() || inputs.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "op node '{}' ({}) expects {} tensor input(s), got {}",
                self.base.name,
                self.kind.class_name,
                self.n_inputs(),
                inputs.len()
            )));
        }
        // Tensors carry the batch axis; constants are scalars.
        let mut ins = inputs.iter();
        let full: Vec<Shape> = self
            .operands
            .iter()
            .map(|o| match o {
                Operand::Input => {
                    let s = ins.next().expect("counted");
                    std::iter::once(None).chain(s.iter().copied()).collect()
                }
                Operand::Const { .. } => Vec::new(),
            })
            .collect();
        if full[0].len() != full[1].len() && !full[0].is_empty() && !full[1].is_empty() {
            return Err(Error::InvalidConfig(format!(
                "op node '{}' ({}): operands of ranks {} and {} would broadcast the batch axis \
                 against a sample axis, which frostnet does not do",
                self.base.name,
                self.kind.class_name,
                full[0].len(),
                full[1].len()
            )));
        }
        let out = broadcast_shape(&full[0], &full[1]).map_err(|()| {
            self.mismatch(
                crate::error::fmt_batch_shape(&full[0][1.min(full[0].len())..].to_vec()),
                crate::error::fmt_batch_shape(&full[1][1.min(full[1].len())..].to_vec()),
            )
        })?;
        self.base.built = true;
        Ok(out[1..].to_vec())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        if inputs.len() != self.n_inputs() {
            return Err(Error::InvalidConfig(format!(
                "op node '{}' ({}) called on {} tensors, expects {}",
                self.base.name,
                self.kind.class_name,
                inputs.len(),
                self.n_inputs()
            )));
        }
        let consts: Vec<[f32; 1]> = self
            .operands
            .iter()
            .map(|o| match o {
                Operand::Const { value, .. } => [*value],
                Operand::Input => [0.0],
            })
            .collect();
        let mut ins = inputs.iter();
        let ops: Vec<(&[usize], &[f32])> = self
            .operands
            .iter()
            .zip(&consts)
            .map(|(o, c)| match o {
                Operand::Input => {
                    let t = ins.next().expect("counted");
                    (t.shape(), t.data())
                }
                Operand::Const { .. } => (&[][..], &c[..]),
            })
            .collect();
        let (da, db) = (ops[0].0, ops[1].0);
        let full = |d: &[usize]| d.iter().map(|&v| Some(v)).collect::<Vec<_>>();
        let out: Vec<usize> = broadcast_shape(&full(da), &full(db))
            .map_err(|()| self.mismatch(crate::error::fmt_dims(da), crate::error::fmt_dims(db)))?
            .into_iter()
            .map(|d| d.unwrap_or(0))
            .collect();
        let (sa, sb) = (strides_in(da, &out), strides_in(db, &out));
        let (a, b) = (ops[0].1, ops[1].1);
        let f = self.kind.f;
        let mut y = vec![0.0f32; out.iter().product()];
        visit(&out, &sa, &sb, |o, i, j| y[o] = f(a[i], b[j]));
        self.cache = ctx.keep.then(|| {
            inputs
                .iter()
                .map(|t| {
                    let v = self.kind.needs_values.then(|| (*t).clone());
                    (t.shape().to_vec(), v)
                })
                .collect()
        });
        Tensor::from_vec(&out, y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let kept = take_cache(&mut self.cache, &self.base.name)?;
        // Each operand's dims and values (empty when not kept: the derivative ignores them).
        let mut kept_iter = kept.iter();
        let mut which = Vec::new();
        let ops: Vec<(Vec<usize>, Vec<f32>)> = self
            .operands
            .iter()
            .enumerate()
            .map(|(k, o)| match o {
                Operand::Const { value, .. } => (Vec::new(), vec![*value]),
                Operand::Input => {
                    which.push(k);
                    let (dims, v) = kept_iter.next().expect("counted");
                    let n: usize = dims.iter().product();
                    let data = v
                        .as_ref()
                        .map_or_else(|| vec![0.0; n], |t| t.data().to_vec());
                    (dims.clone(), data)
                }
            })
            .collect();
        let out = grad.shape().to_vec();
        let (sa, sb) = (strides_in(&ops[0].0, &out), strides_in(&ops[1].0, &out));
        let (a, b) = (&ops[0].1, &ops[1].1);
        let g = grad.data();
        let mut res = Vec::with_capacity(which.len());
        for (i, &k) in which.iter().enumerate() {
            if !need_dx.get(i).copied().unwrap_or(false) {
                res.push(None);
                continue;
            }
            let mut dx = vec![0.0f32; ops[k].1.len()];
            if k == 0 {
                let d = self.kind.da;
                visit(&out, &sa, &sb, |o, i, j| dx[i] += g[o] * d(a[i], b[j]));
            } else {
                let d = self.kind.db;
                visit(&out, &sa, &sb, |o, i, j| dx[j] += g[o] * d(a[i], b[j]));
            }
            res.push(Some(Tensor::from_vec(&ops[k].0, dx)?));
        }
        Ok(res)
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        Some((NUMPY_MODULE, self.kind.class_name))
    }
    fn op_call_args(&self, tensors: Vec<Value>) -> Option<Value> {
        let mut t = tensors.into_iter();
        let args: Vec<Value> = self
            .operands
            .iter()
            .map(|o| match o {
                Operand::Input => t.next().unwrap_or(Value::Null),
                Operand::Const { json, .. } => json.clone(),
            })
            .collect();
        Some(Value::Array(args))
    }
    fn kept_for_backward(&self, inputs: &[u64], _output: u64) -> u64 {
        if self.kind.needs_values {
            inputs.iter().sum::<u64>() * 4
        } else {
            0
        }
    }
}

/// One elementwise unary op kind (`Negative`, `Exp`, ...): its Keras class name, its value, and
/// its derivative given the input and the output.
pub struct UnaryKind {
    pub(crate) class_name: &'static str,
    pub(crate) f: fn(f32) -> f32,
    pub(crate) df: fn(f32, f32) -> f32,
}

/// `y = f(x)` elementwise.
pub struct UnaryOp {
    base: LayerBase,
    kind: &'static UnaryKind,
    /// The input and output of the kept forward pass.
    cache: Option<(Tensor, Tensor)>,
}

impl UnaryOp {
    /// An op node of `kind`, named as Keras names the op (`negative`, `exp_1`, ...).
    pub fn new(kind: &'static UnaryKind) -> UnaryOp {
        UnaryOp {
            base: LayerBase::new(kind.class_name),
            kind,
            cache: None,
        }
    }
}

impl Layer for UnaryOp {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        self.kind.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &super::expect_inputs(&self.base.name, inputs, 1)?[0];
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs.first().ok_or_else(|| {
            Error::State(format!("op node '{}' called on no tensor", self.base.name))
        })?;
        let f = self.kind.f;
        let y = Tensor::from_vec(x.shape(), x.data().iter().map(|&v| f(v)).collect())?;
        self.cache = ctx.keep.then(|| ((*x).clone(), y.clone()));
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = take_cache(&mut self.cache, &self.base.name)?;
        if !need_dx.first().copied().unwrap_or(false) {
            return Ok(vec![None]);
        }
        let df = self.kind.df;
        let dx = grad
            .data()
            .iter()
            .zip(x.data().iter().zip(y.data()))
            .map(|(g, (&a, &b))| g * df(a, b))
            .collect();
        Ok(vec![Some(Tensor::from_vec(x.shape(), dx)?)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        Some((NUMPY_MODULE, self.kind.class_name))
    }
    fn op_call_args(&self, tensors: Vec<Value>) -> Option<Value> {
        Some(Value::Array(tensors))
    }
}

/// Reads a unary op node: its call must be one keras tensor and nothing else.
pub(crate) fn unary_from_config(kind: &'static UnaryKind, o: &Opts) -> Result<Box<dyn Layer>> {
    let (args, kwargs) = call_args(o)?;
    if let Some(k) = kwargs.and_then(|k| k.keys().next()) {
        return Err(o.err(format!("keyword argument '{k}' of the op is not supported")));
    }
    match args {
        [x] if is_keras_tensor(x) => Ok(Box::new(UnaryOp::new(kind))),
        _ => Err(o.err(format!(
            "op takes one tensor, the call has {}",
            Value::Array(args.to_vec())
        ))),
    }
}

/// The positional arguments of an op node's call as Keras saved them
/// (`inbound_nodes[0].args`), with its keyword arguments.
/// An op node call's positional `args` and its `kwargs`, if any.
type CallArgs<'a> = (&'a [Value], Option<&'a serde_json::Map<String, Value>>);

fn call_args<'a>(o: &'a Opts) -> Result<CallArgs<'a>> {
    let call = o
        .call
        .and_then(Value::as_object)
        .ok_or_else(|| o.err("op node has no call (inbound_nodes[0] with args)"))?;
    let args = call
        .get("args")
        .and_then(Value::as_array)
        .ok_or_else(|| o.err("op node's call has no args list"))?;
    Ok((args, call.get("kwargs").and_then(Value::as_object)))
}

fn is_keras_tensor(v: &Value) -> bool {
    v.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__")
}

/// Reads a binary op node of `kind`: its two operands from the call's args, each a keras tensor
/// or a number. Anything else (a string, a list constant, a keyword argument) is refused by name.
pub(crate) fn binary_from_config(kind: &'static BinaryKind, o: &Opts) -> Result<Box<dyn Layer>> {
    let (args, kwargs) = call_args(o)?;
    if let Some(k) = kwargs.and_then(|k| k.keys().next()) {
        return Err(o.err(format!("keyword argument '{k}' of the op is not supported")));
    }
    if args.len() != 2 {
        return Err(o.err(format!("op takes 2 operands, the call has {}", args.len())));
    }
    let mut ops = Vec::with_capacity(2);
    for a in args {
        ops.push(if is_keras_tensor(a) {
            Operand::Input
        } else if let Some(v) = a.as_f64().filter(|v| v.is_finite()) {
            Operand::Const {
                value: v as f32,
                json: a.clone(),
            }
        } else {
            return Err(o.err(format!(
                "operand {a} is neither a tensor nor a number; frostnet loads scalar constants only"
            )));
        });
    }
    if !ops.contains(&Operand::Input) {
        return Err(o.err("op has no tensor operand"));
    }
    let b = ops.pop().expect("two");
    let a = ops.pop().expect("two");
    Ok(Box::new(BinaryOp::new(kind, a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Mode;
    use crate::testing::gradient_check;

    fn values(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|i| 0.5 + ((i as f32 + 1.0) * 0.618_034 + seed).fract())
            .collect();
        Tensor::from_vec(shape, data).unwrap()
    }

    #[test]
    fn every_kind_broadcasts_tensors_and_constants_with_gradients() {
        let kinds = [
            &add::ADD_KIND,
            &subtract::SUBTRACT_KIND,
            &multiply::MULTIPLY_KIND,
            &divide::DIVIDE_KIND,
            &true_divide::TRUE_DIVIDE_KIND,
            &maximum::MAXIMUM_KIND,
            &minimum::MINIMUM_KIND,
            &power::POWER_KIND,
        ];
        for kind in kinds {
            // x (2, 3, 4) with y (2, 1, 4), both orders, and constants on either side.
            let x = values(&[2, 3, 4], 0.1);
            let y = values(&[2, 1, 4], 0.7);
            let cases: Vec<(Operand, Operand, Vec<Tensor>)> = vec![
                (Operand::Input, Operand::Input, vec![x.clone(), y.clone()]),
                (Operand::Input, Operand::Input, vec![y.clone(), x.clone()]),
                (Operand::Input, Operand::constant(3.0), vec![x.clone()]),
                (Operand::constant(3.0), Operand::Input, vec![x.clone()]),
            ];
            for (a, b, ins) in cases {
                let mut op = BinaryOp::new(kind, a.clone(), b.clone());
                let shapes: Vec<Shape> = ins
                    .iter()
                    .map(|t| t.shape()[1..].iter().map(|&d| Some(d)).collect())
                    .collect();
                let out = op.build(&shapes).unwrap();
                assert_eq!(out, vec![Some(3), Some(4)]);
                let refs: Vec<&Tensor> = ins.iter().collect();
                let got = op.forward(&refs, &mut ForwardCtx::infer()).unwrap();
                assert_eq!(got.shape(), &[2, 3, 4]);
                // Against the definition, element by element.
                for n in 0..2 {
                    for i in 0..3 {
                        for j in 0..4 {
                            // Element (n, i, j) of a (2, 3, 4) or broadcast (2, 1, 4) input.
                            let at = |t: &Tensor| {
                                let s = t.shape();
                                let ii = if s[1] == 1 { 0 } else { i };
                                t.data()[(n * s[1] + ii) * 4 + j]
                            };
                            let mut ins_it = ins.iter();
                            let mut val = |o: &Operand| match o {
                                Operand::Input => at(ins_it.next().unwrap()),
                                Operand::Const { value, .. } => *value,
                            };
                            let (va, vb) = (val(&a), val(&b));
                            let want = (kind.f)(va, vb);
                            assert_eq!(
                                got.data()[(n * 3 + i) * 4 + j],
                                want,
                                "{}",
                                kind.class_name
                            );
                        }
                    }
                }
                let r = gradient_check(&mut op, &ins, Mode::Train, 1e-2).unwrap();
                assert!(
                    r.checked > 0 && r.max_rel_error < 2e-3,
                    "{} {r:?}",
                    kind.class_name
                );
            }
        }
    }

    #[test]
    fn every_unary_kind_matches_its_definition_with_gradients() {
        let x = values(&[2, 3, 2], 0.2);
        type Case = (&'static UnaryKind, fn(f32) -> f32);
        let want: [Case; 5] = [
            (&negative::NEGATIVE_KIND, |v| -v),
            (&absolute::ABSOLUTE_KIND, |v| v.abs()),
            (&square::SQUARE_KIND, |v| v * v),
            (&sqrt::SQRT_KIND, |v| v.sqrt()),
            (&exp::EXP_KIND, |v| v.exp()),
        ];
        for (kind, f) in want {
            // Negated inputs too, except for the square root.
            let sign = if kind.class_name == "Sqrt" { 1.0 } else { -1.0 };
            let flipped = x.data().iter().map(|&v| sign * v).collect();
            for x in [x.clone(), Tensor::from_vec(x.shape(), flipped).unwrap()] {
                let mut op = UnaryOp::new(kind);
                op.build(&[vec![Some(3), Some(2)]]).unwrap();
                let y = op.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
                let expect: Vec<f32> = x.data().iter().map(|&v| f(v)).collect();
                assert_eq!(y.data(), expect.as_slice(), "{}", kind.class_name);
                let r =
                    gradient_check(&mut op, std::slice::from_ref(&x), Mode::Train, 1e-2).unwrap();
                assert!(
                    r.checked > 0 && r.max_rel_error < 2e-3,
                    "{} {r:?}",
                    kind.class_name
                );
            }
        }
    }

    #[test]
    fn shapes_that_do_not_broadcast_are_typed_errors() {
        let mut op = BinaryOp::new(&add::ADD_KIND, Operand::Input, Operand::Input);
        let e = op
            .build(&[vec![Some(3), Some(4)], vec![Some(2), Some(4)]])
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let e = op
            .build(&[vec![Some(3), Some(4)], vec![Some(4)]])
            .unwrap_err();
        assert!(e.to_string().contains("batch axis"), "{e}");
    }
}
