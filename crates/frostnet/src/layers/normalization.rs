//! `Normalization`: `(x - mean) / max(sqrt(variance), 1e-7)` with a mean and variance per
//! position of the kept `axis` (Keras's default: the last axis), computed by [`adapt`] from data
//! or loaded from a file; `invert` undoes it.
//!
//! Its weights are Keras's `mean`, `variance` and `count`, all non-trainable state. Keras stores
//! `count` as an int64 scalar; Keras 3 never updates it (it is kept "for backwards
//! compatibility", always 0), and tf-keras counts the samples `adapt` saw. frostnet holds it as an
//! f32 state weight, which is exact for every count up to 2^24: the file reader refuses a larger
//! one rather than round it, and frostnet writes it back as a float, which Keras casts to its
//! int64 variable on load.
//!
//! [`adapt`]: Normalization::adapt

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, ForwardCtx, Layer, LayerBase, Shape,
    WeightKind,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

const MEAN: usize = 0;
const VARIANCE: usize = 1;
/// Keras's `backend.epsilon()`, the floor of the standard deviation.
const EPSILON: f32 = 1e-7;

/// Standardizes inputs with a mean and variance per position of the kept axes.
pub struct Normalization {
    base: LayerBase,
    /// Kept axes as Keras gives them (negative counts from the end, 0 is the batch axis).
    axis: Vec<i64>,
    invert: bool,
    in_shape: Shape,
    /// Kept axes as per-sample axis indices, sorted.
    keep: Vec<usize>,
    /// A mean and variance given as constants (Keras's `Normalization(mean=..., variance=...)`,
    /// as EfficientNetV2 uses): no weights then. Before build, as given (one value or one per
    /// statistic); after, one per statistic.
    fixed: Option<(Vec<f32>, Vec<f32>)>,
}

impl Default for Normalization {
    fn default() -> Self {
        Self::new()
    }
}

impl Normalization {
    /// One mean and variance per entry of the last axis.
    pub fn new() -> Normalization {
        Normalization::with_axis(&[-1])
    }
    /// Kept axes, counted with the batch axis (`-1` is the last axis); statistics are computed
    /// over every other axis.
    pub fn with_axis(axis: &[i64]) -> Normalization {
        Normalization {
            base: LayerBase::new(NORMALIZATION.class_name),
            axis: axis.to_vec(),
            invert: false,
            in_shape: Vec::new(),
            keep: Vec::new(),
            fixed: None,
        }
    }
    /// Normalizes with a given mean and variance (each one value, broadcast, or one per entry of
    /// the kept axes) instead of adapted weights; the layer then has no weights, as in Keras.
    pub fn with_mean_variance(axis: &[i64], mean: &[f32], variance: &[f32]) -> Normalization {
        let mut n = Normalization::with_axis(axis);
        n.fixed = Some((mean.to_vec(), variance.to_vec()));
        n
    }
    /// The mean per statistic: the given constants, or the `mean` weight.
    fn mean(&self) -> &[f32] {
        match &self.fixed {
            Some((m, _)) => m,
            None => self.base.w(MEAN).data(),
        }
    }
    /// Maps normalized values back: `mean + x * max(sqrt(variance), 1e-7)`.
    pub fn invert(mut self, invert: bool) -> Self {
        self.invert = invert;
        self
    }

    /// Computes the mean and (population) variance of `data` over the non-kept axes, as Keras's
    /// `adapt` does on an array, building the layer for `data`'s per-sample shape if needed.
    pub fn adapt(&mut self, data: &Tensor) -> Result<()> {
        if self.fixed.is_some() {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': adapt cannot change a mean and variance given as constants",
                self.base.name
            )));
        }
        if data.shape().is_empty() || data.batch() == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{}': adapt needs at least one sample",
                self.base.name
            )));
        }
        let shape: Shape = data.shape()[1..].iter().map(|&d| Some(d)).collect();
        if self.base.built {
            check_runtime_shape(&self.base.name, &self.in_shape, data)?;
        } else {
            self.build(&[shape])?;
        }
        let dims = data.shape()[1..].to_vec();
        let st = self.stat_strides(&dims);
        let k = self.base.w(MEAN).len();
        let mut sum = vec![0.0f64; k];
        let mut sq = vec![0.0f64; k];
        let per = data.sample_len();
        let mut count = vec![0u64; k];
        for sample in data.data().chunks(per.max(1)) {
            visit(&dims, &st, |p, at| {
                let v = sample[p] as f64;
                sum[at] += v;
                sq[at] += v * v;
                count[at] += 1;
            });
        }
        let shape = self.base.w(MEAN).shape().to_vec();
        let mean: Vec<f64> = sum.iter().zip(&count).map(|(s, &n)| s / n as f64).collect();
        let var: Vec<f32> = sq
            .iter()
            .zip(&count)
            .zip(&mean)
            .map(|((q, &n), m)| (q / n as f64 - m * m).max(0.0) as f32)
            .collect();
        let mean: Vec<f32> = mean.into_iter().map(|m| m as f32).collect();
        self.base.weights[MEAN].assign(Tensor::from_vec(&shape, mean)?)?;
        self.base.weights[VARIANCE].assign(Tensor::from_vec(&shape, var)?)?;
        Ok(())
    }

    /// Per per-sample axis, the stride into the statistics (0 along reduced axes).
    fn stat_strides(&self, dims: &[usize]) -> Vec<usize> {
        let mut st = vec![0; dims.len()];
        let mut acc = 1;
        for a in (0..dims.len()).rev() {
            if self.keep.contains(&a) {
                st[a] = acc;
                acc *= dims[a];
            }
        }
        st
    }

    /// `max(sqrt(variance), epsilon)` per statistic.
    fn scales(&self) -> Vec<f32> {
        let variance = match &self.fixed {
            Some((_, v)) => v.as_slice(),
            None => self.base.w(VARIANCE).data(),
        };
        variance.iter().map(|v| v.sqrt().max(EPSILON)).collect()
    }
}

