//! The op node `Add` of `keras.src.ops.numpy`: `x + y`, `x + 3.0`, `3.0 + x` (`keras.ops.add`): MobileNetV3's `x + 3.0`, ConvNeXt's residual `inputs + x`.

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Add`'s value and partial derivatives.
pub static ADD_KIND: BinaryKind = BinaryKind {
    class_name: "Add",
    f: |a, b| a + b,
    da: |_, _| 1.0,
    db: |_, _| 1.0,
    needs_values: false,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const ADD: LayerEntry = LayerEntry {
    class_name: "Add",
    from_config: |o, _inputs| binary_from_config(&ADD_KIND, o),
};
