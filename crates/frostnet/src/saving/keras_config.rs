//! Keras model configs (JSON) to frostnet models and back.
//!
//! Reading accepts both layouts Keras has written: Keras 3's (`module` / `class_name` / `config` /
//! `build_config`, `inbound_nodes` as `{"args": [keras tensors], "kwargs": ..}`, `batch_shape`) and
//! tf-keras's (`inbound_nodes` as `[[["conv", 0, 0, {}]]]`, `batch_input_shape`, BN `axis: [3]`).
//! Every layer keeps its name and its saved `trainable` flag. A model's own flag is restored
//! without touching its children, because Keras saves each child's flag too: a frozen nested base
//! comes back frozen, layer by layer, as Keras 3 saved it.
//!
//! A config is treated as untrusted input: an unknown class, an option value frostnet does not
//! implement, a dangling or cyclic graph reference, or a size too large to allocate is an
//! [`Error::File`] naming the file and the layer, never a panic.
//!
//! Writing ([`model_config`], in `writing.rs`) produces Keras 3's layout, so that real Keras can
//! load what frostnet saves and [`build_model`] can rebuild it.
//!
//! This file reads the graph (models, layer lists, inbound nodes, input shapes). What one layer's
//! config means is read by that layer's own `from_config`, found by class name in
//! [`registry`](crate::layers::registry), with the typed option readers of `options.rs`.

pub(crate) mod options;
mod writing;

pub(crate) use options::Opts;
pub use writing::model_config;

use crate::error::{Error, Result};
use crate::layers::{naming, registry, InputLayer, Layer, LayerOptions, Shape};
use crate::models::{Functional, Model, Sequential, SymbolicTensor};
use serde_json::Value;
use std::collections::HashMap;

/// Largest size accepted for any one dimension or hyper-parameter read from a config. Real models
/// stay far below; a corrupt file must not make frostnet allocate terabytes.
pub(crate) const MAX_DIM: u64 = 1 << 20;
/// Largest number of scalars one layer's weights may hold (1 GiB of f32).
pub(crate) const MAX_LAYER_PARAMS: u64 = 1 << 28;
/// How deep models may nest, so a hostile config cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// Where a config came from, for error messages.
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
}

impl Source<'_> {
    /// Messages quote values from the file (a JSON value, a layer name), which a damaged file
    /// can make arbitrarily long: the middle of a long message is elided.
    pub(crate) fn err(&self, message: impl Into<String>) -> Error {
        Error::File {
            path: self.file.to_string(),
            message: crate::error::elide(&message.into(), crate::error::MAX_MESSAGE_CHARS),
        }
    }
    pub(crate) fn layer_err(
        &self,
        layer: &str,
        class: &str,
        what: impl std::fmt::Display,
    ) -> Error {
        self.err(format!("layer '{layer}' ({class}): {what}"))
    }
}

/// Builds a model from a Keras model config (`{"class_name": "Sequential" | "Functional", "config":
/// ...}`), the top of `config.json` or a legacy `.h5`'s `model_config`. Fresh default-name
/// counters are used, so loading does not shift the names of layers the caller creates later.
pub fn build_model(config: &Value, file: &str) -> Result<Model> {
    let src = Source { file };
    naming::with_fresh_names(|| build_model_at(config, &src, 0))
}

fn build_model_at(v: &Value, src: &Source, depth: usize) -> Result<Model> {
    if depth > MAX_DEPTH {
        return Err(src.err(format!("models nested more than {MAX_DEPTH} deep")));
    }
    let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
    let cfg = v
        .get("config")
        .filter(|c| c.is_object())
        .ok_or_else(|| src.err(format!("model config of class '{class}' has no \"config\"")))?;
    let name = cfg.get("name").and_then(Value::as_str).unwrap_or(class);
    let mut model = match class {
        "Sequential" => build_sequential(v, cfg, name, src, depth)?,
        "Functional" | "Model" => build_functional(cfg, name, src, depth)?,
        other => {
            return Err(src.err(format!(
                "model '{name}': class '{other}' is not a model class frostnet can build \
                 (Sequential, Functional)"
            )))
        }
    };
    // The model's own flag only: every child's flag was restored from its own config.
    model.base_mut().trainable = trainable_of(cfg);
    Ok(model)
}

fn trainable_of(cfg: &Value) -> bool {
    cfg.get("trainable")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

fn layer_list<'a>(cfg: &'a Value, model: &str, src: &Source) -> Result<&'a Vec<Value>> {
    cfg.get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| src.err(format!("model '{model}': config has no \"layers\" list")))
}

