//! Decompression bombs: files that are small on disk but declare far more data than the model
//! they describe can need. Each is refused from its declared sizes, before anything is inflated
//! or allocated. The files are crafted here, in memory, from the Keras-written fixtures.

use frostnet::saving::{load_model, load_weights_into};
use frostnet::Error;
use hdf5_pure::{AttrValue, FileBuilder, GroupBuilder};
use std::io::Write;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!("frostnet-bombs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

fn file_error(e: Error) -> (String, String) {
    match e {
        Error::File { path, message } => (path, message),
        other => panic!("not a file error: {other}"),
    }
}

/// A `.keras` whose `config.json` deflates 80 MiB of whitespace (then `{}`) into ~80 KB.
#[test]
fn keras_config_whitespace_bomb_is_refused() {
    let path = scratch("bomb_config.keras");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let deflate = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("config.json", deflate).unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..80 {
        zip.write_all(&spaces).unwrap();
    }
    zip.write_all(b"{}").unwrap();
    zip.finish().unwrap();
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk < 1 << 20, "{on_disk} bytes");
    let (file, message) = file_error(load_model(&path).err().unwrap());
    assert_eq!(file, path);
    assert!(
        message.contains("config.json") && message.contains("more than the 67108864 allowed"),
        "{message}"
    );
    std::fs::remove_file(&path).ok();
}

/// Writes a legacy (tf-keras) full-model `.h5` with the config and weights of `src`, except
/// that weight `replace.1` of layer `replace.0` becomes a deflated dataset of `shape` zeros.
fn legacy_with_replaced_weight(src: &str, dst: &str, replace: (&str, usize), shape: &[u64]) {
    let legacy = frostnet_formats::read_legacy_h5(src).unwrap();
    let mut b = FileBuilder::new();
    b.set_attr(
        "model_config",
        AttrValue::VarLenString(legacy.model_config.unwrap().to_string()),
    );
    b.set_attr("keras_version", AttrValue::VarLenString("2.21.0".into()));
    b.set_attr("backend", AttrValue::VarLenString("tensorflow".into()));
    let mut mw = b.create_group("model_weights");
    mw.set_attr(
        "layer_names",
        AttrValue::VarLenStringArray(legacy.layers.iter().map(|l| l.name.clone()).collect()),
    );
    for layer in &legacy.layers {
        let mut g = mw.create_group(&layer.name);
        g.set_attr(
            "weight_names",
            AttrValue::VarLenStringArray(layer.weights.iter().map(|w| w.name.clone()).collect()),
        );
        // tf-keras names are `<scope>/<variable>:0`: one subgroup per scope.
        let mut scopes: Vec<(String, GroupBuilder)> = Vec::new();
        for (i, w) in layer.weights.iter().enumerate() {
            let (scope, var) = w.name.split_once('/').expect("tf-keras weight name");
            if !scopes.iter().any(|(s, _)| s == scope) {
                scopes.push((scope.to_string(), g.create_group(scope)));
            }
            let sub = &mut scopes.iter_mut().find(|(s, _)| s == scope).unwrap().1;
            if (layer.name.as_str(), i) == replace {
                let n: u64 = shape.iter().product();
                sub.create_dataset(var)
                    .with_f32_data(&vec![0.0; n as usize])
                    .with_shape(shape)
                    .with_chunks(&[256, 256])
                    .with_deflate(9);
            } else {
                let dims: Vec<u64> = w.shape.iter().map(|&d| d as u64).collect();
                sub.create_dataset(var)
                    .with_f32_data(&w.data)
                    .with_shape(&dims);
            }
        }
        for (_, s) in scopes {
            g.add_group(s.finish());
        }
        mw.add_group(g.finish());
    }
    b.add_group(mw.finish());
    std::fs::write(dst, b.finish().unwrap()).unwrap();
}

/// A legacy `.h5` whose 8-value BatchNormalization gamma is a deflated (4096, 4096) dataset:
/// 64 MiB declared, a few hundred KB on disk. Refused from its declared shape, which is larger
/// than any weight the model (built from the file's own config) has.
#[test]
fn legacy_h5_dataset_larger_than_any_weight_is_refused_before_reading() {
    let src = fixture("cnn_seq_tfkeras.h5");
    let legacy = frostnet_formats::read_legacy_h5(&src).unwrap();
    let bn = legacy
        .layers
        .iter()
        .find(|l| l.name.starts_with("batch_normalization"))
        .expect("the fixture has a BatchNormalization layer");
    // The writer itself is faithful: with nothing replaced the copy loads.
    let copy = scratch("copy.h5");
    legacy_with_replaced_weight(&src, &copy, ("none", 0), &[]);
    load_model(&copy).unwrap();

    let bomb = scratch("bomb_bn.h5");
    legacy_with_replaced_weight(&src, &bomb, (&bn.name, 0), &[4096, 4096]);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 4 << 20);
    let (file, message) = file_error(load_model(&bomb).err().unwrap());
    assert_eq!(file, bomb);
    assert!(
        message.contains(
            "shape (4096, 4096) is 67108864 bytes, larger than any weight of the model (768)"
        ) && message.contains(&bn.name),
        "{message}"
    );
    // Loading weights into a model built already applies the same cap.
    let mut model = load_model(&copy).unwrap();
    let (_, message) = file_error(load_weights_into(&mut model, &bomb).unwrap_err());
    assert!(message.contains("larger than any weight"), "{message}");
    std::fs::remove_file(&copy).ok();
    std::fs::remove_file(&bomb).ok();
}
