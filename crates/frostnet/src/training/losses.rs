//! Losses, reduced as Keras reduces them: the mean over the batch of each sample's loss.
//! Each returns the loss value and its gradient with respect to the prediction.

use crate::error::{fmt_dims, Error, Result};
use crate::tensor::Tensor;

/// Keras's clipping epsilon for probabilities.
const EPS: f32 = 1e-7;

/// The loss functions of `model.compile(loss=...)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    MeanSquaredError,
    MeanAbsoluteError,
    BinaryCrossentropy {
        from_logits: bool,
    },
    CategoricalCrossentropy {
        from_logits: bool,
    },
    /// Labels are class indices (stored as f32), shape `(n,)` or `(n, 1)`.
    SparseCategoricalCrossentropy {
        from_logits: bool,
    },
}

impl Loss {
    /// Keras's name for the loss (`"mse"`, `"binary_crossentropy"`).
    pub fn name(&self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
        }
    }

    /// Parses Keras's string names (`"mse"`, `"mae"`, `"binary_crossentropy"`, ...).
    pub fn parse(name: &str) -> Result<Loss> {
        Ok(match name {
            "mse" | "mean_squared_error" => Loss::MeanSquaredError,
            "mae" | "mean_absolute_error" => Loss::MeanAbsoluteError,
            "binary_crossentropy" => Loss::BinaryCrossentropy { from_logits: false },
            "categorical_crossentropy" => Loss::CategoricalCrossentropy { from_logits: false },
            "sparse_categorical_crossentropy" => {
                Loss::SparseCategoricalCrossentropy { from_logits: false }
            }
            other => return Err(Error::InvalidConfig(format!("unknown loss '{other}'"))),
        })
    }

    /// Checks that targets fit predictions (before training starts, so a bad data set fails fast).
    pub fn check_targets(&self, pred_shape: &[usize], y: &Tensor) -> Result<()> {
        let classes = *pred_shape.last().unwrap_or(&1);
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => {
                let ok = y.shape().len() == 1 || (y.shape().len() == 2 && y.shape()[1] == 1);
                if !ok {
                    return Err(Error::Data(format!(
                        "sparse_categorical_crossentropy takes class indices of shape (n,) or (n, 1), got {}",
                        fmt_dims(y.shape())
                    )));
                }
                if let Some(bad) = y
                    .data()
                    .iter()
                    .find(|&&v| v < 0.0 || v.fract() != 0.0 || v as usize >= classes)
                {
                    return Err(Error::Data(format!(
                        "label {bad} is not a class index in 0..{classes} (the model has {classes} outputs)"
                    )));
                }
            }
            _ => {
                if y.shape().is_empty()
                    || pred_shape.is_empty()
                    || y.shape()[1..] != pred_shape[1..]
                {
                    return Err(Error::Data(format!(
                        "{}: targets of shape {} do not match model outputs of shape {}",
                        self.name(),
                        fmt_dims(&y.shape()[1..]),
                        fmt_dims(&pred_shape[1..])
                    )));
                }
            }
        }
        Ok(())
    }

    /// The batch loss and `dloss/dpred`.
    ///
    /// Predictions and targets must have a batch axis and the same batch size; anything else is
    /// an [`Error::Data`] (the loops below index both by position).
    pub fn compute(&self, pred: &Tensor, y: &Tensor) -> Result<(f32, Tensor)> {
        if pred.shape().is_empty() || y.shape().is_empty() || pred.batch() != y.batch() {
            return Err(Error::Data(format!(
                "{}: predictions of shape {} and targets of shape {} need the same batch size",
                self.name(),
                fmt_dims(pred.shape()),
                fmt_dims(y.shape())
            )));
        }
        self.check_targets(pred.shape(), y)?;
        let n = pred.batch().max(1);
        let row = pred.sample_len().max(1);
        let p = pred.data();
        let t = y.data();
        let mut grad = Tensor::zeros(pred.shape());
        let g = grad.data_mut();
        let mut total = 0.0f64;
        match *self {
            Loss::MeanSquaredError => {
                let scale = 1.0 / (n * row) as f32;
                for i in 0..p.len() {
                    let d = p[i] - t[i];
                    total += (d * d) as f64;
                    g[i] = 2.0 * d * scale;
                }
                total /= row as f64;
            }
            Loss::MeanAbsoluteError => {
                let scale = 1.0 / (n * row) as f32;
                for i in 0..p.len() {
                    let d = p[i] - t[i];
                    total += d.abs() as f64;
                    g[i] = d.signum() * scale * (d != 0.0) as u8 as f32;
                }
                total /= row as f64;
            }
            Loss::BinaryCrossentropy { from_logits } => {
                let scale = 1.0 / (n * row) as f32;
                for i in 0..p.len() {
                    if from_logits {
                        let z = p[i];
                        total += (z.max(0.0) - z * t[i] + (-z.abs()).exp().ln_1p()) as f64;
                        g[i] = (1.0 / (1.0 + (-z).exp()) - t[i]) * scale;
                    } else {
                        let q = p[i].clamp(EPS, 1.0 - EPS);
                        total -= (t[i] * q.ln() + (1.0 - t[i]) * (1.0 - q).ln()) as f64;
                        let inside = p[i] > EPS && p[i] < 1.0 - EPS;
                        g[i] = if inside {
                            -(t[i] / q - (1.0 - t[i]) / (1.0 - q)) * scale
                        } else {
                            0.0
                        };
                    }
                }
                total /= row as f64;
            }
            Loss::CategoricalCrossentropy { from_logits }
            | Loss::SparseCategoricalCrossentropy { from_logits } => {
                let sparse = matches!(self, Loss::SparseCategoricalCrossentropy { .. });
                let scale = 1.0 / n as f32;
                for s in 0..n {
                    let pr = &p[s * row..(s + 1) * row];
                    let gr = &mut g[s * row..(s + 1) * row];
                    let target = |j: usize| -> f32 {
                        if sparse {
                            (t[s] as usize == j) as u8 as f32
                        } else {
                            t[s * row + j]
                        }
                    };
                    if from_logits {
                        let mut sm = pr.to_vec();
                        crate::layers::activation::softmax_row(&mut sm);
                        for j in 0..row {
                            let tj = target(j);
                            if tj != 0.0 {
                                // `max` would turn a NaN into a finite loss and hide a diverged
                                // model from TerminateOnNaN; keep NaN as NaN.
                                let q = if sm[j].is_nan() {
                                    f32::NAN
                                } else {
                                    sm[j].max(f32::MIN_POSITIVE)
                                };
                                total -= (tj * q.ln()) as f64;
                            }
                            gr[j] = (sm[j] - tj) * scale;
                        }
                    } else {
                        // Keras renormalises the probabilities, then clips them.
                        let sum: f32 = pr.iter().sum();
                        let t_sum: f32 = (0..row).map(target).sum();
                        for j in 0..row {
                            let q = (pr[j] / sum).clamp(EPS, 1.0 - EPS);
                            let tj = target(j);
                            total -= (tj * q.ln()) as f64;
                            gr[j] = (-tj / (pr[j].max(EPS)) + t_sum / sum) * scale;
                        }
                    }
                }
            }
        }
        Ok(((total / n as f64) as f32, grad))
    }
}
