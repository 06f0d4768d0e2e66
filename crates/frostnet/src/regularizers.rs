//! Regularizers, as in Keras (`keras/regularizers`): penalties on a layer's weights
//! (`kernel_regularizer`, `bias_regularizer`, `depthwise_regularizer`, `pointwise_regularizer`, ...)
//! or on its output (`activity_regularizer`), added to the loss that training minimises and logs.
//!
//! Keras 3's rules, which frostnet follows exactly (checked against Keras 3.15.1 by
//! `tools/make_regularizers_reference.py`):
//! - The training loss is the compiled loss plus `sum(model.losses)`: the penalty of every weight in
//!   `model.trainable_weights` that has a regularizer, plus each activity penalty of the forward
//!   pass divided by its batch size. The loss `fit` logs and the loss `evaluate` reports both
//!   include them.
//! - A frozen layer's (or a frozen model's) weight penalties do not count (Keras 3 sums
//!   `trainable_weights` only); its activity penalty does (it is a loss the layer adds when called).
//! - The penalties' gradients join the weights' gradients; constraints
//!   ([`constraints`](crate::constraints)) are applied after each optimizer update.
//!
//! Builders: `Dense::new(8).kernel_regularizer(Regularizer::l2(0.01))` through
//! [`RegularizerOptions`]; configs are read in Keras 3's form
//! (`{"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, ...}`), in
//! Keras 2 / tf-keras's (`{"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.01}}`) and as
//! string identifiers (`"l2"`), and written in Keras 3's form.

use crate::constraints::Constraint;
use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// Which vectors [`Regularizer::Orthogonal`] pushes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrthogonalMode {
    /// The rows of the matrix (Keras's default).
    Rows,
    Columns,
}

/// A penalty on a tensor, with Keras's formulas. Factors are kept as the config gave them (f64),
/// so a file is written back with the same numbers; the penalty is computed in f32 as Keras does.
#[derive(Clone, Debug, PartialEq)]
pub enum Regularizer {
    /// `l1 * sum(|x|)`.
    L1 { l1: f64 },
    /// `l2 * sum(x²)`.
    L2 { l2: f64 },
    /// `l1 * sum(|x|) + l2 * sum(x²)`.
    L1L2 { l1: f64, l2: f64 },
    /// Keras's `OrthogonalRegularizer` on a rank-2 tensor: with the rows (or columns) L2-normalised
    /// (`x * min(rsqrt(sum(x²)), 1/1e-7)`) and `P` their matrix of dot products,
    /// `factor * 0.5 * sum(|P off the diagonal|) / (n (n - 1) / 2)` for `n` rows (or columns).
    Orthogonal { factor: f64, mode: OrthogonalMode },
}

/// Keras's `backend.epsilon()`.
const EPSILON: f64 = 1e-7;

impl Regularizer {
    /// `keras.regularizers.L1(l1)`. Keras holds this factor as a float32 tensor (and writes it
    /// back so: `0.01` becomes `0.009999999776482582`), so frostnet rounds it to f32 too.
    pub fn l1(l1: f64) -> Regularizer {
        Regularizer::L1 { l1: f32_exact(l1) }
    }
    /// `keras.regularizers.L2(l2)`.
    pub fn l2(l2: f64) -> Regularizer {
        Regularizer::L2 { l2 }
    }
    /// `keras.regularizers.L1L2(l1, l2)`.
    pub fn l1_l2(l1: f64, l2: f64) -> Regularizer {
        Regularizer::L1L2 { l1, l2 }
    }
    /// `keras.regularizers.OrthogonalRegularizer(factor, mode)`; like `L1`'s, Keras holds the
    /// factor as a float32 tensor.
    pub fn orthogonal(factor: f64, mode: OrthogonalMode) -> Regularizer {
        Regularizer::Orthogonal {
            factor: f32_exact(factor),
            mode,
        }
    }

