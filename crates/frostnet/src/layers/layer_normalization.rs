//! Per-sample normalizations over the last axis: `LayerNormalization` (mean and variance of each
//! row, then a learned `gamma` and `beta`), `GroupNormalization` (mean and variance per group of
//! channels over all positions) and `UnitNormalization` (each row divided by its L2 norm), with
//! Keras 3's formulas.

use super::registry::LayerEntry;
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase,
    Shape, WeightKind,
};
use crate::error::Result;
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Whether a Keras `axis` option (an int or a list) means exactly the last axis of inputs of
/// per-sample rank `rank`.
fn is_last_axis(o: &Opts, rank: usize) -> Result<()> {
    let full = rank as i64 + 1;
    let last = |v: &Value| v.as_i64().is_some_and(|a| a == -1 || a == full - 1);
    let ok = match o.get("axis") {
        None => true,
        Some(Value::Array(a)) => a.len() == 1 && last(&a[0]),
        Some(v) => last(v),
    };
    if ok {
        Ok(())
    } else {
        Err(o.err(format!(
            "axis {} is not implemented (only the last axis)",
            o.get("axis").expect("checked")
        )))
    }
}

/// The options and weight accessors LayerNormalization and GroupNormalization share
/// (`epsilon`, `center`, `scale`; `gamma` comes first when both weights exist, as in Keras),
/// written once; the struct has fields of those names.
macro_rules! affine_norm_options {
    ($t:ty) => {
        impl $t {
            pub fn epsilon(mut self, e: f32) -> Self {
                self.epsilon = e;
                self
            }
            pub fn center(mut self, c: bool) -> Self {
                self.center = c;
                self
            }
            pub fn scale(mut self, s: bool) -> Self {
                self.scale = s;
                self
            }
            fn gamma(&self) -> Option<&Tensor> {
                self.scale.then(|| self.base.w(0))
            }
            fn beta(&self) -> Option<&Tensor> {
                self.center.then(|| self.base.w(usize::from(self.scale)))
            }
        }
    };
}

affine_norm_options!(LayerNormalization);
affine_norm_options!(GroupNormalization);

