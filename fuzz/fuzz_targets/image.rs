//! One image file (PNG, JPEG, BMP or GIF, told apart by content) through `load_image`, decoded and
//! resized as `image_dataset_from_directory` does for every file of a folder.
#![no_main]

mod common;

use frostnet::datasets::{ColorMode, Interpolation};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "img");
    for (mode, interpolation) in [
        (ColorMode::Rgb, Interpolation::Bilinear),
        (ColorMode::Grayscale, Interpolation::Nearest),
    ] {
        let _ = frostnet::datasets::load_image(&path, (7, 5), mode, interpolation);
    }
});
