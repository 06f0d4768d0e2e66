//! A training log (`CsvLogger`'s or Keras's `CSVLogger`'s layout) through `read_history_csv`,
//! then drawn with `history_to_svg`, as `frostnet plot-history` does.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::input(data, "csv");
    if let Ok(history) = frostnet::plot::read_history_csv(&path) {
        let _ = frostnet::plot::history_to_svg(&history);
    }
});
