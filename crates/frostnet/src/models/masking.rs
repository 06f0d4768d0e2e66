//! Keras 3's masks, carried by the model executor beside the tensors.
//!
//! A mask is one boolean per position of a tensor without its last axis (per sample and step of
//! a `(None, steps, features)` sequence): true where the step holds data. It starts at an
//! `Embedding(mask_zero=True)` (`index != 0`) and follows Keras 3's rules (`Layer.__call__`,
//! `compute_mask`, the `call(..., mask)` of the layers that take one):
//!
//! - layers with `supports_masking = True` whose values do not depend on the mask pass it on
//!   unchanged: `Dense`, the activation layers but `Softmax`, `Dropout` and the noise layers,
//!   the normalizations (`BatchNormalization` only while it uses its moving statistics),
//!   `Rescaling`, `Normalization`, `Identity`;
//! - `Add`, `Subtract`, `Average` pass on the OR of their inputs' masks when every input has one
//!   (otherwise none), `Concatenate` on its last axis the OR too, a missing mask counting as all
//!   true (Keras's `any` over the concatenated masks);
//! - `GlobalAveragePooling1D` consumes it: the mean of the unmasked steps, no mask after it;
//! - a nested model passes on its own output's mask;
//! - every other layer (Flatten, the convolutions and other poolings, Reshape, custom layers,
//!   ...) does not support masking and drops it, as Keras does (Keras also logs a warning);
//! - where Keras's values depend on the mask in a way frostnet does not compute (`Softmax`,
//!   `Multiply`, `Maximum`, `Minimum`, `Concatenate` on another axis, a training-mode
//!   `BatchNormalization`, a mask entering a nested model or a shared `GlobalAveragePooling1D`),
//!   the forward pass is a typed error naming the layer rather than a silently different result.
//!
//! A mask reaching a model output is applied by the loss and the metrics as Keras applies it
//! (as sample weights): only the unmasked positions count, the loss being the mean over them
//! ([`masked_loss`], [`masked_metric`]).

use super::model::Model;
use crate::error::{Error, Result};
use crate::layers::{BatchNormalization, Embedding, GlobalAveragePooling1D, Layer, Mode};
use crate::tensor::Tensor;
use crate::training::{Loss, Metric};
use std::rc::Rc;

/// One call's output mask (shared between the calls it feeds).
pub(crate) type Mask = Option<Rc<Vec<bool>>>;

/// Layers whose Keras class supports masking and passes the mask on unchanged.
const PASS_ON: [&str; 17] = [
    "Dense",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "Rescaling",
    "Normalization",
    "Identity",
    "ActivityRegularization",
];

fn unsupported(layer: &dyn Layer, what: &str) -> Error {
    Error::InvalidConfig(format!(
        "layer '{}' ({}) received a mask (from an Embedding with mask_zero=True): {what} is not \
         implemented in frostnet",
        layer.name(),
        layer.class_name()
    ))
}

/// Whether any layer of `model` (nested models included) starts a mask.
pub(crate) fn has_mask_source(model: &Model) -> bool {
    model.nodes.iter().any(|n| match n.layer.as_model() {
        Some(m) => has_mask_source(m),
        None => n
            .layer
            .as_any()
            .and_then(|a| a.downcast_ref::<Embedding>())
            .is_some_and(|e| e.masks()),
    })
}

