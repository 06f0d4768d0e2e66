//! A NumPy `.npy` file through `read_npy`.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "npy");
    let _ = frostnet::io::npy::read_npy(&path);
});
