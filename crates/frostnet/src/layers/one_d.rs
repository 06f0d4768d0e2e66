//! 1-D layers over `(None, steps, channels)` sequences that are their 2-D counterparts on
//! `(steps, 1)` images: `MaxPooling1D`, `AveragePooling1D` (window `(k, 1)`, strides `(s, 1)`)
//! and `ZeroPadding1D` (padding `((left, right), (0, 0))`). Reshaping NSC to NS1C moves no data,
//! so the 2-D kernels, their padding rules and their gradients are reused as they are.

use super::registry::LayerEntry;
use super::{
    expect_inputs, incompatible, naming, AveragePooling2D, ForwardCtx, Layer, LayerBase,
    MaxPooling2D, Shape, ZeroPadding2D,
};
use crate::error::Result;
use crate::saving::keras_config::{Opts, MAX_DIM};
use crate::tensor::{Padding, Tensor};
use serde_json::{json, Value};

/// `(n, steps, c)` -> `(n, steps, 1, c)`, and back.
fn to_2d(t: &Tensor) -> Result<Tensor> {
    let d = t.shape();
    if d.len() != 3 {
        return Err(crate::error::Error::ShapeMismatch {
            context: "a 1-D layer's input".into(),
            left: "(batch, steps, channels)".into(),
            right: crate::error::fmt_dims(d),
        });
    }
    t.clone().reshape(&[d[0], d[1], 1, d[2]])
}

fn to_1d(t: Tensor) -> Result<Tensor> {
    let d = t.shape().to_vec();
    t.reshape(&[d[0], d[1], d[3]])
}

/// Declares a 1-D layer running the 2-D layer `$inner` on `(steps, 1)` images; `$cfg` is the
/// layer's Keras options (besides `name` and `trainable`).
macro_rules! one_d_layer {
    ($(#[$doc:meta])* $t:ident, $inner:ident, $entry:ident) => {
        $(#[$doc])*
        pub struct $t {
            inner: $inner,
            options: Value,
        }

        impl $t {
            fn wrap(mut inner: $inner, options: Value) -> $t {
                naming::release(&naming::snake_case(stringify!($inner)), &inner.base().name);
                *inner.base_mut() = LayerBase::new($entry.class_name);
                $t { inner, options }
            }
        }

        impl Layer for $t {
            fn base(&self) -> &LayerBase {
                self.inner.base()
            }
            fn base_mut(&mut self) -> &mut LayerBase {
                self.inner.base_mut()
            }
            fn class_name(&self) -> &str {
                $entry.class_name
            }
            fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
                let s = &expect_inputs(&self.base().name, inputs, 1)?[0];
                let [steps, c] = s[..] else {
                    return Err(incompatible(&self.base().name, "(None, steps, channels)", s));
                };
                let out = self.inner.build(&[vec![steps, Some(1), c]])?;
                Ok(vec![out[0], out[2]])
            }
            fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
                let x = to_2d(inputs[0])?;
                to_1d(self.inner.forward(&[&x], ctx)?)
            }
            fn backward(
                &mut self,
                grad: &Tensor,
                need_dx: &[bool],
            ) -> Result<Vec<Option<Tensor>>> {
                let g = to_2d(grad)?;
                self.inner
                    .backward(&g, need_dx)?
                    .into_iter()
                    .map(|d| d.map(to_1d).transpose())
                    .collect()
            }
            fn config(&self) -> Value {
                let mut c = self.options.clone();
                c["name"] = json!(self.base().name);
                c["trainable"] = json!(self.base().trainable);
                c
            }
            fn clear_cache(&mut self) {
                self.inner.clear_cache()
            }
        }
    };
}

one_d_layer!(
    /// Max over windows of `pool_size` steps.
    MaxPooling1D,
    MaxPooling2D,
    MAX_POOLING1D
);
one_d_layer!(
    /// Mean over windows of `pool_size` steps (with `same` padding, over the real steps only).
    AveragePooling1D,
    AveragePooling2D,
    AVERAGE_POOLING1D
);
one_d_layer!(
    /// Pads the steps axis with `(left, right)` zeros.
    ZeroPadding1D,
    ZeroPadding2D,
    ZERO_PADDING1D
);

