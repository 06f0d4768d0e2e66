//! The optimizer of a `.keras` archive: its `compile_config` and the state under `/optimizer/vars`
//! of `model.weights.h5`, restored so that a model loaded from Keras resumes training (and its
//! Keras 3 summary counts the optimizer's parameters, as Keras's does after `load_model`).
//!
//! Keras 3 stores, in order: `iterations` (int64), `learning_rate` (float32, absent for a
//! schedule), then per trainable variable in `model.trainable_variables` order its slots: Adam
//! `momentum, velocity`; SGD with momentum `momentum`; RMSprop (without momentum, not centered)
//! `velocity`. That is frostnet's slot order too.
//!
//! What frostnet does not implement (another optimizer, EMA, clipping, gradient accumulation, a
//! loss or metric it lacks) leaves the model uncompiled, as a model saved without compiling would
//! be; malformed optimizer data in the file is an error. `frostnet-formats` skips the optimizer
//! group, so it is read here, with the same checks it applies to weights: type, shape, stored
//! size and position within the file are verified before any data is read.

use super::keras_config::Source;
use crate::error::Result;
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
use crate::training::{optimizer_from_state, Compiled, Loss, Metric, OptimizerState};
use hdf5_pure::{DType, Datatype, DatatypeByteOrder, Layout};
use serde_json::{json, Value};

/// Largest `model.weights.h5` read back for its optimizer state.
const MAX_WEIGHTS_BYTES: u64 = 1 << 32;

