//! The op node `Sqrt` of `keras.src.ops.numpy`: `keras.ops.sqrt(x)`; derivative `0.5 / sqrt(x)` from the output, as TensorFlow computes it.

use super::{unary_from_config, UnaryKind};
use crate::layers::registry::LayerEntry;

/// `Sqrt`'s value and derivative (given the input and the output).
pub static SQRT_KIND: UnaryKind = UnaryKind {
    class_name: "Sqrt",
    f: f32::sqrt,
    df: |_, y| 0.5 / y,
};

/// The registry entry (in the op-node table).
pub(crate) const SQRT: LayerEntry = LayerEntry {
    class_name: "Sqrt",
    from_config: |o, _inputs| unary_from_config(&SQRT_KIND, o),
};