/// `gamma * (x - mean) / sqrt(variance + epsilon) + beta` over the last axis of each sample
/// position. Weights (Keras's order): `gamma` (ones, if `scale`), `beta` (zeros, if `center`).
pub struct LayerNormalization {
    base: LayerBase,
    epsilon: f32,
    center: bool,
    scale: bool,
    in_shape: Shape,
    /// The normalized input and `1 / sqrt(variance + epsilon)` per row, for backward.
    cache: Option<(Tensor, Vec<f32>)>,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerNormalization {
    pub fn new() -> LayerNormalization {
        LayerNormalization {
            base: LayerBase::new(LAYER_NORMALIZATION.class_name),
            epsilon: 1e-3,
            center: true,
            scale: true,
            in_shape: Vec::new(),
            cache: None,
        }
    }
}

impl Layer for LayerNormalization {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[("gamma", "gamma"), ("beta", "beta")]
    }
    fn class_name(&self) -> &str {
        LAYER_NORMALIZATION.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let Some(&Some(d)) = s.last() else {
            return Err(incompatible(&self.base.name, "a known last axis", s));
        };
        if self.base.built {
            if self.base.weights.first().is_some_and(|w| w.shape() != [d]) {
                return Err(incompatible(&self.base.name, format!("(..., {d})"), s));
            }
        } else {
            if self.scale {
                self.base
                    .add_weight("gamma", Tensor::full(&[d], 1.0), WeightKind::Param);
            }
            if self.center {
                self.base
                    .add_weight("beta", Tensor::zeros(&[d]), WeightKind::Param);
            }
            self.base.built = true;
        }
        self.in_shape = s.clone();
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let d = *x.shape().last().expect("rank checked");
        let mut xhat = x.clone();
        let mut invs = Vec::with_capacity(x.len() / d.max(1));
        for row in xhat.data_mut().chunks_mut(d.max(1)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + self.epsilon as f64).sqrt();
            row.iter_mut()
                .for_each(|v| *v = ((*v as f64 - mean) * inv) as f32);
            invs.push(inv as f32);
        }
        let mut y = xhat.clone();
        for row in y.data_mut().chunks_mut(d.max(1)) {
            if let Some(g) = self.gamma() {
                row.iter_mut().zip(g.data()).for_each(|(v, g)| *v *= g);
            }
            if let Some(b) = self.beta() {
                row.iter_mut().zip(b.data()).for_each(|(v, b)| *v += b);
            }
        }
        self.cache = ctx.keep.then_some((xhat, invs));
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (xhat, invs) = take_cache(&mut self.cache, &self.base.name)?;
        let d = *xhat.shape().last().expect("rank checked");
        let rows = || grad.data().chunks(d).zip(xhat.data().chunks(d));
        if self.scale && self.base.wants_grad(0) {
            let mut dg = vec![0.0f32; d];
            for (g, h) in rows() {
                dg.iter_mut()
                    .zip(g.iter().zip(h))
                    .for_each(|(a, (g, h))| *a += g * h);
            }
            self.base.set_grad(0, Tensor::from_vec(&[d], dg)?);
        }
        let bi = usize::from(self.scale);
        if self.center && self.base.wants_grad(bi) {
            let mut db = vec![0.0f32; d];
            for (g, _) in rows() {
                db.iter_mut().zip(g).for_each(|(a, g)| *a += g);
            }
            self.base.set_grad(bi, Tensor::from_vec(&[d], db)?);
        }
        let dx = if need_dx.first().copied().unwrap_or(false) {
            let ones = vec![1.0f32; d];
            let gamma = self.gamma().map_or(&ones[..], |g| g.data());
            let mut dx = Vec::with_capacity(grad.len());
            for ((g, h), &inv) in rows().zip(&invs) {
                // dx = inv * (dh - mean(dh) - h * mean(dh * h)) with dh = g * gamma.
                let dh: Vec<f32> = g.iter().zip(gamma).map(|(g, s)| g * s).collect();
                let m1 = dh.iter().sum::<f32>() / d as f32;
                let m2 = dh.iter().zip(h).map(|(a, b)| a * b).sum::<f32>() / d as f32;
                dx.extend(dh.iter().zip(h).map(|(a, h)| inv * (a - m1 - h * m2)));
            }
            Some(Tensor::from_vec(grad.shape(), dx)?)
        } else {
            None
        };
        Ok(vec![dx])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "axis": [-1],
               "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
               "rms_scaling": false,
               "beta_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                    "config": {}, "registered_name": null},
               "gamma_initializer": {"module": "keras.initializers", "class_name": "Ones",
                                     "config": {}, "registered_name": null},
               "beta_regularizer": null, "gamma_regularizer": null,
               "beta_constraint": null, "gamma_constraint": null})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn layer_normalization_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    is_last_axis(o, inputs.first().map_or(1, |s| s.len()))?;
    o.require("rms_scaling", &[json!(false)])?;
    Ok(Box::new(
        LayerNormalization::new()
            .epsilon(o.float("epsilon", 1e-3)?)
            .center(o.boolean("center", true)?)
            .scale(o.boolean("scale", true)?),
    ))
}

/// `LayerNormalization`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const LAYER_NORMALIZATION: LayerEntry = LayerEntry {
    class_name: "LayerNormalization",
    from_config: layer_normalization_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Keras's floor on the L2 norm in `UnitNormalization` (`ops.normalize`'s `epsilon=1e-12`).
const UNIT_EPSILON: f32 = 1e-12;

/// Divides each row (the last axis) by its L2 norm, at most by `1 / 1e-12` amplified.
pub struct UnitNormalization {
    base: LayerBase,
    in_shape: Shape,
    /// The output and each row's `1 / norm` (clamped), for backward.
    cache: Option<(Tensor, Vec<f32>)>,
}

impl Default for UnitNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl UnitNormalization {
    pub fn new() -> UnitNormalization {
        UnitNormalization {
            base: LayerBase::new(UNIT_NORMALIZATION.class_name),
            in_shape: Vec::new(),
            cache: None,
        }
    }
}

