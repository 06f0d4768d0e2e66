//! Weight constraints, as in Keras (`keras/constraints`): functions applied to a weight after
//! every optimizer update (`kernel_constraint`, `bias_constraint`, `depthwise_constraint`,
//! `pointwise_constraint`), with Keras 3's formulas and `axis` defaults (checked against Keras
//! 3.15.1 by `tools/make_regularizers_reference.py`).
//!
//! As in Keras, a constraint applies to the trainable weights the optimizer just updated, after
//! the update; a frozen weight keeps its value. Set through
//! [`RegularizerOptions`](crate::regularizers::RegularizerOptions)
//! (`Dense::new(8).kernel_constraint(Constraint::max_norm(2.0, 0))`), read from and written to
//! Keras configs like regularizers.

use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Keras's `backend.epsilon()`, added to the norms before dividing.
const EPSILON: f32 = 1e-7;

/// The axes a norm is taken over: one axis (Keras's int) or several (a list); negative axes count
/// from the end. Written back in the form it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Axis {
    One(i64),
    Many(Vec<i64>),
}

impl From<i64> for Axis {
    fn from(a: i64) -> Axis {
        Axis::One(a)
    }
}

impl From<i32> for Axis {
    fn from(a: i32) -> Axis {
        Axis::One(a as i64)
    }
}

impl<const N: usize> From<[i32; N]> for Axis {
    fn from(a: [i32; N]) -> Axis {
        Axis::Many(a.iter().map(|&x| x as i64).collect())
    }
}

impl From<&[i64]> for Axis {
    fn from(a: &[i64]) -> Axis {
        Axis::Many(a.to_vec())
    }
}

impl<const N: usize> From<[i64; N]> for Axis {
    fn from(a: [i64; N]) -> Axis {
        Axis::Many(a.to_vec())
    }
}

impl Axis {
    fn to_json(&self) -> Value {
        match self {
            Axis::One(a) => json!(a),
            Axis::Many(a) => json!(a),
        }
    }
    fn from_json(v: &Value) -> std::result::Result<Axis, String> {
        match v {
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| format!("axis {v} is not a list of ints"))
                })
                .collect::<std::result::Result<_, _>>()
                .map(Axis::Many),
            x => x
                .as_i64()
                .map(Axis::One)
                .ok_or_else(|| format!("axis {v} is not an int or a list of ints")),
        }
    }
    /// Which axes of a rank-`rank` tensor are reduced; an axis out of range is an error.
    fn reduced(&self, rank: usize) -> Result<Vec<bool>> {
        let list = match self {
            Axis::One(a) => std::slice::from_ref(a),
            Axis::Many(a) => a.as_slice(),
        };
        let mut out = vec![false; rank];
        for &a in list {
            let i = if a < 0 { a + rank as i64 } else { a };
            if !(0..rank as i64).contains(&i) {
                return Err(Error::InvalidConfig(format!(
                    "constraint axis {a} is out of range for a weight of rank {rank}"
                )));
            }
            out[i as usize] = true;
        }
        Ok(out)
    }
}

/// A constraint, with Keras's formulas (`norms = sqrt(sum(w², axis, keepdims=True))`):
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// `w * clip(norms, 0, max_value) / (1e-7 + norms)`. Keras's defaults: `max_value` 2, `axis` 0.
    MaxNorm { max_value: f64, axis: Axis },
    /// `w * (rate * clip(norms, min_value, max_value) + (1 - rate) * norms) / (1e-7 + norms)`.
    /// Keras's defaults: 0, 1, rate 1, axis 0.
    MinMaxNorm {
        min_value: f64,
        max_value: f64,
        rate: f64,
        axis: Axis,
    },
    /// `max(w, 0)`.
    NonNeg,
    /// `w / (1e-7 + norms)`. Keras's default `axis` 0.
    UnitNorm { axis: Axis },
}

