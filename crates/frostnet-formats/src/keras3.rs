//! Keras 3 `.weights.h5`, on its own or inside a `.keras` zip.
//!
//! Layout (see the crate docs for the full picture):
//!
//! ```text
//! /layers/<key>/vars/0, 1, ...            a layer's variables, in creation order
//! /layers/<key>/vars @name                the layer's real name (recent Keras 3 only)
//! /layers/<key>/layers/<key2>/vars/...    a model nested inside the model
//! /layers/<key>/<attr>/vars/...           a layer held by a layer (LSTM `cell`)
//! /<attr>/vars/...                        a subclassed model's layer attributes
//! /vars/                                  the model's own variables, @name = model name
//! /optimizer/vars/...                     optimizer state (not read)
//! ```
//!
//! `<key>` is not the layer name but `snake_case(class name)` made unique per
//! container (`dense`, `dense_1`, ...), and h5py lists keys alphabetically, so
//! the file alone does not give `model.layers` order. With the model's
//! config, [`order`] restores it.

use std::path::Path;

use serde_json::Value;

use crate::error::{read_file, Origin, Result};
use crate::h5::{attr_strings, join, H5};
use crate::{LayerWeights, Weight, WeightsFile};

/// How deep models may nest. Real models nest two or three levels; the limit
/// only exists to stop a corrupt file from recursing without end.
const MAX_DEPTH: usize = 32;

/// Reads a Keras 3 `.weights.h5` file. Layers come in the file's listing
/// order; use [`crate::read_weights_h5_ordered`] to get `model.layers` order.
pub fn read_weights_h5(path: impl AsRef<Path>) -> Result<WeightsFile> {
    let path = path.as_ref();
    let h5 = H5::open(read_file(path)?, Origin::new(path, ""))?;
    parse(&h5, None)
}

/// Like [`read_weights_h5`], with layers put in `model.layers` order using
/// the model's config (the `config.json` of a `.keras` archive, as a
/// `serde_json::Value`).
///
/// Layers are matched to config entries by the `vars/@name` attribute, or,
/// for files older than that attribute, by regenerating Keras's group key
/// from the class name. Layers the config does not mention keep their
/// listing order after the ones it does.
pub fn read_weights_h5_ordered(path: impl AsRef<Path>, config: &Value) -> Result<WeightsFile> {
    read_weights_h5_ordered_limited(path, config, &crate::Limits::default())
}

/// [`read_weights_h5_ordered`] with caps on what may be allocated (see [`crate::Limits`]).
pub fn read_weights_h5_ordered_limited(
    path: impl AsRef<Path>,
    config: &Value,
    limits: &crate::Limits,
) -> Result<WeightsFile> {
    let path = path.as_ref();
    let h5 =
        H5::open(read_file(path)?, Origin::new(path, ""))?.limit_datasets(limits.max_dataset_bytes);
    parse(&h5, Some(config))
}

/// Whether an open HDF5 file looks like a Keras 3 weights file.
pub(crate) fn looks_like(h5: &H5) -> Result<bool> {
    let names = h5.group_names(&h5.root(), "/")?;
    Ok(names
        .iter()
        .any(|n| n == "layers" || n == "vars" || n == "_layer_checkpoint_dependencies"))
}

