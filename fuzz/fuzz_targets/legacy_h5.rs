//! A legacy `.h5` (tf-keras or Keras 3 `model.save("x.h5")`) through `load_model`.
//! Any result but a panic, a hang or an allocation past libFuzzer's `-rss_limit_mb` is fine.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "h5");
    let _ = frostnet::saving::load_model_with_report(&path);
});
