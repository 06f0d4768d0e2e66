//! Writing `.keras` archives that real Keras 3 loads (`keras.saving.load_model`).
//!
//! The archive is what Keras 3 writes: a stored (uncompressed) zip of `metadata.json`,
//! `config.json` (Keras 3 layout, from `keras_config.rs`) and `model.weights.h5`. The weights file
//! follows Keras's layout: `/layers/<key>/vars/0, 1, ...` in each layer's variable order, where
//! `<key>` is the snake-cased class name made unique within its container (`dense`, `dense_1`),
//! because that is how Keras 3 finds a layer's variables; a nested model's layers sit under
//! `/layers/<key>/layers/`. Each `vars` group also carries `@name`, the layer's real name, as
//! recent Keras does, so readers can match by name.
//!
//! A compiled model is saved compiled, as `model.save("x.keras")` saves it: `config.json` carries
//! Keras 3's `compile_config` (optimizer config, loss, metrics) and `model.weights.h5` the
//! optimizer's variables under `/optimizer/vars` (`iterations`, the learning rate, then the slots
//! in Keras's order, see `keras_optimizer.rs`), so Keras's `load_model` and frostnet's both
//! return a compiled model that resumes training where it stopped.

use super::keras_config::model_config;
use super::keras_optimizer::SavedOptimizer;
use super::write_atomic;
use crate::error::{Error, Result};
use crate::layers::{naming, Layer};
use crate::models::Model;
use crate::tensor::Tensor;
use hdf5_pure::{AttrValue, FileBuilder, GroupBuilder};
use std::collections::HashMap;
use std::io::Write;

/// The Keras version whose file layout this writer follows (stored in `metadata.json`).
const KERAS_LAYOUT_VERSION: &str = "3.15.1";

fn file_err(path: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.into(),
        message: format!("{what}: {e}"),
    }
}

/// Writes `model` as a `.keras` archive (atomically: a temporary file, then a rename).
pub fn save_keras(model: &Model, path: &str) -> Result<()> {
    let optimizer = super::keras_optimizer::to_keras(model);
    let mut config = model_config(model);
    if let Some(o) = &optimizer {
        config["compile_config"] = o.compile_config.clone();
    }
    let config = config.to_string();
    let metadata = serde_json::json!({
        "keras_version": KERAS_LAYOUT_VERSION,
        "date_saved": "",
        "written_by": format!("frostnet {}", env!("CARGO_PKG_VERSION")),
    })
    .to_string();
    let weights =
        weights_h5(model, optimizer.as_ref()).map_err(|e| file_err(path, "model.weights.h5", e))?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("metadata.json", metadata.as_bytes()),
        ("config.json", config.as_bytes()),
        ("model.weights.h5", weights.as_slice()),
    ] {
        zip.start_file(name, opts)
            .map_err(|e| file_err(path, name, e))?;
        zip.write_all(bytes).map_err(|e| file_err(path, name, e))?;
    }
    let bytes = zip
        .finish()
        .map_err(|e| file_err(path, "zip", e))?
        .into_inner();
    write_atomic(path, &bytes)
}

/// The bytes of `model.weights.h5`.
fn weights_h5(
    model: &Model,
    optimizer: Option<&SavedOptimizer>,
) -> std::result::Result<Vec<u8>, hdf5_pure::Error> {
    let mut b = FileBuilder::new();
    let mut layers = b.create_group("layers");
    add_layers(&mut layers, model);
    b.add_group(layers.finish());
    if let Some(o) = optimizer {
        let mut group = b.create_group("optimizer");
        let mut vars = group.create_group("vars");
        vars.set_attr("name", AttrValue::VarLenString(o.name.clone()));
        vars.create_dataset("0")
            .with_i64_data(&[o.iterations])
            .with_shape(&[]);
        let scalars = o
            .learning_rate
            .map(|lr| Tensor::from_slice(&[lr]).reshape(&[]));
        let floats = scalars.into_iter().flatten().chain(o.slots.iter().cloned());
        for (i, t) in (1..).zip(floats) {
            let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
            vars.create_dataset(&format!("{i}"))
                .with_f32_data(t.data())
                .with_shape(&shape);
        }
        group.add_group(vars.finish());
        b.add_group(group.finish());
    }
    let mut vars = b.create_group("vars");
    vars.set_attr("name", AttrValue::VarLenString(model.name().to_string()));
    b.add_group(vars.finish());
    b.finish()
}

/// One group per entry of `model.layers()`, keyed as Keras keys them.
fn add_layers(parent: &mut GroupBuilder, model: &Model) {
    let mut used: HashMap<String, usize> = HashMap::new();
    for layer in model.layers() {
        let base = naming::snake_case(layer.class_name());
        let n = used.entry(base.clone()).or_insert(0);
        let key = if *n == 0 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        *n += 1;
        let mut g = parent.create_group(&key);
        let mut vars = g.create_group("vars");
        vars.set_attr("name", AttrValue::VarLenString(layer.name().to_string()));
        match layer.as_model() {
            Some(m) => {
                let mut inner = g.create_group("layers");
                add_layers(&mut inner, m);
                g.add_group(inner.finish());
            }
            None => add_vars(&mut vars, layer),
        }
        g.add_group(vars.finish());
        parent.add_group(g.finish());
    }
}

fn add_vars(vars: &mut GroupBuilder, layer: &dyn Layer) {
    for (i, w) in layer.weights().iter().enumerate() {
        let shape: Vec<u64> = w.shape().iter().map(|&d| d as u64).collect();
        vars.create_dataset(&i.to_string())
            .with_f32_data(w.value().data())
            .with_shape(&shape);
    }
}