/// Reads the whole file; `config` is the model config used for ordering.
pub(crate) fn parse(h5: &H5, config: Option<&Value>) -> Result<WeightsFile> {
    let root = h5.root();
    let top = h5.group_names(&root, "/")?;
    if !top
        .iter()
        .any(|n| n == "layers" || n == "vars" || n == "_layer_checkpoint_dependencies")
    {
        return Err(h5
            .origin
            .missing("/", "group layers (not a Keras 3 weights file)"));
    }
    let mut model_name = None;
    let mut layers = Vec::new();
    if top.iter().any(|n| n == "vars") {
        let vars = h5.group(&root, "/", "vars")?;
        model_name = name_attr(h5, &vars, "/vars")?;
        let weights = read_vars(h5, &vars, "/vars")?;
        if !weights.is_empty() {
            layers.push(LayerWeights {
                name: model_name.clone().unwrap_or_default(),
                path: Vec::new(),
                h5_group: "/vars".to_string(),
                weights,
            });
        }
    }
    let has_optimizer = top.iter().any(|n| n == "optimizer");
    // The optimizer is saved beside the model's own state; it is not a layer.
    let children: Vec<String> = top.into_iter().filter(|n| n != "optimizer").collect();
    let walk = Walk {
        group: root,
        path: "/".to_string(),
        names: children,
        layer_path: Vec::new(),
        config: config.cloned(),
    };
    read_children(h5, &walk, 0, &mut layers)?;
    Ok(WeightsFile {
        model_name,
        layers,
        has_optimizer,
    })
}

/// A group being walked, with what is known about it.
struct Walk {
    group: hdf5_pure::Group,
    /// The group's HDF5 path.
    path: String,
    /// The names of the groups inside it.
    names: Vec<String>,
    /// The layer names leading to it (see [`LayerWeights::path`]).
    layer_path: Vec<String>,
    /// Its model config, when it is a model whose config is known.
    config: Option<Value>,
}

/// Reads one saveable object (a layer or a model): its own `vars`, then
/// everything inside it.
fn read_saveable(h5: &H5, walk: &Walk, depth: usize, out: &mut Vec<LayerWeights>) -> Result<()> {
    if !walk.names.iter().any(|n| n == "vars") {
        return Err(h5.origin.missing(&walk.path, "group vars"));
    }
    let vars_path = join(&walk.path, "vars");
    let vars = h5.group(&walk.group, &walk.path, "vars")?;
    out.push(LayerWeights {
        name: walk.layer_path.last().cloned().unwrap_or_default(),
        path: walk.layer_path.clone(),
        h5_group: vars_path.clone(),
        weights: read_vars(h5, &vars, &vars_path)?,
    });
    read_children(h5, walk, depth, out)
}

/// Reads the groups inside a saveable other than its `vars`, which Keras
/// writes as follows (`saving_lib._save_state`):
///
/// - `layers` (or `_layer_checkpoint_dependencies` in Keras 2.13-era files):
///   the layers of a Sequential or Functional model, keyed by class name.
/// - a group with a `vars` group of its own: a layer held in an attribute of
///   this one, named after the attribute, such as an LSTM's `cell` or a
///   MultiHeadAttention's `query_dense`.
/// - any other group: a list of layers held in an attribute, such as a
///   subclassed model's `self.blocks = [Dense(...), ...]`, keyed like `layers`.
///
/// `layers` comes first, as in Keras; the rest follow in listing order.
fn read_children(h5: &H5, walk: &Walk, depth: usize, out: &mut Vec<LayerWeights>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(h5.origin.invalid(
            &walk.path,
            format!("layers nested more than {MAX_DEPTH} deep"),
        ));
    }
    let is_layers = |n: &str| n == "layers" || n == "_layer_checkpoint_dependencies";
    let mut names: Vec<&String> = walk.names.iter().filter(|n| *n != "vars").collect();
    names.sort_by_key(|n| !is_layers(n));
    for name in names {
        check_key(h5, &walk.path, name)?;
        let group = h5.group(&walk.group, &walk.path, name)?;
        let path = join(&walk.path, name);
        let inner = h5.group_names(&group, &path)?;
        if inner.iter().any(|n| n == "vars") && !is_layers(name) {
            let layer_name = vars_name(h5, &group, &path)?.unwrap_or_else(|| name.clone());
            let child = Walk {
                group,
                path,
                names: inner,
                layer_path: extend(&walk.layer_path, &layer_name),
                config: None,
            };
            read_saveable(h5, &child, depth + 1, out)?;
        } else {
            let config = if is_layers(name) {
                walk.config.as_ref().and_then(config_layers)
            } else {
                None
            };
            let container = Walk {
                group,
                path,
                names: inner,
                layer_path: walk.layer_path.clone(),
                config: None,
            };
            read_container(h5, &container, config, depth + 1, out)?;
        }
    }
    Ok(())
}

