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
//! Writing ([`model_config`]) produces Keras 3's layout, so that real Keras can load what
//! frostnet saves and [`build_model`] can rebuild it.

use crate::error::{Error, Result};
use crate::layers::{
    naming, Activation, ActivationFn, Add, AveragePooling2D, BatchNormalization, Concatenate,
    Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
    InputLayer, Layer, LayerOptions, MaxPooling2D, Multiply, ReLU, Rescaling, Reshape,
    SeparableConv2D, Shape, ZeroPadding2D,
};
use crate::models::{Functional, Model, ModelKind, Sequential, SymbolicTensor};
use crate::tensor::Padding;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Largest size accepted for any one dimension or hyper-parameter read from a config. Real models
/// stay far below; a corrupt file must not make frostnet allocate terabytes.
const MAX_DIM: u64 = 1 << 20;
/// Largest number of scalars one layer's weights may hold (1 GiB of f32).
const MAX_LAYER_PARAMS: u64 = 1 << 28;
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
    fn layer_err(&self, layer: &str, class: &str, what: impl std::fmt::Display) -> Error {
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
        if model.input_shapes().is_empty() && class != "InputLayer" {
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
        let inputs = if class == "InputLayer" {
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

/// The `(layer name, tensor index)` references of one call of a layer, from either layout.
fn inbound_refs(
    entry: &Value,
    lname: &str,
    class: &str,
    src: &Source,
) -> Result<Vec<(String, u64)>> {
    let nodes = match entry.get("inbound_nodes") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(n)) => n,
        Some(_) => return Err(src.layer_err(lname, class, "inbound_nodes is not a list")),
    };
    match nodes.len() {
        0 => return Ok(Vec::new()),
        1 => {}
        n => {
            return Err(src.layer_err(
                lname,
                class,
                format!("is called {n} times (shared layers are not supported)"),
            ))
        }
    }
    let node = &nodes[0];
    // (layer, node index, tensor index) triples.
    let mut triples = Vec::new();
    match node {
        // Keras 3: {"args": [...], "kwargs": {...}} with __keras_tensor__ entries anywhere in args.
        Value::Object(o) => {
            collect_keras_tensors(o.get("args").unwrap_or(&Value::Null), &mut triples)
        }
        // tf-keras: [["conv", 0, 0, {}], ...].
        Value::Array(calls) => {
            for c in calls {
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
            }
        }
        _ => return Err(src.layer_err(lname, class, "malformed inbound node")),
    }
    // Every layer is called once (checked above for this one, and for every other layer when
    // its own entry is read), so node 0 is the only node there is: any other index points at a
    // call that does not exist, and Keras would fail to find it.
    let mut refs = Vec::with_capacity(triples.len());
    for (from, node, tensor) in triples {
        if node == u64::MAX || tensor == u64::MAX {
            return Err(src.layer_err(
                lname,
                class,
                format!("malformed keras_history of its input from '{from}'"),
            ));
        }
        if node != 0 {
            return Err(src.layer_err(
                lname,
                class,
                format!("takes its input from node {node} of '{from}', which has only node 0"),
            ));
        }
        refs.push((from, tensor));
    }
    if refs.is_empty() {
        return Err(src.layer_err(lname, class, "inbound node references no tensor"));
    }
    Ok(refs)
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

/// `input_layers` / `output_layers`: a flat triple `["image", 0, 0]` or a list of triples.
fn endpoint_names(v: Option<&Value>, what: &str, model: &str, src: &Source) -> Result<Vec<String>> {
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
            // Node 0 is the only node of a layer called once (see `inbound_refs`).
            match (t.get(1).and_then(Value::as_u64), t.get(2).and_then(Value::as_u64)) {
                (Some(0), Some(0)) => Ok(name.to_string()),
                _ => Err(src.err(format!(
                    "model '{model}': {what} entry {t} is not the single output of node 0 of '{name}'"
                ))),
            }
        })
        .collect()
}

