//! frostnet's native (safetensors) model file through `load_model`.
//! Any result but a panic, a hang or an allocation past libFuzzer's `-rss_limit_mb` is fine.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "frostnet");
    let _ = frostnet::saving::load_model_with_report(&path);
});