fn build_sequential(
    top: &Value,
    cfg: &Value,
    name: &str,
    src: &Source,
    depth: usize,
) -> Result<Model> {
    let mut model = Sequential::named(name);
    let wrap = |layer: &str, e: Error| src.err(format!("model '{name}', layer '{layer}': {e}"));
    for entry in layer_list(cfg, name, src)? {
        let (class, lname) = class_and_name(entry);
        if model.input_shapes().is_empty() && class != InputLayer::CLASS {
            // No InputLayer saved: the input shape is in the model's build info or the layer's.
            let shape = cfg
                .get("build_input_shape")
                .or_else(|| top.pointer("/build_config/input_shape"))
                .or_else(|| entry.pointer("/config/batch_input_shape"))
                .or_else(|| entry.pointer("/config/batch_shape"))
                .ok_or_else(|| {
                    src.err(format!(
                        "model '{name}': no input shape for its first layer '{lname}'"
                    ))
                })?;
            let shape = batch_shape(shape, src, name, "InputLayer")?;
            check_size(&shape, name, "InputLayer", src)?;
            model
                .add(InputLayer::new(shape))
                .map_err(|e| wrap(&lname, e))?;
        }
        let inputs = if class == InputLayer::CLASS {
            Vec::new()
        } else {
            model.output_shapes()
        };
        let layer = build_layer(entry, &inputs, src, depth)?;
        model.add_boxed(layer).map_err(|e| wrap(&lname, e))?;
        for shape in model.output_shapes() {
            check_size(&shape, name, &lname, src)?;
        }
    }
    if model.input_shapes().is_empty() {
        return Err(src.err(format!("model '{name}' has no layers")));
    }
    Ok(model)
}

fn class_and_name(entry: &Value) -> (String, String) {
    let class = entry
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let name = entry
        .pointer("/config/name")
        .or_else(|| entry.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    (class, name)
}

/// One call of a layer read from a config: its arguments as `(layer name, node index)` (the
/// output of that layer's call number `node index`) and its `training=` argument, if given.
struct ConfigCall {
    args: Vec<(String, usize)>,
    training: Option<bool>,
}

/// The calls of a layer (its `inbound_nodes`, one per call: a shared layer has several), from
/// either layout. A reference to a node that does not exist is reported once every layer's
/// calls are known.
fn inbound_calls(entry: &Value, lname: &str, class: &str, src: &Source) -> Result<Vec<ConfigCall>> {
    let nodes = match entry.get("inbound_nodes") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(n)) => n,
        Some(_) => return Err(src.layer_err(lname, class, "inbound_nodes is not a list")),
    };
    let mut calls = Vec::with_capacity(nodes.len());
    for node in nodes {
        // (layer, node index, tensor index) triples.
        let mut triples = Vec::new();
        let mut training = None;
        let training_of = |kw: Option<&Value>| -> Result<Option<bool>> {
            match kw.and_then(|k| k.get("training")) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(v) => Err(src.layer_err(
                    lname,
                    class,
                    format!("training={v} in a call is not a boolean"),
                )),
            }
        };
        match node {
            // Keras 3: {"args": [...], "kwargs": {...}} with __keras_tensor__ entries anywhere
            // in args.
            Value::Object(o) => {
                collect_keras_tensors(o.get("args").unwrap_or(&Value::Null), &mut triples);
                training = training_of(o.get("kwargs"))?;
            }
            // tf-keras: [["conv", 0, 0, {}], ...].
            Value::Array(args) => {
                for c in args {
                    let name = c.get(0).and_then(Value::as_str);
                    let node = c.get(1).and_then(Value::as_u64);
                    let tensor = c.get(2).and_then(Value::as_u64);
                    match (name, node, tensor) {
                        (Some(n), Some(k), Some(t)) => triples.push((n.to_string(), k, t)),
                        _ => {
                            return Err(src.layer_err(
                                lname,
                                class,
                                format!("malformed inbound node entry {c}"),
                            ))
                        }
                    }
                    if let Some(t) = training_of(c.get(3))? {
                        training = Some(t);
                    }
                }
            }
            _ => return Err(src.layer_err(lname, class, "malformed inbound node")),
        }
        let mut args = Vec::with_capacity(triples.len());
        for (from, node, tensor) in triples {
            if node == u64::MAX || tensor == u64::MAX {
                return Err(src.layer_err(
                    lname,
                    class,
                    format!("malformed keras_history of its input from '{from}'"),
                ));
            }
            if tensor != 0 {
                return Err(src.layer_err(
                    lname,
                    class,
                    format!(
                        "takes output {tensor} of '{from}'; only single-output layers are supported"
                    ),
                ));
            }
            // A node index past the number of calls is reported by the caller; anything this
            // large cannot be one.
            let node = usize::try_from(node).unwrap_or(usize::MAX);
            args.push((from, node));
        }
        if args.is_empty() {
            return Err(src.layer_err(lname, class, "inbound node references no tensor"));
        }
        calls.push(ConfigCall { args, training });
    }
    Ok(calls)
}