fn build_functional(cfg: &Value, name: &str, src: &Source, depth: usize) -> Result<Model> {
    let entries = layer_list(cfg, name, src)?;
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut refs = Vec::with_capacity(entries.len());
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
        let r = inbound_refs(e, &lname, &class, src)?;
        for (from, t) in &r {
            if *t != 0 {
                return Err(src.layer_err(
                    &lname,
                    &class,
                    format!(
                        "takes output {t} of '{from}'; only single-output layers are supported"
                    ),
                ));
            }
        }
        if r.is_empty() && class != "InputLayer" {
            return Err(src.layer_err(&lname, &class, "has no inbound node"));
        }
        refs.push((lname, class, r));
    }
    // Dangling references first, so that they are not reported as cycles.
    for (lname, class, r) in &refs {
        if let Some((from, _)) = r.iter().find(|(from, _)| !by_name.contains_key(from)) {
            return Err(src.layer_err(
                lname,
                class,
                format!("takes its input from '{from}', which is not a layer of model '{name}'"),
            ));
        }
    }
    let mut g = Functional::new();
    let mut built: HashMap<String, SymbolicTensor> = HashMap::new();
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    while !pending.is_empty() {
        let mut progressed = false;
        let mut still = Vec::new();
        for i in pending {
            let (lname, class, r) = &refs[i];
            if !r.iter().all(|(from, _)| built.contains_key(from)) {
                still.push(i);
                continue;
            }
            progressed = true;
            let wrap = |e: Error| src.layer_err(lname, class, e);
            let sym = if class == "InputLayer" {
                let shape = input_shape_of(&entries[i], lname, src)?;
                g.input(InputLayer::new(shape).named(lname))
            } else {
                let ins: Vec<SymbolicTensor> = r.iter().map(|(f, _)| built[f]).collect();
                let shapes = ins
                    .iter()
                    .map(|t| g.shape(*t).cloned())
                    .collect::<Result<Vec<_>>>()
                    .map_err(wrap)?;
                let mut layer = build_layer(&entries[i], &shapes, src, depth)?;
                if layer.name() != lname {
                    layer.base_mut().name = lname.clone();
                }
                g.call_boxed(layer, &ins).map_err(wrap)?
            };
            check_size(g.shape(sym).map_err(wrap)?, name, lname, src)?;
            built.insert(lname.clone(), sym);
        }
        if !progressed {
            let names: Vec<&str> = still.iter().map(|&i| refs[i].0.as_str()).collect();
            return Err(src.err(format!(
                "model '{name}': the layers {} form a cycle",
                names.join(", ")
            )));
        }
        pending = still;
    }
    let lookup = |what: &str, names: Vec<String>| -> Result<Vec<SymbolicTensor>> {
        names
            .iter()
            .map(|n| {
                built.get(n).copied().ok_or_else(|| {
                    src.err(format!(
                        "model '{name}': {what} names '{n}', which is not a layer"
                    ))
                })
            })
            .collect()
    };
    let ins = lookup(
        "input_layers",
        endpoint_names(cfg.get("input_layers"), "input_layers", name, src)?,
    )?;
    let outs = lookup(
        "output_layers",
        endpoint_names(cfg.get("output_layers"), "output_layers", name, src)?,
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
fn batch_shape(v: &Value, src: &Source, lname: &str, class: &str) -> Result<Shape> {
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

/// Reads typed options from one layer's config, naming the layer in every error.
struct Opts<'a> {
    cfg: &'a Map<String, Value>,
    name: &'a str,
    class: &'a str,
    src: &'a Source<'a>,
}

impl Opts<'_> {
    fn err(&self, what: impl std::fmt::Display) -> Error {
        self.src.layer_err(self.name, self.class, what)
    }
    fn get(&self, key: &str) -> Option<&Value> {
        self.cfg.get(key).filter(|v| !v.is_null())
    }
    fn size(&self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("missing '{key}'"))),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_DIM).contains(&n) => Ok(n as usize),
                _ => Err(self.err(format!("'{key}' = {v} is not a supported size"))),
            },
        }
    }
    /// An int or a pair of ints (`kernel_size`, `strides`, `pool_size`).
    fn pair(&self, key: &str, default: Option<(usize, usize)>) -> Result<(usize, usize)> {
        let one = |v: &Value| match v.as_u64() {
            Some(n) if (1..=MAX_DIM).contains(&n) => Ok(n as usize),
            _ => Err(self.err(format!("'{key}' = {v} is not a supported size"))),
        };
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("missing '{key}'"))),
            Some(Value::Array(a)) if a.len() == 2 => Ok((one(&a[0])?, one(&a[1])?)),
            Some(Value::Array(a)) if a.len() == 1 => Ok((one(&a[0])?, one(&a[0])?)),
            Some(v) => one(v).map(|n| (n, n)),
        }
    }
    fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("'{key}' = {v} is not a boolean"))),
        }
    }
    fn float(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.err(format!("'{key}' = {v} is not a number"))),
        }
    }
    fn string(&self, key: &str, default: &'static str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.err(format!("'{key}' = {v} is not a string"))),
        }
    }
    fn activation(&self) -> Result<ActivationFn> {
        let a = match self.get("activation") {
            None => "linear".to_string(),
            Some(Value::String(s)) => s.clone(),
            // Keras 3 may serialise a built-in activation as {"class_name": "function", "config": "relu"}.
            Some(Value::Object(o)) if o.get("config").is_some_and(Value::is_string) => {
                o["config"].as_str().expect("checked").to_string()
            }
            Some(v) => return Err(self.err(format!("activation {v} is not supported"))),
        };
        ActivationFn::parse(&a).map_err(|_| {
            self.err(format!(
                "activation '{a}' is not implemented in frostnet (linear, relu, sigmoid, tanh, \
                 softmax)"
            ))
        })
    }
    fn padding(&self) -> Result<Padding> {
        match self.string("padding", "valid")?.as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            p => Err(self.err(format!("padding '{p}' is not implemented (valid, same)"))),
        }
    }
    /// Options frostnet implements only at one value (e.g. `data_format`): anything else is an
    /// error rather than a silently different model.
    fn require(&self, key: &str, allowed: &[Value]) -> Result<()> {
        match self.get(key) {
            Some(v) if !allowed.contains(v) => Err(self.err(format!(
                "'{key}' = {v} is not implemented in frostnet (supported: {})",
                allowed
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => Ok(()),
        }
    }
    /// Options any layer may carry that change what it computes or how it trains, and that
    /// frostnet does not implement: regularizers, constraints, LoRA, quantization, a dtype other
    /// than float32. Initializers do not matter, since weights come from the file.
    fn generic(&self) -> Result<()> {
        for (k, v) in self.cfg {
            let unsupported = !v.is_null()
                && (k.ends_with("_regularizer")
                    || k.ends_with("_constraint")
                    || k == "lora_rank"
                    || k == "quantization_config");
            if unsupported {
                return Err(self.err(format!("'{k}' = {v} is not implemented in frostnet")));
            }
        }
        let dtype = self
            .get("dtype")
            .map(|d| d.pointer("/config/name").unwrap_or(d));
        match dtype {
            None => Ok(()),
            Some(d) if d == "float32" => Ok(()),
            Some(d) => Err(self.err(format!("dtype {d} is not implemented (float32 only)"))),
        }
    }
    fn conv_common(&self) -> Result<()> {
        self.require("data_format", &[json!("channels_last")])?;
        self.require("dilation_rate", &[json!([1, 1]), json!(1), json!([1])])?;
        self.require("groups", &[json!(1)])
    }
    fn budget(&self, params: u64) -> Result<()> {
        if params > MAX_LAYER_PARAMS {
            return Err(self.err(format!(
                "would hold {params} weights, more than frostnet loads ({MAX_LAYER_PARAMS})"
            )));
        }
        Ok(())
    }
}

/// The channel count (last axis) of the first input, for weight-size checks.
fn last_dim(inputs: &[Shape]) -> u64 {
    inputs
        .first()
        .and_then(|s| s.last().copied().flatten())
        .unwrap_or(1) as u64
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
    };
    o.generic()?;
    let cin = last_dim(inputs);
    let mut layer: Box<dyn Layer> = match class.as_str() {
        "InputLayer" => Box::new(InputLayer::new(input_shape_of(entry, &name, src)?)),
        "Dense" => {
            let units = o.size("units", None)?;
            o.budget(cin * units as u64)?;
            Box::new(
                Dense::new(units)
                    .activation(o.activation()?)
                    .use_bias(o.boolean("use_bias", true)?),
            )
        }
        "Conv2D" => {
            o.conv_common()?;
            let filters = o.size("filters", None)?;
            let k = o.pair("kernel_size", None)?;
            o.budget((k.0 * k.1) as u64 * cin * filters as u64)?;
            Box::new(
                Conv2D::with_kernel(filters, k)
                    .strides2(o.pair("strides", Some((1, 1)))?)
                    .padding(o.padding()?)
                    .activation(o.activation()?)
                    .use_bias(o.boolean("use_bias", true)?),
            )
        }
        "DepthwiseConv2D" => {
            o.conv_common()?;
            let k = o.pair("kernel_size", None)?;
            let dm = o.size("depth_multiplier", Some(1))?;
            o.budget((k.0 * k.1) as u64 * cin * dm as u64)?;
            Box::new(
                DepthwiseConv2D::with_kernel(k)
                    .strides2(o.pair("strides", Some((1, 1)))?)
                    .padding(o.padding()?)
                    .depth_multiplier(dm)
                    .activation(o.activation()?)
                    .use_bias(o.boolean("use_bias", true)?),
            )
        }
        "SeparableConv2D" => {
            o.conv_common()?;
            let filters = o.size("filters", None)?;
            let k = o.pair("kernel_size", None)?;
            let dm = o.size("depth_multiplier", Some(1))?;
            o.budget((k.0 * k.1) as u64 * cin * dm as u64 + cin * dm as u64 * filters as u64)?;
            Box::new(
                SeparableConv2D::with_kernel(filters, k)
                    .strides2(o.pair("strides", Some((1, 1)))?)
                    .padding(o.padding()?)
                    .depth_multiplier(dm)
                    .activation(o.activation()?)
                    .use_bias(o.boolean("use_bias", true)?),
            )
        }
        "BatchNormalization" => {
            // Keras 3 writes -1, tf-keras the absolute axis ([3] for images).
            let rank = inputs.first().map_or(0, |s| s.len() as i64 + 1);
            let axis_ok = match o.get("axis") {
                None => true,
                Some(Value::Array(a)) if a.len() == 1 => {
                    a[0].as_i64().is_some_and(|x| x == -1 || x == rank - 1)
                }
                Some(v) => v.as_i64().is_some_and(|x| x == -1 || x == rank - 1),
            };
            if !axis_ok {
                return Err(o.err(format!(
                    "axis {} is not implemented (only the last axis)",
                    o.get("axis").expect("checked")
                )));
            }
            o.require("renorm", &[json!(false)])?;
            Box::new(
                BatchNormalization::new()
                    .momentum(o.float("momentum", 0.99)?)
                    .epsilon(o.float("epsilon", 1e-3)?)
                    .center(o.boolean("center", true)?)
                    .scale(o.boolean("scale", true)?),
            )
        }
        "Activation" => Box::new(Activation::new(o.activation()?)),
        "ReLU" => {
            let mut r = ReLU::new()
                .negative_slope(o.float("negative_slope", 0.0)?)
                .threshold(o.float("threshold", 0.0)?);
            if o.get("max_value").is_some() {
                r = r.max_value(o.float("max_value", 0.0)?);
            }
            Box::new(r)
        }
        "Dropout" => {
            o.require("noise_shape", &[Value::Null])?;
            let rate = o.float("rate", 0.0)?;
            if !(0.0..1.0).contains(&rate) {
                return Err(o.err(format!("rate {rate} is not in [0, 1)")));
            }
            Box::new(Dropout::new(rate))
        }
        "Flatten" => {
            o.require("data_format", &[json!("channels_last")])?;
            Box::new(Flatten::new())
        }
        "MaxPooling2D" | "AveragePooling2D" => {
            o.require("data_format", &[json!("channels_last")])?;
            let pool = o.pair("pool_size", Some((2, 2)))?;
            let strides = o.pair("strides", Some(pool))?;
            let padding = o.padding()?;
            if class == "MaxPooling2D" {
                Box::new(
                    MaxPooling2D::with_pool(pool)
                        .strides2(strides)
                        .padding(padding),
                )
            } else {
                Box::new(
                    AveragePooling2D::with_pool(pool)
                        .strides2(strides)
                        .padding(padding),
                )
            }
        }
        "GlobalAveragePooling2D" => {
            o.require("data_format", &[json!("channels_last")])?;
            Box::new(GlobalAveragePooling2D::new().keepdims(o.boolean("keepdims", false)?))
        }
        "GlobalMaxPooling2D" => {
            o.require("data_format", &[json!("channels_last")])?;
            Box::new(GlobalMaxPooling2D::new().keepdims(o.boolean("keepdims", false)?))
        }
        "Add" => Box::new(Add::new()),
        "Multiply" => Box::new(Multiply::new()),
        "Concatenate" => {
            let axis = match o.get("axis") {
                None => -1,
                Some(v) => v
                    .as_i64()
                    .filter(|a| a.abs() <= 64)
                    .ok_or_else(|| o.err(format!("axis {v} is not an integer")))?,
            };
            Box::new(Concatenate::with_axis(axis as isize))
        }
        "ZeroPadding2D" => {
            o.require("data_format", &[json!("channels_last")])?;
            let n = |v: &Value| match v.as_u64() {
                Some(n) if n <= MAX_DIM => Ok(n as usize),
                _ => Err(o.err(format!("padding {v} is not a size"))),
            };
            let p = match o.get("padding") {
                None => ((1, 1), (1, 1)),
                Some(Value::Array(a)) if a.len() == 2 => match (&a[0], &a[1]) {
                    (Value::Array(h), Value::Array(w)) if h.len() == 2 && w.len() == 2 => {
                        ((n(&h[0])?, n(&h[1])?), (n(&w[0])?, n(&w[1])?))
                    }
                    (h, w) => {
                        let (h, w) = (n(h)?, n(w)?);
                        ((h, h), (w, w))
                    }
                },
                Some(v) => {
                    let p = n(v)?;
                    ((p, p), (p, p))
                }
            };
            Box::new(ZeroPadding2D::with_padding(p))
        }
        "Rescaling" => {
            let scale = o.float("scale", 1.0)?;
            Box::new(Rescaling::new(scale).offset(o.float("offset", 0.0)?))
        }
        "Reshape" => {
            let t = o
                .get("target_shape")
                .and_then(Value::as_array)
                .ok_or_else(|| o.err("missing 'target_shape'"))?;
            let dims = t
                .iter()
                .map(|d| {
                    d.as_i64()
                        .filter(|&d| d == -1 || (1..=MAX_DIM as i64).contains(&d))
                        .map(|d| d as isize)
                        .ok_or_else(|| o.err(format!("target_shape entry {d} is not a size")))
                })
                .collect::<Result<Vec<_>>>()?;
            Box::new(Reshape::new(&dims))
        }
        other => {
            return Err(src.layer_err(
                &name,
                other,
                format!("layer class '{other}' is not known to frostnet"),
            ))
        }
    };
    layer.base_mut().name = name.clone();
    let trainable = cfg
        .get("trainable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if class != "InputLayer" {
        layer.set_trainable(trainable);
    }
    Ok(layer)
}

// ---------------------------------------------------------------------------------------------
// Writing: frostnet model -> Keras 3 config.json layout.

fn dtype_policy() -> Value {
    json!({"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
           "registered_name": null})
}

fn shape_json(shape: &Shape) -> Value {
    Value::Array(
        std::iter::once(Value::Null)
            .chain(shape.iter().map(|d| d.map_or(Value::Null, |d| json!(d))))
            .collect(),
    )
}

fn keras_tensor(name: &str, shape: &Shape) -> Value {
    json!({"class_name": "__keras_tensor__",
           "config": {"shape": shape_json(shape), "dtype": "float32",
                      "keras_history": [name, 0, 0]}})
}

fn input_entry(layer: &dyn Layer, shape: &Shape) -> Value {
    json!({"module": "keras.layers", "class_name": "InputLayer",
           "config": {"batch_shape": shape_json(shape), "dtype": "float32", "sparse": false,
                      "ragged": false, "name": layer.name(), "optional": false},
           "registered_name": null})
}

/// One listed layer as Keras 3 serialises it (without graph info).
fn layer_entry(layer: &dyn Layer, in_shapes: &[Shape]) -> Value {
    if let Some(m) = layer.as_model() {
        let module = match m.kind() {
            ModelKind::Sequential => "keras.src.models.sequential",
            ModelKind::Functional => "keras.src.models.functional",
        };
        let mut v = model_config(m);
        v["module"] = json!(module);
        if let Some(o) = v.as_object_mut() {
            o.remove("compile_config");
        }
        return v;
    }
    let mut cfg = layer.config();
    if let Some(o) = cfg.as_object_mut() {
        o.insert("dtype".into(), dtype_policy());
    }
    let mut v = json!({"module": "keras.layers", "class_name": layer.class_name(), "config": cfg,
                       "registered_name": null});
    if let Some(s) = in_shapes.first() {
        let shape = if in_shapes.len() == 1 {
            shape_json(s)
        } else {
            Value::Array(in_shapes.iter().map(shape_json).collect())
        };
        v["build_config"] = json!({ "input_shape": shape });
    }
    v
}

/// The Keras 3 config of a model (`config.json`'s content without `compile_config`): every layer's
/// Keras config with its `trainable` flag, and for functional models the graph as
/// `inbound_nodes` / `input_layers` / `output_layers`.
pub fn model_config(model: &Model) -> Value {
    let in_shapes = model.input_shapes();
    let shape_of = |i: usize| model.node_output_shape(i).clone();
    let mut layers = Vec::new();
    match model.kind() {
        ModelKind::Sequential => {
            let first = model.listed_nodes().start;
            if first > 0 {
                layers.push(input_entry(model.nodes[0].layer.as_ref(), &in_shapes[0]));
            }
            for i in model.listed_nodes() {
                let prev = vec![shape_of(i - 1)];
                layers.push(layer_entry(model.nodes[i].layer.as_ref(), &prev));
            }
            json!({"module": "keras", "class_name": "Sequential",
                   "config": {"name": model.name(), "trainable": model.is_trainable(),
                              "dtype": dtype_policy(), "layers": layers,
                              "build_input_shape": shape_json(&in_shapes[0])},
                   "registered_name": null,
                   "build_config": {"input_shape": shape_json(&in_shapes[0])}})
        }
        ModelKind::Functional => {
            for i in model.listed_nodes() {
                let layer = model.nodes[i].layer.as_ref();
                let inbound = &model.nodes[i].inbound;
                let mut e = if inbound.is_empty() {
                    input_entry(layer, &shape_of(i))
                } else {
                    let shapes: Vec<Shape> = inbound.iter().map(|&j| shape_of(j)).collect();
                    layer_entry(layer, &shapes)
                };
                let args: Vec<Value> = inbound
                    .iter()
                    .map(|&j| keras_tensor(model.nodes[j].layer.as_ref().name(), &shape_of(j)))
                    .collect();
                let nodes = match args.len() {
                    0 => json!([]),
                    1 => json!([{"args": args, "kwargs": {}}]),
                    _ => json!([{"args": [args], "kwargs": {}}]),
                };
                e["name"] = json!(layer.name());
                e["inbound_nodes"] = nodes;
                layers.push(e);
            }
            let ends = |idx: &[usize]| -> Value {
                let t: Vec<Value> = idx
                    .iter()
                    .map(|&i| json!([model.nodes[i].layer.as_ref().name(), 0, 0]))
                    .collect();
                if t.len() == 1 {
                    t[0].clone()
                } else {
                    Value::Array(t)
                }
            };
            json!({"module": "keras.src.models.functional", "class_name": "Functional",
                   "config": {"name": model.name(), "trainable": model.is_trainable(),
                              "layers": layers,
                              "input_layers": ends(&model.inputs),
                              "output_layers": ends(&model.outputs)},
                   "registered_name": "Functional", "build_config": {"input_shape": null}})
        }
    }
}