/// Before call `c` runs (in mode `mode`): hands a `GlobalAveragePooling1D` its input mask, and
/// refuses masks where frostnet does not compute Keras's masked values.
pub(crate) fn before_call(model: &mut Model, c: usize, masks: &[Mask], mode: Mode) -> Result<()> {
    let inbound = model.call_inbound(c).to_vec();
    let l = model.call_layer(c);
    let shared = model.calls_of(l).len() > 1;
    let in_masks: Vec<&Mask> = inbound.iter().map(|&j| &masks[j]).collect();
    let any = in_masks.iter().any(|m| m.is_some());
    let call_mode = model.call_mode(c, mode);
    let layer = model.nodes[l].layer.as_mut();
    let class = layer.class_name().to_string();
    if let Some(gap) = layer
        .as_any_mut()
        .and_then(|a| a.downcast_mut::<GlobalAveragePooling1D>())
    {
        let mask = in_masks.first().and_then(|m| m.as_deref()).cloned();
        if mask.is_some() && shared {
            return Err(unsupported(
                layer,
                "a masked mean in a layer called more than once",
            ));
        }
        gap.set_mask(mask);
        return Ok(());
    }
    if !any {
        return Ok(());
    }
    if layer.as_model().is_some() {
        return Err(unsupported(layer, "a mask entering a nested model"));
    }
    let values_depend = match class.as_str() {
        "Softmax" => Some("Softmax's masked normalisation"),
        "Multiply" | "Maximum" | "Minimum" => Some("a merge of masked values"),
        "BatchNormalization" => layer
            .as_any()
            .and_then(|a| a.downcast_ref::<BatchNormalization>())
            .filter(|b| !b.uses_moving_stats(call_mode))
            .map(|_| "batch statistics over the unmasked steps (training mode)"),
        _ => None,
    };
    match values_depend {
        Some(what) => Err(unsupported(model.nodes[l].layer.as_ref(), what)),
        None => Ok(()),
    }
}

/// Call `c`'s output mask, from its inputs' masks and values (`values[j]` for an `Embedding`'s
/// input). The executor asks before the call runs (`ran` false: its inputs are still held), and
/// for a nested model again after it ran (its mask is known then); in between, the nested
/// model's mask is `Mask::None`.
pub(crate) fn after_call(
    model: &Model,
    c: usize,
    masks: &[Mask],
    values: &[Option<Tensor>],
    ran: bool,
) -> Result<Mask> {
    let inbound = model.call_inbound(c);
    let layer = model.nodes[model.call_layer(c)].layer.as_ref();
    if ran != layer.as_model().is_some() {
        return Ok(masks[c].clone());
    }
    let in_masks: Vec<&Mask> = inbound.iter().map(|&j| &masks[j]).collect();
    if let Some(e) = layer.as_any().and_then(|a| a.downcast_ref::<Embedding>()) {
        if !e.masks() {
            return Ok(None);
        }
        let x = inbound
            .first()
            .and_then(|&j| values[j].as_ref())
            .ok_or_else(|| {
                unsupported(layer, "a mask from an input cached by fit's prefix cache")
            })?;
        return Ok(e.compute_mask(x).map(Rc::new));
    }
    if let Some(m) = layer.as_model() {
        return Ok(m.output_masks.first().cloned().flatten().map(Rc::new));
    }
    let first = in_masks.first().copied().cloned().flatten();
    let class = layer.class_name();
    Ok(match class {
        c if PASS_ON.contains(&c) || c == "BatchNormalization" => first,
        "Add" | "Subtract" | "Average" => combine(layer, &in_masks, |a, b| a || b, false)?,
        "Concatenate" => {
            let axis = layer.config()["axis"].as_i64().unwrap_or(-1);
            let rank = model.call_output_shape(c).len() as i64;
            if in_masks.iter().all(|m| m.is_none()) {
                None
            } else if axis == -1 || axis == rank {
                combine(layer, &in_masks, |a, b| a || b, true)?
            } else {
                return Err(unsupported(
                    layer,
                    "a concatenation of masks off the last axis",
                ));
            }
        }
        _ => None,
    })
}

