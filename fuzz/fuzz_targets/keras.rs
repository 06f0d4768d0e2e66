//! A `.keras` archive through `load_model`: zip, config.json, model building, weights, optimizer state.
//! Any result but a panic, a hang or an allocation past libFuzzer's `-rss_limit_mb` is fine.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "keras");
    let _ = frostnet::saving::load_model_with_report(&path);
});
