//! `image_dataset_from_directory` against real Keras 3 (fixtures from
//! `tools/make_image_dataset_reference.py`): class names, file order, the seeded shuffle and the
//! validation split, label encodings, and the decoded + resized pixels of the first batch.

use frostnet::datasets::*;
use frostnet::io::npy::read_npy;
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn folder() -> String {
    fixture("image_folder")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("image_dataset_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The file paths relative to the folder, `/`-separated, as the fixture records them.
fn rel(ds: &ImageDataset) -> Vec<String> {
    ds.file_paths()
        .iter()
        .map(|p| {
            p.strip_prefix(folder())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

/// The fixture's Keras options as frostnet's.
fn options(o: &Value) -> ImageDatasetOptions {
    let mut opts = ImageDatasetOptions {
        verbose: false,
        ..Default::default()
    };
    let obj = o.as_object().unwrap();
    for (k, v) in obj {
        match k.as_str() {
            "image_size" => {
                let s = v.as_array().unwrap();
                opts.image_size = (
                    s[0].as_u64().unwrap() as usize,
                    s[1].as_u64().unwrap() as usize,
                );
            }
            "shuffle" => opts.shuffle = v.as_bool().unwrap(),
            "seed" => opts.seed = v.as_u64(),
            "batch_size" => opts.batch_size = v.as_u64().unwrap() as usize,
            "validation_split" => opts.validation_split = Some(v.as_f64().unwrap() as f32),
            "subset" => {
                opts.subset = Some(match v.as_str().unwrap() {
                    "training" => Subset::Training,
                    "validation" => Subset::Validation,
                    _ => Subset::Both,
                })
            }
            "color_mode" => {
                opts.color_mode = match v.as_str().unwrap() {
                    "grayscale" => ColorMode::Grayscale,
                    "rgba" => ColorMode::Rgba,
                    _ => ColorMode::Rgb,
                }
            }
            "interpolation" => opts.interpolation = v.as_str().unwrap().parse().unwrap(),
            "label_mode" => {
                opts.label_mode = match v.as_str() {
                    None => None,
                    Some("int") => Some(LabelMode::Int),
                    Some("categorical") => Some(LabelMode::Categorical),
                    Some(_) => Some(LabelMode::Binary),
                }
            }
            "class_names" => opts.class_names = Some(strings(v)),
            "crop_to_aspect_ratio" => opts.crop_to_aspect_ratio = v.as_bool().unwrap(),
            other => panic!("option {other} not mapped"),
        }
    }
    opts
}

#[test]
fn class_names_file_order_labels_and_pixels_match_keras() {
    let r = reference();
    let cases = r["cases"].as_object().unwrap();
    assert!(cases.len() >= 7);
    for (name, case) in cases {
        let opts = options(&case["options"]);
        let mut ds = image_dataset_from_directory(folder(), &opts).unwrap();
        let want_classes = case["class_names"]
            .as_array()
            .map(|_| strings(&case["class_names"]));
        assert_eq!(
            ds.class_names().map(<[String]>::to_vec),
            want_classes,
            "{name}"
        );
        assert_eq!(rel(&ds), strings(&case["file_paths"]), "{name}: file order");
        assert_eq!(
            ds.num_batches(),
            Some(case["batches"].as_u64().unwrap() as usize),
            "{name}"
        );
        let batch = ds.epoch().unwrap().next().unwrap().unwrap();
        let want = read_npy(&fixture(&format!("image_dataset_{name}_x.npy"))).unwrap();
        assert_eq!(batch.x.shape(), want.shape(), "{name}");
        // Per image: PNG, BMP and GIF decode exactly as TensorFlow does, and the resize agrees
        // within 1e-3; JPEG decoders differ by a few levels (libjpeg-turbo's IDCT vs `image`'s).
        let per = batch.x.sample_len();
        for (i, path) in rel(&ds).iter().take(batch.x.batch()).enumerate() {
            let got = &batch.x.data()[i * per..(i + 1) * per];
            let exp = &want.data()[i * per..(i + 1) * per];
            let diffs: Vec<f32> = got.iter().zip(exp).map(|(a, b)| (a - b).abs()).collect();
            let max = diffs.iter().cloned().fold(0.0, f32::max);
            let mean = diffs.iter().sum::<f32>() / per as f32;
            if path.ends_with(".jpg") {
                assert!(
                    max < 24.0 && mean < 3.0,
                    "{name}: {path}: max {max}, mean {mean}"
                );
            } else {
                assert!(max < 1e-3, "{name}: {path}: max abs diff {max}");
            }
        }
        match &case["first_batch_labels"] {
            Value::Null => assert!(batch.y.is_none(), "{name}"),
            labels => {
                let y = batch.y.unwrap();
                let flat: Vec<f32> = labels
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|v| match v {
                        Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
                        x => vec![x.as_f64().unwrap() as f32],
                    })
                    .collect();
                assert_eq!(y.data(), &flat[..], "{name}: labels");
            }
        }
    }
}

#[test]
fn shuffled_file_list_and_split_match_keras() {
    let r = reference();
    for (name, case) in r["shuffled"].as_object().unwrap() {
        let mut opts = options(&case["options"]);
        opts.image_size = (8, 8);
        let subsets = case["subsets"].as_array().unwrap();
        let got: Vec<ImageDataset> = if opts.subset == Some(Subset::Both) {
            let (t, v) = image_datasets_from_directory(folder(), &opts).unwrap();
            vec![t, v]
        } else {
            vec![image_dataset_from_directory(folder(), &opts).unwrap()]
        };
        assert_eq!(got.len(), subsets.len());
        for (ds, want) in got.iter().zip(subsets) {
            assert_eq!(rel(ds), strings(&want["file_paths"]), "{name}");
            assert_eq!(
                ds.class_names().unwrap(),
                &strings(&want["class_names"])[..],
                "{name}"
            );
            // Labels travel with their files through the shuffle.
            let classes = ds.class_names().unwrap();
            for (path, &label) in rel(ds).iter().zip(ds.labels().unwrap()) {
                assert!(path.starts_with(&format!("{}/", classes[label])), "{path}");
            }
        }
    }
}

#[test]
fn shuffled_epochs_cover_every_file_once_and_differ() {
    let opts = ImageDatasetOptions {
        image_size: (4, 4),
        batch_size: 3,
        seed: Some(5),
        verbose: false,
        num_workers: 2,
        prefetch: 1,
        ..Default::default()
    };
    let mut ds = image_dataset_from_directory(folder(), &opts).unwrap();
    let mut orders = Vec::new();
    for _ in 0..2 {
        let mut labels = Vec::new();
        let mut n = 0;
        for b in ds.epoch().unwrap() {
            let b = b.unwrap();
            n += b.x.batch();
            labels.extend(b.y.unwrap().data().to_vec());
        }
        assert_eq!(n, 13);
        let mut sorted = labels.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, [0., 0., 0., 0., 1., 1., 1., 1., 1., 2., 2., 2., 2.]);
        orders.push(labels);
    }
    // Unshuffled, batches come in file order whatever the number of workers.
    let mut a = image_dataset_from_directory(folder(), &opts)
        .unwrap()
        .unshuffled();
    let mut one = opts.clone();
    one.num_workers = 1;
    let mut b = image_dataset_from_directory(folder(), &one)
        .unwrap()
        .unshuffled();
    let xa: Vec<_> = a.epoch().unwrap().map(|b| b.unwrap().x).collect();
    let xb: Vec<_> = b.epoch().unwrap().map(|b| b.unwrap().x).collect();
    assert_eq!(xa.len(), 5);
    for (p, q) in xa.iter().zip(&xb) {
        assert_eq!(p.data(), q.data());
    }
}

#[test]
fn a_corrupt_file_is_an_error_naming_it_and_bad_options_are_refused() {
    let dir = std::env::temp_dir().join(format!("frostnet_corrupt_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::copy(
        Path::new(&folder()).join("cat/c0.png"),
        dir.join("a/good.png"),
    )
    .unwrap();
    std::fs::write(
        dir.join("a/broken.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    std::fs::write(dir.join("a/text.jpg"), b"hello").unwrap();
    let opts = ImageDatasetOptions {
        image_size: (4, 4),
        batch_size: 1,
        shuffle: false,
        verbose: false,
        ..Default::default()
    };
    let mut ds = image_dataset_from_directory(&dir, &opts).unwrap();
    let results: Vec<_> = ds.epoch().unwrap().collect();
    // broken.png comes first (sorted); the pass stops at the first bad file.
    assert_eq!(results.len(), 1);
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("broken.png") && e.contains("decode"), "{e}");
    std::fs::remove_file(dir.join("a/broken.png")).unwrap();
    let mut ds = image_dataset_from_directory(&dir, &opts).unwrap();
    let results: Vec<_> = ds.epoch().unwrap().collect();
    assert!(results[0].is_ok());
    let e = results[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("text.jpg"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();

    let refuse = |o: ImageDatasetOptions| image_dataset_from_directory(folder(), &o).unwrap_err();
    let base = ImageDatasetOptions {
        verbose: false,
        ..Default::default()
    };
    let e = refuse(ImageDatasetOptions {
        validation_split: Some(0.2),
        subset: Some(Subset::Training),
        ..base.clone()
    });
    assert!(e.to_string().contains("seed"), "{e}");
    let e = refuse(ImageDatasetOptions {
        validation_split: Some(0.2),
        ..base.clone()
    });
    assert!(e.to_string().contains("subset"), "{e}");
    let e = refuse(ImageDatasetOptions {
        label_mode: Some(LabelMode::Binary),
        ..base.clone()
    });
    assert!(e.to_string().contains("exactly 2"), "{e}");
    let e = refuse(ImageDatasetOptions {
        class_names: Some(vec!["cat".into(), "fish".into()]),
        ..base.clone()
    });
    assert!(e.to_string().contains("fish"), "{e}");
    assert!("bicubic".parse::<Interpolation>().is_err());
    let e = image_dataset_from_directory("/nonexistent/frostnet", &base).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/frostnet"), "{e}");
}

/// A PNG whose palette is not whole RGB entries (found by the `image` fuzz target; `png` 0.18.1
/// panics on it, image-rs/image-png#694) is a one-line error naming the file, from `load_image`
/// and from a folder, and the same file's bytes with a whole palette get past the check.
#[test]
fn a_png_with_a_broken_palette_is_an_error_not_a_panic() {
    let path = fixture("fuzz_png_plte_49_bytes.png");
    for mode in [ColorMode::Rgb, ColorMode::Grayscale, ColorMode::Rgba] {
        let e = load_image(&path, (4, 4), mode, Interpolation::Bilinear)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&path) && e.contains("PLTE chunk) is 49 bytes") && !e.contains('\n'),
            "{e}"
        );
    }
    let dir = std::env::temp_dir().join(format!("frostnet_plte_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::copy(&path, dir.join("a/bad.png")).unwrap();
    let opts = ImageDatasetOptions {
        image_size: (4, 4),
        batch_size: 1,
        verbose: false,
        ..Default::default()
    };
    let mut ds = image_dataset_from_directory(&dir, &opts).unwrap();
    let results: Vec<_> = ds.epoch().unwrap().collect();
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("bad.png") && e.contains("PLTE"), "{e}");
    // The same file with the palette cut to 48 bytes (16 whole entries) passes the check,
    // whatever the decoder then says of it (the chunk's CRC no longer matches).
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[0x25..0x29], b"PLTE");
    bytes[0x24] = 48;
    bytes.remove(0x29 + 48);
    std::fs::write(dir.join("a/bad.png"), &bytes).unwrap();
    let got = load_image(
        dir.join("a/bad.png"),
        (4, 4),
        ColorMode::Rgb,
        Interpolation::Bilinear,
    );
    if let Err(e) = got {
        assert!(!e.to_string().contains("PLTE chunk) is"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explicit_labels_follow_the_sorted_file_list() {
    // Keras's `labels=[...]`: one label per file of the whole tree (as with labels=None: the
    // `nolabels_batch5` case fixes that order against Keras), class names the sorted labels.
    let r = reference();
    let files = strings(&r["cases"]["nolabels_batch5"]["file_paths"]);
    let given: Vec<usize> = (0..files.len()).map(|i| [4, 2, 9][i % 3]).collect();
    let opts = ImageDatasetOptions {
        labels: Labels::List(given.clone()),
        image_size: (4, 4),
        batch_size: 32,
        shuffle: false,
        verbose: false,
        ..Default::default()
    };
    let mut ds = image_dataset_from_directory(folder(), &opts).unwrap();
    assert_eq!(rel(&ds), files);
    assert_eq!(ds.class_names().unwrap(), ["2", "4", "9"]);
    let y = ds.epoch().unwrap().next().unwrap().unwrap().y.unwrap();
    let want: Vec<f32> = given.iter().map(|&l| l as f32).collect();
    assert_eq!(y.data(), &want[..]);
    let e = image_dataset_from_directory(
        folder(),
        &ImageDatasetOptions {
            labels: Labels::List(vec![0, 1]),
            ..opts
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("2 labels given but 15"), "{e}");
}
