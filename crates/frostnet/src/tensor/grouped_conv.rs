//! Grouped convolutions (Keras's `groups`): the input channels and the filters are split into
//! `groups` consecutive blocks, and block `i` of filters sees only block `i` of input channels.
//! The kernel is Keras's `(kh, kw, in / groups, filters)`.
//!
//! Each group runs the ordinary convolution of [`super::conv`] on a copy of its channel slice
//! (and of its kernel columns), so the grouped case gets whatever speed `conv2d_forward` /
//! `conv2d_backward` have, at the price of copying the input once per pass. `groups == 1` calls
//! them directly, without copies.

use super::conv::{conv2d_backward, conv2d_forward, Conv2dGeometry};

/// Columns `[from, from + width)` of the rows of `row_len` values in `x`.
fn take_columns(x: &[f32], row_len: usize, from: usize, width: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / row_len.max(1) * width);
    for row in x.chunks_exact(row_len) {
        out.extend_from_slice(&row[from..from + width]);
    }
    out
}

/// Writes the rows of `width` values in `src` into columns `[from, from + width)` of `dst`'s
/// rows of `row_len` values.
fn put_columns(dst: &mut [f32], row_len: usize, from: usize, src: &[f32], width: usize) {
    for (d, s) in dst.chunks_exact_mut(row_len).zip(src.chunks_exact(width)) {
        d[from..from + width].copy_from_slice(s);
    }
}

/// Per-group sizes: `(in channels, filters)` of one group, and the geometry of one group's
/// convolution (the input's channel count replaced by the group's).
fn group_dims(g: &Conv2dGeometry, filters: usize, groups: usize) -> (usize, usize, Conv2dGeometry) {
    let cg = g.c / groups;
    let fg = filters / groups;
    (cg, fg, Conv2dGeometry { c: cg, ..*g })
}

/// Forward grouped convolution: `x` NHWC with `g.c` channels, `kernel` `(kh, kw, g.c / groups,
/// filters)`. Returns the NHWC output `(n, oh, ow, filters)` without bias or activation.
///
/// The caller checks that `groups` divides both `g.c` and `filters` (the layers do at build).
pub fn grouped_conv2d_forward(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    groups: usize,
) -> Vec<f32> {
    if groups <= 1 {
        return conv2d_forward(x, g, kernel, filters, &[]);
    }
    let (cg, fg, gg) = group_dims(g, filters, groups);
    let mut out = super::buffer::zeroed(g.n * g.oh * g.ow * filters);
    for i in 0..groups {
        let xs = take_columns(x, g.c, i * cg, cg);
        let ks = take_columns(kernel, filters, i * fg, fg);
        let ys = conv2d_forward(&xs, &gg, &ks, fg, &[]);
        put_columns(&mut out, filters, i * fg, &ys, fg);
    }
    out
}

/// Backward grouped convolution: writes the kernel gradient into `dkernel` (same layout as the
/// kernel; overwritten, not added) when given, and returns the input gradient when `need_dx`.
#[allow(clippy::too_many_arguments)]
pub fn grouped_conv2d_backward(
    x: &[f32],
    g: &Conv2dGeometry,
    kernel: &[f32],
    filters: usize,
    groups: usize,
    dy: &[f32],
    dkernel: Option<&mut [f32]>,
    need_dx: bool,
) -> Option<Vec<f32>> {
    if groups <= 1 {
        let mut dk = dkernel;
        if let Some(d) = dk.as_deref_mut() {
            d.fill(0.0);
        }
        return conv2d_backward(x, g, kernel, filters, dy, dk, need_dx);
    }
    let (cg, fg, gg) = group_dims(g, filters, groups);
    let mut dx = need_dx.then(|| super::buffer::zeroed(g.n * g.h * g.w * g.c));
    let mut dkernel = dkernel;
    for i in 0..groups {
        let xs = take_columns(x, g.c, i * cg, cg);
        let ks = take_columns(kernel, filters, i * fg, fg);
        let dys = take_columns(dy, filters, i * fg, fg);
        let mut dks = dkernel.as_ref().map(|_| vec![0.0f32; ks.len()]);
        let dxs = conv2d_backward(&xs, &gg, &ks, fg, &dys, dks.as_deref_mut(), need_dx);
        if let (Some(dk), Some(dks)) = (dkernel.as_deref_mut(), dks) {
            put_columns(dk, filters, i * fg, &dks, fg);
        }
        if let (Some(dx), Some(dxs)) = (dx.as_mut(), dxs) {
            put_columns(dx, g.c, i * cg, &dxs, cg);
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Padding;

    #[test]
    fn grouped_forward_matches_the_definition() {
        let mut rng = crate::tensor::random::rng(Some(3));
        for (groups, c, filters, padding) in [
            (2, 4, 6, Padding::Same),
            (3, 6, 3, Padding::Valid),
            (4, 8, 8, Padding::Same),
        ] {
            let g = Conv2dGeometry::new(&[2, 5, 4, c], (3, 2), (2, 1), padding).unwrap();
            let x = crate::tensor::random::uniform(&mut rng, 2 * 5 * 4 * c, -1.0, 1.0);
            let k = crate::tensor::random::uniform(&mut rng, 6 * (c / groups) * filters, -1.0, 1.0);
            let got = grouped_conv2d_forward(&x, &g, &k, filters, groups);
            let want = crate::tensor::conv::reference::grouped_forward(&x, &g, &k, filters, groups);
            let err = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0f64, f64::max);
            assert!(err < 1e-5, "groups {groups}: max abs error {err}");
        }
    }
}
