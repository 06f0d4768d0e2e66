//! Keras 3 `.weights.h5`, on its own or inside a `.keras` zip.
//!
//! Layout (see the crate docs for the full picture):
//!
//! ```text
//! /layers/<key>/vars/0, 1, ...            a layer's variables, in creation order
//! /layers/<key>/vars @name                the layer's real name (recent Keras 3 only)
//! /layers/<key>/layers/<key2>/vars/...    a model nested inside the model
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
    let path = path.as_ref();
    let h5 = H5::open(read_file(path)?, Origin::new(path, ""))?;
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
    let children = config.and_then(config_layers);
    read_container(h5, &root, "/", &top, &[], children, 0, &mut layers)?;
    Ok(WeightsFile {
        model_name,
        layers,
        has_optimizer: top.iter().any(|n| n == "optimizer"),
    })
}

/// One child of a container before its weights are read.
struct Child {
    key: String,
    name: String,
    group: hdf5_pure::Group,
    group_path: String,
    /// The child's own config entry, once matched.
    config: Option<Value>,
}

/// Reads the layers of the container `group` (the root, or a nested model's
/// group), whose child group names are `names`, appending them to `out`.
#[allow(clippy::too_many_arguments)]
fn read_container(
    h5: &H5,
    group: &hdf5_pure::Group,
    path: &str,
    names: &[String],
    prefix: &[String],
    config: Option<Vec<Value>>,
    depth: usize,
    out: &mut Vec<LayerWeights>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(h5
            .origin
            .invalid(path, format!("models nested more than {MAX_DEPTH} deep")));
    }
    // Keras 2.13-era files name the group differently; Keras 3 falls back to it.
    let Some(layers_name) = ["layers", "_layer_checkpoint_dependencies"]
        .into_iter()
        .find(|n| names.iter().any(|m| m == n))
    else {
        return Ok(());
    };
    let layers_group = h5.group(group, path, layers_name)?;
    let layers_path = join(path, layers_name);
    let mut children = Vec::new();
    for key in h5.group_names(&layers_group, &layers_path)? {
        check_key(h5, &layers_path, &key)?;
        let child_path = join(&layers_path, &key);
        let child = h5.group(&layers_group, &layers_path, &key)?;
        let name = if h5
            .group_names(&child, &child_path)?
            .iter()
            .any(|n| n == "vars")
        {
            let vars = h5.group(&child, &child_path, "vars")?;
            name_attr(h5, &vars, &join(&child_path, "vars"))?
        } else {
            None
        };
        children.push(Child {
            name: name.unwrap_or_else(|| key.clone()),
            key,
            group: child,
            group_path: child_path,
            config: None,
        });
    }
    if let Some(config) = config {
        children = order(children, &config);
    }
    for child in children {
        let child_names = h5.group_names(&child.group, &child.group_path)?;
        let vars_path = join(&child.group_path, "vars");
        if !child_names.iter().any(|n| n == "vars") {
            return Err(h5.origin.missing(&child.group_path, "group vars"));
        }
        let vars = h5.group(&child.group, &child.group_path, "vars")?;
        let weights = read_vars(h5, &vars, &vars_path)?;
        let mut layer_path = prefix.to_vec();
        layer_path.push(child.name.clone());
        out.push(LayerWeights {
            name: child.name,
            path: layer_path.clone(),
            h5_group: vars_path,
            weights,
        });
        let inner = child.config.as_ref().and_then(config_layers);
        read_container(
            h5,
            &child.group,
            &child.group_path,
            &child_names,
            &layer_path,
            inner,
            depth + 1,
            out,
        )?;
    }
    Ok(())
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
            child.config = Some(layer.clone());
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
