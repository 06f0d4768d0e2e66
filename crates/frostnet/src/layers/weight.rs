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
    /// Created by `add_weight_init` as trainable: Keras lists these first.
    created_trainable: bool,
    /// Gradient of the loss with respect to this weight from the last backward pass, if computed.
    pub(crate) grad: Option<Tensor>,
    /// Changes (to a process-unique number) whenever the value may have changed: see `version`.
    version: u64,
}

impl Weight {
    /// A weight with its value, kind and trainable flag, for a custom layer's own bookkeeping
    /// (most custom layers call [`LayerBase::add_weight_init`](super::LayerBase::add_weight_init)
    /// instead). A `State` weight never trains, whatever `trainable` says.
    pub fn new(name: &str, value: Tensor, kind: WeightKind, trainable: bool) -> Weight {
        Weight {
            name: name.to_string(),
            value,
            kind,
            flag: trainable,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            created_trainable: false,
            grad: None,
            version: NEXT_ID.fetch_add(1, Ordering::Relaxed),
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
        self.version = NEXT_ID.fetch_add(1, Ordering::Relaxed);
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
    pub(crate) fn created_trainable(&self) -> bool {
        self.created_trainable
    }
    pub(crate) fn mark_created_trainable(&mut self, yes: bool) {
        self.created_trainable = yes;
    }
    /// Sets this weight's own flag (Keras's `variable.trainable = ...`). A `State` weight keeps
    /// not training: [`is_trainable`](Self::is_trainable) requires `Param`.
    pub fn set_trainable(&mut self, trainable: bool) {
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
    /// Stores (or with `None` clears) the gradient an optimizer will apply. A hand-written
    /// `backward` stores gradients for trainable weights only; the shape must match the value's.
    pub fn set_grad(&mut self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            if g.shape() != self.value.shape() {
                return Err(Error::WeightShape {
                    weight: format!("{} (gradient)", self.name),
                    expected: fmt_dims(self.value.shape()),
                    got: fmt_dims(g.shape()),
                });
            }
        }
        self.grad = grad;
        Ok(())
    }
    /// Removes and returns the gradient (what an optimizer does when it applies it).
    pub fn take_grad(&mut self) -> Option<Tensor> {
        self.grad.take()
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
        self.version = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A number that changes whenever the value may have changed (every write: an optimizer
    /// step, `assign`, `set_weights`, loading), unique in the process, so a value restored from
    /// an older clone does not look current either. Caches derived from a weight's value (`fit`'s
    /// frozen-prefix cache) compare it to know they are still exact.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// How [`LayerBase::add_weight_init`](super::LayerBase::add_weight_init) fills a new weight
/// (Keras's `initializer=` argument, with Keras's formulas).
#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    /// `"zeros"`.
    Zeros,
    /// `"ones"`.
    Ones,
    /// `keras.initializers.Constant(value)`.
    Constant(f32),
    /// `RandomUniform(minval, maxval, seed)`.
    RandomUniform {
        min: f32,
        max: f32,
        seed: Option<u64>,
    },
    /// `GlorotUniform(seed)`: `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))` with Keras's fans
    /// (last axis is `fan_out`, the rest times the receptive field is `fan_in`).
    GlorotUniform { seed: Option<u64> },
}

impl Initializer {
    /// A tensor of `shape` drawn from this initializer. Fails (rather than allocating) if the
    /// shape holds more than 2^31 values.
    pub fn tensor(&self, shape: &[usize]) -> Result<Tensor> {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= 1 << 31)
            .ok_or_else(|| {
                Error::InvalidConfig(format!("weight shape {} is too large", fmt_dims(shape)))
            })?;
        let data = match self {
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::Constant(v) => vec![*v; n],
            Initializer::RandomUniform { min, max, seed } => {
                if min.partial_cmp(max) != Some(std::cmp::Ordering::Less) {
                    return Err(Error::InvalidConfig(format!(
                        "RandomUniform needs min < max, got {min} and {max}"
                    )));
                }
                crate::tensor::random::uniform(
                    &mut crate::tensor::random::rng(*seed),
                    n,
                    *min,
                    *max,
                )
            }
            Initializer::GlorotUniform { seed } => {
                let (fan_in, fan_out) = match shape {
                    [] => (1, 1),
                    [d] => (*d, *d),
                    _ => {
                        let receptive: usize = shape[..shape.len() - 2].iter().product();
                        (
                            receptive * shape[shape.len() - 2],
                            receptive * shape[shape.len() - 1],
                        )
                    }
                };
                let mut rng = crate::tensor::random::rng(*seed);
                crate::tensor::random::glorot_uniform(&mut rng, n, fan_in, fan_out)
            }
        };
        Tensor::from_vec(shape, data)
    }
}