    /// Keras's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            Regularizer::L1 { .. } => "L1",
            Regularizer::L2 { .. } => "L2",
            Regularizer::L1L2 { .. } => "L1L2",
            Regularizer::Orthogonal { .. } => "OrthogonalRegularizer",
        }
    }

    /// The penalty on `x`.
    pub fn penalty(&self, x: &Tensor) -> Result<f32> {
        Ok(self.evaluate(x, false)?.0)
    }

    /// The penalty on `x` and its gradient with respect to `x` (at 0, `|x|`'s gradient is 0, as
    /// in TensorFlow).
    pub fn gradient(&self, x: &Tensor) -> Result<(f32, Tensor)> {
        let (p, g) = self.evaluate(x, true)?;
        Ok((p, g.expect("asked for")))
    }

    fn evaluate(&self, x: &Tensor, grad: bool) -> Result<(f32, Option<Tensor>)> {
        let (l1, l2) = match *self {
            Regularizer::L1 { l1 } => (l1, 0.0),
            Regularizer::L2 { l2 } => (0.0, l2),
            Regularizer::L1L2 { l1, l2 } => (l1, l2),
            Regularizer::Orthogonal { factor, mode } => return orthogonal(x, factor, mode, grad),
        };
        let (l1, l2) = (l1 as f32, l2 as f32);
        let d = x.data();
        let mut p = 0.0f64;
        if l1 != 0.0 {
            p += l1 as f64 * d.iter().map(|v| v.abs() as f64).sum::<f64>();
        }
        if l2 != 0.0 {
            p += l2 as f64 * d.iter().map(|v| (v * v) as f64).sum::<f64>();
        }
        let g = grad.then(|| {
            let data = d
                .iter()
                .map(|&v| {
                    let s = if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    l1 * s + 2.0 * l2 * v
                })
                .collect();
            Tensor::from_vec(x.shape(), data).expect("same shape")
        });
        Ok((p as f32, g))
    }

    /// Keras 3's serialised form.
    pub fn to_config(&self) -> Value {
        let config = match *self {
            Regularizer::L1 { l1 } => json!({ "l1": l1 }),
            Regularizer::L2 { l2 } => json!({ "l2": l2 }),
            Regularizer::L1L2 { l1, l2 } => json!({"l1": l1, "l2": l2}),
            Regularizer::Orthogonal { factor, mode } => json!({
                "factor": factor,
                "mode": if mode == OrthogonalMode::Rows { "rows" } else { "columns" },
            }),
        };
        json!({"module": "keras.regularizers", "class_name": self.class_name(),
               "config": config, "registered_name": null})
    }

    /// Reads a regularizer from a Keras config value: Keras 3's and Keras 2's dict forms and the
    /// string identifiers (`"l1"`, `"l2"`: factor 0.01; `"L1L2"`: 0 and 0, as Keras 3's
    /// `regularizers.get`; `"l1_l2"`: 0.01 and 0.01, as tf-keras's). The error says what is wrong.
    pub fn from_config(v: &Value) -> std::result::Result<Regularizer, String> {
        let (class, cfg) = class_and_config(v, "regularizer")?;
        let factor = |key: &str, default: f64| -> std::result::Result<f64, String> {
            match cfg.get(key).filter(|v| !v.is_null()) {
                None => Ok(default),
                Some(x) => x
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .ok_or_else(|| format!("{class}: '{key}' = {x} is not a non-negative number")),
            }
        };
        let named = cfg.is_empty() && v.is_string();
        let r = match class.as_str() {
            "L1" | "l1" => Regularizer::l1(factor("l1", 0.01)?),
            "L2" | "l2" => Regularizer::L2 {
                l2: factor("l2", 0.01)?,
            },
            "l1_l2" if named => Regularizer::L1L2 { l1: 0.01, l2: 0.01 },
            "L1L2" | "l1l2" | "l1_l2" => Regularizer::L1L2 {
                l1: factor("l1", 0.0)?,
                l2: factor("l2", 0.0)?,
            },
            "OrthogonalRegularizer" | "orthogonal_regularizer" => {
                let mode = match cfg.get("mode").and_then(Value::as_str).unwrap_or("rows") {
                    "rows" => OrthogonalMode::Rows,
                    "columns" => OrthogonalMode::Columns,
                    m => return Err(format!("OrthogonalRegularizer: mode '{m}' (rows, columns)")),
                };
                Regularizer::orthogonal(factor("factor", 0.01)?, mode)
            }
            other => {
                return Err(format!(
                    "regularizer '{other}' is not implemented in frostnet (L1, L2, L1L2, \
                     OrthogonalRegularizer)"
                ))
            }
        };
        Ok(r)
    }
}

/// `v` rounded to the nearest f32, as Keras's float32 tensors hold it.
fn f32_exact(v: f64) -> f64 {
    v as f32 as f64
}