/// One layer of a container before its weights are read.
struct Child {
    key: String,
    name: String,
    walk: Walk,
}

/// Reads a list of layers (`layers/<key>`, ...), in the order of `config`
/// when given.
fn read_container(
    h5: &H5,
    container: &Walk,
    config: Option<Vec<Value>>,
    depth: usize,
    out: &mut Vec<LayerWeights>,
) -> Result<()> {
    let mut children = Vec::new();
    for key in &container.names {
        check_key(h5, &container.path, key)?;
        let group = h5.group(&container.group, &container.path, key)?;
        let path = join(&container.path, key);
        let names = h5.group_names(&group, &path)?;
        let name = if names.iter().any(|n| n == "vars") {
            vars_name(h5, &group, &path)?
        } else {
            None
        };
        let name = name.unwrap_or_else(|| key.clone());
        children.push(Child {
            key: key.clone(),
            walk: Walk {
                group,
                path,
                names,
                layer_path: extend(&container.layer_path, &name),
                config: None,
            },
            name,
        });
    }
    if let Some(config) = config {
        children = order(children, &config);
    }
    for child in children {
        read_saveable(h5, &child.walk, depth + 1, out)?;
    }
    Ok(())
}

fn extend(path: &[String], name: &str) -> Vec<String> {
    let mut path = path.to_vec();
    path.push(name.to_string());
    path
}

/// The `@name` of the `vars` group inside `group`, if any.
fn vars_name(h5: &H5, group: &hdf5_pure::Group, path: &str) -> Result<Option<String>> {
    let vars = h5.group(group, path, "vars")?;
    name_attr(h5, &vars, &join(path, "vars"))
}

/// Rejects group names that cannot be Keras keys and that would make HDF5
/// path lookups mean something else (`""` and `"."` resolve to the parent).
fn check_key(h5: &H5, parent: &str, key: &str) -> Result<()> {
    if key.is_empty() || key == "." || key == ".." || key.contains('/') {
        return Err(h5
            .origin
            .invalid(parent, format!("invalid layer group name {key:?}")));
    }
    Ok(())
}

/// The `@name` attribute of a `vars` group, if present.
fn name_attr(h5: &H5, vars: &hdf5_pure::Group, path: &str) -> Result<Option<String>> {
    let attrs = h5.attrs(vars, path)?;
    match attrs.get("name") {
        None => Ok(None),
        Some(v) => match attr_strings(v).as_deref() {
            Some([name]) => Ok(Some(name.clone())),
            _ => Err(h5
                .origin
                .invalid(path, "attribute name is not a single string")),
        },
    }
}

/// Reads datasets `0`, `1`, ... of a `vars` group in numeric order. Any other
/// name, or a gap in the numbering, is an error, because the numbers are the
/// only record of the variables' order.
fn read_vars(h5: &H5, vars: &hdf5_pure::Group, path: &str) -> Result<Vec<Weight>> {
    let names = h5.dataset_names(vars, path)?;
    let mut indexed = Vec::with_capacity(names.len());
    for name in names {
        match name.parse::<usize>() {
            Ok(i) if i.to_string() == name => indexed.push((i, name)),
            _ => {
                return Err(h5.origin.invalid(
                    path,
                    format!("dataset {name:?} is not a variable index 0, 1, ..."),
                ))
            }
        }
    }
    indexed.sort();
    for (want, (got, _)) in indexed.iter().enumerate() {
        if *got != want {
            return Err(h5
                .origin
                .missing(path, format!("variable {want} (found {got})")));
        }
    }
    indexed
        .into_iter()
        .map(|(_, name)| h5.read_f32(vars, path, &name))
        .collect()
}