/// Compiles `model` from the archive's `compile_config` and optimizer state, if it has both and
/// frostnet implements what they name.
pub(crate) fn restore(model: &mut Model, config: &Value, file: &str) -> Result<()> {
    let src = Source { file };
    let Some(cc) = config.get("compile_config").filter(|c| c.is_object()) else {
        return Ok(());
    };
    let Some((class, opt_cfg, loss, metrics)) = supported(cc) else {
        return Ok(());
    };
    let bytes = weights_bytes(file).map_err(|e| src.err(format!("model.weights.h5: {e}")))?;
    let h5 = hdf5_pure::File::from_bytes(bytes)
        .map_err(|e| src.err(format!("model.weights.h5: {e}")))?;
    let read = |i: usize| {
        read_var(&h5, i).map_err(|e| src.err(format!("model.weights.h5:/optimizer/vars/{i}: {e}")))
    };
    if h5.dataset("optimizer/vars/0").is_err() {
        return Ok(()); // compiled but never trained: no optimizer state saved
    }
    let iterations = match read(0)? {
        Var::Int(n) if n >= 0 => n as u64,
        _ => return Err(src.err("model.weights.h5:/optimizer/vars/0: iterations is not a count")),
    };
    let schedule = opt_cfg.get("learning_rate").is_some_and(Value::is_object);
    let mut next = 1;
    let mut opt_cfg = opt_cfg.clone();
    if !schedule {
        match read(1)? {
            Var::Float(t) if t.len() == 1 => opt_cfg["learning_rate"] = json!(t.data()[0]),
            _ => {
                return Err(
                    src.err("model.weights.h5:/optimizer/vars/1: learning rate is not a scalar")
                )
            }
        }
        next = 2;
    }
    let per_weight = match class.as_str() {
        "Adam" | "AdamW" => 2,
        "SGD" => usize::from(opt_cfg["momentum"].as_f64().unwrap_or(0.0) != 0.0),
        _ => 1,
    };
    let named = model.named_weights();
    let trainable: Vec<(String, Vec<usize>)> = if model.is_trainable() {
        named
            .iter()
            .filter(|(_, w)| w.is_trainable())
            .map(|(p, w)| (p.clone(), w.shape().to_vec()))
            .collect()
    } else {
        Vec::new()
    };
    let mut slots = Vec::new();
    if per_weight > 0 && iterations > 0 {
        for (path, shape) in &trainable {
            let mut tensors = Vec::new();
            for _ in 0..per_weight {
                match read(next)? {
                    Var::Float(t) if t.shape() == shape.as_slice() => tensors.push(t),
                    _ => {
                        return Err(src.err(format!(
                            "model.weights.h5:/optimizer/vars/{next}: not the {class} slot of \
                             weight '{path}' (shape {shape:?})"
                        )))
                    }
                }
                next += 1;
            }
            slots.push((path.clone(), tensors));
        }
    }
    let state = OptimizerState {
        class_name: class,
        config: opt_cfg,
        iterations,
        slots,
    };
    let optimizer = optimizer_from_state(&state, &named).map_err(|e| src.err(e.to_string()))?;
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

/// The optimizer class and config, loss and metrics of a `compile_config`, if frostnet implements
/// all of them as configured.
fn supported(cc: &Value) -> Option<(String, Value, Loss, Vec<Metric>)> {
    let opt = cc.get("optimizer")?;
    let class = opt.get("class_name")?.as_str()?;
    let c = opt.get("config").filter(|c| c.is_object())?;
    let off = |k: &str| c.get(k).is_none_or(|v| v.is_null() || v == &json!(false));
    if !(off("use_ema")
        && off("clipnorm")
        && off("clipvalue")
        && off("global_clipnorm")
        && off("gradient_accumulation_steps")
        && off("loss_scale_factor")
        && off("amsgrad"))
    {
        return None;
    }
    let mut cfg = c.clone();
    let class = match class {
        "Adam" if c.get("weight_decay").is_none_or(Value::is_null) => "Adam",
        "AdamW" => "AdamW",
        "SGD" if c.get("weight_decay").is_none_or(Value::is_null) => "SGD",
        // Keras creates RMSprop's momentum and average-gradient slots as separate lists, an
        // order frostnet does not reproduce; plain RMSprop has one slot per weight.
        "RMSprop"
            if c.get("weight_decay").is_none_or(Value::is_null)
                && c.get("momentum").and_then(Value::as_f64).unwrap_or(0.0) == 0.0
                && !c.get("centered").and_then(Value::as_bool).unwrap_or(false) =>
        {
            "RMSprop"
        }
        _ => return None,
    };
    if class == "Adam" {
        cfg["weight_decay"] = Value::Null;
    }
    let loss = match cc.get("loss")? {
        Value::String(s) => Loss::parse(s).ok()?,
        Value::Object(o) => {
            let name = crate::layers::naming::snake_case(o.get("class_name")?.as_str()?);
            let mut loss = Loss::parse(&name).ok()?;
            let logits = o
                .get("config")
                .and_then(|c| c.get("from_logits"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match &mut loss {
                Loss::BinaryCrossentropy { from_logits }
                | Loss::CategoricalCrossentropy { from_logits }
                | Loss::SparseCategoricalCrossentropy { from_logits } => *from_logits = logits,
                _ if logits => return None,
                _ => {}
            }
            loss
        }
        _ => return None,
    };
    let metrics = match cc.get("metrics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) => m
            .iter()
            .map(|m| Metric::parse(m.as_str()?).ok())
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    Some((class.to_string(), cfg, loss, metrics))
}

/// The bytes of `model.weights.h5` in the archive at `file`.
fn weights_bytes(file: &str) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| e.to_string())?;
    let member = zip.by_name("model.weights.h5").map_err(|e| e.to_string())?;
    if member.size() > MAX_WEIGHTS_BYTES {
        return Err(format!("{} bytes is too large", member.size()));
    }
    let mut bytes = Vec::with_capacity(member.size() as usize);
    member
        .take(MAX_WEIGHTS_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

enum Var {
    Int(i64),
    Float(Tensor),
}

/// Reads `/optimizer/vars/<i>`: an int64 scalar or a little-endian float32 array, checking its
/// stored size against its shape and the file before reading.
fn read_var(h5: &hdf5_pure::File, i: usize) -> std::result::Result<Var, String> {
    let ds = h5
        .dataset(&format!("optimizer/vars/{i}"))
        .map_err(|e| format!("missing ({e})"))?;
    let dtype = ds.dtype().map_err(|e| e.to_string())?;
    let elem = match dtype {
        DType::I64 | DType::F32 => {
            if matches!(dtype, DType::I64) {
                8u64
            } else {
                4
            }
        }
        other => return Err(format!("unsupported type {other}")),
    };
    let little = matches!(
        ds.datatype().map_err(|e| e.to_string())?,
        Datatype::FixedPoint {
            byte_order: DatatypeByteOrder::LittleEndian,
            ..
        } | Datatype::FloatingPoint {
            byte_order: DatatypeByteOrder::LittleEndian,
            ..
        }
    );
    if !little {
        return Err("not little-endian".into());
    }
    let shape = ds.shape().map_err(|e| e.to_string())?;
    let count = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(elem))
        .ok_or("shape overflows")?;
    match ds.layout().map_err(|e| e.to_string())? {
        Layout::Contiguous {
            address: Some(a),
            size,
        } if size == count && a.checked_add(size).is_some_and(|e| e <= h5.file_size()) => {}
        Layout::Compact { size } if size == count => {}
        other => return Err(format!("unexpected storage {other:?} for shape {shape:?}")),
    }
    let raw = ds.read_raw().map_err(|e| e.to_string())?;
    if raw.len() as u64 != count {
        return Err(format!("read {} bytes, expected {count}", raw.len()));
    }
    if matches!(dtype, DType::I64) {
        let b: [u8; 8] = raw.as_slice().try_into().map_err(|_| "not a scalar")?;
        return Ok(Var::Int(i64::from_le_bytes(b)));
    }
    let data = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    Tensor::from_vec(&dims, data)
        .map(Var::Float)
        .map_err(|e| e.to_string())
}
