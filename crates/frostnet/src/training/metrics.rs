//! Metrics, accumulated over an epoch as sample-weighted running means (as Keras does).

use super::losses::Loss;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The metrics of `model.compile(metrics=[...])`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `"accuracy"`: resolved from the loss to one of the three below, as Keras does.
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    MeanAbsoluteError,
    MeanSquaredError,
}

impl Metric {
    /// Parses Keras's names.
    pub fn parse(name: &str) -> Result<Metric> {
        Ok(match name {
            "accuracy" | "acc" => Metric::Accuracy,
            "binary_accuracy" => Metric::BinaryAccuracy,
            "categorical_accuracy" => Metric::CategoricalAccuracy,
            "sparse_categorical_accuracy" => Metric::SparseCategoricalAccuracy,
            "mae" | "mean_absolute_error" => Metric::MeanAbsoluteError,
            "mse" | "mean_squared_error" => Metric::MeanSquaredError,
            other => return Err(Error::InvalidConfig(format!("unknown metric '{other}'"))),
        })
    }

    /// The name it is logged under. `Accuracy` keeps the name `accuracy` whatever it resolves
    /// to, as in Keras, so the trainer keeps the requested metric's name next to the resolved one.
    pub fn log_name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::MeanAbsoluteError => "mae",
            Metric::MeanSquaredError => "mse",
        }
    }

    /// `Accuracy` made concrete for a loss.
    pub(crate) fn resolve(self, loss: &Loss) -> Metric {
        match (self, loss) {
            (Metric::Accuracy, Loss::BinaryCrossentropy { .. }) => Metric::BinaryAccuracy,
            (Metric::Accuracy, Loss::SparseCategoricalCrossentropy { .. }) => {
                Metric::SparseCategoricalAccuracy
            }
            (Metric::Accuracy, Loss::CategoricalCrossentropy { .. }) => Metric::CategoricalAccuracy,
            (Metric::Accuracy, _) => Metric::BinaryAccuracy,
            (m, _) => m,
        }
    }

    /// The metric's mean over one batch (already resolved).
    pub(crate) fn batch_value(&self, pred: &Tensor, y: &Tensor) -> f64 {
        let n = pred.batch().max(1);
        let row = pred.sample_len().max(1);
        let p = pred.data();
        let t = y.data();
        let argmax = |r: &[f32]| {
            r.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0
        };
        match self {
            Metric::BinaryAccuracy | Metric::Accuracy => {
                let hits = p
                    .iter()
                    .zip(t)
                    .filter(|(p, t)| ((**p > 0.5) as u8 as f32) == **t)
                    .count();
                hits as f64 / p.len().max(1) as f64
            }
            Metric::CategoricalAccuracy => {
                let hits = (0..n)
                    .filter(|&s| {
                        argmax(&p[s * row..(s + 1) * row]) == argmax(&t[s * row..(s + 1) * row])
                    })
                    .count();
                hits as f64 / n as f64
            }
            Metric::SparseCategoricalAccuracy => {
                let hits = (0..n)
                    .filter(|&s| argmax(&p[s * row..(s + 1) * row]) == t[s] as usize)
                    .count();
                hits as f64 / n as f64
            }
            Metric::MeanAbsoluteError => {
                p.iter()
                    .zip(t)
                    .map(|(a, b)| (a - b).abs() as f64)
                    .sum::<f64>()
                    / p.len().max(1) as f64
            }
            Metric::MeanSquaredError => {
                p.iter()
                    .zip(t)
                    .map(|(a, b)| ((a - b) * (a - b)) as f64)
                    .sum::<f64>()
                    / p.len().max(1) as f64
            }
        }
    }
}

/// A running mean weighted by batch size.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mean {
    sum: f64,
    count: f64,
}

impl Mean {
    pub(crate) fn add(&mut self, value: f64, weight: usize) {
        self.sum += value * weight as f64;
        self.count += weight as f64;
    }
    pub(crate) fn value(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.sum / self.count
        }
    }
}
