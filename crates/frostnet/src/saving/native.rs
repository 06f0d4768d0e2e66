//! Weights in safetensors, named by Keras 3 paths (`dense/kernel`), with each weight's trainable
//! flag in the metadata, so a checkpoint restores exactly what was frozen.
//!
//! A whole model ([`save_model`]) is the same file with two more metadata entries:
//! `frostnet_format = "model/1"` and `config`, the model's Keras 3 config JSON (per-layer
//! `trainable` included), which `keras_config.rs` rebuilds the architecture from. Values are stored
//! as raw little-endian f32, so a round trip is bit-exact.
//!
//! A compiled model also gets `compile`: the optimizer's class, hyperparameters and iteration
//! count (from [`Optimizer::state`](crate::training::Optimizer::state)), the loss and the metrics;
//! the optimizer's slots are tensors named `__optimizer__/<weight path>/<slot index>`. Loading
//! compiles the model again with all of it, so `fit` resumes exactly where it stopped. An
//! optimizer that cannot export its state (a custom one) is left out, and the model loads
//! uncompiled.

use super::write_atomic;
use crate::error::{Error, Result};
use crate::layers::{Layer, WeightKind};
use crate::models::Model;
use crate::tensor::Tensor;
use crate::training::{optimizer_from_state, Compiled, Loss, Metric, OptimizerState};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;

fn file_err(path: &str, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.into(),
        message: message.to_string(),
    }
}

/// Saves every weight of `model` (atomically).
pub fn save_weights(model: &Model, path: &str) -> Result<()> {
    write_atomic(path, &serialize(model, path, HashMap::new(), Vec::new())?)
}

/// The metadata value that marks a whole-model file, and its layout version.
const MODEL_FORMAT: &str = "model/1";

/// Saves the whole model, architecture and weights, as one safetensors file (atomically).
pub fn save_model(model: &Model, path: &str) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("frostnet_format".to_string(), MODEL_FORMAT.to_string());
    meta.insert(
        "config".to_string(),
        super::keras_config::model_config(model).to_string(),
    );
    let mut extra = Vec::new();
    if let Some((compile, slots)) = compile_state(model) {
        meta.insert("compile".to_string(), compile.to_string());
        extra = slots;
    }
    write_atomic(path, &serialize(model, path, meta, extra)?)
}

/// Prefix of optimizer slot tensors; no weight path starts with it.
const SLOT_PREFIX: &str = "__optimizer__/";

/// The `compile` metadata and the slot tensors of a compiled model whose optimizer can export
/// its state.
fn compile_state(model: &Model) -> Option<(serde_json::Value, Vec<(String, Tensor)>)> {
    let c = model.compiled.as_ref()?;
    let named = model.named_weights();
    let state = c.optimizer.state(&named)?;
    let mut slots = Vec::new();
    let mut counts = serde_json::Map::new();
    for (path, tensors) in state.slots {
        counts.insert(path.clone(), tensors.len().into());
        for (i, t) in tensors.into_iter().enumerate() {
            slots.push((format!("{SLOT_PREFIX}{path}/{i}"), t));
        }
    }
    let from_logits = match c.loss {
        Loss::BinaryCrossentropy { from_logits }
        | Loss::CategoricalCrossentropy { from_logits }
        | Loss::SparseCategoricalCrossentropy { from_logits } => from_logits,
        _ => false,
    };
    let compile = serde_json::json!({
        "optimizer": {"class_name": state.class_name, "config": state.config,
                      "iterations": state.iterations, "slots": counts},
        "loss": {"name": c.loss.name(), "from_logits": from_logits},
        "metrics": c.metrics.iter().map(|(_, name)| *name).collect::<Vec<_>>(),
    });
    Some((compile, slots))
}

