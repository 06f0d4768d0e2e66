//! `weights: imagenet` end to end against an HTTP server on 127.0.0.1 (the base URL replaced by
//! `FROSTNET_WEIGHTS_BASE_URL`, the cache by `KERAS_HOME`): a verified download that loads, the
//! cache reused, and a wrong hash, a cut-off download, a missing file and no server at all each
//! failing with one line and leaving nothing in the cache.
//!
//! One test function: the environment variables are process-wide.

use frostnet::applications::download::get_file;
use frostnet::applications::{inception_v3, mobilenet_v2, ApplicationOptions};
use md5::Digest;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
enum Reply {
    Full(Vec<u8>),
    /// Announces the full length, sends half, closes.
    CutOff(Vec<u8>),
}

struct Server {
    base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<AtomicUsize>,
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
    let hits = Arc::new(AtomicUsize::new(0));
    let (r, h) = (routes.clone(), hits.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers.
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            h.fetch_add(1, Ordering::SeqCst);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let reply = r.lock().unwrap().get(&path).cloned();
            let _ = match reply {
                Some(Reply::Full(body)) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body)),
                Some(Reply::CutOff(body)) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body[..body.len() / 2])),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
            let _ = stream.flush();
        }
    });
    Server { base, routes, hits }
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", md5::Md5::digest(bytes))
}

/// The cache folder holds exactly `names` (no temporary files, nothing half-written).
fn assert_cache(dir: &Path, names: &[&str]) {
    let mut got: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// The Keras 3 `.weights.h5` of `model`, as frostnet writes it inside a `.keras` archive.
fn keras_weights_bytes(model: &frostnet::Model, tmp: &Path) -> Vec<u8> {
    let path = tmp.join("source.keras");
    frostnet::saving::save_keras(model, path.to_str().unwrap()).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut f = zip.by_name("model.weights.h5").unwrap();
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn imagenet_weights_download_verify_cache_and_fail_cleanly() {
    let tmp = std::env::temp_dir().join(format!("frostnet_download_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let home = tmp.join("keras_home");
    let cache = home.join("models");
    let server = serve();
    std::env::set_var("KERAS_HOME", &home);
    std::env::set_var("FROSTNET_WEIGHTS_BASE_URL", &server.base);
    let origin = |p: &str| format!("https://storage.googleapis.com/{p}");

    // 1. A verified download, then the cache.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    server
        .routes
        .lock()
        .unwrap()
        .insert("/files/ok.bin".into(), Reply::Full(body.clone()));
    let p = get_file("ok.bin", &origin("files/ok.bin"), Some(&md5_hex(&body))).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), body);
    assert_eq!(p, cache.join("ok.bin"));
    let hits = server.hits.load(Ordering::SeqCst);
    get_file("ok.bin", &origin("files/ok.bin"), Some(&md5_hex(&body))).unwrap();
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        hits,
        "served from the cache"
    );
    // SHA-256 hashes (64 hex digits) are checked as SHA-256.
    let sha = format!("{:x}", sha2::Sha256::digest(&body));
    get_file("ok.bin", &origin("files/ok.bin"), Some(&sha)).unwrap();
    assert_cache(&cache, &["ok.bin"]);

    // 2. A wrong hash: an error naming the URL, nothing written.
    let e = get_file("bad.bin", &origin("files/ok.bin"), Some(&"0".repeat(32))).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("files/ok.bin") && msg.contains("hash"),
        "{msg}"
    );
    assert_cache(&cache, &["ok.bin"]);

    // 3. A cut-off download.
    server
        .routes
        .lock()
        .unwrap()
        .insert("/files/cut.bin".into(), Reply::CutOff(body.clone()));
    let e = get_file("cut.bin", &origin("files/cut.bin"), None).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains("cut.bin") && msg.contains(cache.join("cut.bin").to_str().unwrap()),
        "{msg}"
    );
    assert_cache(&cache, &["ok.bin"]);

    // 4. Not on the server, and no server at all: one line naming the URL and where to put it.
    let e = get_file("missing.bin", &origin("files/missing.bin"), None).unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    std::env::set_var("FROSTNET_WEIGHTS_BASE_URL", &dead_base);
    let e = get_file("offline.bin", &origin("files/offline.bin"), None).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.contains(&format!("{dead_base}/files/offline.bin"))
            && msg.contains(cache.join("offline.bin").to_str().unwrap()),
        "{msg}"
    );
    assert_cache(&cache, &["ok.bin"]);
    std::env::set_var("FROSTNET_WEIGHTS_BASE_URL", &server.base);

    // 5. `weights: imagenet` for MobileNetV2 at 32x32 fetches Keras's 224 no-top file (Keras
    //    publishes no hash for it) from Keras's path and loads it.
    let shape = Some([Some(32), Some(32), Some(3)]);
    let source = mobilenet_v2(&ApplicationOptions {
        include_top: false,
        input_shape: shape,
        ..Default::default()
    })
    .unwrap();
    let weights = keras_weights_bytes(&source, &tmp);
    let file = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5";
    server.routes.lock().unwrap().insert(
        format!("/tensorflow/keras-applications/mobilenet_v2/{file}"),
        Reply::Full(weights.clone()),
    );
    // A fresh random initialisation differs from the source's...
    let mut fresh_opts = ApplicationOptions {
        include_top: false,
        input_shape: shape,
        ..Default::default()
    };
    let fresh = mobilenet_v2(&fresh_opts).unwrap();
    let differs = fresh
        .get_weights()
        .iter()
        .zip(source.get_weights())
        .any(|(a, b)| a.data() != b.data());
    assert!(differs, "the check below must be able to fail");
    // ...and `weights: imagenet` gives exactly the served weights.
    fresh_opts.weights = Some("imagenet".into());
    let loaded = mobilenet_v2(&fresh_opts).unwrap();
    for (a, b) in loaded.get_weights().iter().zip(source.get_weights()) {
        assert_eq!(a.data(), b.data());
    }
    assert_eq!(std::fs::read(cache.join(file)).unwrap(), weights);

    // 6. InceptionV3's file is checked against Keras's published MD5: a different file is refused
    //    and not kept.
    let inc = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5";
    server.routes.lock().unwrap().insert(
        format!("/tensorflow/keras-applications/inception_v3/{inc}"),
        Reply::Full(weights),
    );
    let e = inception_v3(&ApplicationOptions {
        include_top: false,
        input_shape: Some([Some(75), Some(75), Some(3)]),
        weights: Some("imagenet".into()),
        ..Default::default()
    })
    .err()
    .expect("hash mismatch");
    assert!(
        e.to_string().contains("bcbd6486424b2319ff4ef7d526e38f63"),
        "{e}"
    );
    assert_cache(&cache, &["ok.bin", file]);

    std::env::remove_var("FROSTNET_WEIGHTS_BASE_URL");
    std::env::remove_var("KERAS_HOME");
    std::fs::remove_dir_all(&tmp).unwrap();
}