/// Calls `f(position in a sample, statistic index)` over one sample of `dims`, where `st` gives
/// the statistic index's stride along each axis (0 on an axis the statistics do not vary along).
/// PReLU walks its broadcast `alpha` the same way.
pub(super) fn visit(dims: &[usize], st: &[usize], mut f: impl FnMut(usize, usize)) {
    crate::tensor::broadcast::visit(dims, &[st.to_vec()], |p, at| f(p, at[0]));
}

impl Layer for Normalization {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        NORMALIZATION.class_name
    }
    fn state_description(&self) -> (String, &'static str) {
        (
            "Normalization mean, variance and count".to_string(),
            " (2 x kept size + 1 each)",
        )
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let rank = s.len() as i64 + 1;
        let mut keep = Vec::with_capacity(self.axis.len());
        for &a in &self.axis {
            let full = if a < 0 { a + rank } else { a };
            if full <= 0 || full >= rank {
                return Err(Error::InvalidConfig(format!(
                    "layer '{}': axis {a} is not a per-sample axis of an input of rank {rank} \
                     (the batch axis cannot be kept)",
                    self.base.name
                )));
            }
            keep.push(full as usize - 1);
        }
        keep.sort_unstable();
        keep.dedup();
        let mut stat_shape = Vec::with_capacity(keep.len());
        for &a in &keep {
            stat_shape.push(
                s[a].ok_or_else(|| incompatible(&self.base.name, "known sizes on kept axes", s))?,
            );
        }
        if let Some((mean, variance)) = &mut self.fixed {
            let k: usize = stat_shape.iter().product();
            for (what, v) in [("mean", &mut *mean), ("variance", &mut *variance)] {
                if v.len() == 1 {
                    *v = vec![v[0]; k];
                } else if v.len() != k {
                    return Err(Error::InvalidConfig(format!(
                        "layer '{}': {} {what} values do not broadcast to the statistics shape \
                         {stat_shape:?}",
                        self.base.name,
                        v.len()
                    )));
                }
            }
            self.base.built = true;
        } else if self.base.built {
            if self.base.w(MEAN).shape() != stat_shape.as_slice() {
                return Err(incompatible(
                    &self.base.name,
                    "the shape it was built with",
                    s,
                ));
            }
        } else {
            self.base
                .add_weight("mean", Tensor::zeros(&stat_shape), WeightKind::State);
            self.base.add_weight(
                "variance",
                Tensor::full(&stat_shape, 1.0),
                WeightKind::State,
            );
            self.base
                .add_weight("count", Tensor::zeros(&[]), WeightKind::State);
            self.base.built = true;
        }
        self.keep = keep;
        self.in_shape = s.clone();
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let dims = x.shape()[1..].to_vec();
        let st = self.stat_strides(&dims);
        let mean = self.mean();
        let scale = self.scales();
        let mut y = x.clone();
        let per = x.sample_len();
        if per > 0 {
            for sample in y.data_mut().chunks_mut(per) {
                visit(&dims, &st, |p, at| {
                    sample[p] = if self.invert {
                        mean[at] + sample[p] * scale[at]
                    } else {
                        (sample[p] - mean[at]) / scale[at]
                    }
                });
            }
        }
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = grad.shape()[1..].to_vec();
        let st = self.stat_strides(&dims);
        let scale = self.scales();
        let mut dx = grad.clone();
        let per = grad.sample_len();
        if per > 0 {
            for sample in dx.data_mut().chunks_mut(per) {
                visit(&dims, &st, |p, at| {
                    if self.invert {
                        sample[p] *= scale[at];
                    } else {
                        sample[p] /= scale[at];
                    }
                });
            }
        }
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "axis": self.axis,
               "invert": self.invert,
               "mean": self.fixed.as_ref().map(|f| &f.0),
               "variance": self.fixed.as_ref().map(|f| &f.1)})
    }
}

fn normalization_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let values = |key: &str| -> Result<Option<Vec<f32>>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(vec![n.as_f64().unwrap_or(f64::NAN) as f32])),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|v| v as f32)
                        .ok_or_else(|| o.err(format!("{key} entry {v} is not a number")))
                })
                .collect::<Result<Vec<f32>>>()
                .map(Some),
            Some(v) => Err(o.err(format!("{key} {v} is not a number or a flat list"))),
        }
    };
    let fixed = match (values("mean")?, values("variance")?) {
        (None, None) => None,
        (Some(m), Some(v)) => Some((m, v)),
        _ => return Err(o.err("a mean needs a variance and a variance a mean")),
    };
    let one = |v: &Value| {
        v.as_i64()
            .filter(|a| a.abs() <= 64)
            .ok_or_else(|| o.err(format!("axis {v} is not an integer")))
    };
    let axis = match o.get("axis") {
        None => vec![-1],
        Some(Value::Array(a)) => a.iter().map(one).collect::<Result<Vec<_>>>()?,
        Some(v) => vec![one(v)?],
    };
    let layer = match fixed {
        Some((m, v)) => Normalization::with_mean_variance(&axis, &m, &v),
        None => Normalization::with_axis(&axis),
    };
    Ok(Box::new(layer.invert(o.boolean("invert", false)?)))
}

/// `Normalization`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const NORMALIZATION: LayerEntry = LayerEntry {
    class_name: "Normalization",
    from_config: normalization_from_config,
};
