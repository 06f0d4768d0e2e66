//! A Keras op applied to a symbolic tensor and a constant, as `keras.applications.MobileNetV3`'s
//! `hard_sigmoid` writes it: `layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`. In Keras 3 `x + 3.0` on a
//! symbolic tensor is the operation `keras.ops.add` (class `Add`, named `add`, `add_1`, ...), a
//! graph node that `summary()` prints with one input but that is not in `model.layers`. frostnet
//! builds the same node as this layer so the graph, the names and the printed table are Keras's.
//!
//! It is not in the [registry](super::registry): the registry reads layers by Keras class name,
//! and `Add` / `Multiply` there are the merge layers (Keras tells the two apart by module,
//! `keras.src.ops.numpy` against `keras.layers`).

use super::{expect_inputs, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde_json::json;

/// Which op: `x + c` or `x * c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarOpKind {
    Add,
    Multiply,
}

/// `y = x + c` (class `Add`) or `y = x * c` (class `Multiply`), with `c` a float32 constant.
pub struct ScalarOp {
    base: LayerBase,
    kind: ScalarOpKind,
    value: f32,
    /// Set by a forward pass that keeps for backward (backward needs nothing else).
    cache: Option<()>,
}

impl ScalarOp {
    /// `x + value`, named `add`, `add_1`, ... as Keras names the op.
    pub fn add(value: f32) -> ScalarOp {
        ScalarOp::new(ScalarOpKind::Add, value)
    }
    /// `x * value`, named `multiply`, `multiply_1`, ...
    pub fn multiply(value: f32) -> ScalarOp {
        ScalarOp::new(ScalarOpKind::Multiply, value)
    }
    fn new(kind: ScalarOpKind, value: f32) -> ScalarOp {
        let class = match kind {
            ScalarOpKind::Add => "Add",
            ScalarOpKind::Multiply => "Multiply",
        };
        ScalarOp {
            base: LayerBase::new(class),
            kind,
            value,
            cache: None,
        }
    }
}

impl Layer for ScalarOp {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        match self.kind {
            ScalarOpKind::Add => "Add",
            ScalarOpKind::Multiply => "Multiply",
        }
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mut y = inputs[0].clone();
        let c = self.value;
        match self.kind {
            ScalarOpKind::Add => y.data_mut().iter_mut().for_each(|v| *v += c),
            ScalarOpKind::Multiply => y.data_mut().iter_mut().for_each(|v| *v *= c),
        }
        self.cache = ctx.keep.then_some(());
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        super::take_cache(&mut self.cache, &self.base.name)?;
        let mut dx = grad.clone();
        if self.kind == ScalarOpKind::Multiply {
            let c = self.value;
            dx.data_mut().iter_mut().for_each(|v| *v *= c);
        }
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> serde_json::Value {
        json!({ "name": self.base.name })
    }
    /// Written as Keras writes the op node, so the file loads in Keras and comes back in frostnet
    /// as an [op node](super::op_nodes) with the same constant.
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        match self.kind {
            ScalarOpKind::Add => Some((super::op_nodes::NUMPY_MODULE, "Add")),
            ScalarOpKind::Multiply => Some((super::op_nodes::NUMPY_MODULE, "Multiply")),
        }
    }
    fn op_call_args(&self, tensors: Vec<serde_json::Value>) -> Option<serde_json::Value> {
        let x = tensors
            .into_iter()
            .next()
            .unwrap_or(serde_json::Value::Null);
        Some(json!([x, self.value as f64]))
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Mode;
    use crate::testing::gradient_check;

    #[test]
    fn adds_or_multiplies_a_constant_with_gradients() {
        let x = Tensor::from_vec(&[2, 3], vec![-1.0, 0.0, 2.0, 3.0, -4.0, 0.5]).unwrap();
        for (mut op, want) in [
            (ScalarOp::add(3.0), [2.0, 3.0, 5.0, 6.0, -1.0, 3.5]),
            (ScalarOp::multiply(0.5), [-0.5, 0.0, 1.0, 1.5, -2.0, 0.25]),
        ] {
            op.build(&[vec![Some(3)]]).unwrap();
            let y = op.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
            assert_eq!(y.data(), want.as_slice());
            let r = gradient_check(&mut op, std::slice::from_ref(&x), Mode::Train, 1e-2).unwrap();
            assert!(r.checked > 0 && r.max_rel_error < 1e-3, "{r:?}");
        }
    }
}
