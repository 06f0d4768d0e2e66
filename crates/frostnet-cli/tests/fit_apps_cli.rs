//! `frostnet fit --app` and `frostnet predict` for applications beyond the original four (issue
//! #15): one per `preprocess_input` family (DenseNet's `torch`, ResNetV2's `tf`, MobileNetV3's
//! pass-through), each at its minimum input size with a random base, one epoch on a few generated
//! images; then `predict --image` on the result, and on a plain ImageNet application, which must
//! get its `preprocess_input` and the bundled class names with no network; `tune --app` on
//! another base; and `fit --weights imagenet` fetching MobileNet's file from a local server.

use frostnet::applications::{build_by_name, Application, ApplicationOptions};
use frostnet::datasets::{load_image, ColorMode, Interpolation};
use frostnet::Layer;
use image::{Rgb, RgbImage};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{ok, scratch};

fn frostnet(args: &[&str]) -> Output {
    common::command(args)
        // No download may happen: a request would go to a closed port and fail.
        .env("FROSTNET_WEIGHTS_BASE_URL", "http://127.0.0.1:9")
        .env(
            "KERAS_HOME",
            std::env::temp_dir().join("frostnet_no_keras_home"),
        )
        .output()
        .unwrap()
}

/// Two classes of 4 small images each, PNG and JPEG.
fn make_folder(dir: &Path) {
    for (class, colour) in [("dark", [40u8, 40, 60]), ("light", [210u8, 200, 190])] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..4u32 {
            let img = RgbImage::from_fn(20 + i, 24 - i, |x, y| {
                Rgb(colour.map(|c| c.saturating_add(((x * 5 + y * 3 + i) % 30) as u8)))
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(class).join(format!("{class}{i}.{ext}")))
                .unwrap();
        }
    }
}

