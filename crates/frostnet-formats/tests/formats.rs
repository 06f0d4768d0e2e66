//! Reads every fixture in every format and checks what comes out against
//! what Keras wrote (the fixtures' documented layout and reload checks).

use std::path::PathBuf;

use frostnet_formats::{
    read_any, read_keras_archive, read_legacy_h5, read_weights_h5, read_weights_h5_ordered, Error,
    KerasFile, LayerWeights,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const MODELS: [&str; 3] = ["seq", "func", "nested"];

/// Every weight of every layer, flattened in order.
fn flat(layers: &[LayerWeights]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    layers
        .iter()
        .flat_map(|l| l.weights.iter())
        .map(|w| (w.name.clone(), w.shape.clone(), w.data.clone()))
        .collect()
}

fn shapes(layers: &[LayerWeights]) -> Vec<Vec<usize>> {
    flat(layers).into_iter().map(|(_, s, _)| s).collect()
}

fn bits(layers: &[LayerWeights]) -> Vec<(Vec<usize>, Vec<u32>)> {
    flat(layers)
        .into_iter()
        .map(|(_, s, d)| (s, d.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn names(layers: &[LayerWeights]) -> Vec<&str> {
    layers.iter().map(|l| l.name.as_str()).collect()
}

/// Layer names in `model.layers` order (formats.md, layer_names in the dump).
fn expected_layer_names(model: &str) -> Vec<&'static str> {
    match model {
        "seq" => vec![
            "conv2d",
            "batch_normalization",
            "max_pooling2d",
            "flatten",
            "dense",
        ],
        "func" => vec!["image", "conv", "bn", "pool", "gap", "head"],
        "nested" => vec!["base", "gap", "head"],
        _ => unreachable!(),
    }
}

/// Weight shapes in saved order (formats_checks.json).
fn expected_shapes(model: &str) -> Vec<Vec<usize>> {
    let dense_in = if model == "seq" { 64 } else { 4 };
    vec![
        vec![3, 3, 3, 4],
        vec![4],
        vec![4],
        vec![4],
        vec![4],
        vec![4],
        vec![dense_in, 3],
        vec![3],
    ]
}

/// The parameter totals of formats.md: 323, 143, 143.
fn expected_total(model: &str) -> usize {
    match model {
        "seq" => 323,
        _ => 143,
    }
}

fn total(layers: &[LayerWeights]) -> usize {
    flat(layers).iter().map(|(_, _, d)| d.len()).sum()
}

#[test]
fn keras_archives_parse_in_model_layers_order() {
    for model in MODELS {
        let a = read_keras_archive(fixture(&format!("cnn_{model}.keras"))).unwrap();
        assert_eq!(a.metadata.as_ref().unwrap()["keras_version"], "3.15.1");
        assert!(a.weights.has_optimizer);
        assert_eq!(
            a.weights.model_name.as_deref(),
            Some(&*format!("cnn_{model}"))
        );
        assert_eq!(shapes(&a.weights.layers), expected_shapes(model), "{model}");
        assert_eq!(total(&a.weights.layers), expected_total(model));
        for l in &a.weights.layers {
            for w in &l.weights {
                assert_eq!(w.data.len(), w.shape.iter().product::<usize>());
            }
        }
        let top: Vec<&str> = a
            .weights
            .layers
            .iter()
            .filter(|l| l.path.len() == 1)
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(top, expected_layer_names(model), "{model}");
    }
}

#[test]
fn keras_archive_configs_have_the_expected_classes() {
    let class_names = |v: &serde_json::Value| -> Vec<String> {
        v["config"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["class_name"].as_str().unwrap().to_string())
            .collect()
    };
    let seq = read_keras_archive(fixture("cnn_seq.keras")).unwrap();
    assert_eq!(seq.config["class_name"], "Sequential");
    assert_eq!(
        class_names(&seq.config),
        [
            "InputLayer",
            "Conv2D",
            "BatchNormalization",
            "MaxPooling2D",
            "Flatten",
            "Dense"
        ]
    );
    let func = read_keras_archive(fixture("cnn_func.keras")).unwrap();
    assert_eq!(func.config["class_name"], "Functional");
    assert_eq!(
        class_names(&func.config),
        [
            "InputLayer",
            "Conv2D",
            "BatchNormalization",
            "MaxPooling2D",
            "GlobalAveragePooling2D",
            "Dense"
        ]
    );
    assert_eq!(func.config["config"]["output_layers"][0], "head");
    let nested = read_keras_archive(fixture("cnn_nested.keras")).unwrap();
    assert_eq!(nested.config["class_name"], "Sequential");
    let base = &nested.config["config"]["layers"][1];
    assert_eq!(base["class_name"], "Functional");
    assert_eq!(base["config"]["trainable"], false);
    assert_eq!(
        class_names(base),
        ["InputLayer", "Conv2D", "BatchNormalization"]
    );
}

#[test]
fn nested_archive_gives_paths_for_inner_layers() {
    let a = read_keras_archive(fixture("cnn_nested.keras")).unwrap();
    let got: Vec<(Vec<&str>, &str, usize)> = a
        .weights
        .layers
        .iter()
        .map(|l| {
            (
                l.path.iter().map(String::as_str).collect(),
                l.h5_group.as_str(),
                l.weights.len(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (vec!["base"], "/layers/functional/vars", 0),
            (
                vec!["base", "base_in"],
                "/layers/functional/layers/input_layer/vars",
                0
            ),
            (
                vec!["base", "base_conv"],
                "/layers/functional/layers/conv2d/vars",
                2
            ),
            (
                vec!["base", "base_bn"],
                "/layers/functional/layers/batch_normalization/vars",
                4
            ),
            (vec!["gap"], "/layers/global_average_pooling2d/vars", 0),
            (vec!["head"], "/layers/dense/vars", 2),
        ]
    );
    // The frozen base was not touched by the fit step: BN gamma is still 1,
    // beta 0, moving mean 0, moving variance 1.
    let bn = &a.weights.layers[3].weights;
    assert_eq!(bn[0].data, vec![1.0; 4]);
    assert_eq!(bn[1].data, vec![0.0; 4]);
    assert_eq!(bn[2].data, vec![0.0; 4]);
    assert_eq!(bn[3].data, vec![1.0; 4]);
}

#[test]
fn weights_h5_lists_layers_by_key_without_a_config() {
    let w = read_weights_h5(fixture("cnn_seq.weights.h5")).unwrap();
    assert_eq!(
        names(&w.layers),
        [
            "batch_normalization",
            "conv2d",
            "dense",
            "flatten",
            "max_pooling2d"
        ]
    );
    let bn = &w.layers[0];
    assert_eq!(bn.h5_group, "/layers/batch_normalization/vars");
    let idx: Vec<&str> = bn.weights.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(idx, ["0", "1", "2", "3"]);

    let w = read_weights_h5(fixture("cnn_func.weights.h5")).unwrap();
    // Keys sort as batch_normalization, conv2d, dense, global_average_pooling2d,
    // input_layer, max_pooling2d; the names are the vars/@name attributes.
    assert_eq!(
        names(&w.layers),
        ["bn", "conv", "head", "gap", "image", "pool"]
    );
}

#[test]
fn weights_h5_with_config_matches_the_archive() {
    for model in MODELS {
        let a = read_keras_archive(fixture(&format!("cnn_{model}.keras"))).unwrap();
        let w = read_weights_h5_ordered(fixture(&format!("cnn_{model}.weights.h5")), &a.config)
            .unwrap();
        assert_eq!(w.layers, a.weights.layers, "{model}");
    }
}

#[test]
fn legacy_files_parse_with_weight_names_order() {
    let checks: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/formats_checks.json")).unwrap();
    for model in MODELS {
        for (file, key) in [
            (format!("cnn_{model}_tfkeras.h5"), "tfk"),
            (format!("cnn_{model}_tfkeras_weights_only.h5"), "tfk"),
            (format!("cnn_{model}_keras3_legacy.h5"), "k3"),
        ] {
            let l = read_legacy_h5(fixture(&file)).unwrap();
            assert_eq!(names(&l.layers), expected_layer_names(model), "{file}");
            let expected: Vec<(String, Vec<usize>)> = checks[key][model]["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    let shape = w[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize)
                        .collect();
                    (w[0].as_str().unwrap().to_string(), shape)
                })
                .collect();
            let got: Vec<(String, Vec<usize>)> = flat(&l.layers)
                .into_iter()
                .map(|(n, s, _)| (n, s))
                .collect();
            assert_eq!(got, expected, "{file}");
            assert_eq!(total(&l.layers), expected_total(model));
            assert_eq!(l.backend.as_deref(), Some("tensorflow"));
            let version = if key == "tfk" { "2.21.0" } else { "3.15.1" };
            assert_eq!(l.keras_version.as_deref(), Some(version), "{file}");
            if file.contains("weights_only") {
                assert!(!l.is_full_model());
                assert!(l.training_config.is_none());
                assert_eq!(l.layers[0].h5_group, format!("/{}", l.layers[0].name));
            } else {
                let c = l.model_config.as_ref().unwrap();
                let class = if model == "func" {
                    "Functional"
                } else {
                    "Sequential"
                };
                assert_eq!(c["class_name"], class, "{file}");
                assert_eq!(c["config"]["name"], format!("cnn_{model}"));
                assert_eq!(
                    l.training_config.as_ref().unwrap()["loss"],
                    "categorical_crossentropy"
                );
                assert_eq!(
                    l.layers[0].h5_group,
                    format!("/model_weights/{}", l.layers[0].name)
                );
            }
        }
    }
}

#[test]
fn legacy_configs_differ_between_tf_keras_and_keras3_as_documented() {
    let tfk = read_legacy_h5(fixture("cnn_seq_tfkeras.h5")).unwrap();
    let k3 = read_legacy_h5(fixture("cnn_seq_keras3_legacy.h5")).unwrap();
    let input = |l: &frostnet_formats::LegacyH5| {
        l.model_config.as_ref().unwrap()["config"]["layers"][0].clone()
    };
    assert_eq!(input(&tfk)["class_name"], "InputLayer");
    assert!(input(&tfk)["config"]["batch_input_shape"].is_array());
    assert!(input(&k3)["config"]["batch_shape"].is_array());
    let nested = read_legacy_h5(fixture("cnn_nested_tfkeras.h5")).unwrap();
    let base = &nested.model_config.as_ref().unwrap()["config"]["layers"][1];
    assert_eq!(base["class_name"], "Functional");
    assert_eq!(base["config"]["name"], "base");
}

#[test]
fn the_three_keras3_formats_hold_bit_identical_weights() {
    for model in MODELS {
        let a = read_keras_archive(fixture(&format!("cnn_{model}.keras"))).unwrap();
        let w = read_weights_h5_ordered(fixture(&format!("cnn_{model}.weights.h5")), &a.config)
            .unwrap();
        let l = read_legacy_h5(fixture(&format!("cnn_{model}_keras3_legacy.h5"))).unwrap();
        assert_eq!(bits(&a.weights.layers), bits(&w.layers), "{model}");
        assert_eq!(bits(&a.weights.layers), bits(&l.layers), "{model}");
    }
}

#[test]
fn tf_keras_files_hold_the_keras3_weights() {
    // tf-keras's models were given the Keras 3 model's weights
    // (formats.md), so all five files of a model agree bit for bit.
    for model in MODELS {
        let k3 = read_legacy_h5(fixture(&format!("cnn_{model}_keras3_legacy.h5"))).unwrap();
        let full = read_legacy_h5(fixture(&format!("cnn_{model}_tfkeras.h5"))).unwrap();
        let only =
            read_legacy_h5(fixture(&format!("cnn_{model}_tfkeras_weights_only.h5"))).unwrap();
        assert_eq!(bits(&full.layers), bits(&only.layers), "{model}");
        assert_eq!(bits(&full.layers), bits(&k3.layers), "{model}");
    }
}

#[test]
fn fixed_length_string_attributes_are_decoded() {
    // keras-applications layout: weights only, `S` byte strings.
    let fixed = read_legacy_h5(fixture("cnn_seq_fixedstr_weights_only.h5")).unwrap();
    let vlen = read_legacy_h5(fixture("cnn_seq_tfkeras_weights_only.h5")).unwrap();
    assert_eq!(fixed, vlen);
    // Keras 2.2 style full model: model_config is a fixed-length byte string.
    let fixed = read_legacy_h5(fixture("cnn_func_fixedstr.h5")).unwrap();
    let vlen = read_legacy_h5(fixture("cnn_func_tfkeras.h5")).unwrap();
    assert_eq!(fixed, vlen);
    assert_eq!(fixed.model_config.unwrap()["class_name"], "Functional");
}

#[test]
fn split_attributes_are_concatenated() {
    let split = read_legacy_h5(fixture("cnn_nested_split_attrs.h5")).unwrap();
    let whole = read_legacy_h5(fixture("cnn_nested_tfkeras.h5")).unwrap();
    assert_eq!(names(&split.layers), ["base", "gap", "head"]);
    assert_eq!(split.layers[0].weights.len(), 6);
    assert_eq!(split, whole);
}

#[test]
fn attributes_split_by_tf_keras_over_64k_are_concatenated() {
    // 17 names of 4,000 bytes: tf-keras splits layer_names into two
    // fixed-length byte-string chunks of 9 and 8.
    let l = read_legacy_h5(fixture("long_names_split_weights_only.h5")).unwrap();
    assert_eq!(l.layers.len(), 17);
    for (i, layer) in l.layers.iter().enumerate() {
        assert_eq!(layer.name.len(), 4000);
        assert!(layer.name.starts_with(&format!("layer_{i:02}_xxx")));
    }
    assert_eq!(l.keras_version.as_deref(), Some("2.1.6"));
    let weighted: Vec<(usize, Vec<f32>)> = l
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.weights.iter().map(move |w| (i, w.data.clone())))
        .collect();
    assert_eq!(weighted, [(0, vec![0.0, 0.0]), (16, vec![16.0, 16.0])]);
    assert!(l.layers[16].weights[0].name.ends_with("x/kernel:0"));
}

#[test]
fn newest_hdf5_object_format_is_read() {
    let latest = read_legacy_h5(fixture("cnn_seq_libver_latest_weights_only.h5")).unwrap();
    let classic = read_legacy_h5(fixture("cnn_seq_tfkeras_weights_only.h5")).unwrap();
    assert_eq!(latest, classic);
}

#[test]
fn read_any_detects_the_format_by_content() {
    let dir = tempdir("read_any");
    let kinds = [
        ("cnn_seq.keras", "archive"),
        ("cnn_seq.weights.h5", "weights"),
        ("cnn_seq_tfkeras.h5", "legacy"),
        ("cnn_nested_tfkeras_weights_only.h5", "legacy"),
        ("cnn_func_keras3_legacy.h5", "legacy"),
        ("cnn_seq_fixedstr_weights_only.h5", "legacy"),
        ("cnn_nested_split_attrs.h5", "legacy"),
    ];
    for (file, kind) in kinds {
        // A misleading name must not matter.
        let copy = dir.join(format!("{file}.bin"));
        std::fs::copy(fixture(file), &copy).unwrap();
        let got = match read_any(&copy).unwrap() {
            KerasFile::Archive(_) => "archive",
            KerasFile::Weights(_) => "weights",
            KerasFile::Legacy(_) => "legacy",
        };
        assert_eq!(got, kind, "{file}");
        let direct = read_any(fixture(file)).unwrap();
        assert_eq!(shapes(direct.layers()).len(), 8, "{file}");
    }
    assert!(read_any(fixture("cnn_seq.keras"))
        .unwrap()
        .config()
        .is_some());
    assert!(read_any(fixture("cnn_seq.weights.h5"))
        .unwrap()
        .config()
        .is_none());
}

#[test]
fn float64_weights_are_refused_not_converted() {
    let err = read_legacy_h5(fixture("bad_f64_weight.h5")).unwrap_err();
    match &err {
        Error::UnsupportedDtype {
            location, dtype, ..
        } => {
            assert_eq!(location, "/dense/dense/kernel:0");
            assert_eq!(dtype, "f64");
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("bad_f64_weight.h5"), "{err}");
}

#[test]
fn int64_weights_load_exactly_or_are_refused() {
    // Keras's int64 Normalization `count`: integers a 32-bit float holds exactly become floats.
    let ok = read_legacy_h5(fixture("int64_weight.h5")).unwrap();
    let dense = ok.layers.iter().find(|l| l.name == "dense").unwrap();
    let bias = &dense.weights[1].data;
    assert_eq!(bias[0], 3.0);
    assert_eq!(bias[1], -7.0);
    // 2^24 + 1 would round: refused, naming the dataset.
    match read_legacy_h5(fixture("big_int64_weight.h5")).unwrap_err() {
        Error::UnsupportedDtype {
            location, dtype, ..
        } => {
            assert_eq!(location, "/dense/dense/bias:0");
            assert!(dtype.contains("16777217"), "{dtype}");
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempdir("errors");

    let missing = dir.join("nope.keras");
    let err = read_any(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(err.file(), missing);

    let text = dir.join("text.h5");
    std::fs::write(&text, "not a model").unwrap();
    for err in [
        read_any(&text).unwrap_err(),
        read_legacy_h5(&text).unwrap_err(),
        read_weights_h5(&text).unwrap_err(),
        read_keras_archive(&text).unwrap_err(),
    ] {
        assert!(matches!(err, Error::UnknownFormat { .. }), "{err}");
        assert!(err.to_string().contains("text.h5"), "{err}");
    }

    // Wrong reader for the layout.
    let err = read_weights_h5(fixture("cnn_seq_tfkeras.h5")).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    let err = read_legacy_h5(fixture("cnn_seq.weights.h5")).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert!(err.to_string().contains("layer_names"), "{err}");

    // Truncated files.
    for file in ["cnn_seq.keras", "cnn_seq.weights.h5", "cnn_seq_tfkeras.h5"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let cut = dir.join(format!("cut_{file}"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_any(&cut).unwrap_err();
        assert!(err.to_string().contains("cut_"), "{err}");
    }

    // A zip without model.weights.h5.
    let zip_path = dir.join("no_weights.keras");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("metadata.json", opts).unwrap();
        z.write_all(br#"{"keras_version": "3.15.1"}"#).unwrap();
        z.start_file("config.json", opts).unwrap();
        z.write_all(br#"{"class_name": "Sequential", "config": {"layers": []}}"#)
            .unwrap();
        z.finish().unwrap();
    }
    let err = read_keras_archive(&zip_path).unwrap_err();
    match &err {
        Error::Missing { what, .. } => assert!(what.contains("model.weights.h5"), "{err}"),
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn absurd_shapes_are_refused_before_allocating() {
    // Patch the dataspace of the (64, 3) Dense kernel to claim (2^40, 3):
    // 12 TiB of float32 in a 30 KB file.
    let bytes = std::fs::read(fixture("cnn_seq.weights.h5")).unwrap();
    let mut dims = Vec::new();
    dims.extend_from_slice(&64u64.to_le_bytes());
    dims.extend_from_slice(&3u64.to_le_bytes());
    let at = bytes
        .windows(dims.len())
        .position(|w| w == dims.as_slice())
        .expect("dataspace of the dense kernel");
    let mut patched = bytes.clone();
    patched[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let dir = tempdir("absurd");
    let path = dir.join("absurd.weights.h5");
    std::fs::write(&path, &patched).unwrap();
    let err = read_weights_h5(&path).unwrap_err();
    match &err {
        Error::TooLarge {
            location, needed, ..
        } => {
            assert_eq!(location, "/layers/dense/vars/0");
            assert_eq!(*needed, (1u64 << 40) * 3 * 4);
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn layers_held_by_layers_are_read() {
    // An LSTM keeps its weights in its cell, a MultiHeadAttention in four
    // Dense-like sub-layers; Keras 3 saves them under the attribute names.
    let a = read_keras_archive(fixture("rnn_mix.keras")).unwrap();
    let got: Vec<(String, &str, Vec<Vec<usize>>)> = a
        .weights
        .layers
        .iter()
        .map(|l| {
            (
                l.path.join("/"),
                l.h5_group.as_str(),
                l.weights.iter().map(|w| w.shape.clone()).collect(),
            )
        })
        .collect();
    let v = |s: &[&[usize]]| s.iter().map(|d| d.to_vec()).collect::<Vec<_>>();
    let expected = vec![
        ("seq_in".to_string(), "/layers/input_layer/vars", v(&[])),
        ("lstm".to_string(), "/layers/lstm/vars", v(&[])),
        (
            "lstm/lstm_cell".to_string(),
            "/layers/lstm/cell/vars",
            v(&[&[3, 8], &[2, 8], &[8]]),
        ),
        ("drop".to_string(), "/layers/dropout/vars", v(&[])),
        (
            "mha".to_string(),
            "/layers/multi_head_attention/vars",
            v(&[]),
        ),
        (
            "mha/dropout".to_string(),
            "/layers/multi_head_attention/_dropout_layer/vars",
            v(&[]),
        ),
        (
            "mha/softmax".to_string(),
            "/layers/multi_head_attention/_softmax/vars",
            v(&[]),
        ),
        (
            "mha/key".to_string(),
            "/layers/multi_head_attention/key_dense/vars",
            v(&[&[2, 1, 2], &[1, 2]]),
        ),
        (
            "mha/attention_output".to_string(),
            "/layers/multi_head_attention/output_dense/vars",
            v(&[&[1, 2, 2], &[2]]),
        ),
        (
            "mha/query".to_string(),
            "/layers/multi_head_attention/query_dense/vars",
            v(&[&[2, 1, 2], &[1, 2]]),
        ),
        (
            "mha/value".to_string(),
            "/layers/multi_head_attention/value_dense/vars",
            v(&[&[2, 1, 2], &[1, 2]]),
        ),
        (
            "gap".to_string(),
            "/layers/global_average_pooling1d/vars",
            v(&[]),
        ),
        (
            "head".to_string(),
            "/layers/dense/vars",
            v(&[&[2, 2], &[2]]),
        ),
    ];
    assert_eq!(got, expected);
    let w = read_weights_h5_ordered(fixture("rnn_mix.weights.h5"), &a.config).unwrap();
    assert_eq!(w.layers, a.weights.layers);
    assert_eq!(a.config["config"]["layers"][1]["class_name"], "LSTM");
}

#[test]
fn subclassed_model_attributes_are_read() {
    let w = read_weights_h5(fixture("sub.weights.h5")).unwrap();
    assert_eq!(w.model_name.as_deref(), Some("sub"));
    assert!(!w.has_optimizer);
    let got: Vec<(&str, &str, usize)> = w
        .layers
        .iter()
        .map(|l| (l.name.as_str(), l.h5_group.as_str(), l.weights.len()))
        .collect();
    assert_eq!(
        got,
        [
            ("b0", "/blocks/dense/vars", 2),
            ("b1", "/blocks/dense_1/vars", 2),
            ("enc", "/enc/vars", 2),
        ]
    );
    assert_eq!(w.layers[2].weights[0].shape, [3, 2]);
    assert!(matches!(
        read_any(fixture("sub.weights.h5")).unwrap(),
        KerasFile::Weights(_)
    ));
}

#[test]
fn weights_read_twice_through_hard_links_are_refused() {
    let err = read_legacy_h5(fixture("hard_link_amplification.h5")).unwrap_err();
    match &err {
        Error::TooLarge {
            needed, available, ..
        } => {
            assert_eq!(*needed, 65536);
            assert!(*available < 65536);
        }
        other => panic!("wrong error: {other}"),
    }
}

/// A fresh directory for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn join(&self, name: impl AsRef<std::path::Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("frostnet-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