/// The class name and config of a Keras object given as a dict or as a string identifier.
pub(crate) fn class_and_config(
    v: &Value,
    what: &str,
) -> std::result::Result<(String, Map<String, Value>), String> {
    match v {
        Value::String(s) => Ok((s.clone(), Map::new())),
        Value::Object(o) => {
            let class = o
                .get("class_name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{what} {v} has no class_name"))?;
            // A registered custom class ("package>Name") is not one of Keras's built-ins.
            if o.get("registered_name")
                .and_then(Value::as_str)
                .is_some_and(|r| r.contains('>'))
            {
                return Err(format!(
                    "custom {what} {class} is not implemented in frostnet"
                ));
            }
            let cfg = match o.get("config") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(c)) => c.clone(),
                Some(c) => return Err(format!("{what} {class}: config {c} is not an object")),
            };
            Ok((class.to_string(), cfg))
        }
        _ => Err(format!("{what} {v} is neither a name nor a config")),
    }
}

/// `OrthogonalRegularizer` on a rank-2 tensor, and optionally its gradient.
fn orthogonal(
    x: &Tensor,
    factor: f64,
    mode: OrthogonalMode,
    grad: bool,
) -> Result<(f32, Option<Tensor>)> {
    let &[r, c] = x.shape() else {
        return Err(Error::InvalidConfig(format!(
            "OrthogonalRegularizer needs a rank-2 tensor, got shape {}",
            crate::error::fmt_dims(x.shape())
        )));
    };
    // Work on the vectors being made orthogonal as rows of `a` (n x m).
    let (n, m) = if mode == OrthogonalMode::Rows {
        (r, c)
    } else {
        (c, r)
    };
    if n < 2 {
        return Err(Error::InvalidConfig(format!(
            "OrthogonalRegularizer (mode {mode:?}) needs at least 2 vectors, got shape {}",
            crate::error::fmt_dims(x.shape())
        )));
    }
    let at = |i: usize, j: usize| -> f64 {
        let (row, col) = if mode == OrthogonalMode::Rows {
            (i, j)
        } else {
            (j, i)
        };
        x.data()[row * c + col] as f64
    };
    let a: Vec<f64> = (0..n)
        .flat_map(|i| (0..m).map(move |j| (i, j)))
        .map(|(i, j)| at(i, j))
        .collect();
    // Keras's normalize: x * min(rsqrt(sum(x²)), 1/epsilon).
    let mut inv = vec![0.0f64; n];
    let mut clipped = vec![false; n];
    for i in 0..n {
        let s: f64 = a[i * m..(i + 1) * m].iter().map(|v| v * v).sum();
        let r = 1.0 / s.sqrt();
        clipped[i] = r.is_nan() || r >= 1.0 / EPSILON;
        inv[i] = if clipped[i] { 1.0 / EPSILON } else { r };
    }
    let u: Vec<f64> = (0..n * m).map(|k| a[k] * inv[k / m]).collect();
    let dot = |i: usize, k: usize| -> f64 { (0..m).map(|j| u[i * m + j] * u[k * m + j]).sum() };
    let pairs = n as f64 * (n as f64 - 1.0) / 2.0;
    let scale = factor * 0.5 / pairs;
    let mut total = 0.0f64;
    let mut sign = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            if i != k {
                let p = dot(i, k);
                total += p.abs();
                sign[i * n + k] = if p > 0.0 {
                    1.0
                } else if p < 0.0 {
                    -1.0
                } else {
                    0.0
                };
            }
        }
    }
    let penalty = (scale * total) as f32;
    if !grad {
        return Ok((penalty, None));
    }
    // dL/du_i = scale * sum_k (sign(P_ik) + sign(P_ki)) u_k; then through the normalisation:
    // dL/da_i = inv_i g_i - inv_i³ (g_i · a_i) a_i (only inv_i g_i where the norm was clipped).
    let mut out = vec![0.0f32; r * c];
    for i in 0..n {
        let mut g = vec![0.0f64; m];
        for k in 0..n {
            let s = sign[i * n + k] + sign[k * n + i];
            if s != 0.0 {
                for j in 0..m {
                    g[j] += scale * s * u[k * m + j];
                }
            }
        }
        let ai = &a[i * m..(i + 1) * m];
        let ga: f64 = g.iter().zip(ai).map(|(g, a)| g * a).sum();
        for j in 0..m {
            let d = if clipped[i] {
                inv[i] * g[j]
            } else {
                inv[i] * g[j] - inv[i].powi(3) * ga * ai[j]
            };
            let (row, col) = if mode == OrthogonalMode::Rows {
                (i, j)
            } else {
                (j, i)
            };
            out[row * c + col] = d as f32;
        }
    }
    Ok((penalty, Some(Tensor::from_vec(x.shape(), out)?)))
}

