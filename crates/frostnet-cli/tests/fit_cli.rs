//! `frostnet fit` end to end on a generated folder (MobileNetV2 at 32x32, Keras's minimum, random
//! base so no download), the written `.keras` reloading with its class names, and `frostnet
//! predict --image` printing them.

use image::{Rgb, RgbImage};
use std::path::Path;

mod common;
use common::frostnet;

/// Two classes that differ in colour: `red` and `blue`, mixed PNG and JPEG, various sizes.
fn make_folder(dir: &Path) {
    for (class, colour) in [("red", [220u8, 30, 30]), ("blue", [30, 30, 220])] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..8u32 {
            let (w, h) = (30 + i * 3, 40 - i * 2);
            let img = RgbImage::from_fn(w, h, |x, y| {
                let n = ((x * 7 + y * 13 + i * 5) % 40) as u8;
                Rgb(colour.map(|c| c.saturating_add(n)))
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(class).join(format!("{class}{i}.{ext}")))
                .unwrap();
        }
    }
}

#[test]
fn fit_trains_saves_a_reloadable_keras_file_and_predict_names_classes() {
    let dir = std::env::temp_dir().join(format!("frostnet_fit_cli_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("photos");
    make_folder(&data);
    let out = dir.join("model.keras");
    let o = frostnet(&[
        "fit",
        "--app",
        "mobilenet_v2",
        "--weights",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--validation-split",
        "0.25",
        "--fine-tune-at",
        "block_16_expand",
        "--fine-tune-epochs",
        "1",
        "--output",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("Found 16 files belonging to 2 classes."),
        "{stdout}"
    );
    assert!(stdout.contains("val_accuracy"), "{stdout}");
    assert!(
        stdout.contains("Fine-tuning the base from layer"),
        "{stdout}"
    );
    assert!(out.is_file());

    // The file reloads in the library with its class names, and the base's frozen prefix stayed
    // frozen while the layers from block_16_expand on were unfrozen.
    let model = frostnet::saving::load_model(out.to_str().unwrap()).unwrap();
    let names = frostnet::applications::transfer::load_class_names(out.to_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(names, ["blue", "red"]);
    let base = model
        .get_layer("mobilenetv2_1.00_32")
        .unwrap()
        .as_model()
        .unwrap();
    assert!(!base.get_layer("Conv1").unwrap().is_trainable());
    assert!(base.get_layer("block_16_expand").unwrap().is_trainable());

    // predict --image prints class names with probabilities, top 2.
    let red = data.join("red/red0.png");
    let blue = data.join("blue/blue1.jpg");
    let o = frostnet(&[
        "predict",
        out.to_str().unwrap(),
        "--image",
        red.to_str().unwrap(),
        blue.to_str().unwrap(),
        "--top",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in &lines {
        assert!(line.contains("red ") && line.contains("blue "), "{line}");
        // Two probabilities summing to 1 (a softmax over two classes).
        let probs: Vec<f64> = line
            .split([' ', ','])
            .filter_map(|t| t.parse().ok())
            .collect();
        assert_eq!(probs.len(), 2, "{line}");
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 2e-4, "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fit_errors_are_one_line() {
    let o = frostnet(&[
        "fit",
        "--app",
        "mobilenet_v2",
        "--weights",
        "none",
        "--data",
        "/nonexistent/photos",
        "--output",
        "/tmp/x.keras",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/photos"), "{err}");
    let o = frostnet(&[
        "fit",
        "--app",
        "mobilenet_v2",
        "--data",
        "/tmp",
        "--augment",
        "flip,shear=0.1",
        "--output",
        "/tmp/x.keras",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.trim().lines().count() == 1
            && err.contains("'shear=0.1' is not an augmentation"),
        "{err}"
    );
    let o = frostnet(&[
        "fit",
        "--app",
        "inception_v3",
        "--weights",
        "none",
        "--data",
        "/tmp",
        "--image-size",
        "32",
        "--output",
        "/tmp/x.keras",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("at least 75"), "{err}");
}

/// `--augment` puts Keras's `data_augmentation` Sequential in front of the base: training runs
/// through it, the saved `.keras` carries it (and reloads), and at inference it passes images
/// through, so predictions do not depend on it.
#[test]
fn fit_with_augment_saves_the_augmentation_layers() {
    let dir = std::env::temp_dir().join(format!("frostnet_fit_aug_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("photos");
    make_folder(&data);
    let out = dir.join("model.keras");
    let o = frostnet(&[
        "fit",
        "--app",
        "mobilenet_v2",
        "--weights",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--augment",
        "flip,rotation=0.1,zoom=0.1,translation=0.1,contrast=0.2,brightness=0.1",
        "--output",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut model = frostnet::saving::load_model(out.to_str().unwrap()).unwrap();
    let aug = model
        .get_layer("data_augmentation")
        .unwrap()
        .as_model()
        .unwrap();
    let classes: Vec<&str> = aug.layers().iter().map(|l| l.class_name()).collect();
    assert_eq!(
        classes,
        [
            "RandomFlip",
            "RandomRotation",
            "RandomZoom",
            "RandomTranslation",
            "RandomContrast",
            "RandomBrightness"
        ]
    );
    // The augmentation comes first, before preprocess_input and the base.
    let order: Vec<&str> = model.layers().iter().map(|l| l.name()).collect();
    let at = |n: &str| order.iter().position(|&k| k == n).unwrap();
    assert!(
        at("data_augmentation") < at("preprocess_input"),
        "{order:?}"
    );
    // Inference skips the augmentation: its layers own seeded generators that advance on every
    // training-mode call, so two predictions would differ if it ran.
    let x = frostnet::Tensor::full(&[2, 32, 32, 3], 100.0);
    let p = model.predict(&x, 2).unwrap();
    let q = model.predict(&x, 2).unwrap();
    assert_eq!(p.data(), q.data());
    std::fs::remove_dir_all(&dir).unwrap();
}
