//! Registering custom layer classes by name, so models containing them load again (Keras's
//! `@keras.saving.register_keras_serializable(package=...)`).
//!
//! Keras 3 saves a registered class as `"class_name": "Scale"`, `"module": null`,
//! `"registered_name": "my_package>Scale"`, and finds it again by the registered name. frostnet
//! does the same: [`register_layer`] ties a registered name to a function that builds the layer
//! from its saved config; [`save_keras`](crate::saving::save_keras) and
//! [`save_model`](crate::saving::save_model) write the registered name for the class, and
//! [`load_model`](crate::saving::load_model) builds the layer through the function. Weights are
//! matched by position within the layer, in Keras's order (those created trainable first), so a
//! `.keras` file round-trips between frostnet and Keras when both sides register the same class
//! with the same weights:
//!
//! ```python
//! @keras.saving.register_keras_serializable(package="my_package")
//! class Scale(keras.layers.Layer):
//!     def __init__(self, momentum=0.9, **kwargs):
//!         super().__init__(**kwargs)
//!         self.momentum = momentum
//!     def build(self, input_shape):
//!         self.scale = self.add_weight(name="scale", shape=(), initializer="ones")
//!     def call(self, x):
//!         return x * self.scale
//!     def get_config(self):
//!         return {**super().get_config(), "momentum": self.momentum}
//! ```
//!
//! Registration is process-wide, as in Keras; registering a name again replaces the function.

use super::registry::LayerEntry;
use super::{Layer, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use serde_json::{Map, Value};
use std::sync::RwLock;

/// Builds a registered layer from its saved config (Keras's `from_config`). The loader sets the
/// layer's name and `trainable` flag afterwards, and its weights from the file.
pub type CustomFromConfig = fn(&LayerConfig) -> Result<Box<dyn Layer>>;

struct Registration {
    registered_name: String,
    class_name: String,
    from_config: CustomFromConfig,
}

static REGISTRY: RwLock<Vec<Registration>> = RwLock::new(Vec::new());

/// Registers a layer class under Keras's registered name `"package>ClassName"` (a name without a
/// package gets Keras's default package, `Custom`). `ClassName` must be what the layer's
/// [`Layer::class_name`] returns. A built-in class name cannot be registered (it would shadow
/// the built-in layer when loading).
///
/// ```
/// use frostnet::layers::custom::{register_layer, LayerConfig};
/// use frostnet::layers::{Dense, Layer};
/// fn wide_from_config(c: &LayerConfig) -> frostnet::Result<Box<dyn Layer>> {
///     Ok(Box::new(Dense::new(c.size("units", Some(8))?)))
/// }
/// register_layer("my_package>Wide", wide_from_config)?;
/// assert!(register_layer("my_package>Dense", wide_from_config).is_err());
/// # Ok::<(), frostnet::Error>(())
/// ```
pub fn register_layer(registered_name: &str, from_config: CustomFromConfig) -> Result<()> {
    let (package, class) = registered_name
        .split_once('>')
        .unwrap_or(("Custom", registered_name));
    // Keras allows any package string; the class part is the Python class name.
    let class_ok = !class.is_empty() && class.chars().all(|c| c.is_alphanumeric() || c == '_');
    if package.trim().is_empty() || !class_ok {
        return Err(Error::InvalidConfig(format!(
            "'{registered_name}' is not a registered name of the form 'package>ClassName'"
        )));
    }
    if super::registry::builtin(class) {
        return Err(Error::InvalidConfig(format!(
            "'{class}' is a built-in layer class; register the custom class under another name"
        )));
    }
    let full = format!("{package}>{class}");
    let mut reg = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    reg.retain(|r| r.registered_name != full);
    reg.push(Registration {
        registered_name: full,
        class_name: class.to_string(),
        from_config,
    });
    Ok(())
}

/// The registered names, in registration order.
pub fn registered_layers() -> Vec<String> {
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    reg.iter().map(|r| r.registered_name.clone()).collect()
}

/// The registered name written for a layer of `class_name`, if the class is registered.
pub(crate) fn registered_name_of(class_name: &str) -> Option<String> {
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    reg.iter()
        .rev()
        .find(|r| r.class_name == class_name)
        .map(|r| r.registered_name.clone())
}

/// Whether some registration has this class name (the registry's lookup fallback).
pub(crate) fn is_registered(class_name: &str) -> bool {
    registered_name_of(class_name).is_some()
}

/// The registry entry every registered class is read through: it picks the registration by the
/// config's registered name (or, for configs without one, by class name).
pub(crate) static ENTRY: LayerEntry = LayerEntry {
    class_name: "(registered custom class)",
    from_config: from_config_registered,
};

fn from_config_registered(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let f = {
        let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        let found = match o.registered_name.filter(|r| r.contains('>')) {
            Some(r) => reg.iter().find(|x| x.registered_name == r).ok_or_else(|| {
                let known: Vec<&str> = reg
                    .iter()
                    .filter(|x| x.class_name == o.class)
                    .map(|x| x.registered_name.as_str())
                    .collect();
                o.err(format!(
                    "the file names the class '{r}', but '{}' is registered as {}",
                    o.class,
                    known.join(", ")
                ))
            })?,
            None => {
                let mut it = reg.iter().filter(|x| x.class_name == o.class);
                let first = it
                    .next()
                    .ok_or_else(|| o.err("the class is not registered"))?;
                if let Some(second) = it.next() {
                    return Err(o.err(format!(
                        "the file gives no registered name and '{}' and '{}' are both registered",
                        first.registered_name, second.registered_name
                    )));
                }
                first
            }
        };
        found.from_config
    };
    f(&LayerConfig { o, inputs })
}

/// One saved layer's config, handed to a [`CustomFromConfig`]: typed readers that name the file
/// and the layer in every error.
pub struct LayerConfig<'a> {
    o: &'a Opts<'a>,
    inputs: &'a [Shape],
}

impl LayerConfig<'_> {
    /// The layer's saved name.
    pub fn name(&self) -> &str {
        self.o.name
    }
    /// The Keras class name (`"Scale"`).
    pub fn class_name(&self) -> &str {
        self.o.class
    }
    /// The whole config object (Keras's `get_config()` output).
    pub fn config(&self) -> &Map<String, Value> {
        self.o.cfg
    }
    /// A config value; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.o.get(key)
    }
    /// The per-sample shapes the layer will be called on.
    pub fn input_shapes(&self) -> &[Shape] {
        self.inputs
    }
    /// A finite number, or `default` when absent.
    pub fn float(&self, key: &str, default: f32) -> Result<f32> {
        self.o.float(key, default)
    }
    /// A size in `1..=2^20`; without a default, a missing key is an error.
    pub fn size(&self, key: &str, default: Option<usize>) -> Result<usize> {
        self.o.size(key, default)
    }
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        self.o.boolean(key, default)
    }
    pub fn string(&self, key: &str, default: &'static str) -> Result<String> {
        self.o.string(key, default)
    }
    /// An error naming the file and the layer, for values the layer refuses.
    pub fn error(&self, what: impl std::fmt::Display) -> Error {
        self.o.err(what)
    }
}
