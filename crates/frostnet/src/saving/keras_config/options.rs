//! Typed reading of one layer's Keras config options, shared by every layer's `from_config`
//! (each in the layer's own file): sizes, pairs, booleans, floats, activations, padding, and
//! the options frostnet implements at one value only. Every error names the file and the layer.

use super::{Source, MAX_DIM, MAX_LAYER_PARAMS};
use crate::error::{Error, Result};
use crate::layers::{ActivationFn, Shape};
use crate::tensor::Padding;
use serde_json::{json, Map, Value};

/// Reads typed options from one layer's config, naming the layer in every error.
pub(crate) struct Opts<'a> {
    pub(crate) cfg: &'a Map<String, Value>,
    pub(crate) name: &'a str,
    pub(crate) class: &'a str,
    pub(crate) src: &'a Source<'a>,
    /// Keras's `registered_name` (`"package>Class"` for registered custom classes).
    pub(crate) registered_name: Option<&'a str>,
    /// For an op node (`keras.src.ops.*`): its call (`inbound_nodes[0]`), whose `args` hold its
    /// constant operands between the keras tensors.
    pub(crate) call: Option<&'a Value>,
}

impl Opts<'_> {
    pub(crate) fn err(&self, what: impl std::fmt::Display) -> Error {
        self.src.layer_err(self.name, self.class, what)
    }
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.cfg.get(key).filter(|v| !v.is_null())
    }
    pub(crate) fn size(&self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("missing '{key}'"))),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_DIM).contains(&n) => Ok(n as usize),
                _ => Err(self.err(format!("'{key}' = {v} is not a supported size"))),
            },
        }
    }
    /// An int or a pair of ints (`kernel_size`, `strides`, `pool_size`).
    pub(crate) fn pair(
        &self,
        key: &str,
        default: Option<(usize, usize)>,
    ) -> Result<(usize, usize)> {
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
    pub(crate) fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("'{key}' = {v} is not a boolean"))),
        }
    }
    pub(crate) fn float(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.err(format!("'{key}' = {v} is not a number"))),
        }
    }
    pub(crate) fn string(&self, key: &str, default: &'static str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.err(format!("'{key}' = {v} is not a string"))),
        }
    }
    pub(crate) fn activation(&self) -> Result<ActivationFn> {
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
            let known: Vec<&str> = ActivationFn::ALL.iter().map(|f| f.as_str()).collect();
            self.err(format!(
                "activation '{a}' is not implemented in frostnet ({})",
                known.join(", ")
            ))
        })
    }
    pub(crate) fn padding(&self) -> Result<Padding> {
        match self.string("padding", "valid")?.as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            p => Err(self.err(format!("padding '{p}' is not implemented (valid, same)"))),
        }
    }
    /// Options frostnet implements only at one value (e.g. `data_format`): anything else is an
    /// error rather than a silently different model.
    pub(crate) fn require(&self, key: &str, allowed: &[Value]) -> Result<()> {
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
    /// frostnet does not implement: LoRA, quantization, a dtype other than float32.
    /// Initializers do not matter, since weights come from the file; regularizers and constraints
    /// are read by [`weight_rules`](Self::weight_rules) once the layer exists.
    pub(crate) fn generic(&self) -> Result<()> {
        for (k, v) in self.cfg {
            let unsupported = !v.is_null() && (k == "lora_rank" || k == "quantization_config");
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
    /// Reads the config's `*_regularizer` and `*_constraint` options onto `layer` (built by its
    /// `from_config`); one the layer does not have or frostnet does not implement is an error.
    pub(crate) fn weight_rules(&self, layer: &mut dyn crate::layers::Layer) -> Result<()> {
        crate::regularizers::read_rules(self.cfg, layer).map_err(|e| self.err(e))
    }
    pub(crate) fn conv_common(&self) -> Result<()> {
        self.require("data_format", &[json!("channels_last")])?;
        self.require("dilation_rate", &[json!([1, 1]), json!(1), json!([1])])?;
        self.require("groups", &[json!(1)])
    }
    pub(crate) fn budget(&self, params: u64) -> Result<()> {
        if params > MAX_LAYER_PARAMS {
            return Err(self.err(format!(
                "would hold {params} weights, more than frostnet loads ({MAX_LAYER_PARAMS})"
            )));
        }
        Ok(())
    }
}

/// The channel count (last axis) of the first input, for weight-size checks.
pub(crate) fn last_dim(inputs: &[Shape]) -> u64 {
    inputs
        .first()
        .and_then(|s| s.last().copied().flatten())
        .unwrap_or(1) as u64
}

impl Opts<'_> {
    /// An `InputLayer`'s per-sample shape, from Keras 3's `batch_shape` or tf-keras's
    /// `batch_input_shape`.
    pub(crate) fn input_shape(&self) -> Result<Shape> {
        let s = self
            .get("batch_shape")
            .or_else(|| self.get("batch_input_shape"))
            .ok_or_else(|| self.err("no batch_shape"))?;
        super::batch_shape(s, self.src, self.name, self.class)
    }
}