/// A layer's regularizers and constraints, keyed by Keras's argument prefix (`"kernel"` for
/// `kernel_regularizer`), and the activity penalty of its last forward pass. Every layer has one
/// (in its [`LayerBase`](crate::layers::LayerBase)); which prefixes a layer accepts, and the weight
/// each names, is [`Layer::weight_args`].
#[derive(Clone, Debug, Default)]
pub struct WeightRules {
    pub(crate) regularizers: Vec<(&'static str, Regularizer)>,
    pub(crate) constraints: Vec<(&'static str, Constraint)>,
    pub(crate) activity: Option<Regularizer>,
    /// Builder arguments for weights the layer does not have (`kernel_regularizer` on a
    /// `Flatten`): reported by the first training or evaluation step, since builders cannot fail.
    pub(crate) misplaced: Vec<String>,
    /// The activity penalty of the last forward pass (already divided by the batch size).
    pub(crate) activity_loss: Option<f32>,
    /// Its gradient with respect to the layer's output, when a backward pass follows.
    pub(crate) activity_grad: Option<Tensor>,
}

impl WeightRules {
    /// The regularizer set for argument prefix `arg`, if any.
    pub fn regularizer(&self, arg: &str) -> Option<&Regularizer> {
        self.regularizers
            .iter()
            .find(|(a, _)| *a == arg)
            .map(|(_, r)| r)
    }
    /// The constraint set for argument prefix `arg`, if any.
    pub fn constraint(&self, arg: &str) -> Option<&Constraint> {
        self.constraints
            .iter()
            .find(|(a, _)| *a == arg)
            .map(|(_, c)| c)
    }
    /// The activity regularizer, if any.
    pub fn activity(&self) -> Option<&Regularizer> {
        self.activity.as_ref()
    }
    fn set_regularizer(&mut self, arg: &'static str, r: Regularizer) {
        self.regularizers.retain(|(a, _)| *a != arg);
        self.regularizers.push((arg, r));
    }
    fn set_constraint(&mut self, arg: &'static str, c: Constraint) {
        self.constraints.retain(|(a, _)| *a != arg);
        self.constraints.push((arg, c));
    }
}

/// The weight a layer's argument prefix names (`"depthwise"` -> `"kernel"` for DepthwiseConv2D).
fn weight_of(layer: &dyn Layer, arg: &str) -> Option<(&'static str, &'static str)> {
    layer.weight_args().iter().copied().find(|(a, _)| *a == arg)
}

/// Keras's `kernel_regularizer=`, `bias_constraint=`, ... for every layer that has such weights:
/// `Conv2D::new(8, 3).kernel_regularizer(Regularizer::l2(1e-4)).kernel_constraint(Constraint::max_norm(3.0, 0))`.
///
/// An argument the layer does not have (a kernel regularizer on a `Flatten`) is reported as an
/// [`Error::InvalidConfig`] by the first `fit`, `train_on_batch` or `evaluate`.
pub trait RegularizerOptions: Layer + Sized {
    /// A regularizer on the weight Keras's `<arg>_regularizer` argument names (`"gamma"`,
    /// `"embeddings"`, `"alpha"`, ...).
    fn weight_regularizer(mut self, arg: &str, r: Regularizer) -> Self {
        match weight_of(&self, arg) {
            Some((a, _)) => self.base_mut().rules.set_regularizer(a, r),
            None => self
                .base_mut()
                .rules
                .misplaced
                .push(format!("{arg}_regularizer")),
        }
        self
    }
    /// A constraint on the weight Keras's `<arg>_constraint` argument names.
    fn weight_constraint(mut self, arg: &str, c: Constraint) -> Self {
        match weight_of(&self, arg) {
            Some((a, _)) => self.base_mut().rules.set_constraint(a, c),
            None => self
                .base_mut()
                .rules
                .misplaced
                .push(format!("{arg}_constraint")),
        }
        self
    }
    fn kernel_regularizer(self, r: Regularizer) -> Self {
        self.weight_regularizer("kernel", r)
    }
    fn bias_regularizer(self, r: Regularizer) -> Self {
        self.weight_regularizer("bias", r)
    }
    fn depthwise_regularizer(self, r: Regularizer) -> Self {
        self.weight_regularizer("depthwise", r)
    }
    fn pointwise_regularizer(self, r: Regularizer) -> Self {
        self.weight_regularizer("pointwise", r)
    }
    /// A penalty on the layer's output, divided by the batch size (any layer has one).
    fn activity_regularizer(mut self, r: Regularizer) -> Self {
        self.base_mut().rules.activity = Some(r);
        self
    }
    fn kernel_constraint(self, c: Constraint) -> Self {
        self.weight_constraint("kernel", c)
    }
    fn bias_constraint(self, c: Constraint) -> Self {
        self.weight_constraint("bias", c)
    }
    fn depthwise_constraint(self, c: Constraint) -> Self {
        self.weight_constraint("depthwise", c)
    }
    fn pointwise_constraint(self, c: Constraint) -> Self {
        self.weight_constraint("pointwise", c)
    }
}

impl<L: Layer + Sized> RegularizerOptions for L {}

// Keras config reading and writing.

/// Reads every non-null `*_regularizer` / `*_constraint` of a layer's Keras config onto `layer`.
/// An argument the layer does not have, or a value frostnet does not implement, is an error
/// message (the caller names the file and the layer).
pub(crate) fn read_rules(
    cfg: &Map<String, Value>,
    layer: &mut dyn Layer,
) -> std::result::Result<(), String> {
    for (key, v) in cfg {
        if v.is_null() {
            continue;
        }
        if let Some(arg) = key.strip_suffix("_regularizer") {
            let r = Regularizer::from_config(v).map_err(|e| format!("'{key}': {e}"))?;
            if arg == "activity" {
                layer.base_mut().rules.activity = Some(r);
                continue;
            }
            let (a, _) = weight_of(layer, arg)
                .ok_or_else(|| format!("'{key}' = {v} is not implemented in frostnet"))?;
            layer.base_mut().rules.set_regularizer(a, r);
        } else if let Some(arg) = key.strip_suffix("_constraint") {
            let c = Constraint::from_config(v).map_err(|e| format!("'{key}': {e}"))?;
            let (a, _) = weight_of(layer, arg)
                .ok_or_else(|| format!("'{key}' = {v} is not implemented in frostnet"))?;
            layer.base_mut().rules.set_constraint(a, c);
        }
    }
    Ok(())
}

/// Adds a layer's regularizers and constraints to its Keras config, in Keras 3's form. Only the
/// ones set are written (Keras also writes the unset ones as `null`; it reads either).
pub(crate) fn write_rules(layer: &dyn Layer, cfg: &mut Value) {
    let Some(o) = cfg.as_object_mut() else { return };
    let rules = &layer.base().rules;
    for (arg, r) in &rules.regularizers {
        o.insert(format!("{arg}_regularizer"), r.to_config());
    }
    for (arg, c) in &rules.constraints {
        o.insert(format!("{arg}_constraint"), c.to_config());
    }
    if let Some(a) = &rules.activity {
        o.insert("activity_regularizer".into(), a.to_config());
    }
}

// The training hooks.

/// Records the activity penalty of `layer`'s output `y` (and, with `keep`, its gradient for the
/// backward pass), Keras's `add_loss(activity_regularizer(y) / batch_size)`.
pub(crate) fn record_activity(layer: &mut dyn Layer, y: &Tensor, keep: bool) -> Result<()> {
    let rules = &mut layer.base_mut().rules;
    let Some(r) = &rules.activity else {
        return Ok(());
    };
    let batch = if y.shape().is_empty() {
        1.0
    } else {
        y.shape()[0] as f32
    };
    let (p, g) = if keep {
        let (p, mut g) = r.gradient(y)?;
        g.data_mut().iter_mut().for_each(|v| *v /= batch);
        (p, Some(g))
    } else {
        (r.penalty(y)?, None)
    };
    // Keras's divide_no_nan: an empty batch adds 0.
    rules.activity_loss = Some(if batch > 0.0 { p / batch } else { 0.0 });
    rules.activity_grad = g;
    Ok(())
}

/// The gradient of `layer`'s activity penalty with respect to its output, recorded by the last
/// forward pass that planned a backward pass.
pub(crate) fn take_activity_grad(layer: &mut dyn Layer) -> Option<Tensor> {
    layer.base_mut().rules.activity_grad.take()
}

fn misplaced(layer: &dyn Layer) -> Result<()> {
    match layer.base().rules.misplaced.first() {
        Some(arg) => Err(Error::InvalidConfig(format!(
            "layer '{}' ({}) has no '{arg}' argument (it has {})",
            layer.name(),
            layer.class_name(),
            if layer.weight_args().is_empty() {
                "only activity_regularizer".to_string()
            } else {
                layer
                    .weight_args()
                    .iter()
                    .map(|(a, _)| format!("{a}_regularizer/{a}_constraint"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))),
        None => Ok(()),
    }
}

/// Sums the penalties under `layer`; with `grads`, adds each weight penalty's gradient to the
/// weight's gradient. `trains` is whether every enclosing model is trainable.
fn walk(layer: &mut dyn Layer, trains: bool, grads: bool) -> Result<f64> {
    misplaced(layer)?;
    let trains = trains && layer.is_trainable();
    let mut total = layer.base().rules.activity_loss.unwrap_or(0.0) as f64;
    if trains && !layer.base().rules.regularizers.is_empty() {
        let args = layer.weight_args();
        let base = layer.base_mut();
        for (arg, r) in &base.rules.regularizers {
            let Some(&(_, wname)) = args.iter().find(|(a, _)| a == arg) else {
                continue;
            };
            // A weight the layer did not create (`bias` with `use_bias=False`) has no penalty.
            let Some(w) = base.weights.iter_mut().find(|w| w.name() == wname) else {
                continue;
            };
            if !w.is_trainable() {
                continue;
            }
            if grads {
                let (p, g) = r.gradient(w.value())?;
                total += p as f64;
                match &mut w.grad {
                    Some(acc) => acc.add_assign(&g)?,
                    None => w.grad = Some(g),
                }
            } else {
                total += r.penalty(w.value())? as f64;
            }
        }
    }
    if let Some(m) = layer.as_model_mut() {
        for node in m.nodes.iter_mut() {
            total += walk(node.layer.as_mut(), trains, grads)?;
        }
    }
    Ok(total)
}

impl Model {
    /// Keras's `sum(model.losses)`: the penalties of the trainable weights that have a
    /// regularizer, plus the activity penalties of the last forward pass.
    pub fn regularization_loss(&mut self) -> Result<f32> {
        Ok(walk(self, true, false)? as f32)
    }

    /// The training step's hook: the penalty to add to the loss, with (when `grads`) each weight
    /// penalty's gradient added to its weight's gradient from the backward pass just run.
    pub(crate) fn regularization_step(&mut self, grads: bool) -> Result<f32> {
        Ok(walk(self, true, grads)? as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_gradient_matches_central_differences() {
        let x = Tensor::from_vec(
            &[3, 4],
            (0..12).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect(),
        )
        .unwrap();
        for mode in [OrthogonalMode::Rows, OrthogonalMode::Columns] {
            let r = Regularizer::orthogonal(0.3, mode);
            let (_, g) = r.gradient(&x).unwrap();
            for k in 0..x.len() {
                let h = 1e-3f32;
                let mut p = x.clone();
                p.data_mut()[k] += h;
                let mut m = x.clone();
                m.data_mut()[k] -= h;
                let num = (r.penalty(&p).unwrap() - r.penalty(&m).unwrap()) / (2.0 * h);
                assert!(
                    (num - g.data()[k]).abs() < 2e-3,
                    "{mode:?} [{k}]: {num} vs {}",
                    g.data()[k]
                );
            }
        }
    }

    #[test]
    fn orthogonal_needs_a_matrix_with_two_vectors() {
        let r = Regularizer::orthogonal(0.1, OrthogonalMode::Rows);
        assert!(r.penalty(&Tensor::zeros(&[4])).is_err());
        assert!(r.penalty(&Tensor::zeros(&[1, 4])).is_err());
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        for (v, want) in [
            (
                json!({"class_name": "L2", "config": {"l2": -1.0}}),
                "non-negative",
            ),
            (json!("l3"), "not implemented"),
            (
                json!({"class_name": "OrthogonalRegularizer", "config": {"mode": "diag"}}),
                "mode",
            ),
            (json!(3), "neither"),
        ] {
            let e = Regularizer::from_config(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
