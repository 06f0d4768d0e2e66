//! A NumPy `.npz` archive through `read_npz`: the zip container, then each member as `read_npy`.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "npz");
    let _ = frostnet::io::npy::read_npz(&path);
});