fn pool_options(pool: usize, strides: usize, padding: Padding) -> Value {
    json!({"pool_size": [pool], "padding": padding.as_str(), "strides": [strides],
           "data_format": "channels_last"})
}

impl MaxPooling1D {
    /// A window of `pool_size` steps moved by `strides` (Keras's default: the pool size).
    pub fn new(pool_size: usize, strides: usize, padding: Padding) -> MaxPooling1D {
        let inner = MaxPooling2D::with_pool((pool_size, 1))
            .strides2((strides, 1))
            .padding(padding);
        MaxPooling1D::wrap(inner, pool_options(pool_size, strides, padding))
    }
}

impl AveragePooling1D {
    /// A window of `pool_size` steps moved by `strides` (Keras's default: the pool size).
    pub fn new(pool_size: usize, strides: usize, padding: Padding) -> AveragePooling1D {
        let inner = AveragePooling2D::with_pool((pool_size, 1))
            .strides2((strides, 1))
            .padding(padding);
        AveragePooling1D::wrap(inner, pool_options(pool_size, strides, padding))
    }
}

impl ZeroPadding1D {
    /// `(left, right)` zeros around the steps.
    pub fn new(padding: (usize, usize)) -> ZeroPadding1D {
        let inner = ZeroPadding2D::with_padding((padding, (0, 0)));
        ZeroPadding1D::wrap(
            inner,
            json!({"padding": [padding.0, padding.1], "data_format": "channels_last"}),
        )
    }
}

/// An int or a one-element list (`pool_size`, `strides`).
fn one(o: &Opts, key: &str, default: usize) -> Result<usize> {
    let v = match o.get(key) {
        Some(Value::Array(a)) if a.len() == 1 => a[0].clone(),
        Some(v) => v.clone(),
        None => return Ok(default),
    };
    match v.as_u64() {
        Some(n) if (1..=MAX_DIM).contains(&n) => Ok(n as usize),
        _ => Err(o.err(format!("'{key}' = {v} is not a supported size"))),
    }
}

fn pool_1d_options(o: &Opts) -> Result<(usize, usize, Padding)> {
    o.require("data_format", &[json!("channels_last")])?;
    let pool = one(o, "pool_size", 2)?;
    Ok((pool, one(o, "strides", pool)?, o.padding()?))
}

fn max_pooling1d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let (p, s, pad) = pool_1d_options(o)?;
    Ok(Box::new(MaxPooling1D::new(p, s, pad)))
}

fn average_pooling1d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    let (p, s, pad) = pool_1d_options(o)?;
    Ok(Box::new(AveragePooling1D::new(p, s, pad)))
}

fn zero_padding1d_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    o.require("data_format", &[json!("channels_last")])?;
    let n = |v: &Value| match v.as_u64() {
        Some(n) if n <= MAX_DIM => Ok(n as usize),
        _ => Err(o.err(format!("padding {v} is not a size"))),
    };
    let p = match o.get("padding") {
        None => (1, 1),
        Some(Value::Array(a)) if a.len() == 2 => (n(&a[0])?, n(&a[1])?),
        Some(v) => {
            let p = n(v)?;
            (p, p)
        }
    };
    Ok(Box::new(ZeroPadding1D::new(p)))
}

/// `MaxPooling1D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const MAX_POOLING1D: LayerEntry = LayerEntry {
    class_name: "MaxPooling1D",
    from_config: max_pooling1d_from_config,
};

/// `AveragePooling1D`'s Keras class name and config reader, listed in the
/// [registry](super::registry).
pub(crate) const AVERAGE_POOLING1D: LayerEntry = LayerEntry {
    class_name: "AveragePooling1D",
    from_config: average_pooling1d_from_config,
};

/// `ZeroPadding1D`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const ZERO_PADDING1D: LayerEntry = LayerEntry {
    class_name: "ZeroPadding1D",
    from_config: zero_padding1d_from_config,
};
