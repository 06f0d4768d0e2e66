//! A Keras 3 `.weights.h5` (or any weights file) through `load_weights_into`, into the
//! architecture of the `cnn_seq` fixture, built once.
#![no_main]

mod common;

use std::sync::Mutex;

static MODEL: Mutex<Option<frostnet::Model>> = Mutex::new(None);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    let model = guard.get_or_insert_with(|| {
        frostnet::saving::load_model(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/frostnet/tests/fixtures/cnn_seq.keras"
        ))
        .expect("fixture")
    });
    let path = common::input(data, "weights.h5");
    let _ = frostnet::saving::load_weights_into(model, &path);
});
