//! Shared layers (one layer called several times in a functional graph) and nested base models
//! kept as one layer, against Keras: the Keras-made models of tools/make_shared_layers_reference.py
//! (Keras 3.15.1, tf-keras 2.21) load from `.keras` and tf-keras `.h5`, print Keras's summaries
//! byte for byte, count shared weights once, predict and train one SGD step within 1e-5 of Keras
//! (a BatchNormalization called twice updates its moving statistics twice), save with Keras's
//! node indices and load back; gradients through shared layers pass finite-difference checks and
//! equal the sum of the per-call gradients.

use frostnet::io::npy::{read_npz, write_npy};
use frostnet::layers::*;
use frostnet::saving::{load_model, model_config, save_keras};
use frostnet::testing::gradient_check;
use frostnet::training::{FitOptions, Loss, Sgd};
use frostnet::{Error, Functional, Mode, Model, SummaryOptions, SummaryStyle, Tensor};
use serde_json::Value;
use std::collections::HashMap;

mod common;
use common::{close, Scratch};

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/shared_layers/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn arrays(name: &str) -> HashMap<String, Tensor> {
    read_npz(&fixture(&format!("{name}.npz"))).unwrap()
}

fn text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn facts() -> Value {
    serde_json::from_str(&text("facts.json")).unwrap()
}

const ALL: [&str; 5] = [
    "siamese_dense",
    "siamese_conv",
    "chain",
    "nested_base",
    "siamese_nested",
];
/// The single-input models, which `predict` and `fit` run.
const TRAINED: [&str; 4] = ["siamese_conv", "chain", "nested_base", "siamese_nested"];

fn classic(m: &Model) -> String {
    m.summary_with(&SummaryOptions {
        style: SummaryStyle::Classic,
        ..Default::default()
    })
}

#[test]
fn keras_files_print_keras_summaries() {
    for name in ALL {
        for file in [format!("{name}.keras"), format!("{name}.h5")] {
            let m = load_model(&fixture(&file)).unwrap();
            assert_eq!(
                m.summary(),
                text(&format!("{name}_summary_keras3.txt")),
                "{file}: Keras 3 summary"
            );
            assert_eq!(
                classic(&m),
                text(&format!("{name}_summary_tfkeras.txt")),
                "{file}: classic summary"
            );
        }
    }
}

