//! `Weight`: a named value that knows whether training may change it.

use crate::error::{fmt_dims, Error, Result};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a weight is for. The kind decides whether a weight *can* ever train; the flag on the
/// weight decides whether it trains *now*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// Learnable in principle: kernels, biases, BN's gamma and beta.
    Param,
    /// Never learnable, updated (if at all) by its own rule: BN's moving mean and variance.
    State,
}

/// A layer's weight.
///
/// Counting follows Keras 3: a weight is trainable iff its kind is [`WeightKind::Param`] and its own
/// flag is set. The flag lives on the weight (not only on the layer) so that a child layer
/// re-enabled inside a frozen parent trains, exactly as in Keras 3.
#[derive(Clone, Debug)]
pub struct Weight {
    name: String,
    value: Tensor,
    kind: WeightKind,
    flag: bool,
    id: u64,
    /// Gradient of the loss with respect to this weight from the last backward pass, if computed.
    pub(crate) grad: Option<Tensor>,
}

impl Weight {
    pub(crate) fn new(name: &str, value: Tensor, kind: WeightKind, trainable: bool) -> Weight {
        Weight {
            name: name.to_string(),
            value,
            kind,
            flag: trainable,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            grad: None,
        }
    }

    /// Short name within its layer (`kernel`, `moving_mean`).
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn value(&self) -> &Tensor {
        &self.value
    }
    pub(crate) fn value_mut(&mut self) -> &mut Tensor {
        &mut self.value
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    pub fn kind(&self) -> WeightKind {
        self.kind
    }
    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.value.len()
    }
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
    /// Whether backpropagation updates this weight now.
    pub fn is_trainable(&self) -> bool {
        self.kind == WeightKind::Param && self.flag
    }
    pub(crate) fn set_flag(&mut self, trainable: bool) {
        self.flag = trainable;
    }
    /// A process-unique identity: optimizer slots are keyed by it, so they survive freezing and
    /// unfreezing.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The last computed gradient.
    pub fn grad(&self) -> Option<&Tensor> {
        self.grad.as_ref()
    }

    /// Replaces the value, keeping the shape.
    pub fn assign(&mut self, value: Tensor) -> Result<()> {
        if value.shape() != self.value.shape() {
            return Err(Error::WeightShape {
                weight: self.name.clone(),
                expected: fmt_dims(self.value.shape()),
                got: fmt_dims(value.shape()),
            });
        }
        self.value = value;
        Ok(())
    }
}
