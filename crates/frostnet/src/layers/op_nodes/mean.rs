//! The op node `Mean` of `keras.src.ops.numpy`: `keras.ops.mean(x, axis, keepdims)` on a symbolic
//! tensor, and the reduction layer [`Mean`] that `Sum` (`sum.rs`) shares. Unlike the arithmetic
//! ops, Keras stores a reduction's arguments in the config
//! (`{"name": "mean", "axis": [1, 2], "keepdims": true}`), with axes counted over the whole
//! tensor, batch axis included.

use super::{visit, NUMPY_MODULE};
use crate::error::{Error, Result};
use crate::layers::registry::LayerEntry;
use crate::layers::{take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::saving::keras_config::Opts;
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// The mean (or, for `Sum`, the sum) over some sample axes (never the batch axis: frostnet's
/// tensors keep it).
pub struct Mean {
    base: LayerBase,
    /// `Mean` or `Sum`.
    class: &'static str,
    /// As given (negative axes count from the end), batch axis = 0.
    axis: Vec<isize>,
    /// `axis` as the config wrote it (`-1` or `[1, 2]`), written back unchanged.
    axis_json: Value,
    keepdims: bool,
    /// The axes resolved against the input's rank, sorted, at build.
    reduced: Vec<usize>,
    /// The input dims of the kept forward pass.
    cache: Option<Vec<usize>>,
}

impl Mean {
    /// `keras.ops.mean(x, axis=axis, keepdims=keepdims)` with axes counted as Keras counts them
    /// (0 is the batch axis, which cannot be reduced here).
    pub fn new(axis: &[isize], keepdims: bool) -> Mean {
        Mean::reduction(MEAN.class_name, axis, keepdims)
    }
    /// `keras.ops.sum(x, axis=axis, keepdims=keepdims)`.
    pub fn sum(axis: &[isize], keepdims: bool) -> Mean {
        Mean::reduction(super::sum::SUM.class_name, axis, keepdims)
    }
    fn reduction(class: &'static str, axis: &[isize], keepdims: bool) -> Mean {
        Mean {
            base: LayerBase::new(class),
            class,
            axis: axis.to_vec(),
            axis_json: json!(axis),
            keepdims,
            reduced: Vec::new(),
            cache: None,
        }
    }
    /// Input dims -> (keepdims-shaped output dims, strides of the input onto that output).
    fn plan(&self, dims: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let kept: Vec<usize> = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| if self.reduced.contains(&i) { 1 } else { d })
            .collect();
        let mut st = vec![0usize; dims.len()];
        let mut acc = 1;
        for i in (0..dims.len()).rev() {
            st[i] = if self.reduced.contains(&i) { 0 } else { acc };
            acc *= kept[i];
        }
        (kept, st)
    }
    /// 1/n for a mean of n values, 1 for a sum.
    fn scale(&self, n: usize) -> f32 {
        if self.class == MEAN.class_name {
            1.0 / n.max(1) as f32
        } else {
            1.0
        }
    }
    fn out_dims(&self, kept: &[usize]) -> Vec<usize> {
        kept.iter()
            .enumerate()
            .filter(|(i, _)| self.keepdims || !self.reduced.contains(i))
            .map(|(_, &d)| d)
            .collect()
    }
}

impl Layer for Mean {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        self.class
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &crate::layers::expect_inputs(&self.base.name, inputs, 1)?[0];
        let rank = s.len() as isize + 1;
        let mut reduced = Vec::new();
        for &a in &self.axis {
            let r = if a < 0 { a + rank } else { a };
            if !(1..rank).contains(&r) {
                return Err(Error::InvalidConfig(format!(
                    "op node '{}' ({}): axis {a} is {} of a rank-{rank} input; frostnet \
                     averages over sample axes only",
                    self.base.name,
                    self.class,
                    if r == 0 { "the batch axis" } else { "outside" }
                )));
            }
            if reduced.contains(&(r as usize)) {
                return Err(Error::InvalidConfig(format!(
                    "op node '{}' ({}): axis {a} repeated",
                    self.base.name, self.class
                )));
            }
            reduced.push(r as usize);
        }
        if reduced.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "op node '{}' ({}): no axis, which would reduce over the batch",
                self.base.name, self.class
            )));
        }
        reduced.sort_unstable();
        self.reduced = reduced;
        self.base.built = true;
        Ok(s.iter()
            .enumerate()
            .filter_map(
                |(i, &d)| match (self.reduced.contains(&(i + 1)), self.keepdims) {
                    (false, _) => Some(d),
                    (true, true) => Some(Some(1)),
                    (true, false) => None,
                },
            )
            .collect())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = inputs[0];
        let dims = x.shape();
        if self.reduced.iter().any(|&a| a >= dims.len()) {
            return Err(Error::InvalidConfig(format!(
                "op node '{}' ({}) called on a rank-{} tensor",
                self.base.name,
                self.class,
                dims.len()
            )));
        }
        let (kept, st) = self.plan(dims);
        let n: usize = self.reduced.iter().map(|&a| dims[a]).product();
        let mut y = vec![0.0f32; kept.iter().product()];
        let ident = identity_strides(dims);
        let xd = x.data();
        visit(dims, &ident, &st, |i, _, o| y[o] += xd[i]);
        let scale = self.scale(n);
        y.iter_mut().for_each(|v| *v *= scale);
        self.cache = ctx.keep.then(|| dims.to_vec());
        Tensor::from_vec(&self.out_dims(&kept), y)
    }
    fn backward(&mut self, grad: &Tensor, need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dims = take_cache(&mut self.cache, &self.base.name)?;
        if !need_dx.first().copied().unwrap_or(false) {
            return Ok(vec![None]);
        }
        let (_, st) = self.plan(&dims);
        let n: usize = self.reduced.iter().map(|&a| dims[a]).product();
        let scale = self.scale(n);
        let g = grad.data();
        let mut dx = vec![0.0f32; dims.iter().product()];
        visit(&dims, &identity_strides(&dims), &st, |i, _, o| {
            dx[i] = g[o] * scale
        });
        Ok(vec![Some(Tensor::from_vec(&dims, dx)?)])
    }
    fn config(&self) -> Value {
        json!({"name": self.base.name, "axis": self.axis_json, "keepdims": self.keepdims})
    }
    fn clear_cache(&mut self) {
        self.cache = None;
    }
    fn keras_module(&self) -> Option<(&'static str, &'static str)> {
        Some((NUMPY_MODULE, self.class))
    }
    fn op_call_args(&self, tensors: Vec<Value>) -> Option<Value> {
        Some(Value::Array(tensors))
    }
    fn kept_for_backward(&self, _inputs: &[u64], _output: u64) -> u64 {
        0
    }
}