fn collect_keras_tensors(v: &Value, out: &mut Vec<(String, u64, u64)>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_keras_tensors(i, out)),
        Value::Object(o)
            if o.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__") =>
        {
            let h = o.get("config").and_then(|c| c.get("keras_history"));
            let name = h.and_then(|h| h.get(0)).and_then(Value::as_str);
            let node = h.and_then(|h| h.get(1)).and_then(Value::as_u64);
            let tensor = h.and_then(|h| h.get(2)).and_then(Value::as_u64);
            // A malformed history is kept with impossible indices and reported by the caller.
            out.push((
                name.unwrap_or("?").to_string(),
                node.unwrap_or(u64::MAX),
                tensor.unwrap_or(u64::MAX),
            ));
        }
        _ => {}
    }
}

/// `input_layers` / `output_layers`: a flat triple `["image", 0, 0]` or a list of triples, as
/// `(layer name, node index)`.
fn endpoints(
    v: Option<&Value>,
    what: &str,
    model: &str,
    src: &Source,
) -> Result<Vec<(String, usize)>> {
    let bad = || src.err(format!("model '{model}': malformed {what}"));
    let list = v.and_then(Value::as_array).ok_or_else(bad)?;
    let triples: Vec<&Value> = if list.first().is_some_and(Value::is_string) {
        vec![v.expect("checked")]
    } else {
        list.iter().collect()
    };
    triples
        .into_iter()
        .map(|t| {
            let name = t.get(0).and_then(Value::as_str).ok_or_else(bad)?;
            match (
                t.get(1).and_then(Value::as_u64),
                t.get(2).and_then(Value::as_u64),
            ) {
                (Some(node), Some(0)) => Ok((
                    name.to_string(),
                    usize::try_from(node).unwrap_or(usize::MAX),
                )),
                _ => Err(src.err(format!(
                    "model '{model}': {what} entry {t} is not the single output of a call of \
                     '{name}'"
                ))),
            }
        })
        .collect()
}