impl Layer for UnitNormalization {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        UNIT_NORMALIZATION.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        if s.is_empty() {
            return Err(incompatible(&self.base.name, "at least one axis", s));
        }
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let d = (*x.shape().last().expect("rank checked")).max(1);
        let mut y = x.clone();
        let mut invs = Vec::with_capacity(x.len() / d);
        for row in y.data_mut().chunks_mut(d) {
            let sq: f32 = row.iter().map(|v| v * v).sum();
            let inv = (1.0 / sq.sqrt()).min(1.0 / UNIT_EPSILON);
            row.iter_mut().for_each(|v| *v *= inv);
            invs.push(inv);
        }
        self.cache = ctx.keep.then(|| (y.clone(), invs));
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (y, invs) = take_cache(&mut self.cache, &self.base.name)?;
        let d = (*y.shape().last().expect("rank checked")).max(1);
        let mut dx = grad.clone();
        for ((g, y), &inv) in dx
            .data_mut()
            .chunks_mut(d)
            .zip(y.data().chunks(d))
            .zip(&invs)
        {
            if inv < 1.0 / UNIT_EPSILON {
                let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
                g.iter_mut()
                    .zip(y)
                    .for_each(|(g, y)| *g = (*g - y * dot) * inv);
            } else {
                // The clamp is active: y = x / epsilon, a linear map.
                g.iter_mut().for_each(|g| *g *= inv);
            }
        }
        Ok(vec![Some(dx)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "axis": [-1]})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn unit_normalization_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    is_last_axis(o, inputs.first().map_or(1, |s| s.len()))?;
    Ok(Box::new(UnitNormalization::new()))
}

/// `UnitNormalization`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const UNIT_NORMALIZATION: LayerEntry = LayerEntry {
    class_name: "UnitNormalization",
    from_config: unit_normalization_from_config,
};

// ---------------------------------------------------------------------------------------------

/// Normalizes each sample over groups of channels (and all positions): channels are split into
/// `groups` consecutive groups, each group of each sample gets its own mean and variance, then a
/// per-channel `gamma` and `beta` (Keras's weights, in that order) apply. Channels last.
pub struct GroupNormalization {
    base: LayerBase,
    groups: usize,
    epsilon: f32,
    center: bool,
    scale: bool,
    in_shape: Shape,
    /// The normalized input and `1 / sqrt(variance + epsilon)` per (sample, group).
    cache: Option<(Tensor, Vec<f32>)>,
}

impl GroupNormalization {
    /// `groups` must divide the channel count (Keras's default is 32).
    pub fn new(groups: usize) -> GroupNormalization {
        GroupNormalization {
            base: LayerBase::new(GROUP_NORMALIZATION.class_name),
            groups,
            epsilon: 1e-3,
            center: true,
            scale: true,
            in_shape: Vec::new(),
            cache: None,
        }
    }

    /// Calls `f(group, indices of that group within one sample)` for each group of a sample of
    /// `per` values with `c` channels.
    fn for_groups(&self, per: usize, c: usize, mut f: impl FnMut(usize, &[usize])) {
        let cg = c / self.groups;
        let mut idx = Vec::with_capacity(per / self.groups.max(1));
        for g in 0..self.groups {
            idx.clear();
            for p in 0..per / c.max(1) {
                idx.extend((g * cg..(g + 1) * cg).map(|ch| p * c + ch));
            }
            f(g, &idx);
        }
    }
}

