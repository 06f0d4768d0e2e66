//! Small real data sets bundled in the crate, for examples, the tour and tests.

mod digits;

pub use digits::{load_digits, Digits};
