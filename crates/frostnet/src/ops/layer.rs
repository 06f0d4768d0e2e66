//! [`OpsLayer`]: a layer written as a forward pass of ops, and [`Autodiff`], which makes it a
//! [`Layer`] with the backward pass derived from the recorded ops.

use super::{Recorded, Tape, Var};
use crate::error::{Error, Result};
use crate::layers::{ForwardCtx, Layer, LayerBase, Mode, Shape, WeightKind};
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// A layer whose forward pass is written with [ops](super) (Keras's subclassed `Layer` with
/// `build` and `call`): the backward pass is derived. Wrap it in [`Autodiff`] to use it.
///
/// ```
/// use frostnet::layers::{Initializer, LayerBase, Shape, WeightKind};
/// use frostnet::ops::{OpsLayer, Scope, Var};
/// /// `y = x * scale`, one learnable scale per feature.
/// struct Scale;
/// impl OpsLayer for Scale {
///     fn class_name(&self) -> &str { "Scale" }
///     fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> frostnet::Result<Shape> {
///         let features = inputs[0].last().copied().flatten().unwrap_or(1);
///         base.add_weight_init("scale", &[features], Initializer::Ones, WeightKind::Param, true)?;
///         Ok(inputs[0].clone())
///     }
///     fn forward<'t>(&self, x: &[Var<'t>], w: &mut Scope<'t>) -> frostnet::Result<Var<'t>> {
///         x[0].mul(&w.weight("scale")?)
///     }
/// }
/// ```
pub trait OpsLayer: Send + Sync + 'static {
    /// Keras's class name (`"Scale"`), shown in summaries and written to saved configs.
    fn class_name(&self) -> &str;

    /// Creates the weights (with [`LayerBase::add_weight_init`]) on the first call, when
    /// `base.built()` is false, and returns the output shape. [`Autodiff`] marks the layer built
    /// afterwards.
    fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> Result<Shape>;

    /// The forward pass, from ops on the inputs and on the weights that `scope` hands out.
    fn forward<'t>(&self, inputs: &[Var<'t>], scope: &mut Scope<'t>) -> Result<Var<'t>>;

    /// The layer's own config options (Keras's `get_config()` minus `name` and `trainable`, which
    /// [`Autodiff`] adds).
    fn config(&self) -> Value {
        json!({})
    }
}

/// What [`OpsLayer::forward`] sees besides its inputs: the layer's weights as [`Var`]s, the mode,
/// and a place to write new values of `State` weights (running statistics).
pub struct Scope<'t> {
    tape: &'t Tape,
    names: Vec<String>,
    kinds: Vec<WeightKind>,
    vars: Vec<Var<'t>>,
    mode: Mode,
    layer_trainable: bool,
    updates: Vec<(usize, Tensor)>,
}

impl<'t> Scope<'t> {
    /// The weight called `name` (a gradient flows to it only if it is trainable now).
    pub fn weight(&self, name: &str) -> Result<Var<'t>> {
        self.index(name).map(|i| self.vars[i])
    }
    fn index(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::InvalidConfig(format!("the layer has no weight named '{name}'")))
    }
    /// Training or inference.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Whether the layer itself is trainable (not frozen).
    pub fn layer_trainable(&self) -> bool {
        self.layer_trainable
    }
    /// BatchNormalization's rule for running statistics: update them only in a training pass of
    /// a trainable layer, so a frozen layer is a pure function of its input.
    pub fn updates_state(&self) -> bool {
        self.mode == Mode::Train && self.layer_trainable
    }
    /// A constant on this pass's tape.
    pub fn constant(&self, value: Tensor) -> Var<'t> {
        self.tape.constant(value)
    }
    /// Sets the `State` weight `name` to `value` once the forward pass has succeeded (a running
    /// statistic). `Param` weights change only through the optimizer, so assigning one is an
    /// error, as is a value of another shape.
    pub fn assign(&mut self, name: &str, value: Tensor) -> Result<()> {
        let i = self.index(name)?;
        if self.kinds[i] != WeightKind::State {
            return Err(Error::InvalidConfig(format!(
                "weight '{name}' is a Param: only State weights are assigned in forward"
            )));
        }
        let want = self.vars[i].shape();
        if value.shape() != want.as_slice() {
            return Err(Error::WeightShape {
                weight: name.to_string(),
                expected: crate::error::fmt_dims(&want),
                got: crate::error::fmt_dims(value.shape()),
            });
        }
        self.updates.push((i, value));
        Ok(())
    }
}

