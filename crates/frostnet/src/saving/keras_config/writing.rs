//! Writing: a frostnet model -> Keras 3's `config.json` layout. Each layer writes its own options
//! ([`Layer::config`]); this file adds what every entry carries (module, dtype policy,
//! `build_config`) and the graph (`inbound_nodes`, `input_layers`, `output_layers`).

use crate::layers::{Layer, Shape};
use crate::models::{Model, ModelKind};
use serde_json::{json, Value};

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

/// A reference to the output of call `node` (Keras's node index) of layer `name`.
fn keras_tensor(name: &str, node: usize, shape: &Shape) -> Value {
    json!({"class_name": "__keras_tensor__",
           "config": {"shape": shape_json(shape), "dtype": "float32",
                      "keras_history": [name, node, 0]}})
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
    crate::regularizers::write_rules(layer, &mut cfg);
    if let Some(o) = cfg.as_object_mut() {
        o.insert("dtype".into(), dtype_policy());
    }
    let mut v = json!({"module": "keras.layers", "class_name": layer.class_name(), "config": cfg,
                       "registered_name": null});
    // A registered custom class is written as Keras writes one: no module, its registered name.
    if let Some(r) = crate::layers::custom::registered_name_of(layer.class_name()) {
        v["module"] = Value::Null;
        v["registered_name"] = json!(r);
    }
    if let Some((module, registered)) = layer.keras_module() {
        v["module"] = json!(module);
        v["registered_name"] = json!(registered);
    }
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

/// An op node (`x + 3.0`, `keras.ops.mean`) as Keras writes one: module `keras.src.ops.*`, a config
/// without dtype, no `build_config`, and its constants in its call's `args`; `None` for layers.
fn op_node_entry(model: &Model, i: usize) -> Option<Value> {
    let layer = model.nodes[i].layer.as_ref();
    let (module, registered) = layer.keras_module()?;
    let call = model.calls_of(i).into_iter().next()?;
    let tensors: Vec<Value> = model
        .call_inbound(call)
        .iter()
        .map(|&j| {
            let name = model.nodes[model.call_layer(j)].layer.name();
            keras_tensor(name, model.call_node_index(j), model.call_output_shape(j))
        })
        .collect();
    let args = layer.op_call_args(tensors)?;
    Some(
        json!({"module": module, "class_name": layer.class_name(), "config": layer.config(),
                "registered_name": registered, "name": layer.name(),
                "inbound_nodes": [{"args": args, "kwargs": {}}]}),
    )
}

/// The Keras 3 config of a model (`config.json`'s content without `compile_config`): every layer's
/// Keras config with its `trainable` flag, and for functional models the graph as
/// `inbound_nodes` / `input_layers` / `output_layers`.
pub fn model_config(model: &Model) -> Value {
    let in_shapes = model.input_shapes();
    let shape_of = |i: usize| model.call_output_shape(i).clone();
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
            // A call's output as Keras names it: (layer name, node index).
            let producer = |j: usize| {
                (
                    model.nodes[model.call_layer(j)].layer.name(),
                    model.call_node_index(j),
                )
            };
            for i in model.listed_nodes() {
                let layer = model.nodes[i].layer.as_ref();
                let inbound = &model.nodes[i].inbound;
                if let Some(e) = op_node_entry(model, i) {
                    layers.push(e);
                    continue;
                }
                let mut e = if inbound.is_empty() {
                    input_entry(layer, &shape_of(i))
                } else {
                    let shapes: Vec<Shape> = inbound.iter().map(|&j| shape_of(j)).collect();
                    layer_entry(layer, &shapes)
                };
                // One inbound node per call of the layer (a shared layer has several), in node
                // index order.
                let mut nodes = Vec::new();
                for c in model.calls_of(i) {
                    let args: Vec<Value> = model
                        .call_inbound(c)
                        .iter()
                        .map(|&j| {
                            let (name, node) = producer(j);
                            keras_tensor(name, node, model.call_output_shape(j))
                        })
                        .collect();
                    let kwargs = match model.call_training(c) {
                        Some(t) => json!({ "training": t }),
                        None => json!({}),
                    };
                    match args.len() {
                        0 => {}
                        1 => nodes.push(json!({"args": args, "kwargs": kwargs})),
                        _ => nodes.push(json!({"args": [args], "kwargs": kwargs})),
                    }
                }
                e["name"] = json!(layer.name());
                e["inbound_nodes"] = Value::Array(nodes);
                layers.push(e);
            }
            let ends = |idx: &[usize]| -> Value {
                let t: Vec<Value> = idx
                    .iter()
                    .map(|&i| {
                        let (name, node) = producer(i);
                        json!([name, node, 0])
                    })
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
