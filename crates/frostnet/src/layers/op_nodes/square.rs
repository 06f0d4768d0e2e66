//! The op node `Square` of `keras.src.ops.numpy`: `keras.ops.square(x)`.

use super::{unary_from_config, UnaryKind};
use crate::layers::registry::LayerEntry;

/// `Square`'s value and derivative (given the input and the output).
pub static SQUARE_KIND: UnaryKind = UnaryKind {
    class_name: "Square",
    f: |x| x * x,
    df: |x, _| 2.0 * x,
};

/// The registry entry (in the op-node table).
pub(crate) const SQUARE: LayerEntry = LayerEntry {
    class_name: "Square",
    from_config: |o, _inputs| unary_from_config(&SQUARE_KIND, o),
};
