//! The op node `Sum` of `keras.src.ops.numpy`: `keras.ops.sum(x, axis, keepdims)`, the
//! reduction layer of `mean.rs` without the division.

use super::mean::reduction_from_config;
use crate::layers::registry::LayerEntry;

/// The registry entry (in the op-node table).
pub(crate) const SUM: LayerEntry = LayerEntry {
    class_name: "Sum",
    from_config: |o, _inputs| reduction_from_config(SUM.class_name, o),
};
