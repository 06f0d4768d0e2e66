//! The op node `Minimum` of `keras.src.ops.numpy`: `keras.ops.minimum(x, y)`; the gradient goes to `x` where `x <= y`, as TensorFlow routes ties.

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Minimum`'s value and partial derivatives.
pub static MINIMUM_KIND: BinaryKind = BinaryKind {
    class_name: "Minimum",
    f: |a, b| a.min(b),
    da: |a, b| if a <= b { 1.0 } else { 0.0 },
    db: |a, b| if a <= b { 0.0 } else { 1.0 },
    needs_values: true,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const MINIMUM: LayerEntry = LayerEntry {
    class_name: "Minimum",
    from_config: |o, _inputs| binary_from_config(&MINIMUM_KIND, o),
};
