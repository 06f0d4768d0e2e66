//! Keras files in and out: the three fixture CNNs (Sequential, Functional, a frozen Functional base
//! nested in a Sequential) saved by real Keras 3 and tf-keras in every format load into frostnet,
//! print Keras's summaries and predict Keras's outputs; the native format round-trips bit for bit;
//! broken files give typed errors naming the file and the layer, never a panic.

use frostnet::io::npy::read_npy;
use frostnet::layers::Layer;
use frostnet::saving::{load_model, load_weights_into, save_keras, save_model};
use frostnet::{Error, Model, SummaryOptions, SummaryStyle, Tensor};

mod common;
use common::Scratch;

const KINDS: [&str; 3] = ["cnn_seq", "cnn_func", "cnn_nested"];

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn input() -> Tensor {
    read_npy(&fixture("cnn_input.npy")).unwrap()
}

fn check_output(model: &mut Model, expected: &str, what: &str) {
    let want = read_npy(&fixture(expected)).unwrap();
    let got = model.predict(&input(), 32).unwrap();
    assert_eq!(got.shape(), want.shape(), "{what}");
    let d = got.max_abs_diff(&want);
    assert!(d <= 1e-5, "{what}: max abs difference {d}");
}

/// Keras 3's summary of the fixture models was printed after training, so it ends with an
/// "Optimizer params" line. A `.keras` archive restores the optimizer, so its summary is compared
/// byte for byte; a legacy `.h5`'s optimizer weights are not read, so there the total and the
/// optimizer line are compared by the parameter counts without the optimizer.
fn check_keras3_summary(model: &Model, kind: &str, with_optimizer: bool) {
    let want = std::fs::read_to_string(fixture(&format!("{kind}_summary_keras3.txt"))).unwrap();
    let got = model.summary();
    if with_optimizer {
        assert_eq!(got, want, "{kind}: Keras 3 summary");
        return;
    }
    let keep = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with(" Total params") && !l.starts_with(" Optimizer params"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(keep(&got), keep(&want), "{kind}: Keras 3 summary\n{got}");
    let total: usize = model.count_params();
    let line = got
        .lines()
        .find(|l| l.starts_with(" Total params"))
        .unwrap();
    assert!(
        line.starts_with(&format!(" Total params: {total} (")),
        "{line}"
    );
}

fn check_classic_summary(model: &Model, kind: &str) {
    let want = std::fs::read_to_string(fixture(&format!("{kind}_summary_tfkeras.txt"))).unwrap();
    let got = model.summary_with(&SummaryOptions {
        style: SummaryStyle::Classic,
        show_trainable: false,
        ..Default::default()
    });
    assert_eq!(got, want, "{kind}: classic summary");
}

fn flags(model: &Model) -> Vec<(String, bool)> {
    model
        .named_weights()
        .into_iter()
        .map(|(p, w)| (p, w.is_trainable()))
        .collect()
}

#[test]
fn keras3_files_load_with_summaries_and_outputs() {
    for kind in KINDS {
        for file in [format!("{kind}.keras"), format!("{kind}_keras3_legacy.h5")] {
            let mut m = load_model(&fixture(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            check_keras3_summary(&m, kind, file.ends_with(".keras"));
            check_output(&mut m, &format!("{kind}_output.npy"), &file);
        }
    }
}

#[test]
fn tfkeras_files_load_with_classic_summaries_and_outputs() {
    // tf-keras names a Sequential's input layer `input_1` where Keras 3 says `input_layer`; a
    // Sequential does not list its input layer, and the Functional fixture names its input
    // `image` in both, so the classic tables match tf-keras's own byte for byte.
    for kind in KINDS {
        let file = format!("{kind}_tfkeras.h5");
        let mut m = load_model(&fixture(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        check_classic_summary(&m, kind);
        check_output(&mut m, &format!("{kind}_output_tfkeras.npy"), &file);
    }
}

#[test]
fn weights_files_load_into_the_architecture() {
    for kind in KINDS {
        for file in [
            format!("{kind}.weights.h5"),
            format!("{kind}_tfkeras_weights_only.h5"),
        ] {
            let mut m = load_model(&fixture(&format!("{kind}.keras"))).unwrap();
            // Scramble the weights so that only the file can restore them.
            let zeros: Vec<Tensor> = m
                .get_weights()
                .iter()
                .map(|t| Tensor::zeros(t.shape()))
                .collect();
            m.set_weights(zeros).unwrap();
            load_weights_into(&mut m, &fixture(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let out = if file.contains("tfkeras") {
                format!("{kind}_output_tfkeras.npy")
            } else {
                format!("{kind}_output.npy")
            };
            check_output(&mut m, &out, &file);
        }
    }
}

#[test]
fn frozen_nested_base_stays_frozen() {
    for file in [
        "cnn_nested.keras",
        "cnn_nested_tfkeras.h5",
        "cnn_nested_keras3_legacy.h5",
    ] {
        let m = load_model(&fixture(file)).unwrap();
        let trainable: usize = m.trainable_weights().iter().map(|w| w.len()).sum();
        let frozen: usize = m.non_trainable_weights().iter().map(|w| w.len()).sum();
        assert_eq!((trainable, frozen), (15, 128), "{file}");
        let base = m.get_layer("base").unwrap();
        assert!(!base.is_trainable(), "{file}");
        let inner = base.as_model().unwrap();
        assert!(!inner.get_layer("base_conv").unwrap().is_trainable());
    }
}

#[test]
fn native_round_trip_is_bit_exact() {
    let dir = Scratch::new("native");
    for kind in KINDS {
        let mut a = load_model(&fixture(&format!("{kind}.keras"))).unwrap();
        // One more frozen layer than the file had, to see flags survive.
        a.layer_mut(a.len() - 1).unwrap().set_trainable(false);
        let path = dir.path(&format!("{kind}.frostnet"));
        save_model(&a, &path).unwrap();
        let mut b = load_model(&path).unwrap();
        assert_eq!(a.summary(), b.summary(), "{kind}");
        assert_eq!(flags(&a), flags(&b), "{kind}");
        for ((pa, wa), (pb, wb)) in a.named_weights().iter().zip(b.named_weights()) {
            assert_eq!(pa, &pb);
            let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(wa.value()), bits(wb.value()), "{kind}: {pa}");
        }
        let (ya, yb) = (
            a.predict(&input(), 32).unwrap(),
            b.predict(&input(), 32).unwrap(),
        );
        assert_eq!(ya.data(), yb.data(), "{kind}");
    }
}

/// A compiled, trained model saved mid-training resumes exactly: same optimizer iterations and
/// slots (the Keras 3 summary's "Optimizer params" line included), and the next steps give
/// bit-identical weights.
#[test]
fn native_round_trip_resumes_training() {
    use frostnet::training::{Adam, Loss, Metric, RmsProp, Sgd};
    let dir = Scratch::new("resume");
    let x = input();
    let y = Tensor::from_vec(&[2, 3], vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
    let loss = Loss::CategoricalCrossentropy { from_logits: false };
    for (i, kind) in KINDS.iter().enumerate() {
        let mut a = load_model(&fixture(&format!("{kind}.keras"))).unwrap();
        match i {
            0 => a.compile(Adam::new(0.01), loss, &[Metric::Accuracy]),
            1 => a.compile(Sgd::new(0.05).momentum(0.9).nesterov(true), loss, &[]),
            _ => {
                let mut r = RmsProp::new(0.01);
                r.momentum = 0.5;
                r.centered = true;
                a.compile(r, loss, &[Metric::Accuracy])
            }
        }
        a.train_on_batch(&x, &y).unwrap();
        a.train_on_batch(&x, &y).unwrap();
        let path = dir.path(&format!("{kind}.frostnet"));
        save_model(&a, &path).unwrap();
        let mut b = load_model(&path).unwrap();
        assert_eq!(a.summary(), b.summary(), "{kind}");
        assert!(b.summary().contains("Optimizer params"), "{kind}");
        for _ in 0..2 {
            let la = a.train_on_batch(&x, &y).unwrap();
            let lb = b.train_on_batch(&x, &y).unwrap();
            assert_eq!(la.to_bits(), lb.to_bits(), "{kind}");
        }
        for (wa, wb) in a.get_weights().iter().zip(b.get_weights()) {
            assert_eq!(wa.data(), wb.data(), "{kind}");
        }
    }
}

#[test]
fn keras_archive_round_trip_through_frostnet() {
    let dir = Scratch::new("archive");
    for kind in KINDS {
        let mut a = load_model(&fixture(&format!("{kind}.keras"))).unwrap();
        let path = dir.path(&format!("{kind}.keras"));
        save_keras(&a, &path).unwrap();
        let mut b = load_model(&path).unwrap();
        // save_keras writes no optimizer: compare all but the optimizer's lines.
        let table = |m: &Model| -> Vec<String> {
            m.summary()
                .lines()
                .filter(|l| !l.starts_with(" Total") && !l.starts_with(" Optimizer"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(table(&a), table(&b), "{kind}");
        assert_eq!(flags(&a), flags(&b), "{kind}");
        let (ya, yb) = (
            a.predict(&input(), 32).unwrap(),
            b.predict(&input(), 32).unwrap(),
        );
        assert_eq!(ya.data(), yb.data(), "{kind}");
    }
}

fn file_error(e: Error) -> (String, String) {
    match e {
        Error::File { path, message } => (path, message),
        other => panic!("expected Error::File, got {other:?}"),
    }
}

/// Writes a `.keras` archive whose config.json is `config` and whose weights are `kind`'s.
fn archive_with_config(dir: &Scratch, kind: &str, config: &serde_json::Value) -> String {
    use std::io::{Read, Write};
    let mut src =
        zip::ZipArchive::new(std::fs::File::open(fixture(&format!("{kind}.keras"))).unwrap())
            .unwrap();
    let path = dir.path(&format!("{kind}_edited.keras"));
    let mut out = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if name == "config.json" {
            bytes = config.to_string().into_bytes();
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
    path
}

fn fixture_config(kind: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(&format!("{kind}.keras.config.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn unknown_layer_class_names_file_and_layer() {
    let dir = Scratch::new("unknown");
    let mut c = fixture_config("cnn_func");
    c["config"]["layers"][4]["class_name"] = "LayerNormalization".into();
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (p, msg) = file_error(load_model(&path).err().unwrap());
    assert_eq!(p, path);
    assert!(
        msg.contains("'gap'") && msg.contains("LayerNormalization"),
        "{msg}"
    );
}

#[test]
fn unsupported_option_and_activation_are_errors() {
    let dir = Scratch::new("options");
    let mut c = fixture_config("cnn_func");
    // celu: a Keras activation frostnet does not implement.
    c["config"]["layers"][1]["config"]["activation"] = "celu".into();
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (_, msg) = file_error(load_model(&path).err().unwrap());
    assert!(msg.contains("'conv'") && msg.contains("celu"), "{msg}");

    let mut c = fixture_config("cnn_func");
    // Regularizers are implemented (tests/regularizers.rs); one frostnet lacks is an error.
    c["config"]["layers"][5]["config"]["kernel_regularizer"] =
        serde_json::json!({"class_name": "L3", "config": {"l3": 0.01}});
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (_, msg) = file_error(load_model(&path).err().unwrap());
    assert!(
        msg.contains("'head'") && msg.contains("kernel_regularizer"),
        "{msg}"
    );

    let mut c = fixture_config("cnn_func");
    c["config"]["layers"][1]["config"]["dilation_rate"] = serde_json::json!([2, 2]);
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (_, msg) = file_error(load_model(&path).err().unwrap());
    assert!(
        msg.contains("'conv'") && msg.contains("dilation_rate"),
        "{msg}"
    );
}

#[test]
fn graph_cycles_and_dangling_references_are_errors() {
    let dir = Scratch::new("graph");
    let history = "/config/keras_history/0";
    // conv takes its input from head: a cycle.
    let mut c = fixture_config("cnn_func");
    *c["config"]["layers"][1]["inbound_nodes"][0]["args"][0]
        .pointer_mut(history)
        .unwrap() = "head".into();
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (_, msg) = file_error(load_model(&path).err().unwrap());
    assert!(msg.contains("cycle") && msg.contains("conv"), "{msg}");
    // pool takes its input from a layer that does not exist.
    let mut c = fixture_config("cnn_func");
    *c["config"]["layers"][3]["inbound_nodes"][0]["args"][0]
        .pointer_mut(history)
        .unwrap() = "ghost".into();
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (_, msg) = file_error(load_model(&path).err().unwrap());
    assert!(msg.contains("'pool'") && msg.contains("'ghost'"), "{msg}");
}

#[test]
fn weight_shapes_disagreeing_with_the_config_are_errors() {
    let dir = Scratch::new("shapes");
    let mut c = fixture_config("cnn_func");
    c["config"]["layers"][1]["config"]["filters"] = 5.into();
    let path = archive_with_config(&dir, "cnn_func", &c);
    let (p, msg) = file_error(load_model(&path).err().unwrap());
    assert_eq!(p, path);
    // conv now has 5 filters, so bn (4 channels in the file) no longer matches either; the first
    // mismatch in layer order is reported.
    assert!(msg.contains("'conv'") && msg.contains("shape"), "{msg}");

    // Weights for another architecture into an existing model leave it unchanged.
    let mut m = load_model(&fixture("cnn_seq.keras")).unwrap();
    let before = m.get_weights();
    let err = load_weights_into(&mut m, &fixture("cnn_func.weights.h5")).unwrap_err();
    let (_, msg) = file_error(err);
    assert!(msg.contains("layer"), "{msg}");
    for (a, b) in before.iter().zip(m.get_weights()) {
        assert_eq!(a.data(), b.data());
    }
}

#[test]
fn truncated_files_are_typed_errors() {
    let dir = Scratch::new("truncated");
    for file in [
        "cnn_seq.keras",
        "cnn_func_tfkeras.h5",
        "cnn_nested_keras3_legacy.h5",
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let path = dir.path(file);
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_model(&path).err();
        let (p, _) = file_error(err.unwrap_or_else(|| panic!("{file}: truncated file loaded")));
        assert_eq!(p, path);
    }
    let m = load_model(&fixture("cnn_seq.keras")).unwrap();
    let path = dir.path("native.frostnet");
    save_model(&m, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (p, _) = file_error(load_model(&path).err().unwrap());
    assert_eq!(p, path);
}

#[test]
fn weights_only_file_given_to_load_model_says_so() {
    let (_, msg) = file_error(load_model(&fixture("cnn_seq.weights.h5")).err().unwrap());
    assert!(msg.contains("weights only"), "{msg}");
}

/// Mutated fixture bytes through `load_model`: any result but a panic is fine.
#[test]
fn fuzz_load_model_never_panics() {
    let dir = Scratch::new("fuzz");
    let mut sources: Vec<Vec<u8>> = [
        "cnn_func.keras",
        "cnn_nested_tfkeras.h5",
        "cnn_seq_keras3_legacy.h5",
    ]
    .iter()
    .map(|f| std::fs::read(fixture(f)).unwrap())
    .collect();
    let m = load_model(&fixture("cnn_nested.keras")).unwrap();
    let native = dir.path("n.frostnet");
    save_model(&m, &native).unwrap();
    sources.push(std::fs::read(&native).unwrap());
    let mut state: u64 = std::env::var("FROSTNET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut next = move || {
        // xorshift64*: a fixed, dependency-free sequence.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let path = dir.path("mutant");
    let start = std::time::Instant::now();
    for case in 0..200 {
        let mut bytes = sources[case % sources.len()].clone();
        let edits = 1 + next() % 8;
        for _ in 0..edits {
            let i = (next() % bytes.len() as u64) as usize;
            match next() % 3 {
                0 => bytes[i] = next() as u8,
                1 => bytes[i] ^= 1 << (next() % 8),
                _ => bytes[i] = b"0123456789{}[]\",:-"[(next() % 18) as usize],
            }
        }
        if next() % 10 == 0 {
            let keep = (next() % bytes.len() as u64) as usize;
            bytes.truncate(keep);
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = load_model(&path);
    }
    assert!(
        start.elapsed().as_secs() < 10,
        "fuzz took {:?}",
        start.elapsed()
    );
}

/// Writes `.keras` files for `tools/check_keras_roundtrip.py` (run by that script, not by default):
/// the three fixture models re-saved by frostnet, one of them with a layer frozen, and a model
/// with most layer classes frostnet has; each with frostnet's prediction on `cnn_input.npy` and
/// its trainable / non-trainable counts.
#[test]
#[ignore = "run by tools/check_keras_roundtrip.py"]
fn write_keras_roundtrip_files() {
    use frostnet::layers::*;
    use frostnet::tensor::Padding;
    let out = std::env::var("FROSTNET_KERAS_OUT").expect("FROSTNET_KERAS_OUT");
    std::fs::create_dir_all(&out).unwrap();
    let mut models = Vec::new();
    for kind in KINDS {
        models.push((
            kind.to_string(),
            load_model(&fixture(&format!("{kind}.keras"))).unwrap(),
        ));
    }
    let mut frozen = load_model(&fixture("cnn_func.keras")).unwrap();
    frozen.get_layer_mut("conv").unwrap().set_trainable(false);
    models.push(("cnn_func_conv_frozen".into(), frozen));

    let mut g = frostnet::Functional::new();
    let x = g.input(Input::new(&[8, 8, 3]).named("img"));
    let r = g.call(Rescaling::new(0.5).offset(0.1), &[x]).unwrap();
    let p = g
        .call(ZeroPadding2D::with_padding(((1, 0), (0, 1))), &[r])
        .unwrap();
    let a = g
        .call(
            Conv2D::with_kernel(6, (2, 2))
                .strides(1)
                .padding(Padding::Valid)
                .activation(ActivationFn::Tanh)
                .seed(1),
            &[p],
        )
        .unwrap();
    let b = g
        .call(
            DepthwiseConv2D::new(3)
                .padding(Padding::Same)
                .depth_multiplier(2)
                .seed(2),
            &[r],
        )
        .unwrap();
    let b = g
        .call(
            SeparableConv2D::new(6, 3).padding(Padding::Same).seed(3),
            &[b],
        )
        .unwrap();
    let s = g.call(Add::new(), &[a, b]).unwrap();
    let m = g.call(Multiply::new(), &[a, s]).unwrap();
    let c = g.call(Concatenate::new(), &[s, m]).unwrap();
    let bn = g
        .call(BatchNormalization::new().trainable(false), &[c])
        .unwrap();
    let relu = g
        .call(ReLU::new().max_value(6.0).negative_slope(0.1), &[bn])
        .unwrap();
    let ap = g
        .call(AveragePooling2D::new(2).padding(Padding::Same), &[relu])
        .unwrap();
    let mp = g.call(MaxPooling2D::new(2).strides(1), &[ap]).unwrap();
    let gm = g.call(GlobalMaxPooling2D::new(), &[mp]).unwrap();
    let fl = g.call(Flatten::new(), &[mp]).unwrap();
    let d = g
        .call(
            Dense::new(12).activation(ActivationFn::Sigmoid).seed(4),
            &[fl],
        )
        .unwrap();
    let rs = g.call(Reshape::new(&[3, -1]), &[d]).unwrap();
    let rs = g.call(Reshape::new(&[12]), &[rs]).unwrap();
    let dr = g.call(Dropout::new(0.3), &[rs]).unwrap();
    let cat = g.call(Concatenate::new(), &[dr, gm]).unwrap();
    let act = g.call(Activation::new(ActivationFn::Relu), &[cat]).unwrap();
    let y = g
        .call(
            Dense::new(3).activation(ActivationFn::Softmax).seed(5),
            &[act],
        )
        .unwrap();
    let mut mixed = g.build_named("mixed", &[x], &[y]).unwrap();
    // Non-trivial BN statistics, so that inference uses them.
    let ws: Vec<Tensor> = mixed
        .get_weights()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let data = (0..t.len())
                .map(|k| 0.5 + ((i * 7 + k) % 5) as f32 * 0.1)
                .collect();
            Tensor::from_vec(t.shape(), data).unwrap()
        })
        .zip(mixed.get_weights())
        .map(|(fake, real)| if real.shape().len() == 1 { fake } else { real })
        .collect();
    mixed.set_weights(ws).unwrap();
    models.push(("mixed".into(), mixed));

    let x = input();
    let mut counts = serde_json::Map::new();
    for (name, mut m) in models {
        save_keras(&m, &format!("{out}/{name}.keras")).unwrap();
        let y = m.predict(&x, 32).unwrap();
        frostnet::io::npy::write_npy(&format!("{out}/{name}_frostnet.npy"), &y).unwrap();
        let t: usize = m.trainable_weights().iter().map(|w| w.len()).sum();
        let n: usize = m.non_trainable_weights().iter().map(|w| w.len()).sum();
        counts.insert(name, serde_json::json!([t, n]));
    }
    // Resuming a Keras-trained model: one more step from the restored Adam state.
    let y = Tensor::from_vec(&[2, 3], vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
    for kind in KINDS {
        let mut m = load_model(&fixture(&format!("{kind}.keras"))).unwrap();
        m.train_on_batch(&x, &y).unwrap();
        let p = m.predict(&x, 32).unwrap();
        frostnet::io::npy::write_npy(&format!("{out}/{kind}_after_step_frostnet.npy"), &p).unwrap();
    }
    std::fs::write(
        format!("{out}/counts.json"),
        serde_json::Value::Object(counts).to_string(),
    )
    .unwrap();
}

/// Mutated configs in otherwise valid archives, so that the mutations reach the model builder
/// rather than the zip's checksums: numbers replaced by extreme or degenerate values, strings by
/// other names, entries dropped. Any result but a panic is fine.
#[test]
fn fuzz_configs_never_panic() {
    use serde_json::Value;
    let dir = Scratch::new("fuzz-config");
    let mut state: u64 = std::env::var("FROSTNET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => o
                .iter()
                .for_each(|(k, v)| leaves(v, format!("{path}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| leaves(v, format!("{path}/{i}"), out)),
            _ => {}
        }
        out.push(path);
    }
    let replacements = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1),
        serde_json::json!(7),
        serde_json::json!(65536),
        serde_json::json!(1_000_000_000_000u64),
        serde_json::json!(0.5),
        serde_json::json!(null),
        serde_json::json!(true),
        serde_json::json!("same"),
        serde_json::json!("gap"),
        serde_json::json!("head"),
        serde_json::json!([]),
        serde_json::json!([1, 1]),
        serde_json::json!({}),
    ];
    let start = std::time::Instant::now();
    for case in 0..150 {
        let kind = KINDS[case % 3];
        let mut c = fixture_config(kind);
        let mut paths = Vec::new();
        leaves(&c, String::new(), &mut paths);
        for _ in 0..1 + next() % 3 {
            let p = &paths[(next() % paths.len() as u64) as usize];
            if let Some(v) = c.pointer_mut(p) {
                *v = replacements[(next() % replacements.len() as u64) as usize].clone();
            }
        }
        let path = archive_with_config(&dir, kind, &c);
        let _ = load_model(&path);
    }
    assert!(
        start.elapsed().as_secs() < 10,
        "fuzz took {:?}",
        start.elapsed()
    );
}

/// The built-in applications (every layer class they use, Concatenate and Add graphs, ReLU(6),
/// depthwise convolutions, ZeroPadding2D, a `(None, None, 3)` input) survive both writers: the
/// rebuilt model has the same summary, flags and bit-identical weights.
#[test]
fn applications_round_trip_through_both_formats() {
    use frostnet::applications::*;
    let dir = Scratch::new("apps");
    let opts = |size: Option<usize>| ApplicationOptions {
        include_top: false,
        pooling: Some(Pooling::Avg),
        input_shape: Some([size, size, Some(3)]),
        ..ApplicationOptions::default()
    };
    let mut models = vec![
        ("mobilenet_v2", mobilenet_v2(&opts(None)).unwrap()),
        ("resnet50", resnet50(&opts(Some(32))).unwrap()),
        ("inception_v3", inception_v3(&opts(Some(75))).unwrap()),
    ];
    models[2].1.set_trainable_range(0..249, false).unwrap();
    for (name, a) in &models {
        for (ext, save) in [
            (
                "frostnet",
                save_model as fn(&Model, &str) -> frostnet::Result<()>,
            ),
            ("keras", save_keras),
        ] {
            let path = dir.path(&format!("{name}.{ext}"));
            save(a, &path).unwrap();
            let b = load_model(&path).unwrap_or_else(|e| panic!("{name}.{ext}: {e}"));
            assert_eq!(a.summary(), b.summary(), "{name}.{ext}");
            assert_eq!(flags(a), flags(&b), "{name}.{ext}");
            for ((pa, wa), (_, wb)) in a.named_weights().iter().zip(b.named_weights()) {
                assert!(wa.value().data() == wb.value().data(), "{name}.{ext}: {pa}");
            }
        }
    }
}