/// What a forward pass kept for the derived backward pass.
struct Kept {
    graph: Recorded,
    out: usize,
    /// Per input: its node and shape, and whether the forward pass was told it needs a gradient.
    inputs: Vec<(usize, Vec<usize>, bool)>,
    /// Per weight: its node, if the weight was trainable during the forward pass.
    weights: Vec<Option<usize>>,
}

/// Makes an [`OpsLayer`] a [`Layer`]: `forward` runs the ops and, when a backward pass will
/// follow, records them; `backward` replays the record in reverse.
///
/// The record holds only what the backward pass needs: an op is recorded only if one of its
/// inputs needs a gradient. A weight needs one only if it is trainable now, an input only if the
/// executor says something upstream trains (`ForwardCtx::input_needs_grad`). So frozen weights
/// get no gradient computed, and a frozen layer with nothing trainable upstream records nothing
/// (the executor does not even ask it to keep anything).
pub struct Autodiff<L: OpsLayer> {
    base: LayerBase,
    inner: L,
    kept: Option<Kept>,
}

impl<L: OpsLayer> Autodiff<L> {
    /// Wraps `inner`, with the next default name for its class (`scale`, `scale_1`, ...).
    pub fn new(inner: L) -> Autodiff<L> {
        Autodiff {
            base: LayerBase::new(inner.class_name()),
            inner,
            kept: None,
        }
    }
    /// The wrapped layer.
    pub fn inner(&self) -> &L {
        &self.inner
    }
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }
}