impl Constraint {
    /// `keras.constraints.MaxNorm(max_value, axis)`.
    pub fn max_norm(max_value: f64, axis: impl Into<Axis>) -> Constraint {
        Constraint::MaxNorm {
            max_value,
            axis: axis.into(),
        }
    }
    /// `keras.constraints.MinMaxNorm(min_value, max_value, rate, axis)`.
    pub fn min_max_norm(
        min_value: f64,
        max_value: f64,
        rate: f64,
        axis: impl Into<Axis>,
    ) -> Constraint {
        Constraint::MinMaxNorm {
            min_value,
            max_value,
            rate,
            axis: axis.into(),
        }
    }
    /// `keras.constraints.NonNeg()`.
    pub fn non_neg() -> Constraint {
        Constraint::NonNeg
    }
    /// `keras.constraints.UnitNorm(axis)`.
    pub fn unit_norm(axis: impl Into<Axis>) -> Constraint {
        Constraint::UnitNorm { axis: axis.into() }
    }

    /// Keras's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            Constraint::MaxNorm { .. } => "MaxNorm",
            Constraint::MinMaxNorm { .. } => "MinMaxNorm",
            Constraint::NonNeg => "NonNeg",
            Constraint::UnitNorm { .. } => "UnitNorm",
        }
    }

    /// Replaces `w` by the constrained value. An axis out of range for `w` is an error (and `w`
    /// is unchanged).
    pub fn apply(&self, w: &mut Tensor) -> Result<()> {
        let (axis, scale): (&Axis, Box<dyn Fn(f32) -> f32>) = match self {
            Constraint::NonNeg => {
                w.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
                return Ok(());
            }
            Constraint::MaxNorm { max_value, axis } => {
                let max = *max_value as f32;
                (axis, Box::new(move |n| n.max(0.0).min(max) / (EPSILON + n)))
            }
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                axis,
            } => {
                let (lo, hi, rate) = (*min_value as f32, *max_value as f32, *rate as f32);
                (
                    axis,
                    Box::new(move |n| {
                        (rate * n.max(lo).min(hi) + (1.0 - rate) * n) / (EPSILON + n)
                    }),
                )
            }
            Constraint::UnitNorm { axis } => (axis, Box::new(|n| 1.0 / (EPSILON + n))),
        };
        let reduced = axis.reduced(w.shape().len())?;
        let (keys, groups) = group_keys(w.shape(), &reduced);
        let mut sums = vec![0.0f64; groups];
        for (v, &k) in w.data().iter().zip(&keys) {
            sums[k] += (*v as f64) * (*v as f64);
        }
        let factors: Vec<f32> = sums.iter().map(|s| scale((*s as f32).sqrt())).collect();
        for (v, &k) in w.data_mut().iter_mut().zip(&keys) {
            *v *= factors[k];
        }
        Ok(())
    }

    /// Keras 3's serialised form.
    pub fn to_config(&self) -> Value {
        let config = match self {
            Constraint::MaxNorm { max_value, axis } => {
                json!({"max_value": max_value, "axis": axis.to_json()})
            }
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                axis,
            } => json!({"min_value": min_value, "max_value": max_value, "rate": rate,
                        "axis": axis.to_json()}),
            Constraint::NonNeg => json!({}),
            Constraint::UnitNorm { axis } => json!({"axis": axis.to_json()}),
        };
        json!({"module": "keras.constraints", "class_name": self.class_name(),
               "config": config, "registered_name": null})
    }

    /// Reads a constraint from a Keras config value: Keras 3's and Keras 2's dict forms, Keras 2's
    /// older class names (`max_norm`, `non_neg`, `unit_norm`, `min_max_norm`) and string
    /// identifiers (Keras's defaults).
    pub fn from_config(v: &Value) -> std::result::Result<Constraint, String> {
        let (class, cfg) = crate::regularizers::class_and_config(v, "constraint")?;
        let num = |key: &str, default: f64| -> std::result::Result<f64, String> {
            match cfg.get(key).filter(|v| !v.is_null()) {
                None => Ok(default),
                Some(x) => x
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| format!("{class}: '{key}' = {x} is not a number")),
            }
        };
        let axis = || match cfg.get("axis").filter(|v| !v.is_null()) {
            None => Ok(Axis::One(0)),
            Some(a) => Axis::from_json(a).map_err(|e| format!("{class}: {e}")),
        };
        Ok(match class.as_str() {
            "MaxNorm" | "max_norm" | "maxnorm" => Constraint::MaxNorm {
                max_value: num("max_value", 2.0)?,
                axis: axis()?,
            },
            "MinMaxNorm" | "min_max_norm" => Constraint::MinMaxNorm {
                min_value: num("min_value", 0.0)?,
                max_value: num("max_value", 1.0)?,
                rate: num("rate", 1.0)?,
                axis: axis()?,
            },
            "NonNeg" | "non_neg" | "nonneg" => Constraint::NonNeg,
            "UnitNorm" | "unit_norm" | "unitnorm" => Constraint::UnitNorm { axis: axis()? },
            other => {
                return Err(format!(
                    "constraint '{other}' is not implemented in frostnet (MaxNorm, MinMaxNorm, \
                     NonNeg, UnitNorm)"
                ))
            }
        })
    }
}

