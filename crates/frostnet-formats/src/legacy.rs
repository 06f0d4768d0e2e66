//! Legacy HDF5 files: `model.save("x.h5")` from tf-keras or Keras 3, and
//! `save_weights("x.h5")` from tf-keras (which is also the layout of the
//! keras-applications pretrained weight files).
//!
//! ```text
//! /  @model_config @training_config @keras_version @backend   (full model only)
//! /model_weights/  @layer_names = [name, ...]                  (full model)
//! /                @layer_names = [name, ...]                  (weights only)
//!   <layer name>/  @weight_names = [weight name, ...]
//!   <layer name>/<weight name>    DATASET
//! ```
//!
//! Groups are keyed by layer name and the order of the weights is the order
//! of `weight_names`, never the HDF5 listing order.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hdf5_pure::AttrValue;
use serde_json::Value;

use crate::error::{read_file, Origin, Result};
use crate::h5::{attr_strings, chunked_strings, describe, join, H5};
use crate::{LayerWeights, LegacyH5};

/// Reads a legacy Keras `.h5` file: a full model saved by `model.save()`
/// (tf-keras or Keras 3), or a weights-only file from tf-keras's
/// `save_weights()` or keras-applications.
pub fn read_legacy_h5(path: impl AsRef<Path>) -> Result<LegacyH5> {
    let path = path.as_ref();
    let h5 = H5::open(read_file(path)?, Origin::new(path, ""))?;
    parse(&h5)
}

/// Whether an open HDF5 file looks like a legacy Keras file.
pub(crate) fn looks_like(h5: &H5) -> Result<bool> {
    let root = h5.root();
    if h5
        .group_names(&root, "/")?
        .iter()
        .any(|n| n == "model_weights")
    {
        return Ok(true);
    }
    let attrs = h5.attrs(&root, "/")?;
    Ok(attrs.contains_key("layer_names") || attrs.contains_key("layer_names0"))
}

pub(crate) fn parse(h5: &H5) -> Result<LegacyH5> {
    let o = &h5.origin;
    let root = h5.root();
    let root_attrs = h5.attrs(&root, "/")?;
    let full_model = h5
        .group_names(&root, "/")?
        .iter()
        .any(|n| n == "model_weights");
    let (weights_group, weights_path) = if full_model {
        (h5.group(&root, "/", "model_weights")?, "/model_weights")
    } else {
        (root.clone(), "/")
    };
    let weights_attrs = if full_model {
        h5.attrs(&weights_group, weights_path)?
    } else {
        root_attrs.clone()
    };
    let layer_names = chunked_strings(h5, &weights_attrs, weights_path, "layer_names")?
        .ok_or_else(|| h5.missing_attr(&weights_group, weights_path, "layer_names"))?;

    let mut seen = HashSet::new();
    let mut layers = Vec::with_capacity(layer_names.len());
    for name in layer_names {
        // "" or "." would make the lookup return the parent group, and a name
        // listed twice would read the same data twice.
        if name.is_empty() || name == "." || name == ".." {
            return Err(o.invalid(weights_path, format!("invalid layer name {name:?}")));
        }
        if !seen.insert(name.clone()) {
            return Err(o.invalid(
                weights_path,
                format!("layer {name:?} is listed twice in layer_names"),
            ));
        }
        let group = h5.group(&weights_group, weights_path, &name)?;
        let group_path = join(weights_path, &name);
        let attrs = h5.attrs(&group, &group_path)?;
        let weight_names = chunked_strings(h5, &attrs, &group_path, "weight_names")?
            .ok_or_else(|| h5.missing_attr(&group, &group_path, "weight_names"))?;
        let mut seen_weights = HashSet::new();
        let mut weights = Vec::with_capacity(weight_names.len());
        for weight_name in weight_names {
            if weight_name.is_empty() || !seen_weights.insert(weight_name.clone()) {
                return Err(o.invalid(
                    &group_path,
                    format!("empty or repeated weight name {weight_name:?}"),
                ));
            }
            weights.push(h5.read_f32(&group, &group_path, &weight_name)?);
        }
        layers.push(LayerWeights {
            path: vec![name.clone()],
            name,
            h5_group: group_path,
            weights,
        });
    }

    let text = |attrs: &HashMap<String, AttrValue>, key: &str| -> Result<Option<String>> {
        match attrs.get(key) {
            None => Ok(None),
            Some(v) => match attr_strings(v).as_deref() {
                Some([s]) => Ok(Some(s.clone())),
                _ => Err(o.invalid(
                    "/",
                    format!("attribute {key} is not a string: {}", describe(v)),
                )),
            },
        }
    };
    let json = |key: &str| -> Result<Option<Value>> {
        match text(&root_attrs, key)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| o.invalid("/", format!("attribute {key} is not valid JSON: {e}"))),
        }
    };
    let (model_config, training_config) = if full_model {
        (json("model_config")?, json("training_config")?)
    } else {
        (None, None)
    };
    let keras_version = match text(&root_attrs, "keras_version")? {
        Some(v) => Some(v),
        None => text(&weights_attrs, "keras_version")?,
    };
    let backend = match text(&root_attrs, "backend")? {
        Some(v) => Some(v),
        None => text(&weights_attrs, "backend")?,
    };
    Ok(LegacyH5 {
        model_config,
        training_config,
        keras_version,
        backend,
        layers,
    })
}

/// Only the `model_config` attribute of a legacy file (`None` for a weights-only one).
pub(crate) fn model_config(h5: &H5) -> Result<Option<Value>> {
    let root = h5.root();
    let full_model = h5
        .group_names(&root, "/")?
        .iter()
        .any(|n| n == "model_weights");
    if !full_model {
        return Ok(None);
    }
    let attrs = h5.attrs(&root, "/")?;
    match attrs.get("model_config") {
        None => Ok(None),
        Some(v) => match attr_strings(v).as_deref() {
            Some([s]) => serde_json::from_str(s).map(Some).map_err(|e| {
                h5.origin.invalid(
                    "/",
                    format!("attribute model_config is not valid JSON: {e}"),
                )
            }),
            _ => Err(h5.origin.invalid(
                "/",
                format!("attribute model_config is not a string: {}", describe(v)),
            )),
        },
    }
}