/// The entries of `model.layers` for a model config, in order: the config's
/// `layers` list, less the `InputLayer` for a Sequential (whose `layers`
/// excludes it, while a Functional's includes it).
pub(crate) fn config_layers(model: &Value) -> Option<Vec<Value>> {
    let layers = model.get("config")?.get("layers")?.as_array()?;
    let sequential = model.get("class_name").and_then(Value::as_str) == Some("Sequential");
    Some(
        layers
            .iter()
            .filter(|l| {
                !(sequential && l.get("class_name").and_then(Value::as_str) == Some("InputLayer"))
            })
            .cloned()
            .collect(),
    )
}

/// Puts `children` in the order of the config entries `layers`.
fn order(mut children: Vec<Child>, layers: &[Value]) -> Vec<Child> {
    let mut used: std::collections::HashMap<String, usize> = Default::default();
    let mut ordered = Vec::with_capacity(children.len());
    for layer in layers {
        let class = layer
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let base = snake_case(class);
        let key = match used.get_mut(&base) {
            Some(n) => {
                *n += 1;
                format!("{base}_{n}")
            }
            None => {
                used.insert(base.clone(), 0);
                base
            }
        };
        let name = layer
            .get("config")
            .and_then(|c| c.get("name"))
            .or_else(|| layer.get("name"))
            .and_then(Value::as_str);
        // Prefer the real name; fall back to the key for files without @name,
        // where `Child::name` is the key itself.
        let pos = name
            .and_then(|n| children.iter().position(|c| c.name == n))
            .or_else(|| children.iter().position(|c| c.key == key && c.name == key));
        if let Some(pos) = pos {
            let mut child = children.remove(pos);
            child.walk.config = Some(layer.clone());
            ordered.push(child);
        }
    }
    ordered.extend(children);
    ordered
}

/// Keras's `naming.to_snake_case`, which turns a class name into a group
/// key: `Conv2D` -> `conv2d`, `BatchNormalization` -> `batch_normalization`,
/// `GlobalAveragePooling2D` -> `global_average_pooling2d`.
pub(crate) fn snake_case(name: &str) -> String {
    // re.sub(r"\W+", "", name)
    let chars: Vec<char> = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name): an underscore before each
    // capital that starts a run of lowercase letters, unless it comes first.
    // Matches never overlap, and each consumes the character before the
    // capital and the whole lowercase run.
    let mut step1 = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len()
            && chars[i + 1].is_ascii_uppercase()
            && chars.get(i + 2).is_some_and(|c| c.is_ascii_lowercase())
        {
            step1.push(chars[i]);
            step1.push('_');
            step1.push(chars[i + 1]);
            let mut j = i + 2;
            while j < chars.len() && chars[j].is_ascii_lowercase() {
                step1.push(chars[j]);
                j += 1;
            }
            i = j;
        } else {
            step1.push(chars[i]);
            i += 1;
        }
    }
    // re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    let mut out = String::with_capacity(step1.len() + 8);
    for (k, &c) in step1.iter().enumerate() {
        if k > 0 && step1[k - 1].is_ascii_lowercase() && c.is_ascii_uppercase() {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_matches_keras() {
        assert_eq!(snake_case("Conv2D"), "conv2d");
        assert_eq!(snake_case("Dense"), "dense");
        assert_eq!(snake_case("BatchNormalization"), "batch_normalization");
        assert_eq!(snake_case("MaxPooling2D"), "max_pooling2d");
        assert_eq!(
            snake_case("GlobalAveragePooling2D"),
            "global_average_pooling2d"
        );
        assert_eq!(snake_case("InputLayer"), "input_layer");
        assert_eq!(snake_case("Functional"), "functional");
        assert_eq!(snake_case("LSTMCell"), "lstm_cell");
        assert_eq!(snake_case("ReLU"), "re_lu");
    }
}
