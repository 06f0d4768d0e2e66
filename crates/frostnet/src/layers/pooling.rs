//! Pooling layers over NHWC images: `MaxPooling2D`, `AveragePooling2D` (windows with strides and
//! `valid`/`same` padding) and the global `GlobalAveragePooling2D` / `GlobalMaxPooling2D`.
//!
//! The kernels are in `tensor/pool.rs`. As in Keras/TF, `same` padding never adds values: max
//! pooling ignores padded positions and average pooling divides by the real inputs only.

use super::naming;
use super::registry::LayerEntry;
use super::window::{geometry, windowed_any};
use super::{
    check_runtime_shape, expect_inputs, incompatible, take_cache, ForwardCtx, Layer, LayerBase,
    Shape,
};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::pool::{
    avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
    global_max_pool_backward, global_max_pool_forward, max_pool2d_backward, max_pool2d_forward,
};
use crate::tensor::{buffer, Conv2dGeometry, Padding, Tensor};
use serde_json::json;

/// What a windowed pooling layer is configured with (Keras names).
#[derive(Clone, Copy, Debug)]
struct PoolConfig {
    pool_size: (usize, usize),
    /// `None`: Keras's `strides=None`, which means the pool size.
    strides: Option<(usize, usize)>,
    padding: Padding,
}

impl PoolConfig {
    fn strides(&self) -> (usize, usize) {
        self.strides.unwrap_or(self.pool_size)
    }

    /// Output shape for an NHWC per-sample shape; typed errors for bad configs and small inputs.
    fn output_shape(&self, layer: &str, s: &Shape) -> Result<Shape> {
        let (ph, pw) = self.pool_size;
        let (sh, sw) = self.strides();
        if ph == 0 || pw == 0 || sh == 0 || sw == 0 {
            return Err(Error::InvalidConfig(format!(
                "layer '{layer}': pool_size {:?} and strides {:?} must be positive",
                self.pool_size,
                self.strides()
            )));
        }
        let (h, w, c) = windowed_any(layer, s, self.pool_size, self.strides(), self.padding)?;
        Ok(vec![h, w, c])
    }

    fn geometry(&self, layer: &str, x: &Tensor) -> Result<Conv2dGeometry> {
        geometry(layer, x, self.pool_size, self.strides(), self.padding)
    }

    fn to_json(self, base: &LayerBase) -> serde_json::Value {
        let (sh, sw) = self.strides();
        json!({
            "name": base.name,
            "trainable": base.trainable,
            "pool_size": [self.pool_size.0, self.pool_size.1],
            "padding": self.padding.as_str(),
            "strides": [sh, sw],
            "data_format": "channels_last",
        })
    }
}

macro_rules! pool_builders {
    ($t:ident) => {
        impl $t {
            /// A square window; strides default to the pool size (Keras's `strides=None`).
            pub fn new(pool_size: usize) -> $t {
                $t::with_pool((pool_size, pool_size))
            }
            /// A rectangular window.
            pub fn with_pool(pool_size: (usize, usize)) -> $t {
                $t {
                    base: LayerBase::new(stringify!($t)),
                    cfg: PoolConfig {
                        pool_size,
                        strides: None,
                        padding: Padding::Valid,
                    },
                    in_shape: Vec::new(),
                    cache: None,
                }
            }
            pub fn strides(mut self, s: usize) -> Self {
                self.cfg.strides = Some((s, s));
                self
            }
            pub fn strides2(mut self, s: (usize, usize)) -> Self {
                self.cfg.strides = Some(s);
                self
            }
            pub fn padding(mut self, p: Padding) -> Self {
                self.cfg.padding = p;
                self
            }
        }

        impl Default for $t {
            /// Keras's default `pool_size=(2, 2)`.
            fn default() -> Self {
                $t::new(2)
            }
        }
    };
}

/// Max over each window. Backward routes each output gradient to the input that won its window.
pub struct MaxPooling2D {
    base: LayerBase,
    cfg: PoolConfig,
    in_shape: Shape,
    /// Input dims and, per output element, the winning input index within its image.
    cache: Option<(Vec<usize>, buffer::Pooled<u32>)>,
}
pool_builders!(MaxPooling2D);

