//! What `save_keras` writes, read back without Keras and compared with what Keras itself wrote
//! for the same models (the fixtures): the zip's members, the structure of `config.json`, and
//! every dataset path, shape and value of `model.weights.h5`. Whether real Keras loads the file
//! is checked by `tools/check_keras_roundtrip.py`, which needs Python and is not run here.

use frostnet::saving::{load_model, save_keras};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;

const KINDS: [&str; 3] = ["cnn_seq", "cnn_func", "cnn_nested"];

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// (name, stored uncompressed?, bytes) per member, in order.
fn members(path: &str) -> Vec<(String, bool, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            let stored = f.compression() == zip::CompressionMethod::Stored;
            (f.name().unwrap().to_string(), stored, bytes)
        })
        .collect()
}

fn member<'a>(m: &'a [(String, bool, Vec<u8>)], name: &str) -> &'a [u8] {
    &m.iter().find(|(n, _, _)| n == name).unwrap().2
}

/// Dataset path -> (shape, raw bytes).
type Datasets = BTreeMap<String, (Vec<u64>, Vec<u8>)>;

/// Every dataset of an HDF5 file: path -> (shape, raw bytes), and every `vars` group's `@name`.
fn h5_contents(bytes: &[u8]) -> (Datasets, BTreeMap<String, String>) {
    fn walk(
        g: &hdf5_pure::Group,
        path: &str,
        data: &mut Datasets,
        names: &mut BTreeMap<String, String>,
    ) {
        if let Some(hdf5_pure::AttrValue::VarLenString(n) | hdf5_pure::AttrValue::String(n)) =
            g.attrs().unwrap().get("name")
        {
            names.insert(path.to_string(), n.clone());
        }
        for d in g.datasets().unwrap() {
            let ds = g.dataset(&d).unwrap();
            data.insert(
                format!("{path}/{d}"),
                (ds.shape().unwrap(), ds.read_raw().unwrap()),
            );
        }
        for sub in g.groups().unwrap() {
            walk(
                &g.group(&sub).unwrap(),
                &format!("{path}/{sub}"),
                data,
                names,
            );
        }
    }
    let f = hdf5_pure::File::from_bytes(bytes.to_vec()).unwrap();
    let (mut data, mut names) = (BTreeMap::new(), BTreeMap::new());
    walk(&f.root(), "", &mut data, &mut names);
    (data, names)
}

/// The layer entries of a model config, nested models' layers included, keyed by layer name.
fn layer_entries(config: &Value, out: &mut BTreeMap<String, Value>) {
    for l in config["config"]["layers"].as_array().unwrap() {
        let name = l["config"]["name"].as_str().unwrap().to_string();
        if l["config"]["layers"].is_array() {
            layer_entries(l, out);
        }
        out.insert(name, l.clone());
    }
}

#[test]
fn save_keras_writes_what_keras_writes() {
    let dir = std::env::temp_dir().join(format!("frostnet-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut problems = Vec::new();
    for kind in KINDS {
        let keras_file = fixture(&format!("{kind}.keras"));
        let model = load_model(&keras_file).unwrap();
        let ours_path = dir.join(format!("{kind}.keras"));
        let ours_path = ours_path.to_str().unwrap();
        save_keras(&model, ours_path).unwrap();
        let (ours, theirs) = (members(ours_path), members(&keras_file));

        // The same members in the same order, stored uncompressed, as Keras writes them.
        let layout = |m: &[(String, bool, Vec<u8>)]| -> Vec<(String, bool)> {
            m.iter().map(|(n, s, _)| (n.clone(), *s)).collect()
        };
        assert_eq!(layout(&ours), layout(&theirs), "{kind}");
        let meta: Value = serde_json::from_slice(member(&ours, "metadata.json")).unwrap();
        assert!(meta["keras_version"].as_str().unwrap().starts_with("3."));

        // config.json: the same model class and name, the same layers in the same order, and
        // per layer no config key Keras's own config lacks (Keras passes them to the layer's
        // constructor, which rejects unknown ones), with equal values for the keys that carry
        // the architecture.
        let c_ours: Value = serde_json::from_slice(member(&ours, "config.json")).unwrap();
        let c_keras: Value = serde_json::from_slice(member(&theirs, "config.json")).unwrap();
        for key in ["module", "class_name"] {
            assert_eq!(c_ours[key], c_keras[key], "{kind}: {key}");
        }
        assert_eq!(c_ours["config"]["name"], c_keras["config"]["name"]);
        let (mut l_ours, mut l_keras) = (BTreeMap::new(), BTreeMap::new());
        layer_entries(&c_ours, &mut l_ours);
        layer_entries(&c_keras, &mut l_keras);
        assert_eq!(
            l_ours.keys().collect::<Vec<_>>(),
            l_keras.keys().collect::<Vec<_>>(),
            "{kind}"
        );
        for (name, ours) in &l_ours {
            let keras = &l_keras[name];
            for key in ["module", "class_name"] {
                if ours.get(key) != keras.get(key) {
                    problems.push(format!("{kind}/{name}: {key} differs"));
                }
            }
            // The wiring: the tensors each call takes. (Keras also records call kwargs such as
            // BatchNormalization's `mask: null`, which frostnet leaves out: `{}` means the same.)
            let args = |e: &Value| -> Vec<Value> {
                e["inbound_nodes"]
                    .as_array()
                    .map(|n| n.iter().map(|call| call["args"].clone()).collect())
                    .unwrap_or_default()
            };
            if args(ours) != args(keras) {
                problems.push(format!("{kind}/{name}: inbound_nodes args differ"));
            }
            let (co, ck) = (
                ours["config"].as_object().unwrap(),
                keras["config"].as_object().unwrap(),
            );
            for (k, v) in co {
                let Some(kv) = ck.get(k) else {
                    problems.push(format!(
                        "{kind}/{name}: config key '{k}' Keras does not write"
                    ));
                    continue;
                };
                // `dtype` and initializers are written in equivalent forms; nested models'
                // `layers` are compared entry by entry above. Numbers are float32 in both
                // (frostnet writes epsilon 0.001 as 0.0010000000474974513, the same float32).
                let same_f32 = v
                    .as_f64()
                    .zip(kv.as_f64())
                    .is_some_and(|(a, b)| a as f32 == b as f32);
                let skip = k == "dtype" || k == "layers" || k.ends_with("_initializer");
                if !skip && !same_f32 && v != kv {
                    problems.push(format!("{kind}/{name}: {k} = {v} vs Keras {kv}"));
                }
            }
        }

        // model.weights.h5: every dataset Keras wrote, the layers' and the optimizer's (the
        // fixtures are compiled and trained: save_keras writes the optimizer's variables back),
        // at the same path, with the same shape and bytes.
        let (d_ours, n_ours) = h5_contents(member(&ours, "model.weights.h5"));
        let (d_keras, n_keras) = h5_contents(member(&theirs, "model.weights.h5"));
        assert_eq!(
            d_ours.keys().collect::<Vec<_>>(),
            d_keras.keys().collect::<Vec<_>>(),
            "{kind}"
        );
        for (path, (shape, bytes)) in &d_ours {
            let (kshape, kbytes) = &d_keras[path];
            assert_eq!(shape, kshape, "{kind}: {path}");
            assert!(bytes == kbytes, "{kind}: {path}: values differ");
        }
        assert_eq!(n_ours, n_keras, "{kind}: vars names");

        // And frostnet reads it back to the same model.
        let again = load_model(ours_path).unwrap();
        assert_eq!(again.get_weights(), model.get_weights());
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
