//! The op node `Absolute` of `keras.src.ops.numpy`: `abs(x)`, `keras.ops.abs(x)`; derivative `sign(x)` (0 at 0, as TensorFlow).

use super::{unary_from_config, UnaryKind};
use crate::layers::registry::LayerEntry;

/// `Absolute`'s value and derivative (given the input and the output).
pub static ABSOLUTE_KIND: UnaryKind = UnaryKind {
    class_name: "Absolute",
    f: f32::abs,
    df: |x, _| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    },
};

/// The registry entry (in the op-node table).
pub(crate) const ABSOLUTE: LayerEntry = LayerEntry {
    class_name: "Absolute",
    from_config: |o, _inputs| unary_from_config(&ABSOLUTE_KIND, o),
};
