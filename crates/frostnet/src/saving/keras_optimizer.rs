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

/// Compiles `model` from the archive's `compile_config` and optimizer state, if it has both and
/// frostnet implements what they name.
///
/// A `compile_config` that names what frostnet does not implement leaves the model uncompiled
/// and is returned as a warning (Keras also warns and loads uncompiled when compiling from the
/// saved config fails). Optimizer state that the file has (`/optimizer` exists) but that cannot
/// be read, a truncated file for instance, is an error: it is never dropped silently.
pub(crate) fn restore(
    model: &mut Model,
    config: &Value,
    file: &str,
    limits: &frostnet_formats::Limits,
    has_optimizer: bool,
) -> Result<Option<super::LoadWarning>> {
    let src = Source { file };
    let Some(cc) = config.get("compile_config").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let (class, opt_cfg, loss, metrics) = match supported(cc) {
        Ok(s) => s,
        Err(reason) => {
            return Ok(Some(super::LoadWarning {
                dropped: "compile config and optimizer state (the model loads uncompiled)".into(),
                reason: crate::error::elide(&reason, 100),
            }))
        }
    };
    let bytes = weights_bytes(file, limits.max_weights_member_bytes)
        .map_err(|e| src.err(format!("model.weights.h5: {e}")))?;
    let h5 = hdf5_pure::File::from_bytes(bytes)
        .map_err(|e| src.err(format!("model.weights.h5: {e}")))?;
    let read = |i: usize| {
        read_var(&h5, i, limits.max_dataset_bytes)
            .map_err(|e| src.err(format!("model.weights.h5:/optimizer/vars/{i}: {e}")))
    };
    let compile = |model: &mut Model, state: OptimizerState| -> Result<()> {
        let named = model.named_weights();
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
    };
    let fresh = OptimizerState {
        class_name: class.clone(),
        config: opt_cfg.clone(),
        iterations: 0,
        slots: Vec::new(),
    };
    if !has_optimizer {
        // Compiled but saved without optimizer variables: compiled with a fresh optimizer, as
        // Keras's `compile_from_config` does.
        compile(model, fresh)?;
        return Ok(None);
    }
    let vars = h5
        .group("optimizer/vars")
        .and_then(|g| g.datasets())
        .map_err(|e| {
            src.err(format!(
                "model.weights.h5:/optimizer/vars: unreadable ({e})"
            ))
        })?;
    if vars.is_empty() {
        compile(model, fresh)?; // compiled but never built: no optimizer variables saved
        return Ok(None);
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
    let (per_weight, grouped) = slot_layout(&class, &opt_cfg);
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
    let mut per: Vec<Vec<Tensor>> = vec![Vec::new(); trainable.len()];
    if per_weight > 0 && iterations > 0 {
        for (i, _) in slot_order(trainable.len(), per_weight, grouped) {
            let (path, shape) = &trainable[i];
            match read(next)? {
                Var::Float(t) if t.shape() == shape.as_slice() => per[i].push(t),
                _ => {
                    return Err(src.err(format!(
                        "model.weights.h5:/optimizer/vars/{next}: not the {class} slot of \
                         weight '{path}' (shape {shape:?})"
                    )))
                }
            }
            next += 1;
        }
    }
    let slots = trainable
        .iter()
        .zip(per)
        .filter(|(_, t)| !t.is_empty())
        .map(|((p, _), t)| (p.clone(), t))
        .collect();
    let state = OptimizerState {
        class_name: class,
        config: opt_cfg,
        iterations,
        slots,
    };
    compile(model, state)?;
    Ok(None)
}

/// How many slot variables Keras gives each trainable variable, and whether they are stored
/// grouped by kind (RMSprop: all velocities, then all momentums, then all average gradients)
/// rather than interleaved per variable (Adam: momentum and velocity of each variable in turn;
/// SGD: its one momentum). frostnet keeps each weight's slots in the same kind order.
fn slot_layout(class: &str, cfg: &Value) -> (usize, bool) {
    let on = |k: &str| cfg.get(k).and_then(Value::as_f64).unwrap_or(0.0) != 0.0;
    match class {
        "Adam" | "AdamW" => (2, false),
        "SGD" => (usize::from(on("momentum")), false),
        "RMSprop" => {
            let centered = cfg
                .get("centered")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            (
                1 + usize::from(on("momentum")) + usize::from(centered),
                true,
            )
        }
        _ => (1, false),
    }
}

/// `(weight index, slot kind)` in the order Keras stores the slot variables.
fn slot_order(weights: usize, kinds: usize, grouped: bool) -> Vec<(usize, usize)> {
    if grouped {
        (0..kinds)
            .flat_map(|k| (0..weights).map(move |i| (i, k)))
            .collect()
    } else {
        (0..weights)
            .flat_map(|i| (0..kinds).map(move |k| (i, k)))
            .collect()
    }
}

/// The optimizer class and config, loss and metrics of a `compile_config`, if frostnet implements
/// all of them as configured; otherwise what it does not implement.
fn supported(cc: &Value) -> std::result::Result<(String, Value, Loss, Vec<Metric>), String> {
    let opt = cc
        .get("optimizer")
        .ok_or("compile_config has no optimizer")?;
    let class = opt
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("optimizer {opt} has no class_name"))?;
    let c = opt
        .get("config")
        .filter(|c| c.is_object())
        .ok_or_else(|| format!("optimizer {class} has no config"))?;
    let off = |k: &str| c.get(k).is_none_or(|v| v.is_null() || v == &json!(false));
    for option in [
        "use_ema",
        "clipnorm",
        "clipvalue",
        "global_clipnorm",
        "gradient_accumulation_steps",
        "loss_scale_factor",
        "amsgrad",
    ] {
        if !off(option) {
            return Err(format!(
                "optimizer option {option} = {} is not implemented in frostnet",
                c[option]
            ));
        }
    }
    let mut cfg = c.clone();
    let no_decay = c.get("weight_decay").is_none_or(Value::is_null);
    let class = match class {
        "Adam" if no_decay => "Adam",
        "AdamW" => "AdamW",
        "SGD" if no_decay => "SGD",
        // Keras stores RMSprop's velocity, momentum and average-gradient slots as separate
        // lists (see `slot_layout`).
        "RMSprop" if no_decay => "RMSprop",
        other => {
            return Err(format!(
                "optimizer {other} with this configuration is not implemented in frostnet"
            ))
        }
    };
    if class == "Adam" {
        cfg["weight_decay"] = Value::Null;
    }
    let unknown_loss = |v: &Value| format!("loss {v} is not implemented in frostnet");
    let loss_value = cc.get("loss").ok_or("compile_config has no loss")?;
    let loss = match loss_value {
        Value::String(s) => Loss::parse(s).map_err(|_| unknown_loss(loss_value))?,
        Value::Object(o) => {
            let name = o
                .get("class_name")
                .and_then(Value::as_str)
                .ok_or_else(|| unknown_loss(loss_value))?;
            let mut loss = Loss::parse(&crate::layers::naming::snake_case(name))
                .map_err(|_| unknown_loss(loss_value))?;
            let logits = o
                .get("config")
                .and_then(|c| c.get("from_logits"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match &mut loss {
                Loss::BinaryCrossentropy { from_logits }
                | Loss::CategoricalCrossentropy { from_logits }
                | Loss::SparseCategoricalCrossentropy { from_logits } => *from_logits = logits,
                _ if logits => return Err(unknown_loss(loss_value)),
                _ => {}
            }
            loss
        }
        _ => return Err(unknown_loss(loss_value)),
    };
    let metrics = match cc.get("metrics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) => m
            .iter()
            .map(|m| {
                m.as_str()
                    .and_then(|s| Metric::parse(s).ok())
                    .ok_or_else(|| format!("metric {m} is not implemented in frostnet"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("metrics {other} is not a list")),
    };
    Ok((class.to_string(), cfg, loss, metrics))
}

/// The bytes of `model.weights.h5` in the archive at `file`, refused if it declares more than
/// `max` bytes (what the model can need, see `limits_for`).
fn weights_bytes(file: &str, max: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| e.to_string())?;
    let member = zip.by_name("model.weights.h5").map_err(|e| e.to_string())?;
    if member.size() > max {
        return Err(format!(
            "declares {} bytes, more than the {max} the model can need",
            member.size()
        ));
    }
    let mut bytes = Vec::with_capacity(member.size() as usize);
    member
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("inflates past the {max} bytes the model can need"));
    }
    Ok(bytes)
}

enum Var {
    Int(i64),
    Float(Tensor),
}

/// Reads `/optimizer/vars/<i>`: an int64 scalar or a little-endian float32 array, checking its
/// stored size against its shape and the file before reading.
fn read_var(h5: &hdf5_pure::File, i: usize, max: u64) -> std::result::Result<Var, String> {
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
    if count > max {
        return Err(format!(
            "declares {count} bytes, more than the model's largest weight ({max})"
        ));
    }
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

// Writing: what `model.save("x.keras")` writes for a compiled model.

/// The optimizer part of a `.keras` archive: Keras 3's `compile_config` and the variables of
/// `/optimizer/vars` in Keras's order.
pub(crate) struct SavedOptimizer {
    pub(crate) compile_config: Value,
    /// The `name` attribute of `/optimizer/vars` (the optimizer's name).
    pub(crate) name: String,
    /// `iterations`, then the learning rate (absent for a schedule), then the slots.
    pub(crate) iterations: i64,
    pub(crate) learning_rate: Option<f32>,
    pub(crate) slots: Vec<Tensor>,
}

/// What a compiled `model` saves for its optimizer, as Keras 3.15 writes it, so that Keras and
/// frostnet load the model compiled and resume training where it stopped. `None` for an
/// uncompiled model or an optimizer that cannot export its state.
///
/// Keras builds the optimizer for every trainable variable when it compiles a loaded model, so
/// every trainable weight gets its slots here, zeros for a weight not updated yet (frostnet creates
/// slots on a weight's first update, with the same zeros).
pub(crate) fn to_keras(model: &Model) -> Option<SavedOptimizer> {
    let compiled = model.compiled.as_ref()?;
    let opt = compiled.optimizer.as_ref();
    let named = model.named_weights();
    let state = opt.state(&named)?;
    let class = state.class_name.as_str();
    let name = crate::layers::naming::snake_case(class);
    let mut cfg = json!({
        "name": name,
        "learning_rate": null,
        "weight_decay": null,
        "clipnorm": null,
        "global_clipnorm": null,
        "clipvalue": null,
        "use_ema": false,
        "ema_momentum": 0.99,
        "ema_overwrite_frequency": null,
        "loss_scale_factor": null,
        "gradient_accumulation_steps": null,
    });
    for (k, v) in state.config.as_object()? {
        cfg[k] = v.clone();
    }
    if matches!(class, "Adam" | "AdamW") {
        cfg["amsgrad"] = json!(false);
    }
    let lr = match &state.config["learning_rate"] {
        Value::Object(s) => {
            // Keras 3's serialised schedule.
            let mut s = Value::Object(s.clone());
            s["module"] = json!("keras.optimizers.schedules");
            s["registered_name"] = Value::Null;
            cfg["learning_rate"] = s;
            None
        }
        _ => {
            let lr = opt.learning_rate();
            cfg["learning_rate"] = json!(lr);
            Some(lr)
        }
    };
    let loss = match compiled.loss {
        Loss::BinaryCrossentropy { from_logits: true }
        | Loss::CategoricalCrossentropy { from_logits: true }
        | Loss::SparseCategoricalCrossentropy { from_logits: true } => {
            let name = compiled.loss.name();
            let mut config = json!({"name": name, "reduction": "sum_over_batch_size",
                                    "from_logits": true});
            if name != "sparse_categorical_crossentropy" {
                config["label_smoothing"] = json!(0.0);
                config["axis"] = json!(-1);
            } else {
                config["ignore_class"] = Value::Null;
            }
            let class: String = name
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            json!({"module": "keras.losses", "class_name": class, "config": config,
                   "registered_name": null})
        }
        loss => json!(loss.name()),
    };
    let metrics = if compiled.metrics.is_empty() {
        Value::Null
    } else {
        compiled.metrics.iter().map(|(_, n)| json!(n)).collect()
    };
    let compile_config = json!({
        "optimizer": {"module": "keras.optimizers", "class_name": class, "config": cfg,
                      "registered_name": null},
        "loss": loss,
        "loss_weights": null,
        "metrics": metrics,
        "weighted_metrics": null,
        "run_eagerly": false,
        "steps_per_execution": 1,
        "jit_compile": false,
    });
    let trainable: Vec<&(String, &crate::layers::Weight)> = if model.is_trainable() {
        named.iter().filter(|(_, w)| w.is_trainable()).collect()
    } else {
        Vec::new()
    };
    let (kinds, grouped) = slot_layout(class, &state.config);
    let mut slots = Vec::new();
    for (i, k) in slot_order(trainable.len(), kinds, grouped) {
        let (path, w) = trainable[i];
        let saved = state
            .slots
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, t)| t.get(k));
        slots.push(saved.cloned().unwrap_or_else(|| Tensor::zeros(w.shape())));
    }
    Some(SavedOptimizer {
        compile_config,
        name,
        iterations: state.iterations as i64,
        learning_rate: lr,
        slots,
    })
}