/// Combines the inputs' masks elementwise with `op`; a missing mask is all `missing` when
/// `fill`, else makes the result `None`.
fn combine(
    layer: &dyn Layer,
    masks: &[&Mask],
    op: impl Fn(bool, bool) -> bool,
    fill: bool,
) -> Result<Mask> {
    if !fill && masks.iter().any(|m| m.is_none()) {
        return Ok(None);
    }
    let Some(len) = masks.iter().find_map(|m| m.as_ref().map(|m| m.len())) else {
        return Ok(None);
    };
    let mut out: Option<Vec<bool>> = None;
    for m in masks {
        let m: Vec<bool> = match m {
            Some(m) if m.len() == len => m.to_vec(),
            Some(_) => return Err(unsupported(layer, "masks of different shapes")),
            None => vec![true; len],
        };
        out = Some(match out {
            None => m,
            Some(o) => o.iter().zip(&m).map(|(&a, &b)| op(a, b)).collect(),
        });
    }
    Ok(out.map(Rc::new))
}

/// The rows of `pred` and `y` at the unmasked positions (a position: all axes but `pred`'s
/// last), and those positions; an error if the mask does not fit the prediction or targets.
fn unmasked_rows(pred: &Tensor, y: &Tensor, mask: &[bool]) -> Result<(Tensor, Tensor, Vec<usize>)> {
    let positions = mask.len();
    let fits = |t: &Tensor| positions > 0 && t.len().is_multiple_of(positions);
    if !fits(pred) || !fits(y) || pred.len() / positions != *pred.shape().last().unwrap_or(&0) {
        return Err(Error::Data(format!(
            "the model output's mask ({positions} positions) does not fit predictions of shape {} \
             and targets of shape {}",
            crate::error::fmt_dims(pred.shape()),
            crate::error::fmt_dims(y.shape())
        )));
    }
    let (pw, yw) = (pred.len() / positions, y.len() / positions);
    let kept: Vec<usize> = (0..positions).filter(|&i| mask[i]).collect();
    let gather = |t: &Tensor, w: usize| {
        let mut d = Vec::with_capacity(kept.len() * w);
        for &i in &kept {
            d.extend_from_slice(&t.data()[i * w..(i + 1) * w]);
        }
        Tensor::from_vec(&[kept.len(), w], d)
    };
    Ok((gather(pred, pw)?, gather(y, yw)?, kept))
}

/// The loss of `pred` against `y` with Keras's masking: the mean over the unmasked positions of
/// the per-position loss (Keras weights them `total / valid` under `sum_over_batch_size`), and
/// its gradient (zero at masked positions). Every position masked: loss and gradient 0 (Keras's
/// `divide_no_nan`).
pub(crate) fn masked_loss(
    loss: Loss,
    pred: &Tensor,
    y: &Tensor,
    mask: &[bool],
) -> Result<(f32, Tensor)> {
    let (p, t, kept) = unmasked_rows(pred, y, mask)?;
    let mut grad = Tensor::zeros(pred.shape());
    if kept.is_empty() {
        return Ok((0.0, grad));
    }
    let (value, g) = loss.compute(&p, &t)?;
    let w = g.len() / kept.len();
    for (k, &i) in kept.iter().enumerate() {
        grad.data_mut()[i * w..(i + 1) * w].copy_from_slice(&g.data()[k * w..(k + 1) * w]);
    }
    Ok((value, grad))
}

/// A metric's batch value with Keras's masking: its mean over the unmasked positions (0 when
/// every position is masked).
pub(crate) fn masked_metric(
    metric: &Metric,
    pred: &Tensor,
    y: &Tensor,
    mask: &[bool],
) -> Result<f64> {
    let (p, t, kept) = unmasked_rows(pred, y, mask)?;
    Ok(if kept.is_empty() {
        0.0
    } else {
        metric.batch_value(&p, &t)
    })
}

impl Model {
    /// The mask Keras would attach to output `i` of the last forward pass (`None` without one):
    /// one boolean per position of the output without its last axis, true where the position
    /// holds data. Set when an `Embedding(mask_zero=True)`'s mask reaches the output.
    pub fn output_mask(&self, i: usize) -> Option<&[bool]> {
        self.output_masks.get(i)?.as_deref()
    }
}