impl Layer for GroupNormalization {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn weight_args(&self) -> &'static [(&'static str, &'static str)] {
        &[("gamma", "gamma"), ("beta", "beta")]
    }
    fn class_name(&self) -> &str {
        GROUP_NORMALIZATION.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let Some(&Some(c)) = s.last() else {
            return Err(incompatible(&self.base.name, "a known last axis", s));
        };
        if self.groups == 0 || c % self.groups != 0 {
            return Err(crate::error::Error::InvalidConfig(format!(
                "layer '{}': {} groups do not divide {c} channels",
                self.base.name, self.groups
            )));
        }
        if !self.base.built {
            if self.scale {
                self.base
                    .add_weight("gamma", Tensor::full(&[c], 1.0), WeightKind::Param);
            }
            if self.center {
                self.base
                    .add_weight("beta", Tensor::zeros(&[c]), WeightKind::Param);
            }
            self.base.built = true;
        } else if self.base.weights.first().is_some_and(|w| w.shape() != [c]) {
            return Err(incompatible(&self.base.name, format!("(..., {c})"), s));
        }
        self.in_shape = s.clone();
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let c = *x.shape().last().expect("rank checked");
        let per = x.sample_len();
        let mut xhat = x.clone();
        let mut invs = Vec::with_capacity(x.batch() * self.groups);
        for sample in xhat.data_mut().chunks_mut(per.max(1)) {
            self.for_groups(per, c, |_, idx| {
                let m = idx.len() as f64;
                let mean = idx.iter().map(|&i| sample[i] as f64).sum::<f64>() / m;
                let var = idx
                    .iter()
                    .map(|&i| (sample[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / m;
                let inv = 1.0 / (var + self.epsilon as f64).sqrt();
                idx.iter()
                    .for_each(|&i| sample[i] = ((sample[i] as f64 - mean) * inv) as f32);
                invs.push(inv as f32);
            });
        }
        let mut y = xhat.clone();
        for row in y.data_mut().chunks_mut(c.max(1)) {
            if let Some(g) = self.gamma() {
                row.iter_mut().zip(g.data()).for_each(|(v, g)| *v *= g);
            }
            if let Some(b) = self.beta() {
                row.iter_mut().zip(b.data()).for_each(|(v, b)| *v += b);
            }
        }
        self.cache = ctx.keep.then_some((xhat, invs));
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (xhat, invs) = take_cache(&mut self.cache, &self.base.name)?;
        let c = *xhat.shape().last().expect("rank checked");
        let per = xhat.sample_len();
        let rows = || grad.data().chunks(c).zip(xhat.data().chunks(c));
        if self.scale && self.base.wants_grad(0) {
            let mut dg = vec![0.0f32; c];
            for (g, h) in rows() {
                dg.iter_mut()
                    .zip(g.iter().zip(h))
                    .for_each(|(a, (g, h))| *a += g * h);
            }
            self.base.set_grad(0, Tensor::from_vec(&[c], dg)?);
        }
        let bi = usize::from(self.scale);
        if self.center && self.base.wants_grad(bi) {
            let mut db = vec![0.0f32; c];
            for (g, _) in rows() {
                db.iter_mut().zip(g).for_each(|(a, g)| *a += g);
            }
            self.base.set_grad(bi, Tensor::from_vec(&[c], db)?);
        }
        let dx = if need_dx.first().copied().unwrap_or(false) {
            let ones = vec![1.0f32; c];
            let gamma = self.gamma().map_or(&ones[..], |g| g.data());
            let mut dx = vec![0.0f32; grad.len()];
            for (s, ((d, g), h)) in dx
                .chunks_mut(per.max(1))
                .zip(grad.data().chunks(per.max(1)))
                .zip(xhat.data().chunks(per.max(1)))
                .enumerate()
            {
                self.for_groups(per, c, |gi, idx| {
                    let inv = invs[s * self.groups + gi];
                    let m = idx.len() as f32;
                    let dh = |i: usize| g[i] * gamma[i % c];
                    let m1 = idx.iter().map(|&i| dh(i)).sum::<f32>() / m;
                    let m2 = idx.iter().map(|&i| dh(i) * h[i]).sum::<f32>() / m;
                    idx.iter()
                        .for_each(|&i| d[i] = inv * (dh(i) - m1 - h[i] * m2));
                });
            }
            Some(Tensor::from_vec(grad.shape(), dx)?)
        } else {
            None
        };
        Ok(vec![dx])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "groups": self.groups,
               "axis": -1, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
               "beta_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                    "config": {}, "registered_name": null},
               "gamma_initializer": {"module": "keras.initializers", "class_name": "Ones",
                                     "config": {}, "registered_name": null},
               "beta_regularizer": null, "gamma_regularizer": null,
               "beta_constraint": null, "gamma_constraint": null})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

fn group_normalization_from_config(o: &Opts, inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    is_last_axis(o, inputs.first().map_or(1, |s| s.len()))?;
    Ok(Box::new(
        GroupNormalization::new(o.size("groups", Some(32))?)
            .epsilon(o.float("epsilon", 1e-3)?)
            .center(o.boolean("center", true)?)
            .scale(o.boolean("scale", true)?),
    ))
}

/// `GroupNormalization`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const GROUP_NORMALIZATION: LayerEntry = LayerEntry {
    class_name: "GroupNormalization",
    from_config: group_normalization_from_config,
};
