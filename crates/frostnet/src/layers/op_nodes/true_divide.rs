//! The op node `TrueDivide` of `keras.src.ops.numpy`: `x / y`, `x / 2` (`keras.ops.true_divide`, what Python's `/` on a symbolic tensor calls).

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `TrueDivide`'s value and partial derivatives.
pub static TRUE_DIVIDE_KIND: BinaryKind = BinaryKind {
    class_name: "TrueDivide",
    f: |a, b| a / b,
    da: |_, b| 1.0 / b,
    db: |a, b| -a / (b * b),
    needs_values: true,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const TRUE_DIVIDE: LayerEntry = LayerEntry {
    class_name: "TrueDivide",
    from_config: |o, _inputs| binary_from_config(&TRUE_DIVIDE_KIND, o),
};