/// For each element of a tensor of `shape`, the index of its group (the elements that share all
/// non-reduced coordinates), and the number of groups.
fn group_keys(shape: &[usize], reduced: &[bool]) -> (Vec<usize>, usize) {
    let n: usize = shape.iter().product();
    // The group index's stride along each kept axis (row-major over the kept axes).
    let mut strides = vec![0usize; shape.len()];
    let mut groups = 1;
    for a in (0..shape.len()).rev() {
        if !reduced[a] {
            strides[a] = groups;
            groups *= shape[a];
        }
    }
    let mut keys = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    let mut key = 0usize;
    for _ in 0..n {
        keys.push(key);
        // Advance the multi-index, updating the key incrementally.
        for a in (0..shape.len()).rev() {
            idx[a] += 1;
            key += strides[a];
            if idx[a] < shape[a] {
                break;
            }
            key -= strides[a] * idx[a];
            idx[a] = 0;
        }
    }
    (keys, groups.max(1))
}

/// Applies the constraints under `layer` to its trainable weights; `trains` is whether every
/// enclosing model is trainable (Keras constrains `model.trainable_variables`).
fn walk(layer: &mut dyn Layer, trains: bool) -> Result<()> {
    let trains = trains && layer.is_trainable();
    if !trains {
        return Ok(());
    }
    if !layer.base().rules.constraints.is_empty() {
        let args = layer.weight_args();
        let name = layer.name().to_string();
        let base = layer.base_mut();
        for (arg, c) in &base.rules.constraints {
            let Some(&(_, wname)) = args.iter().find(|(a, _)| a == arg) else {
                continue;
            };
            if let Some(w) = base
                .weights
                .iter_mut()
                .find(|w| w.name() == wname && w.is_trainable())
            {
                c.apply(w.value_mut()).map_err(|e| {
                    Error::InvalidConfig(format!("layer '{name}', {arg}_constraint: {e}"))
                })?;
            }
        }
    }
    if let Some(m) = layer.as_model_mut() {
        for node in m.nodes.iter_mut() {
            walk(node.layer.as_mut(), trains)?;
        }
    }
    Ok(())
}

impl Model {
    /// Applies every constraint to its (trainable) weight, as Keras's optimizer does after each
    /// update.
    pub fn apply_constraints(&mut self) -> Result<()> {
        walk(self, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_kept_axes() {
        // Shape (2, 3), reducing axis 0: one group per column.
        let (keys, g) = group_keys(&[2, 3], &[true, false]);
        assert_eq!((keys, g), (vec![0, 1, 2, 0, 1, 2], 3));
        let (keys, g) = group_keys(&[2, 3], &[false, true]);
        assert_eq!((keys, g), (vec![0, 0, 0, 1, 1, 1], 2));
        let (keys, g) = group_keys(&[2, 3], &[true, true]);
        assert_eq!((keys, g), (vec![0; 6], 1));
    }

    #[test]
    fn an_axis_out_of_range_is_an_error_and_changes_nothing() {
        let mut w = Tensor::from_vec(&[2, 2], vec![3.0, 4.0, 0.0, 0.0]).unwrap();
        let before = w.clone();
        assert!(Constraint::unit_norm(2).apply(&mut w).is_err());
        assert_eq!(w, before);
        assert!(Constraint::from_config(&json!({"class_name": "Clip"})).is_err());
    }
}