fn build_functional(cfg: &Value, name: &str, src: &Source, depth: usize) -> Result<Model> {
    let entries = layer_list(cfg, name, src)?;
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // Per layer: (name, class, calls).
    let mut layers = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let (class, lname) = class_and_name(e);
        let lname = e
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(lname);
        if by_name.insert(lname.clone(), i).is_some() {
            return Err(src.err(format!("model '{name}': two layers are named '{lname}'")));
        }
        let calls = inbound_calls(e, &lname, &class, src)?;
        if calls.is_empty() && class != InputLayer::CLASS {
            return Err(src.layer_err(&lname, &class, "has no inbound node"));
        }
        if !calls.is_empty() && class == InputLayer::CLASS {
            return Err(src.layer_err(&lname, &class, "an input layer cannot be called"));
        }
        layers.push((lname, class, calls));
    }
    // tf-keras numbers the calls of a nested model from 1: such a model starts with a node of
    // its own (from its inputs to its outputs) that configs leave out (tf-keras's
    // `_should_skip_first_node`). Keras 3 numbers them from 0 like any layer's.
    let legacy = entries.iter().any(|e| {
        e.get("inbound_nodes")
            .and_then(Value::as_array)
            .and_then(|n| n.first())
            .is_some_and(Value::is_array)
    });
    let offset = |from: &str| -> usize {
        let Some(&l) = by_name.get(from) else {
            return 0;
        };
        let e = &entries[l];
        let starts_with_input = e
            .pointer("/config/layers/0/class_name")
            .and_then(Value::as_str)
            == Some(InputLayer::CLASS);
        match e.get("class_name").and_then(Value::as_str) {
            Some("Functional" | "Model") if legacy => 1,
            Some("Sequential") if legacy && starts_with_input => 1,
            _ => 0,
        }
    };
    for (lname, class, calls) in &mut layers {
        for (from, node) in calls.iter_mut().flat_map(|c| &mut c.args) {
            let skip = offset(from);
            *node = node.checked_sub(skip).ok_or_else(|| {
                src.layer_err(
                    lname,
                    class,
                    format!("takes its input from node {node} of '{from}', which has none"),
                )
            })?;
        }
    }
    // Calls an input layer has: its one (implicit) node.
    let n_calls = |l: usize| layers[l].2.len().max(1);
    // Dangling references first, so that they are not reported as cycles.
    for (lname, class, calls) in &layers {
        for (from, node) in calls.iter().flat_map(|c| &c.args) {
            match by_name.get(from) {
                None => {
                    return Err(src.layer_err(
                        lname,
                        class,
                        format!(
                            "takes its input from '{from}', which is not a layer of model '{name}'"
                        ),
                    ))
                }
                Some(&l) if *node >= n_calls(l) => {
                    return Err(src.layer_err(
                        lname,
                        class,
                        match n_calls(l) {
                            1 => format!(
                                "takes its input from node {node} of '{from}', which has only \
                                 node 0"
                            ),
                            n => format!(
                                "takes its input from node {node} of '{from}', which has only \
                                 nodes 0 to {}",
                                n - 1
                            ),
                        },
                    ))
                }
                Some(_) => {}
            }
        }
    }
    // Calls are made in node-index order for each layer (so node indices survive the trip),
    // each once its arguments exist: the order Keras made them in is one such order.
    let mut g = Functional::new();
    let mut handles: Vec<Option<crate::models::LayerHandle>> = vec![None; layers.len()];
    let mut made: Vec<Vec<SymbolicTensor>> = vec![Vec::new(); layers.len()];
    loop {
        let mut progressed = false;
        let mut pending = Vec::new();
        for (i, (lname, class, calls)) in layers.iter().enumerate() {
            let k = made[i].len();
            if k == n_calls(i) {
                continue;
            }
            let wrap = |e: Error| src.layer_err(lname, class, e);
            if class == InputLayer::CLASS {
                let shape = input_shape_of(&entries[i], lname, src)?;
                let sym = g.input(InputLayer::new(shape).named(lname));
                check_size(g.shape(sym).map_err(wrap)?, name, lname, src)?;
                made[i].push(sym);
                progressed = true;
                continue;
            }
            let call = &calls[k];
            let ready = call
                .args
                .iter()
                .all(|(from, node)| made[by_name[from]].len() > *node);
            if !ready {
                pending.push(lname.as_str());
                continue;
            }
            let ins: Vec<SymbolicTensor> = call
                .args
                .iter()
                .map(|(from, node)| made[by_name[from]][*node])
                .collect();
            let h = match handles[i] {
                Some(h) => h,
                None => {
                    let shapes = ins
                        .iter()
                        .map(|t| g.shape(*t).cloned())
                        .collect::<Result<Vec<_>>>()
                        .map_err(wrap)?;
                    let mut layer = build_layer(&entries[i], &shapes, src, depth)?;
                    if layer.name() != lname {
                        layer.base_mut().name = lname.clone();
                    }
                    let h = g.add_boxed(layer).map_err(wrap)?;
                    handles[i] = Some(h);
                    h
                }
            };
            let sym = g.apply_with(h, &ins, call.training).map_err(wrap)?;
            check_size(g.shape(sym).map_err(wrap)?, name, lname, src)?;
            made[i].push(sym);
            progressed = true;
        }
        if pending.is_empty() && !progressed {
            break;
        }
        if !progressed {
            return Err(src.err(format!(
                "model '{name}': the layers {} form a cycle",
                pending.join(", ")
            )));
        }
    }
    let lookup = |what: &str, ends: Vec<(String, usize)>| -> Result<Vec<SymbolicTensor>> {
        ends.iter()
            .map(|(n, node)| {
                by_name
                    .get(n)
                    .zip(node.checked_sub(offset(n)))
                    .and_then(|(&l, node)| made[l].get(node))
                    .copied()
                    .ok_or_else(|| {
                        src.err(format!(
                            "model '{name}': {what} names node {node} of '{n}', which is not a \
                             call of a layer"
                        ))
                    })
            })
            .collect()
    };
    let ins = lookup(
        "input_layers",
        endpoints(cfg.get("input_layers"), "input_layers", name, src)?,
    )?;
    let outs = lookup(
        "output_layers",
        endpoints(cfg.get("output_layers"), "output_layers", name, src)?,
    )?;
    g.build_named(name, &ins, &outs)
        .map_err(|e| src.err(format!("model '{name}': {e}")))
}

