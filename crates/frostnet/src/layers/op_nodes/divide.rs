//! The op node `Divide` of `keras.src.ops.numpy`: `keras.ops.divide(x, y)`: `x / y` elementwise.

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Divide`'s value and partial derivatives.
pub static DIVIDE_KIND: BinaryKind = BinaryKind {
    class_name: "Divide",
    f: |a, b| a / b,
    da: |_, b| 1.0 / b,
    db: |a, b| -a / (b * b),
    needs_values: true,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const DIVIDE: LayerEntry = LayerEntry {
    class_name: "Divide",
    from_config: |o, _inputs| binary_from_config(&DIVIDE_KIND, o),
};
