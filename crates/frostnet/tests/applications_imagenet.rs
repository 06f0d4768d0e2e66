//! Every built-in application as Keras users use it (issue #15): `preprocess_input`, the ImageNet
//! weight file, the model name `frostnet predict` recognises and the default fine-tuning layers,
//! against what Keras 3 itself does (fixtures from `tools/make_applications_imagenet_reference.py`);
//! and the bundled ImageNet class index against Keras's file (`tools/make_imagenet_class_index.py`).

use frostnet::applications::by_name::APPLICATIONS;
use frostnet::applications::transfer::{transfer_model, TransferOptions, PREPROCESS_LAYER};
use frostnet::applications::{
    decode_predictions, Application, ImagenetClassIndex, PreprocessMode, BUNDLED_CLASS_INDEX_JSON,
};
use frostnet::io::npy::read_npy;
use frostnet::layers::ForwardCtx;
use frostnet::Tensor;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/applications/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("imagenet_reference.json")).unwrap())
        .unwrap()
}

#[test]
fn the_table_lists_every_application_once_in_enum_order() {
    let names: HashSet<&str> = APPLICATIONS.iter().map(|a| a.name).collect();
    assert_eq!(names.len(), APPLICATIONS.len());
    assert_eq!(APPLICATIONS.len(), 32);
    for (i, spec) in APPLICATIONS.iter().enumerate() {
        assert_eq!(spec.app as usize, i, "{}", spec.name);
        let parsed: Application = spec.name.parse().unwrap();
        assert_eq!(parsed, spec.app);
        assert_eq!(parsed.name(), spec.name);
    }
    let e = "efficientnet_b9".parse::<Application>().unwrap_err();
    assert!(e.to_string().contains("convnext_tiny"), "{e}");
    // Every application Keras's reference covers, and no other.
    let keras = reference();
    let keras: HashSet<&str> = keras["applications"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keras, names);
}

#[test]
fn preprocess_input_matches_keras_for_every_application() {
    let x = read_npy(&fixture("preprocess/x.npy")).unwrap();
    let keras = reference();
    for app in Application::all() {
        let want = read_npy(&fixture(&format!("preprocess/{}.npy", app.name()))).unwrap();
        let got = app.preprocess_input(&x).unwrap();
        assert_eq!(got.shape(), want.shape(), "{}", app.name());
        let diff = got.max_abs_diff(&want);
        assert!(diff <= 1e-6, "{}: {diff}", app.name());
        let entry = &keras["applications"][app.name()];
        assert_eq!(
            entry["preprocess_mode"],
            app.preprocess_mode().name(),
            "{}",
            app.name()
        );
        assert_eq!(entry["module"], app.spec().module, "{}", app.name());
        assert_eq!(
            entry["constructor"],
            app.spec().constructor,
            "{}",
            app.name()
        );
    }
    // Each of Keras's modes is present, and the pass-through returns its input.
    let modes: HashSet<_> = Application::all().map(|a| a.preprocess_mode()).collect();
    assert_eq!(modes.len(), 4);
    let same = Application::ConvNeXtTiny.preprocess_input(&x).unwrap();
    assert_eq!(same.data(), x.data());
    let gray = Tensor::zeros(&[1, 2, 2, 1]);
    let e = Application::DenseNet121
        .preprocess_input(&gray)
        .unwrap_err();
    assert!(e.to_string().contains("densenet.preprocess_input"), "{e}");
}

/// `frostnet predict` applies `preprocess_input` to a plain application, recognised by the name
/// Keras gives the model.
#[test]
fn keras_model_names_identify_every_application() {
    let keras = reference();
    for app in Application::all() {
        let name = keras["applications"][app.name()]["model_name"]
            .as_str()
            .unwrap();
        assert_eq!(app.spec().model_name, name);
        assert_eq!(Application::of_model_name(name), Some(app), "{name}");
    }
    assert_eq!(
        Application::of_model_name("mobilenet_0.50_160"),
        Some(Application::MobileNet)
    );
    assert_eq!(
        Application::of_model_name("mobilenetv2_1.40_224"),
        Some(Application::MobileNetV2)
    );
    assert_eq!(Application::of_model_name("mobilenet_head"), None);
    assert_eq!(Application::of_model_name("sequential"), None);
}

fn check_file(app: Application, top: bool, rows: Option<usize>, want: &Value) {
    let got = app.imagenet_file(top, rows).unwrap();
    let ctx = format!("{} top={top} rows={rows:?}", app.name());
    assert_eq!(want["fname"], got.file.as_str(), "{ctx}");
    assert_eq!(want["origin"], got.url.as_str(), "{ctx}");
    match &want["file_hash"] {
        Value::Null => assert_eq!(got.hash, None, "{ctx}"),
        h => assert_eq!(h.as_str(), got.hash, "{ctx}"),
    }
}

/// The URL, cache name and hash of every application's ImageNet file, with and without the top,
/// as Keras passes them to `get_file`.
#[test]
fn imagenet_files_match_keras_for_every_application() {
    let keras = reference();
    let mut urls = HashSet::new();
    for app in Application::all() {
        let entry = &keras["applications"][app.name()];
        check_file(app, true, None, &entry["top"]);
        check_file(app, false, None, &entry["notop"]);
        check_file(app, false, Some(app.default_size()), &entry["notop"]);
        assert!(urls.insert(app.imagenet_file(false, None).unwrap().url));
    }
    check_file(
        Application::MobileNetV2,
        false,
        Some(160),
        &keras["mobilenet_v2_160_notop"],
    );
    check_file(
        Application::MobileNet,
        true,
        Some(128),
        &keras["mobilenet_128_top"],
    );
    // Hashes Keras publishes: all but the MobileNet and MobileNetV2 files.
    let unhashed: Vec<&str> = Application::all()
        .filter(|a| a.imagenet_file(true, None).unwrap().hash.is_none())
        .map(|a| a.name())
        .collect();
    assert_eq!(unhashed, ["mobilenet_v2", "mobilenet"]);
}