#[test]
fn shared_weights_are_counted_once() {
    let f = facts();
    for name in ALL {
        let m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let want = &f["models"][name];
        let count = |ws: Vec<&Weight>| ws.iter().map(|w| w.len()).sum::<usize>() as u64;
        assert_eq!(m.count_params() as u64, want["total"].as_u64().unwrap());
        assert_eq!(
            count(m.trainable_weights()),
            want["trainable"].as_u64().unwrap()
        );
        assert_eq!(
            count(m.non_trainable_weights()),
            want["non_trainable"].as_u64().unwrap()
        );
        assert_eq!(
            m.get_weights().len() as u64,
            want["n_weights"].as_u64().unwrap()
        );
        let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
        let want_names: Vec<&str> = want["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, want_names, "{name}: layer order");
    }
}

#[test]
fn keras_files_predict_as_keras() {
    for name in TRAINED {
        let a = arrays(name);
        for file in [format!("{name}.keras"), format!("{name}.h5")] {
            let mut m = load_model(&fixture(&file)).unwrap();
            let pred = m.predict(&a["x"], 32).unwrap();
            close(&pred, &a["pred"], 1e-5, &format!("{file} predict"));
        }
    }
    // Two inputs through one Dense.
    let a = arrays("siamese_dense");
    let mut m = load_model(&fixture("siamese_dense.keras")).unwrap();
    let y = Layer::forward(&mut m, &[&a["xa"], &a["xb"]], &mut ForwardCtx::infer()).unwrap();
    close(&y, &a["pred"], 1e-5, "siamese_dense predict");
}

#[test]
fn keras_files_train_one_sgd_step_as_keras() {
    for name in TRAINED {
        let a = arrays(name);
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        common::one_sgd_step_matches_keras(name, &mut m, &a);
    }
}

/// The `keras_history` of every call in a config, per layer: `[[(from, node), ...], ...]`.
fn histories(cfg: &Value) -> HashMap<String, Vec<Vec<(String, u64)>>> {
    fn walk(v: &Value, out: &mut Vec<(String, u64)>) {
        match v {
            Value::Object(o) => {
                if let Some(h) = o.get("keras_history") {
                    out.push((h[0].as_str().unwrap().into(), h[1].as_u64().unwrap()));
                } else {
                    o.values().for_each(|v| walk(v, out));
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut map = HashMap::new();
    for l in cfg["config"]["layers"].as_array().unwrap() {
        let calls = l["inbound_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let mut out = Vec::new();
                walk(&n["args"], &mut out);
                out
            })
            .collect();
        map.insert(l["name"].as_str().unwrap().to_string(), calls);
    }
    map
}

#[test]
fn saved_configs_carry_keras_node_indices_and_round_trip() {
    let f = facts();
    let dir = Scratch::new("roundtrip");
    for name in ALL {
        let m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let cfg = model_config(&m);
        // Keras's node indices, from Keras's own get_config().
        let got = histories(&cfg);
        for (layer, calls) in f["models"][name]["node_indices"].as_object().unwrap() {
            let want: Vec<Vec<(String, u64)>> = calls
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    c["inputs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_u64().unwrap()))
                        .collect()
                })
                .collect();
            assert_eq!(got[layer], want, "{name}: calls of '{layer}'");
            // training=False survives (the nested base's call).
            for (k, c) in calls.as_array().unwrap().iter().enumerate() {
                let training = c["kwargs"].get("training").cloned().unwrap_or(Value::Null);
                let node = cfg["config"]["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["name"] == layer.as_str())
                    .unwrap()["inbound_nodes"][k]
                    .clone();
                let written = node
                    .get("kwargs")
                    .and_then(|k| k.get("training"))
                    .cloned()
                    .unwrap_or(Value::Null);
                assert_eq!(written, training, "{name}: training= of '{layer}' call {k}");
            }
        }
        let path = dir.path(&format!("{name}.keras"));
        save_keras(&m, &path).unwrap();
        let back = load_model(&path).unwrap();
        assert_eq!(
            model_config(&back),
            cfg,
            "{name}: config after the round trip"
        );
        assert_eq!(back.summary(), m.summary());
        for (w, v) in m.get_weights().iter().zip(back.get_weights()) {
            assert_eq!(w.data(), v.data(), "{name}: weights after the round trip");
        }
    }
}

/// Writes the models frostnet re-saved, with inputs and frostnet's predictions, for
/// `python3 tools/make_shared_layers_reference.py --check DIR` (Keras loads them).
#[test]
#[ignore = "writes files for the Keras-side check in tools/make_shared_layers_reference.py"]
fn write_files_for_keras() {
    let dir = std::env::var("FROSTNET_SHARED_OUT").expect("set FROSTNET_SHARED_OUT");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ALL {
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        save_keras(&m, &format!("{dir}/{name}.keras")).unwrap();
        if TRAINED.contains(&name) {
            let x = &arrays(name)["x"];
            write_npy(&format!("{dir}/{name}_x.npy"), x).unwrap();
            let p = m.predict(x, 32).unwrap();
            write_npy(&format!("{dir}/{name}_pred.npy"), &p).unwrap();
        }
    }
    // The nested base built with frostnet's API, not loaded from Keras.
    let mut m = nested_base_by_api();
    save_keras(&m, &format!("{dir}/nested_base.keras")).unwrap();
    let x = &arrays("nested_base")["x"];
    write_npy(&format!("{dir}/nested_base_x.npy"), x).unwrap();
    write_npy(
        &format!("{dir}/nested_base_pred.npy"),
        &m.predict(x, 32).unwrap(),
    )
    .unwrap();
}

fn input(shape: &[usize], name: &str) -> InputLayer {
    Input::new(shape).named(name)
}

/// Keras's Siamese network built with frostnet's API.
fn siamese_dense_by_api() -> Model {
    let mut g = Functional::new();
    let a = g.input(input(&[5], "left"));
    let b = g.input(input(&[5], "right"));
    let shared = g
        .add(
            Dense::new(4)
                .activation(ActivationFn::Tanh)
                .named("shared_dense"),
        )
        .unwrap();
    let ea = g.apply(shared, &[a]).unwrap();
    let eb = g.apply(shared, &[b]).unwrap();
    let d = g.call(Subtract::new().named("diff"), &[ea, eb]).unwrap();
    let out = g.call(Dense::new(1).named("head"), &[d]).unwrap();
    g.build_named("siamese_dense", &[a, b], &[out]).unwrap()
}

#[test]
fn api_built_siamese_prints_and_computes_as_keras() {
    let mut m = siamese_dense_by_api();
    let keras = load_model(&fixture("siamese_dense.keras")).unwrap();
    m.set_weights(keras.get_weights()).unwrap();
    assert_eq!(m.summary(), text("siamese_dense_summary_keras3.txt"));
    assert_eq!(classic(&m), text("siamese_dense_summary_tfkeras.txt"));
    assert_eq!(model_config(&m), model_config(&keras));
    let a = arrays("siamese_dense");
    let y = Layer::forward(&mut m, &[&a["xa"], &a["xb"]], &mut ForwardCtx::infer()).unwrap();
    close(&y, &a["pred"], 1e-5, "API-built siamese");
    // layer_of gives the handle of a layer already called.
    let mut g = Functional::new();
    let x = g.input(Input::new(&[3]));
    let h = g.call(Dense::new(3), &[x]).unwrap();
    let again = g.layer_of(h).unwrap();
    let h2 = g.apply(again, &[h]).unwrap();
    let m = g.build(&[x], &[h2]).unwrap();
    assert_eq!(m.layers().len(), 2);
    assert_eq!(m.count_params(), 12);
}

#[test]
fn gradients_through_shared_layers_pass_finite_differences() {
    let a = arrays("siamese_dense");
    let mut m = load_model(&fixture("siamese_dense.keras")).unwrap();
    let r = gradient_check(
        &mut m,
        &[a["xa"].clone(), a["xb"].clone()],
        Mode::Train,
        1e-2,
    )
    .unwrap();
    assert!(r.max_rel_error < 1e-2, "siamese_dense: {r:?}");
    // A shared Conv2D and a shared BatchNormalization in training mode, a shared pooling fed by
    // its own earlier output, and a whole model shared by two branches.
    for name in ["siamese_conv", "chain", "siamese_nested"] {
        let x = arrays(name)["x"].clone();
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        for mode in [Mode::Train, Mode::Infer] {
            let r = gradient_check(&mut m, std::slice::from_ref(&x), mode, 1e-2).unwrap();
            assert!(r.max_rel_error < 2e-2, "{name} {mode:?}: {r:?}");
            assert!(r.checked > x.len(), "{name}: weights checked too");
        }
    }
}

/// The gradient of a shared layer's weights is the sum over its calls: the Siamese model's
/// gradients equal those of the same graph with two separate (equal) Dense layers, added.
#[test]
fn shared_gradient_is_the_sum_of_the_calls() {
    let a = arrays("siamese_dense");
    let mut shared = load_model(&fixture("siamese_dense.keras")).unwrap();
    let w = shared.get_weights(); // kernel, bias, head kernel, head bias
    let mut g = Functional::new();
    let l = g.input(input(&[5], "left"));
    let r = g.input(input(&[5], "right"));
    let ea = g
        .call(Dense::new(4).activation(ActivationFn::Tanh), &[l])
        .unwrap();
    let eb = g
        .call(Dense::new(4).activation(ActivationFn::Tanh), &[r])
        .unwrap();
    let d = g.call(Subtract::new(), &[ea, eb]).unwrap();
    let out = g.call(Dense::new(1), &[d]).unwrap();
    let mut split = g.build(&[l, r], &[out]).unwrap();
    split
        .set_weights(vec![
            w[0].clone(),
            w[1].clone(),
            w[0].clone(),
            w[1].clone(),
            w[2].clone(),
            w[3].clone(),
        ])
        .unwrap();
    let grads = |m: &mut Model| -> Vec<Tensor> {
        let mut ctx = ForwardCtx {
            mode: Mode::Train,
            keep: true,
            input_needs_grad: vec![false, false],
            rng: frostnet::tensor::random::rng(Some(1)),
        };
        let y = Layer::forward(m, &[&a["xa"], &a["xb"]], &mut ctx).unwrap();
        let ones = Tensor::from_vec(y.shape(), vec![1.0; y.len()]).unwrap();
        Layer::backward(m, &ones, &[false, false]).unwrap();
        Layer::weights(m)
            .iter()
            .map(|w| w.grad().unwrap().clone())
            .collect()
    };
    let gs = grads(&mut shared);
    let gp = grads(&mut split);
    let mut kernel = gp[0].clone();
    kernel.add_assign(&gp[2]).unwrap();
    let mut bias = gp[1].clone();
    bias.add_assign(&gp[3]).unwrap();
    close(&gs[0], &kernel, 1e-6, "shared kernel gradient");
    close(&gs[1], &bias, 1e-6, "shared bias gradient");
    close(&gs[2], &gp[4], 1e-6, "head kernel gradient");
    // Running the same step twice gives the same gradients: nothing is left over.
    let again = grads(&mut shared);
    assert_eq!(again[0].data(), gs[0].data());
}

#[test]
fn shared_layer_errors_are_typed() {
    let mut g = Functional::new();
    let x = g.input(Input::new(&[4]));
    let dense = g.add(Dense::new(3).named("d")).unwrap();
    g.apply(dense, &[x]).unwrap();
    // A second call with an incompatible shape names the layer.
    let y = g.input(Input::new(&[5]));
    let e = g.apply(dense, &[y]).unwrap_err();
    assert!(
        matches!(e, Error::IncompatibleShape { ref layer, .. } if layer == "d"),
        "{e}"
    );
    // A handle from another graph.
    let mut other = Functional::new();
    let oi = other.input(Input::new(&[4]));
    assert!(matches!(other.apply(dense, &[oi]), Err(Error::Graph(_))));
    // An input cannot be called; names stay unique.
    let xh = g.layer_of(x).unwrap();
    assert!(matches!(g.apply(xh, &[x]), Err(Error::Graph(_))));
    assert!(matches!(
        g.add(Dense::new(2).named("d")),
        Err(Error::DuplicateLayerName { .. })
    ));
}

/// A shared layer called on inputs of different (compatible) sizes: a Conv2D on two image
/// sizes, each call checked and computed at its own size.
#[test]
fn shared_layer_on_two_input_sizes() {
    let mut g = Functional::new();
    let a = g.input(Input::new(&[6, 6, 2]));
    let b = g.input(Input::new(&[8, 8, 2]));
    let conv = g.add(Conv2D::new(3, 3).named("conv")).unwrap();
    let pool = g.add(GlobalAveragePooling2D::new()).unwrap();
    let ca = g.apply(conv, &[a]).unwrap();
    let cb = g.apply(conv, &[b]).unwrap();
    let pa = g.apply(pool, &[ca]).unwrap();
    let pb = g.apply(pool, &[cb]).unwrap();
    let d = g.call(Subtract::new(), &[pa, pb]).unwrap();
    let mut m = g.build(&[a, b], &[d]).unwrap();
    assert!(classic(&m).contains("conv (Conv2D)               multiple"));
    let xa = frostnet::tensor::Tensor::from_vec(
        &[1, 6, 6, 2],
        (0..72).map(|i| (i as f32 * 0.37).sin()).collect(),
    )
    .unwrap();
    let xb = frostnet::tensor::Tensor::from_vec(
        &[1, 8, 8, 2],
        (0..128).map(|i| (i as f32 * 0.21).cos()).collect(),
    )
    .unwrap();
    let r = gradient_check(&mut m, &[xa, xb], Mode::Train, 1e-2).unwrap();
    assert!(r.max_rel_error < 1e-2, "{r:?}");
}

/// Keras's transfer-learning recipe with frostnet's API: the base model stays one layer,
/// frozen through its handle, called with training=False.
fn nested_base_by_api() -> Model {
    let mut b = Functional::new();
    let inp = b.input(input(&[6, 6, 2], "base_input"));
    let y = b
        .call(Conv2D::new(3, 3).named("base_conv"), &[inp])
        .unwrap();
    let y = b
        .call(BatchNormalization::new().named("base_bn"), &[y])
        .unwrap();
    let y = b
        .call(GlobalAveragePooling2D::new().named("base_pool"), &[y])
        .unwrap();
    let base = b.build_named("base", &[inp], &[y]).unwrap();
    let mut g = Functional::new();
    let x = g.input(input(&[6, 6, 2], "image"));
    let h = g.add_boxed(Box::new(base)).unwrap();
    let f = g.apply_with(h, &[x], Some(false)).unwrap();
    let out = g.call(Dense::new(2).named("head"), &[f]).unwrap();
    let mut m = g.build_named("nested_base", &[x], &[out]).unwrap();
    let keras = load_model(&fixture("nested_base.keras")).unwrap();
    m.set_weights(keras.get_weights()).unwrap();
    m.get_layer_mut("base").unwrap().set_trainable(false);
    m
}

#[test]
fn nested_base_model_is_one_frozen_layer_as_in_keras() {
    let mut m = nested_base_by_api();
    assert_eq!(m.summary(), text("nested_base_summary_keras3.txt"));
    assert_eq!(classic(&m), text("nested_base_summary_tfkeras.txt"));
    let keras = load_model(&fixture("nested_base.keras")).unwrap();
    assert_eq!(model_config(&m), model_config(&keras));
    let base = m.get_layer("base").unwrap();
    assert_eq!(base.class_name(), "Functional");
    assert!(base.trainable_weights().is_empty());
    // One SGD step trains the head only, as Keras's did.
    let a = arrays("nested_base");
    close(
        &m.predict(&a["x"], 32).unwrap(),
        &a["pred"],
        1e-5,
        "predict",
    );
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let opts = FitOptions {
        batch_size: a["x"].batch(),
        epochs: 1,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    };
    m.fit(&a["x"], &a["y"], opts).unwrap();
    for (i, w) in m.get_weights().iter().enumerate() {
        close(w, &a[&format!("after_{i}")], 1e-5, &format!("weight {i}"));
    }
}

/// Unfreezing the base (fine-tuning) trains its weights but, called with training=False, its
/// BatchNormalization keeps normalising with its moving statistics and never updates them.
#[test]
fn training_false_call_keeps_bn_in_inference_mode_when_unfrozen() {
    let mut m = nested_base_by_api();
    m.get_layer_mut("base").unwrap().set_trainable(true);
    let before = m.get_weights();
    let names: Vec<String> = m.named_weights().into_iter().map(|(p, _)| p).collect();
    let a = arrays("nested_base");
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let opts = FitOptions {
        batch_size: a["x"].batch(),
        epochs: 1,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    };
    m.fit(&a["x"], &a["y"], opts).unwrap();
    for ((name, w), b) in names.iter().zip(m.get_weights()).zip(&before) {
        let moved = w.data() != b.data();
        assert_eq!(
            moved,
            !name.contains("moving"),
            "{name}: changed {moved} after one step"
        );
    }
    // Without training=False the same model's BN would update its statistics: the call's
    // argument, not the flags, is what kept them.
    let keras = load_model(&fixture("nested_base.keras")).unwrap();
    let cfg = model_config(&keras);
    assert_eq!(
        cfg["config"]["layers"][1]["inbound_nodes"][0]["kwargs"]["training"],
        Value::Bool(false)
    );
}
