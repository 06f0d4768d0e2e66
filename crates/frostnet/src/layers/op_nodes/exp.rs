//! The op node `Exp` of `keras.src.ops.numpy`: `keras.ops.exp(x)`; derivative the output itself.

use super::{unary_from_config, UnaryKind};
use crate::layers::registry::LayerEntry;

/// `Exp`'s value and derivative (given the input and the output).
pub static EXP_KIND: UnaryKind = UnaryKind {
    class_name: "Exp",
    f: f32::exp,
    df: |_, y| y,
};

/// The registry entry (in the op-node table).
pub(crate) const EXP: LayerEntry = LayerEntry {
    class_name: "Exp",
    from_config: |o, _inputs| unary_from_config(&EXP_KIND, o),
};