impl Layer for MaxPooling2D {
    /// The argmax of every output value (u32).
    fn kept_for_backward(&self, _inputs: &[u64], output: u64) -> u64 {
        output * 4
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        MAX_POOLING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let out = self.cfg.output_shape(&self.base.name, s)?;
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let g = self.cfg.geometry(&self.base.name, x)?;
        let (y, arg) = max_pool2d_forward(x.data(), &g, ctx.keep);
        self.cache = arg.map(|a| (x.shape().to_vec(), a));
        Tensor::from_vec(&[g.n, g.oh, g.ow, g.c], y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (dims, arg) = take_cache(&mut self.cache, &self.base.name)?;
        let g = Conv2dGeometry::new(
            &dims,
            self.cfg.pool_size,
            self.cfg.strides(),
            self.cfg.padding,
        )
        .ok_or_else(|| Error::State(format!("layer '{}': bad cache", self.base.name)))?;
        let dx = max_pool2d_backward(grad.data(), &arg, &g);
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        self.cfg.to_json(&self.base)
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// Mean over each window; with `same` padding the mean is over the real inputs only.
pub struct AveragePooling2D {
    base: LayerBase,
    cfg: PoolConfig,
    in_shape: Shape,
    /// Input dims, all backward needs.
    cache: Option<Vec<usize>>,
}
pool_builders!(AveragePooling2D);

impl AveragePooling2D {
    /// Whether the output has the input's height and width (stride 1, `same` padding).
    pub(crate) fn keeps_size(&self) -> bool {
        self.cfg.strides() == (1, 1) && self.cfg.padding == Padding::Same
    }

    /// This layer's pooling over `x`, whatever its channel count (a fused chain pools a
    /// pointwise convolution's output instead of its input; see `Model::plan_fusion`). Keeps
    /// nothing for backward.
    pub(crate) fn pool(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = None;
        let g = self.cfg.geometry(&self.base.name, x)?;
        Tensor::from_vec(&[g.n, g.oh, g.ow, g.c], avg_pool2d_forward(x.data(), &g))
    }
}

impl Layer for AveragePooling2D {
    /// Shapes only.
    fn kept_for_backward(&self, _inputs: &[u64], _output: u64) -> u64 {
        0
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        AVERAGE_POOLING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let out = self.cfg.output_shape(&self.base.name, s)?;
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let g = self.cfg.geometry(&self.base.name, x)?;
        let y = avg_pool2d_forward(x.data(), &g);
        self.cache = ctx.keep.then(|| x.shape().to_vec());
        Tensor::from_vec(&[g.n, g.oh, g.ow, g.c], y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        let g = Conv2dGeometry::new(
            &dims,
            self.cfg.pool_size,
            self.cfg.strides(),
            self.cfg.padding,
        )
        .ok_or_else(|| Error::State(format!("layer '{}': bad cache", self.base.name)))?;
        let dx = avg_pool2d_backward(grad.data(), &g);
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        self.cfg.to_json(&self.base)
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
    /// The executor moves this pooling after a pointwise convolution (models/model.rs).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

/// Checks a global pooling input: `(None, ..., channels)` with `spatial` spatial axes.
fn global_output_shape(layer: &str, s: &Shape, keepdims: bool, spatial: usize) -> Result<Shape> {
    match s.last() {
        Some(&Some(c)) if s.len() == spatial + 1 => Ok(if keepdims {
            let mut out = vec![Some(1); s.len() - 1];
            out.push(Some(c));
            out
        } else {
            vec![Some(c)]
        }),
        _ => Err(incompatible(
            layer,
            if spatial == 1 {
                "(None, steps, channels) with known channels"
            } else {
                "(None, height, width, channels) with known channels"
            },
            s,
        )),
    }
}

/// `(n, positions, channels)` of an input tensor, and the output dims.
fn global_dims(x: &Tensor, keepdims: bool) -> (usize, usize, usize, Vec<usize>) {
    let dims = x.shape();
    let n = dims[0];
    let c = *dims.last().unwrap_or(&1);
    let positions = dims[1..dims.len() - 1].iter().product();
    let out = if keepdims {
        let mut o = vec![n];
        o.resize(dims.len() - 1, 1);
        o.push(c);
        o
    } else {
        vec![n, c]
    };
    (n, positions, c, out)
}

macro_rules! global_builders {
    ($t:ident) => {
        impl $t {
            pub fn new() -> $t {
                $t {
                    base: LayerBase::new(stringify!($t)),
                    keepdims: false,
                    spatial: 2,
                    in_shape: Vec::new(),
                    cache: None,
                }
            }
            /// Keeps the spatial axes with size 1 (Keras's `keepdims=True`).
            pub fn keepdims(mut self, k: bool) -> Self {
                self.keepdims = k;
                self
            }
        }
        impl Default for $t {
            fn default() -> Self {
                $t::new()
            }
        }
    };
}

/// Mean over all spatial positions per channel: `(None, h, w, c)` -> `(None, c)`.
pub struct GlobalAveragePooling2D {
    base: LayerBase,
    keepdims: bool,
    /// Number of spatial axes: 2, or 1 inside `GlobalAveragePooling1D`.
    spatial: usize,
    in_shape: Shape,
    cache: Option<Vec<usize>>,
}
global_builders!(GlobalAveragePooling2D);

impl Layer for GlobalAveragePooling2D {
    /// Shapes only.
    fn kept_for_backward(&self, _inputs: &[u64], _output: u64) -> u64 {
        0
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        GLOBAL_AVERAGE_POOLING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let out = global_output_shape(&self.base.name, s, self.keepdims, self.spatial)?;
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let (n, p, c, out) = global_dims(x, self.keepdims);
        let y = global_avg_pool_forward(x.data(), n, p, c);
        self.cache = ctx.keep.then(|| x.shape().to_vec());
        Tensor::from_vec(&out, y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        let n = dims[0];
        let c = *dims.last().unwrap_or(&1);
        let p = dims[1..dims.len() - 1].iter().product();
        let dx = global_avg_pool_backward(grad.data(), n, p, c);
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "keepdims": self.keepdims})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// Max over all spatial positions per channel; backward routes to the winning position.
pub struct GlobalMaxPooling2D {
    base: LayerBase,
    keepdims: bool,
    /// Number of spatial axes: 2, or 1 inside `GlobalMaxPooling1D`.
    spatial: usize,
    in_shape: Shape,
    cache: Option<(Vec<usize>, Vec<u32>)>,
}
global_builders!(GlobalMaxPooling2D);

impl Layer for GlobalMaxPooling2D {
    /// The argmax of every output value (u32).
    fn kept_for_backward(&self, _inputs: &[u64], output: u64) -> u64 {
        output * 4
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        GLOBAL_MAX_POOLING2D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        let out = global_output_shape(&self.base.name, s, self.keepdims, self.spatial)?;
        self.in_shape = s.clone();
        self.base.built = true;
        Ok(out)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        check_runtime_shape(&self.base.name, &self.in_shape, x)?;
        let (n, p, c, out) = global_dims(x, self.keepdims);
        let (y, arg) = global_max_pool_forward(x.data(), n, p, c, ctx.keep);
        self.cache = arg.map(|a| (x.shape().to_vec(), a));
        Tensor::from_vec(&out, y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (dims, arg) = take_cache(&mut self.cache, &self.base.name)?;
        let n = dims[0];
        let c = *dims.last().unwrap_or(&1);
        let p = dims[1..dims.len() - 1].iter().product();
        let dx = global_max_pool_backward(grad.data(), &arg, n, p, c);
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable,
               "data_format": "channels_last", "keepdims": self.keepdims})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
}

/// A global pooling over the steps of `(None, steps, channels)` sequences, sharing the 2-D
/// layer's implementation (which pools over every axis between batch and channels).
macro_rules! global_pooling_1d {
    ($(#[$doc:meta])* $t:ident, $inner:ident, $entry:ident) => {
        $(#[$doc])*
        pub struct $t($inner);

        impl Default for $t {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $t {
            pub fn new() -> $t {
                let mut inner = $inner::new();
                naming::release(&naming::snake_case(stringify!($inner)), &inner.base.name);
                inner.base = LayerBase::new($entry.class_name);
                inner.spatial = 1;
                $t(inner)
            }
            /// Keeps the steps axis with size 1 (Keras's `keepdims=True`).
            pub fn keepdims(self, k: bool) -> Self {
                $t(self.0.keepdims(k))
            }
        }

        impl Layer for $t {
            fn base(&self) -> &LayerBase {
                &self.0.base
            }
            fn base_mut(&mut self) -> &mut LayerBase {
                &mut self.0.base
            }
            fn class_name(&self) -> &str {
                $entry.class_name
            }
            fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
                self.0.build(inputs)
            }
            fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
                self.0.forward(inputs, ctx)
            }
            fn backward(
                &mut self,
                grad: &Tensor,
                need_dx: &[bool],
            ) -> Result<Vec<Option<Tensor>>> {
                self.0.backward(grad, need_dx)
            }
            fn config(&self) -> serde_json::Value {
                self.0.config()
            }
            fn clear_cache(&mut self) {
                self.0.clear_cache()
            }
        }
    };
}

/// Mean over the steps per channel: `(None, steps, c)` -> `(None, c)`. With a mask on its input
/// (an `Embedding(mask_zero=True)` upstream), the mean of the unmasked steps only, as Keras 3's
/// `call(inputs, mask)`: `sum(where(mask, x, 0)) / sum(mask)` (NaN for a sequence with every step
/// masked, as in Keras); its output has no mask.
pub struct GlobalAveragePooling1D {
    inner: GlobalAveragePooling1DPlain,
    /// The mask for the next forward pass, set by the model executor (models/masking.rs).
    mask: Option<Vec<bool>>,
    /// The mask the last masked forward pass used, for backward.
    kept: Option<(Vec<usize>, Vec<bool>)>,
}

global_pooling_1d!(
    /// The unmasked `GlobalAveragePooling1D` (the 2-D layer over one spatial axis).
    GlobalAveragePooling1DPlain,
    GlobalAveragePooling2D,
    GLOBAL_AVERAGE_POOLING1D
);

impl Default for GlobalAveragePooling1D {
    fn default() -> Self {
        Self::new()
    }
}

impl GlobalAveragePooling1D {
    pub fn new() -> GlobalAveragePooling1D {
        GlobalAveragePooling1D {
            inner: GlobalAveragePooling1DPlain::new(),
            mask: None,
            kept: None,
        }
    }
    /// Keeps the steps axis with size 1 (Keras's `keepdims=True`).
    pub fn keepdims(self, k: bool) -> Self {
        GlobalAveragePooling1D {
            inner: self.inner.keepdims(k),
            ..self
        }
    }
    /// The mask (per sample and step, true = use the step) of the next forward pass's input.
    pub(crate) fn set_mask(&mut self, mask: Option<Vec<bool>>) {
        self.mask = mask;
    }
}

impl Layer for GlobalAveragePooling1D {
    fn base(&self) -> &LayerBase {
        self.inner.base()
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        self.inner.base_mut()
    }
    fn class_name(&self) -> &str {
        GLOBAL_AVERAGE_POOLING1D.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        self.inner.build(inputs)
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.kept = None;
        let Some(mask) = self.mask.take() else {
            return self.inner.forward(inputs, ctx);
        };
        let x = inputs[0];
        check_runtime_shape(&self.base().name, &self.inner.0.in_shape, x)?;
        let (n, p, c, out) = global_dims(x, self.inner.0.keepdims);
        if mask.len() != n * p {
            return Err(Error::IncompatibleShape {
                layer: self.base().name.clone(),
                expected: format!("a mask of {n}x{p} steps"),
                got: format!("a mask of {} values", mask.len()),
            });
        }
        let mut y = buffer::zeroed(n * c);
        for (b, yb) in y.chunks_exact_mut(c.max(1)).enumerate() {
            let mut count = 0.0f32;
            for t in 0..p {
                if mask[b * p + t] {
                    count += 1.0;
                    let row = &x.data()[(b * p + t) * c..(b * p + t + 1) * c];
                    yb.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
            }
            yb.iter_mut().for_each(|a| *a /= count);
        }
        if ctx.keep {
            self.kept = Some((x.shape().to_vec(), mask));
        }
        Tensor::from_vec(&out, y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let Some((dims, mask)) = self.kept.take() else {
            return self.inner.backward(grad, need_dx);
        };
        let (n, c) = (dims[0], *dims.last().unwrap_or(&1));
        let p = mask.len() / n.max(1);
        let mut dx = buffer::zeroed(n * p * c);
        for b in 0..n {
            let count = mask[b * p..(b + 1) * p].iter().filter(|&&m| m).count() as f32;
            let g = &grad.data()[b * c..(b + 1) * c];
            for t in (0..p).filter(|&t| mask[b * p + t]) {
                dx[(b * p + t) * c..(b * p + t + 1) * c]
                    .iter_mut()
                    .zip(g)
                    .for_each(|(d, g)| *d = g / count);
            }
        }
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> serde_json::Value {
        self.inner.config()
    }
    fn clear_cache(&mut self) {
        self.kept = None;
        self.inner.clear_cache()
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}
global_pooling_1d!(
    /// Max over the steps per channel: `(None, steps, c)` -> `(None, c)`.
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GLOBAL_MAX_POOLING1D
);

// Keras config reading.

/// `GlobalAveragePooling1D`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const GLOBAL_AVERAGE_POOLING1D: LayerEntry = LayerEntry {
    class_name: "GlobalAveragePooling1D",
    from_config: global_average_pooling1d_from_config,
};

/// `GlobalMaxPooling1D`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const GLOBAL_MAX_POOLING1D: LayerEntry = LayerEntry {
    class_name: "GlobalMaxPooling1D",
    from_config: global_max_pooling1d_from_config,
};

fn global_average_pooling1d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    Ok(Box::new(
        GlobalAveragePooling1D::new().keepdims(o.boolean("keepdims", false)?),
    ))
}

fn global_max_pooling1d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    Ok(Box::new(
        GlobalMaxPooling1D::new().keepdims(o.boolean("keepdims", false)?),
    ))
}

/// `MaxPooling2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const MAX_POOLING2D: LayerEntry = LayerEntry {
    class_name: "MaxPooling2D",
    from_config: max_pooling2d_from_config,
};

/// `AveragePooling2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const AVERAGE_POOLING2D: LayerEntry = LayerEntry {
    class_name: "AveragePooling2D",
    from_config: average_pooling2d_from_config,
};

/// `GlobalAveragePooling2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const GLOBAL_AVERAGE_POOLING2D: LayerEntry = LayerEntry {
    class_name: "GlobalAveragePooling2D",
    from_config: global_average_pooling2d_from_config,
};

/// `GlobalMaxPooling2D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const GLOBAL_MAX_POOLING2D: LayerEntry = LayerEntry {
    class_name: "GlobalMaxPooling2D",
    from_config: global_max_pooling2d_from_config,
};

/// A pooling window: `pool_size`, `strides` and `padding`.
type Window = ((usize, usize), (usize, usize), Padding);

/// `pool_size`, `strides` (default: the pool size) and `padding` of a windowed pooling layer.
fn pool_options(o: &Opts) -> Result<Window> {
    o.require("data_format", &[json!("channels_last")])?;
    let pool = o.pair("pool_size", Some((2, 2)))?;
    let strides = o.pair("strides", Some(pool))?;
    Ok((pool, strides, o.padding()?))
}

fn max_pooling2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let (pool, strides, padding) = pool_options(o)?;
    Ok(Box::new(
        MaxPooling2D::with_pool(pool)
            .strides2(strides)
            .padding(padding),
    ))
}

fn average_pooling2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let (pool, strides, padding) = pool_options(o)?;
    Ok(Box::new(
        AveragePooling2D::with_pool(pool)
            .strides2(strides)
            .padding(padding),
    ))
}

fn global_average_pooling2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    Ok(Box::new(
        GlobalAveragePooling2D::new().keepdims(o.boolean("keepdims", false)?),
    ))
}

fn global_max_pooling2d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    Ok(Box::new(
        GlobalMaxPooling2D::new().keepdims(o.boolean("keepdims", false)?),
    ))
}