fn identity_strides(dims: &[usize]) -> Vec<usize> {
    let mut st = vec![0usize; dims.len()];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        st[i] = acc;
        acc *= dims[i];
    }
    st
}

/// Reads a reduction's config (`axis`, `keepdims`; `Max`'s `initial` and other options are not
/// read, so a class without its own entry never gets here).
pub(crate) fn reduction_from_config(class: &'static str, o: &Opts) -> Result<Box<dyn Layer>> {
    let axis = match o.get("axis") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_i64().map(|v| v as isize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| o.err(format!("'axis' = {a:?} is not a list of integers")))?,
        Some(v) => vec![v
            .as_i64()
            .ok_or_else(|| o.err(format!("'axis' = {v} is not an integer")))?
            as isize],
    };
    if axis.is_empty() {
        return Err(o.err("axis=None reduces over the batch axis, which frostnet does not do"));
    }
    if axis.iter().any(|a| a.unsigned_abs() > 64) {
        return Err(o.err(format!("'axis' = {axis:?} is out of range")));
    }
    let mut mean = Mean::reduction(class, &axis, o.boolean("keepdims", false)?);
    mean.axis_json = o.get("axis").cloned().unwrap_or(Value::Null);
    Ok(Box::new(mean))
}

/// The registry entry (in the op-node table).
pub(crate) const MEAN: LayerEntry = LayerEntry {
    class_name: "Mean",
    from_config: |o, _inputs| reduction_from_config(MEAN.class_name, o),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Mode;
    use crate::testing::gradient_check;

    #[test]
    fn averages_over_sample_axes_with_gradients() {
        let x =
            Tensor::from_vec(&[2, 2, 3], (0..12).map(|v| v as f32 * 0.5 - 2.0).collect()).unwrap();
        for (axis, keep, shape, want) in [
            (
                vec![1],
                true,
                vec![2, 1, 3],
                vec![-1.25, -0.75, -0.25, 1.75, 2.25, 2.75],
            ),
            (vec![-1], false, vec![2, 2], vec![-1.5, 0.0, 1.5, 3.0]),
            (vec![1, 2], false, vec![2], vec![-0.75, 2.25]),
        ] {
            let mut m = Mean::new(&axis, keep);
            m.build(&[vec![Some(2), Some(3)]]).unwrap();
            let y = m.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
            assert_eq!(y.shape(), shape.as_slice());
            assert_eq!(y.data(), want.as_slice());
            let r = gradient_check(&mut m, std::slice::from_ref(&x), Mode::Train, 1e-2).unwrap();
            assert!(r.checked > 0 && r.max_rel_error < 1e-3, "{r:?}");
        }
        // A sum of the same values: n times the mean.
        let mut s = Mean::sum(&[1, 2], true);
        s.build(&[vec![Some(2), Some(3)]]).unwrap();
        let y = s.forward(&[&x], &mut ForwardCtx::infer()).unwrap();
        assert_eq!(
            (y.shape(), y.data()),
            (&[2, 1, 1][..], &[-4.5f32, 13.5][..])
        );
        let r = gradient_check(&mut s, std::slice::from_ref(&x), Mode::Train, 1e-2).unwrap();
        assert!(r.checked > 0 && r.max_rel_error < 1e-3, "{r:?}");
        let mut m = Mean::new(&[0], true);
        assert!(m
            .build(&[vec![Some(2)]])
            .unwrap_err()
            .to_string()
            .contains("batch axis"));
    }
}