impl<L: OpsLayer> Layer for Autodiff<L> {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        self.inner.class_name()
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let out = self.inner.build(&mut self.base, inputs)?;
        self.base.set_built(true);
        Ok(out)
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.kept = None;
        let tape = Tape::new(ctx.keep);
        let xs: Vec<Var> = inputs
            .iter()
            .enumerate()
            .map(|(k, x)| {
                let needs = ctx.input_needs_grad.get(k).copied().unwrap_or(true);
                tape.leaf((*x).clone(), needs)
            })
            .collect();
        let ws = self.base.weights();
        let mut scope = Scope {
            tape: &tape,
            names: ws.iter().map(|w| w.name().to_string()).collect(),
            kinds: ws.iter().map(|w| w.kind()).collect(),
            vars: ws
                .iter()
                .map(|w| tape.leaf(w.value().clone(), w.is_trainable()))
                .collect(),
            mode: ctx.mode,
            layer_trainable: self.base.trainable(),
            updates: Vec::new(),
        };
        let y = self.inner.forward(&xs, &mut scope)?;
        if !std::ptr::eq(y.tape(), &tape) {
            return Err(Error::State(format!(
                "layer '{}': forward returned a value from another tape",
                self.base.name()
            )));
        }
        let out = y.id;
        let value = (*y.value()).clone();
        let inputs_kept: Vec<(usize, Vec<usize>, bool)> = xs
            .iter()
            .map(|x| (x.id, x.shape(), x.needs_grad()))
            .collect();
        let weight_nodes: Vec<Option<usize>> = scope
            .vars
            .iter()
            .map(|v| v.needs_grad().then_some(v.id))
            .collect();
        let updates = std::mem::take(&mut scope.updates);
        drop(scope);
        drop(xs);
        for (i, v) in updates {
            self.base.weights_mut()[i].assign(v)?;
        }
        if ctx.keep {
            self.kept = Some(Kept {
                graph: tape.finish(),
                out,
                inputs: inputs_kept,
                weights: weight_nodes,
            });
        }
        Ok(value)
    }

    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let kept = crate::layers::take_cache(&mut self.kept, self.base.name())?;
        let mut grads = kept.graph.backward(kept.out, grad.clone())?;
        for (i, node) in kept.weights.iter().enumerate() {
            let Some(node) = *node else { continue };
            if !self.base.wants_grad(i) {
                continue;
            }
            let g = grads[node]
                .take()
                .unwrap_or_else(|| Tensor::zeros(self.base.weights()[i].shape()));
            self.base.set_grad(i, g);
        }
        let mut out = Vec::with_capacity(kept.inputs.len());
        for (k, (node, shape, recorded)) in kept.inputs.into_iter().enumerate() {
            if !need_dx.get(k).copied().unwrap_or(false) {
                out.push(None);
                continue;
            }
            if !recorded {
                return Err(Error::State(format!(
                    "layer '{}': backward asks for the gradient of input {k}, which the forward \
                     pass was told needs none",
                    self.base.name()
                )));
            }
            out.push(Some(
                grads[node].take().unwrap_or_else(|| Tensor::zeros(&shape)),
            ));
        }
        Ok(out)
    }

    fn config(&self) -> Value {
        let mut c = json!({"name": self.base.name(), "trainable": self.base.trainable()});
        if let (Some(o), Value::Object(extra)) = (c.as_object_mut(), self.inner.config()) {
            o.extend(extra);
        }
        c
    }

    fn clear_cache(&mut self) {
        self.kept = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Initializer, LayerOptions};

    /// `tanh(x @ kernel)`.
    struct Proj;
    impl OpsLayer for Proj {
        fn class_name(&self) -> &str {
            "Proj"
        }
        fn build(&mut self, base: &mut LayerBase, inputs: &[Shape]) -> Result<Shape> {
            let init = Initializer::GlorotUniform { seed: Some(2) };
            base.add_weight_init("kernel", &[3, 2], init, WeightKind::Param, true)?;
            let mut s = inputs[0].clone();
            *s.last_mut().expect("rank 1") = Some(2);
            Ok(s)
        }
        fn forward<'t>(&self, x: &[Var<'t>], w: &mut Scope<'t>) -> Result<Var<'t>> {
            Ok(x[0].matmul(&w.weight("kernel")?)?.tanh())
        }
    }

    fn ctx(keep: bool, input_needs_grad: bool) -> ForwardCtx {
        ForwardCtx {
            mode: Mode::Train,
            keep,
            input_needs_grad: vec![input_needs_grad],
            rng: crate::tensor::random::rng(Some(0)),
        }
    }

    fn recorded_ops(l: &Autodiff<Proj>) -> usize {
        let kept = l.kept.as_ref().expect("kept");
        kept.graph.nodes.iter().filter(|n| n.2.is_some()).count()
    }

    #[test]
    fn frozen_weights_and_inputs_without_gradient_record_nothing() {
        let x = Tensor::full(&[4, 3], 0.5);
        let mut l = Autodiff::new(Proj).trainable(false);
        l.build(&[vec![Some(3)]]).unwrap();
        // Frozen weight, input needs no gradient: nothing recorded, backward computes nothing.
        l.forward(&[&x], &mut ctx(true, false)).unwrap();
        assert_eq!(recorded_ops(&l), 0);
        let dx = l.backward(&Tensor::full(&[4, 2], 1.0), &[false]).unwrap();
        assert!(dx[0].is_none() && l.weights()[0].grad().is_none());
        // Frozen weight, input needs a gradient: dX only, no dW.
        l.forward(&[&x], &mut ctx(true, true)).unwrap();
        assert_eq!(recorded_ops(&l), 2);
        let dx = l.backward(&Tensor::full(&[4, 2], 1.0), &[true]).unwrap();
        assert!(dx[0].is_some() && l.weights()[0].grad().is_none());
        // Asking for a gradient the forward pass was told nobody needs is an error, not zeros.
        l.forward(&[&x], &mut ctx(true, false)).unwrap();
        assert!(l.backward(&Tensor::full(&[4, 2], 1.0), &[true]).is_err());
        // No backward to follow: nothing kept at all.
        l.set_trainable(true);
        l.forward(&[&x], &mut ctx(false, true)).unwrap();
        assert!(l.kept.is_none());
        assert!(l.backward(&Tensor::full(&[4, 2], 1.0), &[true]).is_err());
    }
}
