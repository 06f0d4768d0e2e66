//! The op node `Negative` of `keras.src.ops.numpy`: `-x` (`keras.ops.negative`).

use super::{unary_from_config, UnaryKind};
use crate::layers::registry::LayerEntry;

/// `Negative`'s value and derivative (given the input and the output).
pub static NEGATIVE_KIND: UnaryKind = UnaryKind {
    class_name: "Negative",
    f: |x| -x,
    df: |_, _| -1.0,
};

/// The registry entry (in the op-node table).
pub(crate) const NEGATIVE: LayerEntry = LayerEntry {
    class_name: "Negative",
    from_config: |o, _inputs| unary_from_config(&NEGATIVE_KIND, o),
};
