//! Weights in safetensors, named by Keras 3 paths (`dense/kernel`), with each weight's trainable
//! flag in the metadata, so a checkpoint restores exactly what was frozen.

use super::write_atomic;
use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::models::Model;
use crate::tensor::Tensor;
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
    let named = model.named_weights();
    let bytes: Vec<Vec<u8>> = named
        .iter()
        .map(|(_, w)| {
            w.value()
                .data()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    let mut views = Vec::new();
    for ((name, w), b) in named.iter().zip(&bytes) {
        let view =
            TensorView::new(Dtype::F32, w.shape().to_vec(), b).map_err(|e| file_err(path, e))?;
        views.push((name.clone(), view));
    }
    let flags: HashMap<String, String> = named
        .iter()
        .map(|(n, w)| (format!("trainable:{n}"), w.is_trainable().to_string()))
        .collect();
    let data = safetensors::serialize(views, Some(flags)).map_err(|e| file_err(path, e))?;
    write_atomic(path, &data)
}

/// Loads weights saved by [`save_weights`] into a model of the same architecture. Every name and
/// shape is checked before anything is assigned, so a mismatch leaves the model unchanged.
pub fn load_weights(model: &mut Model, path: &str) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, e))?;
    let mut values = Vec::new();
    for (name, w) in model.named_weights() {
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
    Layer::set_weights(model, values)
}