#[test]
fn fit_and_predict_work_for_applications_of_every_preprocess_family() {
    let dir = scratch("fit_apps");
    let data = dir.join("photos");
    make_folder(&data);
    for app in ["densenet121", "resnet50_v2", "mobilenet_v3_small"] {
        let size = app.parse::<Application>().unwrap().min_size().to_string();
        let out = dir.join(format!("{app}.keras"));
        let stdout = ok(&frostnet(&[
            "fit",
            "--app",
            app,
            "--weights",
            "none",
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            &size,
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--validation-split",
            "0.25",
            "--output",
            out.to_str().unwrap(),
        ]));
        assert!(stdout.contains("val_accuracy"), "{app}: {stdout}");
        let model = frostnet::saving::load_model(out.to_str().unwrap()).unwrap();
        assert_eq!(model.name(), format!("{app}_transfer"));
        // preprocess_input is inside the model, except where the base rescales itself.
        let has_pre = model.get_layer("preprocess_input").is_ok();
        assert_eq!(has_pre, app != "mobilenet_v3_small", "{app}");

        let img = data.join("light/light0.png");
        let stdout = ok(&frostnet(&[
            "predict",
            out.to_str().unwrap(),
            "--image",
            img.to_str().unwrap(),
        ]));
        assert!(
            stdout.contains("dark ") && stdout.contains("light "),
            "{app}: {stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A plain ImageNet classifier (a Keras application with its top) saved as `.keras`: `predict`
/// recognises it by its Keras name, applies its `preprocess_input` (DenseNet's `torch` mode
/// here), and names the classes from the bundled ImageNet index, offline.
#[test]
fn predict_preprocesses_a_plain_application_and_names_imagenet_classes() {
    let dir = scratch("predict_app");
    let data = dir.join("photos");
    make_folder(&data);
    let mut model = build_by_name(
        "densenet121",
        &ApplicationOptions {
            input_shape: Some([Some(32), Some(32), Some(3)]),
            ..Default::default()
        },
    )
    .unwrap();
    let file = dir.join("densenet121.keras");
    frostnet::saving::save_keras(&model, file.to_str().unwrap()).unwrap();
    let img = data.join("dark/dark1.jpg");
    let stdout = ok(&frostnet(&[
        "predict",
        file.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--top",
        "1",
    ]));
    // What the library computes with DenseNet's preprocess_input applied.
    let x = load_image(&img, (32, 32), ColorMode::Rgb, Interpolation::Bilinear).unwrap();
    let x = Application::DenseNet121.preprocess_input(&x).unwrap();
    let probs = model.predict(&x, 1).unwrap();
    let top = frostnet::applications::top_k(probs.data(), 1)[0];
    let name = frostnet::applications::ImagenetClassIndex::bundled()
        .name(top)
        .to_string();
    let want = format!("{}: {name} {:.4}", img.display(), probs.data()[top]);
    assert_eq!(stdout.trim(), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fit_names_the_minimum_size_of_every_application() {
    for (app, min) in [
        ("xception", 71),
        ("inception_resnet_v2", 75),
        ("efficientnet_b0", 32),
    ] {
        let o = frostnet(&[
            "fit",
            "--app",
            app,
            "--weights",
            "none",
            "--data",
            "/tmp",
            "--image-size",
            &(min - 1).to_string(),
            "--output",
            "/tmp/x.keras",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{app}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{app} needs at least {min}")),
            "{err}"
        );
    }
    let o = frostnet(&[
        "fit",
        "--app",
        "resnet18",
        "--data",
        "/tmp",
        "--output",
        "/tmp/x.keras",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown application 'resnet18'"),
        "{err}"
    );
    assert!(err.contains("efficientnet_v2_s"), "{err}");
}

/// `frostnet tune --app` on an application beyond the original four, with its default
/// fine-tuning choices from the applications' table (`none` and the starts of ResNet50V2's last
/// blocks).
#[test]
fn tune_searches_the_recipe_on_another_application() {
    let dir = scratch("tune_apps");
    let data = dir.join("photos");
    make_folder(&data);
    let store = format!("sqlite:{}", dir.join("s.sqlite3").display());
    let stdout = ok(&frostnet(&[
        "tune",
        "--store",
        &store,
        "--study",
        "v2",
        "--app",
        "resnet50_v2",
        "--weights",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--validation-split",
        "0.25",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "1",
        "--seed",
        "3",
    ]));
    assert!(stdout.contains("best trial: #"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Serves `body` at `path` (and 404 elsewhere) on 127.0.0.1 until the test ends; returns the
/// base URL and the request count.
fn serve_one(
    path: String,
    body: Vec<u8>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = if line.split_whitespace().nth(1) == Some(path.as_str()) {
                stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body))
            } else {
                stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
            };
            let _ = stream.flush();
        }
    });
    (base, hits)
}

/// `fit --app mobilenet --weights imagenet` downloads the file Keras downloads for MobileNet at
/// 128x128 without top (Keras publishes no hash for it, so a file made here can stand in) from
/// Keras's URL path on a local server, caches it under Keras's name, and trains on that base.
#[test]
fn fit_downloads_the_imagenet_file_of_another_application() {
    use std::io::Read;
    let dir = scratch("fit_imagenet");
    let data = dir.join("photos");
    make_folder(&data);
    let mut base = build_by_name(
        "mobilenet",
        &ApplicationOptions {
            include_top: false,
            input_shape: Some([Some(128), Some(128), Some(3)]),
            ..Default::default()
        },
    )
    .unwrap();
    // A first kernel no initialisation would draw, so the check below sees the served file.
    let conv1 = base.get_layer_mut("conv1").unwrap();
    let shape = conv1.get_weights()[0].shape().to_vec();
    let n: usize = shape.iter().product();
    let kernel: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.01 - 0.03).collect();
    conv1
        .set_weights(vec![frostnet::Tensor::from_vec(&shape, kernel).unwrap()])
        .unwrap();
    let src = dir.join("source.keras");
    frostnet::saving::save_keras(&base, src.to_str().unwrap()).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let mut bytes = Vec::new();
    zip.by_name("model.weights.h5")
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let file = Application::MobileNet
        .imagenet_file(false, Some(128))
        .unwrap();
    assert_eq!(file.file, "mobilenet_1_0_128_tf_no_top.h5");
    let path = file
        .url
        .strip_prefix("https://storage.googleapis.com")
        .unwrap()
        .to_string();
    let (url, hits) = serve_one(path, bytes.clone());
    let home = dir.join("keras_home");
    let out = dir.join("model.keras");
    let o = Command::new(env!("CARGO_BIN_EXE_frostnet"))
        .args([
            "fit",
            "--app",
            "mobilenet",
            "--weights",
            "imagenet",
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "128",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--validation-split",
            "0",
            "--output",
            out.to_str().unwrap(),
        ])
        .env("FROSTNET_WEIGHTS_BASE_URL", &url)
        .env("KERAS_HOME", &home)
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let cached = home.join("models").join(&file.file);
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    // The frozen base kept the served weights through training.
    let model = frostnet::saving::load_model(out.to_str().unwrap()).unwrap();
    let trained = model
        .get_layer("mobilenet_1.00_128")
        .unwrap()
        .as_model()
        .unwrap()
        .get_layer("conv1")
        .unwrap()
        .get_weights();
    let served = base.get_layer("conv1").unwrap().get_weights();
    assert_eq!(trained[0].data(), served[0].data());
    std::fs::remove_dir_all(&dir).unwrap();
}
