//! The op node `Power` of `keras.src.ops.numpy`: `x ** 2`, `2.0 ** x` (`keras.ops.power`). As in TensorFlow, the derivative in the exponent is taken as 0 where the base is not positive (where `ln` is undefined).

use super::{binary_from_config, BinaryKind};
use crate::layers::registry::LayerEntry;

/// `Power`'s value and partial derivatives.
pub static POWER_KIND: BinaryKind = BinaryKind {
    class_name: "Power",
    f: f32::powf,
    da: |a, b| b * a.powf(b - 1.0),
    db: |a, b| if a > 0.0 { a.powf(b) * a.ln() } else { 0.0 },
    needs_values: true,
};

/// The registry entry (in the op-node table: Keras tells op nodes from layers by module).
pub(crate) const POWER: LayerEntry = LayerEntry {
    class_name: "Power",
    from_config: |o, _inputs| binary_from_config(&POWER_KIND, o),
};
