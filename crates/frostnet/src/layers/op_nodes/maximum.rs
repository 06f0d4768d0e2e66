//! The op node `Maximum` of `keras.src.ops.numpy`: `keras.ops.maximum(x, y)` (`ops.maximum(x, 0.0)`); the gradient goes to `x` where `x >= y`, as TensorFlow routes ties.

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Maximum`'s value and partial derivatives.
pub static MAXIMUM_KIND: BinaryKind = BinaryKind {
    class_name: "Maximum",
    f: |a, b| a.max(b),
    da: |a, b| if a >= b { 1.0 } else { 0.0 },
    db: |a, b| if a >= b { 0.0 } else { 1.0 },
    needs_values: true,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const MAXIMUM: LayerEntry = LayerEntry {
    class_name: "Maximum",
    from_config: |o, _inputs| binary_from_config(&MAXIMUM_KIND, o),
};
