//! Assigning weights read from a Keras file to a built model.
//!
//! Keras files identify a layer's variables by position within the layer, and layers by name:
//! Keras 3 files by path (`["base", "base_conv"]` for a layer of a nested model), legacy `.h5`
//! files by the top-level name only, a nested model's variables flattened under it. Every entry
//! is matched to a layer and every shape is checked against the built model *before* anything
//! is assigned, so a mismatch leaves the model unchanged; every layer of the model that has
//! weights must get them, so a file for another architecture cannot half-load.

use crate::error::{fmt_dims, Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
use frostnet_formats::LayerWeights;
use std::collections::HashSet;

/// How the file names nested models' weights.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Keras 3: one entry per layer, nested layers by path; a model's own entry holds only the
    /// model's own variables (frostnet models have none).
    Keras3,
    /// Legacy `.h5`: one entry per top-level layer; a nested model's entry holds all its layers'
    /// weights in order.
    Legacy,
}

fn find<'a>(model: &'a Model, path: &[String]) -> Option<&'a dyn Layer> {
    let layer = model.get_layer(path.first()?).ok()?;
    match &path[1..] {
        [] => Some(layer),
        rest => find(layer.as_model()?, rest),
    }
}

fn find_mut<'a>(model: &'a mut Model, path: &[String]) -> Option<&'a mut dyn Layer> {
    let layer = model.get_layer_mut(path.first()?).ok()?;
    match &path[1..] {
        [] => Some(layer),
        rest => find_mut(layer.as_model_mut()?, rest),
    }
}

/// Paths of every weight-holding layer that is not a model, nested ones included.
fn leaf_paths(model: &Model, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for layer in model.layers() {
        let mut p = prefix.to_vec();
        p.push(layer.name().to_string());
        match layer.as_model() {
            Some(m) => leaf_paths(m, &p, out),
            None if !layer.weights().is_empty() => out.push(p),
            None => {}
        }
    }
}

/// Checks `entries` against `model` and, only if all agree, assigns them.
pub(crate) fn assign(
    model: &mut Model,
    entries: &[LayerWeights],
    layout: Layout,
    file: &str,
) -> Result<()> {
    let err = |message: String| Error::File {
        path: file.to_string(),
        message,
    };
    let mut covered: HashSet<Vec<String>> = HashSet::new();
    let mut plan: Vec<(&LayerWeights, Vec<Tensor>)> = Vec::new();
    for entry in entries {
        let shown = entry.path.join("/");
        if entry.path.is_empty() {
            if entry.weights.is_empty() {
                continue;
            }
            return Err(err(format!(
                "the file has {} weights of model '{}' itself, which frostnet models do not have",
                entry.weights.len(),
                model.name()
            )));
        }
        let Some(layer) = find(model, &entry.path) else {
            if entry.weights.is_empty() {
                continue;
            }
            return Err(err(format!(
                "the file has weights for layer '{shown}', which model '{}' does not have",
                model.name()
            )));
        };
        let expected: Vec<(String, Vec<usize>)> = match (layer.as_model(), layout) {
            (Some(_), Layout::Keras3) => Vec::new(),
            (Some(m), Layout::Legacy) => {
                let mut leaves = Vec::new();
                leaf_paths(m, &entry.path, &mut leaves);
                covered.extend(leaves);
                m.named_weights()
                    .into_iter()
                    .map(|(p, w)| (p, w.shape().to_vec()))
                    .collect()
            }
            (None, _) => {
                covered.insert(entry.path.clone());
                layer
                    .weights()
                    .iter()
                    .map(|w| (w.name().to_string(), w.shape().to_vec()))
                    .collect()
            }
        };
        if expected.len() != entry.weights.len() {
            return Err(err(format!(
                "layer '{shown}' ({}) has {} weights in the model but {} in the file (at {})",
                layer.class_name(),
                expected.len(),
                entry.weights.len(),
                entry.h5_group
            )));
        }
        let mut values = Vec::with_capacity(expected.len());
        for ((wname, shape), w) in expected.iter().zip(&entry.weights) {
            if *shape != w.shape {
                return Err(err(format!(
                    "layer '{shown}' ({}): weight '{wname}' has shape {} in the model but the \
                     file's '{}' (at {}) has shape {}",
                    layer.class_name(),
                    fmt_dims(shape),
                    w.name,
                    entry.h5_group,
                    fmt_dims(&w.shape)
                )));
            }
            values.push(
                Tensor::from_vec(&w.shape, w.data.clone())
                    .map_err(|e| err(format!("layer '{shown}': {e}")))?,
            );
        }
        plan.push((entry, values));
    }
    let mut leaves = Vec::new();
    leaf_paths(model, &[], &mut leaves);
    if let Some(missing) = leaves.iter().find(|p| !covered.contains(*p)) {
        return Err(err(format!(
            "the file has no weights for layer '{}' of model '{}'",
            missing.join("/"),
            model.name()
        )));
    }
    for (entry, values) in plan {
        if values.is_empty() {
            continue;
        }
        let layer = find_mut(model, &entry.path).expect("found above");
        for (w, v) in layer.weights_mut().into_iter().zip(values) {
            w.assign(v)?;
        }
    }
    Ok(())
}