/// The table's minimum sizes are the builders' (Keras's `obtain_input_shape` minimums): one pixel
/// less is refused before anything is built.
#[test]
fn minimum_sizes_are_the_builders() {
    for app in Application::all() {
        let below = app.min_size() - 1;
        let e = app
            .build(&frostnet::applications::ApplicationOptions {
                include_top: false,
                input_shape: Some([Some(below), Some(below), Some(3)]),
                ..Default::default()
            })
            .err()
            .unwrap_or_else(|| panic!("{} built at {below}", app.name()));
        assert!(
            e.to_string()
                .contains(&format!("at least {}", app.min_size())),
            "{}: {e}",
            app.name()
        );
    }
}

#[test]
fn default_fine_tune_layers_are_keras_layers_of_the_base() {
    let file = std::fs::File::open(fixture("layers_notop.json.gz")).unwrap();
    let layers: HashMap<String, Vec<String>> =
        serde_json::from_reader(flate2::read::GzDecoder::new(file)).unwrap();
    for app in Application::all() {
        let names = &layers[app.name()];
        assert!(!app.spec().fine_tune_at.is_empty());
        for at in app.spec().fine_tune_at {
            assert!(
                names.iter().any(|n| n == at),
                "{}: no layer {at}",
                app.name()
            );
        }
    }
}

/// The transfer model's frozen `preprocess_input` layer computes Keras's `preprocess_input`
/// (within float32 rounding), and the applications that rescale inside get none.
#[test]
fn transfer_models_carry_keras_preprocessing() {
    // Pixels from 0 to 255 at the models' 32x32 input; the expected values are
    // `preprocess_input`'s, checked against Keras above.
    let n = 32;
    let x = Tensor::from_vec(
        &[1, n, n, 3],
        (0..n * n * 3).map(|i| (i * 37 % 256) as f32).collect(),
    )
    .unwrap();
    for app in [
        Application::DenseNet121,
        Application::ResNet101,
        Application::ResNet50V2,
        Application::MobileNetV3Small,
    ] {
        let mut model = transfer_model(&TransferOptions {
            app,
            weights: None,
            image_size: app.min_size(),
            num_classes: 2,
            dropout: 0.0,
            seed: Some(1),
        })
        .unwrap();
        let want = app.preprocess_input(&x).unwrap();
        match model.get_layer_mut(PREPROCESS_LAYER) {
            Ok(layer) => {
                assert_ne!(app.preprocess_mode(), PreprocessMode::Identity);
                assert!(!layer.is_trainable());
                let got = layer.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
                let diff = got.max_abs_diff(&want);
                assert!(diff <= 2e-6, "{}: {diff}", app.name());
            }
            Err(_) => assert_eq!(app.preprocess_mode(), PreprocessMode::Identity),
        }
    }
}

/// The bundled class index is Keras's `imagenet_class_index.json` byte for byte: its MD5 is the
/// one Keras's `decode_predictions` checks the download against.
#[test]
fn bundled_class_index_is_keras_file() {
    use md5::Digest;
    let md5 = format!(
        "{:x}",
        md5::Md5::digest(BUNDLED_CLASS_INDEX_JSON.as_bytes())
    );
    assert_eq!(md5, "c2c37ea517e94d9795004a39431a14cb");
    let raw: HashMap<String, (String, String)> =
        serde_json::from_str(BUNDLED_CLASS_INDEX_JSON).unwrap();
    let keys: HashSet<usize> = raw.keys().map(|k| k.parse().unwrap()).collect();
    assert_eq!(keys, (0..1000).collect());
    let wnids: HashSet<&str> = raw.values().map(|v| v.0.as_str()).collect();
    assert_eq!(wnids.len(), 1000);
    let index = ImagenetClassIndex::bundled();
    assert_eq!(index.len(), 1000);
    for (i, wnid, name) in [
        (0, "n01440764", "tench"),
        (1, "n01443537", "goldfish"),
        (134, "n02012849", "crane"),
        (281, "n02123045", "tabby"),
        (517, "n03126707", "crane"),
        (999, "n15075141", "toilet_tissue"),
    ] {
        assert_eq!((index.wordnet_id(i), index.name(i)), (wnid, name), "{i}");
    }
}

/// `decode_predictions` needs no network: it decodes with the bundled index even when the
/// download would fail.
#[test]
fn decode_predictions_uses_the_bundled_index() {
    std::env::set_var(
        frostnet::applications::download::BASE_URL_ENV,
        "http://127.0.0.1:9",
    );
    std::env::set_var("KERAS_HOME", std::env::temp_dir().join("frostnet_no_keras"));
    let mut p = vec![0.0f32; 2000];
    p[207] = 0.7;
    p[208] = 0.2;
    p[1000 + 999] = 0.9;
    let d = decode_predictions(&Tensor::from_vec(&[2, 1000], p).unwrap(), 2).unwrap();
    assert_eq!(
        d[0][0],
        ("n02099601".to_string(), "golden_retriever".to_string(), 0.7)
    );
    assert_eq!(d[0][1].1, "Labrador_retriever");
    assert_eq!(d[1][0].1, "toilet_tissue");
}
