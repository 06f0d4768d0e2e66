//! `weights: imagenet` for ResNet101/152, the ResNet V2s, Xception, DenseNet, MobileNet,
//! InceptionResNetV2 and NASNetMobile, against an HTTP server on 127.0.0.1
//! (`FROSTNET_WEIGHTS_BASE_URL`, cache in `KERAS_HOME`): each asks for the file at Keras's URL,
//! checks it against Keras's published hash (a wrong file is refused, naming URL, hash and cache
//! name), and MobileNet (no published hash) loads the file served at its Keras URL.
//!
//! One test function: the environment variables are process-wide.

use frostnet::applications::{
    densenet121, densenet169, densenet201, inception_resnet_v2, mobilenet_with, nasnet_mobile,
    resnet101, resnet101_v2, resnet152, resnet152_v2, resnet50_v2, xception, ApplicationOptions,
    MobileNetOptions,
};
use frostnet::{Model, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

type Routes = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Serves `routes` (404 elsewhere); returns the base URL and the list of requested paths.
fn serve(routes: Routes) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(path.clone());
            let body = routes.lock().unwrap().get(&path).cloned();
            let _ = match body {
                Some(b) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&b)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
            let _ = stream.flush();
        }
    });
    (base, seen)
}

/// The Keras 3 `.weights.h5` of `model`, as frostnet writes it inside a `.keras` archive.
fn keras_weights_bytes(model: &Model, tmp: &std::path::Path) -> Vec<u8> {
    let path = tmp.join("source.keras");
    frostnet::saving::save_keras(model, path.to_str().unwrap()).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut f = zip.by_name("model.weights.h5").unwrap();
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    bytes
}

type Build = fn(&ApplicationOptions) -> Result<Model>;

#[test]
fn imagenet_weights_come_from_keras_urls_with_keras_hashes() {
    let tmp = std::env::temp_dir().join(format!("frostnet_apps1_weights_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let routes: Routes = Arc::default();
    let (base, seen) = serve(routes.clone());
    std::env::set_var("KERAS_HOME", tmp.join("keras_home"));
    std::env::set_var("FROSTNET_WEIGHTS_BASE_URL", &base);
    let dir = "/tensorflow/keras-applications/";

    // A wrong file at each Keras URL: refused by Keras's hash, nothing cached.
    let cases: [(Build, bool, &str, &str, &str); 8] = [
        (
            resnet101,
            true,
            "resnet/resnet101_weights_tf_dim_ordering_tf_kernels.h5",
            "f1aeb4b969a6efcfb50fad2f0c20cfc5",
            "resnet101_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        (
            resnet152,
            false,
            "resnet/resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "ee4c566cf9a93f14d82f913c2dc6dd0c",
            "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        (
            resnet50_v2,
            true,
            "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
            "3ef43a0b657b3be2300d5770ece849e0",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        (
            resnet101_v2,
            false,
            "resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "c0ed64b8031c3730f411d2eb4eea35b5",
            "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        (
            resnet152_v2,
            true,
            "resnet/resnet152v2_weights_tf_dim_ordering_tf_kernels.h5",
            "a49b44d1979771252814e80f8ec446f9",
            "resnet152v2_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        (
            xception,
            false,
            "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "b0042744bf5b25fce3cb969f33bebb97",
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        (
            inception_resnet_v2,
            true,
            "inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
            "e693bd0210a403b3192acc6073ad2e96",
            "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        (
            nasnet_mobile,
            false,
            "nasnet/NASNet-mobile-no-top.h5",
            "1ed92395b5b598bdda52abe5c0dbfd63",
            "nasnet_mobile_no_top.h5",
        ),
    ];
    let dense: [(Build, bool, &str, &str, &str); 3] = [
        (
            densenet121,
            false,
            "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "30ee3e1110167f948a6b9946edeeb738",
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        (
            densenet169,
            true,
            "densenet/densenet169_weights_tf_dim_ordering_tf_kernels.h5",
            "d699b8f76981ab1b30698df4c175e90b",
            "densenet169_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        (
            densenet201,
            false,
            "densenet/densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "c13680b51ded0fb44dff2d8f86ac8bb1",
            "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    ];
    for (build, include_top, path, hash, cached) in cases.into_iter().chain(dense) {
        routes
            .lock()
            .unwrap()
            .insert(format!("{dir}{path}"), b"not the weights".to_vec());
        let e = build(&ApplicationOptions {
            include_top,
            weights: Some("imagenet".into()),
            ..Default::default()
        })
        .err()
        .expect("refused")
        .to_string();
        assert!(
            e.contains(&format!("{base}{dir}{path}")) && e.contains(hash) && e.contains(cached),
            "{path}: {e}"
        );
        assert_eq!(
            seen.lock().unwrap().last().unwrap(),
            &format!("{dir}{path}")
        );
    }
    let cache = tmp.join("keras_home").join("models");
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(left.is_empty(), "nothing cached: {left:?}");

    // MobileNet alpha 0.25 at 128x128 without top: Keras's `mobilenet_2_5_128_tf_no_top.h5`,
    // unhashed, loaded as served.
    let opts = MobileNetOptions {
        alpha: 0.25,
        base: ApplicationOptions {
            include_top: false,
            input_shape: Some([Some(128), Some(128), Some(3)]),
            ..Default::default()
        },
        ..Default::default()
    };
    let source = mobilenet_with(&opts).unwrap();
    let bytes = keras_weights_bytes(&source, &tmp);
    routes.lock().unwrap().insert(
        format!("{dir}mobilenet/mobilenet_2_5_128_tf_no_top.h5"),
        bytes,
    );
    let mut with = opts.clone();
    with.base.weights = Some("imagenet".into());
    let loaded = mobilenet_with(&with).unwrap();
    for (a, b) in source.get_weights().iter().zip(loaded.get_weights()) {
        assert_eq!(a.data(), b.data());
    }
    assert!(cache.join("mobilenet_2_5_128_tf_no_top.h5").is_file());
    let _ = std::fs::remove_dir_all(&tmp);
}