/// Compiles `model` again from the `compile` metadata and the slot tensors in `st`.
fn restore_compile(model: &mut Model, path: &str, compile: &str, st: &SafeTensors) -> Result<()> {
    use serde_json::Value;
    let bad = |what: &str| file_err(path, format!("optimizer state: {what}"));
    let c: Value = serde_json::from_str(compile).map_err(|_| bad("not JSON"))?;
    let opt = &c["optimizer"];
    let mut slots = Vec::new();
    for (wpath, n) in opt["slots"].as_object().ok_or_else(|| bad("no slots"))? {
        let n = n
            .as_u64()
            .filter(|&n| n <= 8)
            .ok_or_else(|| bad("bad slot count"))?;
        let tensors = (0..n)
            .map(|i| read_f32(st, path, &format!("{SLOT_PREFIX}{wpath}/{i}")))
            .collect::<Result<Vec<_>>>()?;
        slots.push((wpath.clone(), tensors));
    }
    let state = OptimizerState {
        class_name: opt["class_name"]
            .as_str()
            .ok_or_else(|| bad("no class"))?
            .into(),
        config: opt["config"].clone(),
        iterations: opt["iterations"]
            .as_u64()
            .ok_or_else(|| bad("no iterations"))?,
        slots,
    };
    let mut loss =
        Loss::parse(c["loss"]["name"].as_str().unwrap_or("")).map_err(|e| file_err(path, e))?;
    let logits = c["loss"]["from_logits"].as_bool().unwrap_or(false);
    match &mut loss {
        Loss::BinaryCrossentropy { from_logits }
        | Loss::CategoricalCrossentropy { from_logits }
        | Loss::SparseCategoricalCrossentropy { from_logits } => *from_logits = logits,
        _ => {}
    }
    let metrics = c["metrics"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(Metric::parse)
        .collect::<Result<Vec<_>>>()
        .map_err(|e| file_err(path, e))?;
    let optimizer = {
        let named = model.named_weights();
        optimizer_from_state(&state, &named).map_err(|e| file_err(path, e))?
    };
    model.compiled = Some(Compiled {
        optimizer,
        loss,
        metrics: metrics
            .iter()
            .map(|m| (m.resolve(&loss), m.log_name()))
            .collect(),
    });
    Ok(())
}

/// One f32 tensor of the file, checked.
fn read_f32(st: &SafeTensors, path: &str, name: &str) -> Result<Tensor> {
    let t = st
        .tensor(name)
        .map_err(|_| file_err(path, format!("no tensor '{name}' in the file")))?;
    if t.dtype() != Dtype::F32 {
        return Err(file_err(
            path,
            format!("tensor '{name}' is {:?}, expected F32", t.dtype()),
        ));
    }
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(t.shape(), data).map_err(|e| file_err(path, e))
}

/// Loads a file written by [`save_model`]: rebuilds the architecture from its config, restores
/// every weight and every weight's trainable flag.
pub(crate) fn load_model(path: &str) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        file_err(
            path,
            format!("not a Keras file nor a frostnet model file ({e})"),
        )
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("frostnet_format").map(String::as_str) != Some(MODEL_FORMAT) {
        return Err(file_err(
            path,
            "a safetensors file without a frostnet model config (weights only? use load_weights)",
        ));
    }
    let config: serde_json::Value = meta
        .get("config")
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| file_err(path, "the model config is missing or not JSON"))?;
    let mut model = super::keras_config::build_model(&config, path)?;
    load_from_bytes(&mut model, path, &bytes)?;
    if let Some(compile) = meta.get("compile") {
        let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, e))?;
        restore_compile(&mut model, path, compile, &st)?;
    }
    Ok(model)
}

fn serialize(
    model: &Model,
    path: &str,
    mut meta: HashMap<String, String>,
    extra: Vec<(String, Tensor)>,
) -> Result<Vec<u8>> {
    let named = model.named_weights();
    let tensors: Vec<(String, &Tensor)> = named
        .iter()
        .map(|(n, w)| (n.clone(), w.value()))
        .chain(extra.iter().map(|(n, t)| (n.clone(), t)))
        .collect();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::new();
    for ((name, t), b) in tensors.iter().zip(&bytes) {
        let view =
            TensorView::new(Dtype::F32, t.shape().to_vec(), b).map_err(|e| file_err(path, e))?;
        views.push((name.clone(), view));
    }
    meta.extend(
        named
            .iter()
            .map(|(n, w)| (format!("trainable:{n}"), w.is_trainable().to_string())),
    );
    safetensors::serialize(views, Some(meta)).map_err(|e| file_err(path, e))
}

/// Loads weights saved by [`save_weights`] into a model of the same architecture. Every name and
/// shape is checked before anything is assigned, so a mismatch leaves the model unchanged.
pub fn load_weights(model: &mut Model, path: &str) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    load_from_bytes(model, path, &bytes)
}

/// Checks every weight's presence, dtype and shape, then assigns values and trainable flags.
fn load_from_bytes(model: &mut Model, path: &str, bytes: &[u8]) -> Result<()> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| file_err(path, e))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| file_err(path, e))?;
    let mut values = Vec::new();
    let mut flags = Vec::new();
    for (name, w) in model.named_weights() {
        flags.push(meta.get(&format!("trainable:{name}")).map(|f| f == "true"));
        let t = st
            .tensor(&name)
            .map_err(|_| file_err(path, format!("no weight '{name}' in the file")))?;
        if t.dtype() != Dtype::F32 {
            return Err(file_err(
                path,
                format!("weight '{name}' is {:?}, expected F32", t.dtype()),
            ));
        }
        if t.shape() != w.shape() {
            return Err(Error::WeightShape {
                weight: name,
                expected: crate::error::fmt_dims(w.shape()),
                got: crate::error::fmt_dims(t.shape()),
            });
        }
        let data = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        values.push(Tensor::from_vec(t.shape(), data)?);
    }
    Layer::set_weights(model, values)?;
    // A state weight (BN's moving statistics) never trains whatever its flag, so only
    // parameters' flags are restored.
    for (w, flag) in model.weights_mut().into_iter().zip(flags) {
        if let (Some(f), WeightKind::Param) = (flag, w.kind()) {
            w.set_flag(f);
        }
    }
    Ok(())
}
