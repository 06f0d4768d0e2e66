//! The op node `Subtract` of `keras.src.ops.numpy`: `x - y`, `x - 1.5`, `3.0 - x` (`keras.ops.subtract`).

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Subtract`'s value and partial derivatives.
pub static SUBTRACT_KIND: BinaryKind = BinaryKind {
    class_name: "Subtract",
    f: |a, b| a - b,
    da: |_, _| 1.0,
    db: |_, _| -1.0,
    needs_values: false,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const SUBTRACT: LayerEntry = LayerEntry {
    class_name: "Subtract",
    from_config: |o, _inputs| binary_from_config(&SUBTRACT_KIND, o),
};
