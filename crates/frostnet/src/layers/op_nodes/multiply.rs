//! The op node `Multiply` of `keras.src.ops.numpy`: `x * y`, `x * (1 / 6)`, `2.0 * x` (`keras.ops.multiply`): MobileNetV3's hard-sigmoid scale.

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Multiply`'s value and partial derivatives.
pub static MULTIPLY_KIND: BinaryKind = BinaryKind {
    class_name: "Multiply",
    f: |a, b| a * b,
    da: |_, b| b,
    db: |a, _| a,
    needs_values: true,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const MULTIPLY: LayerEntry = LayerEntry {
    class_name: "Multiply",
    from_config: |o, _inputs| binary_from_config(&MULTIPLY_KIND, o),
};