fn input_shape_of(entry: &Value, lname: &str, src: &Source) -> Result<Shape> {
    let c = entry.get("config").unwrap_or(&Value::Null);
    let s = c
        .get("batch_shape")
        .or_else(|| c.get("batch_input_shape"))
        .ok_or_else(|| src.layer_err(lname, "InputLayer", "no batch_shape"))?;
    batch_shape(s, src, lname, "InputLayer")
}

/// `[null, 8, 8, 3]` -> the per-sample shape `[8, 8, 3]`.
pub(crate) fn batch_shape(v: &Value, src: &Source, lname: &str, class: &str) -> Result<Shape> {
    let bad = || src.layer_err(lname, class, format!("malformed shape {v}"));
    let dims = v.as_array().filter(|d| !d.is_empty()).ok_or_else(bad)?;
    dims[1..]
        .iter()
        .map(|d| match d {
            Value::Null => Ok(None),
            d => match d.as_u64() {
                Some(n) if (1..=MAX_DIM).contains(&n) => Ok(Some(n as usize)),
                _ => Err(bad()),
            },
        })
        .collect()
}

/// Largest number of scalars one sample may have at any point of a model: keeps every later size
/// computation (Flatten, Dense fan-in) far from overflow.
const MAX_SAMPLE_ELEMENTS: u64 = 1 << 40;

/// Rejects a layer output too large for the checks above to stay meaningful.
fn check_size(shape: &Shape, model: &str, layer: &str, src: &Source) -> Result<()> {
    let n = shape
        .iter()
        .flatten()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    match n {
        Some(n) if n <= MAX_SAMPLE_ELEMENTS => Ok(()),
        _ => Err(src.err(format!(
            "model '{model}', layer '{layer}': output shape {} is too large",
            crate::error::fmt_batch_shape(shape)
        ))),
    }
}

/// Builds one layer (or nested model) from its config entry; `inputs` are the shapes it will be
/// called on, used to reject sizes too large to allocate before anything is built.
fn build_layer(
    entry: &Value,
    inputs: &[Shape],
    src: &Source,
    depth: usize,
) -> Result<Box<dyn Layer>> {
    let (class, name) = class_and_name(entry);
    if matches!(class.as_str(), "Sequential" | "Functional" | "Model") {
        return Ok(Box::new(build_model_at(entry, src, depth + 1)?));
    }
    let cfg = entry
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| src.layer_err(&name, &class, "has no config"))?;
    let o = Opts {
        cfg,
        name: &name,
        class: &class,
        src,
        registered_name: entry.get("registered_name").and_then(Value::as_str),
        call: entry.pointer("/inbound_nodes/0"),
    };
    o.generic()?;
    // Op nodes (`x + 3.0`, `keras.ops.mean`) are told from layers by module, not class name.
    let module = entry.get("module").and_then(Value::as_str).unwrap_or("");
    if let Some(op_module) = module.strip_prefix("keras.src.ops.") {
        let op = registry::find_op(&class).filter(|_| op_module == "numpy");
        let op = op.ok_or_else(|| {
            let known: Vec<&str> = registry::op_class_names().collect();
            src.err(format!(
                "op node '{name}': the Keras op '{module}.{class}' is not known to frostnet \
                 (it loads the keras.src.ops.numpy ops {})",
                known.join(", ")
            ))
        })?;
        // Keras makes a new op for every call: a second call would need constants of its own.
        let calls = entry.get("inbound_nodes").and_then(Value::as_array);
        if calls.is_some_and(|c| c.len() > 1) {
            return Err(src.err(format!(
                "op node '{name}' ({class}) has several calls; a Keras op node has one"
            )));
        }
        return (op.from_config)(&o, inputs);
    }
    let entry = registry::find(&class).ok_or_else(|| {
        let why = registry::refusal(&class).map_or_else(
            || match o.registered_name.filter(|r| r.contains('>')) {
                Some(r) => format!(
                    "custom layer class '{r}' is not registered: call \
                     frostnet::layers::custom::register_layer(\"{r}\", ...) before loading"
                ),
                None => format!("layer class '{class}' is not known to frostnet"),
            },
            str::to_string,
        );
        src.layer_err(&name, &class, why)
    })?;
    let mut layer = (entry.from_config)(&o, inputs)?;
    o.weight_rules(layer.as_mut())?;
    layer.base_mut().name = name.clone();
    let trainable = cfg
        .get("trainable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if class != InputLayer::CLASS {
        layer.set_trainable(trainable);
    }
    Ok(layer)
}
