//! Image resizing exactly as TensorFlow's `tf.image.resize` (what Keras's image loading calls):
//! half-pixel centres, no antialiasing, f32 arithmetic in TensorFlow's order, and Keras's
//! `smart_resize` crop for `crop_to_aspect_ratio`.

/// How pixels are interpolated when resizing (Keras's `interpolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// TensorFlow's `bilinear` (the default).
    #[default]
    Bilinear,
    /// TensorFlow's `nearest` (half-pixel centres, rounding down).
    Nearest,
}

impl std::str::FromStr for Interpolation {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "bilinear" => Ok(Interpolation::Bilinear),
            "nearest" => Ok(Interpolation::Nearest),
            other @ ("bicubic" | "area" | "lanczos3" | "lanczos5" | "gaussian"
            | "mitchellcubic") => Err(crate::Error::InvalidConfig(format!(
                "interpolation '{other}' is a Keras option frostnet does not implement yet \
                 (supported: bilinear, nearest)"
            ))),
            other => Err(crate::Error::InvalidConfig(format!(
                "interpolation must be one of bilinear, nearest; got '{other}'"
            ))),
        }
    }
}

/// An image of `u8` (decoded files) or `f32` (tensors, for the `Resizing` layer) pixels,
/// `(height, width, channels)` row-major.
pub(crate) struct Image<'a, T> {
    pub data: &'a [T],
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

/// A decoded 8-bit image.
pub(crate) type Image8<'a> = Image<'a, u8>;

/// Keras's `smart_resize` crop box `(top, left, height, width)`: the largest centred window of
/// the target aspect ratio (integer truncation as Keras does it).
pub(crate) fn crop_box(
    height: usize,
    width: usize,
    target: (usize, usize),
) -> (usize, usize, usize, usize) {
    let (th, tw) = target;
    let crop_h = ((width * th) as f64 / tw as f64) as usize;
    let crop_h = crop_h.min(height).max(1);
    let crop_w = ((height * tw) as f64 / th as f64) as usize;
    let crop_w = crop_w.min(width).max(1);
    let top = ((height - crop_h) as f64 / 2.0) as usize;
    let left = ((width - crop_w) as f64 / 2.0) as usize;
    (top, left, crop_h, crop_w)
}

/// TensorFlow's per-axis interpolation weights for bilinear resizing: lower index, upper index,
/// fraction (`compute_interpolation_weights` with the half-pixel scaler).
fn bilinear_axis(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let x = (i as f32 + 0.5) * scale - 0.5;
            let f = x.floor();
            let lower = (f.max(0.0) as usize).min(in_size - 1);
            let upper = (x.ceil().max(0.0) as usize).min(in_size - 1);
            (lower, upper, x - f)
        })
        .collect()
}

/// TensorFlow's nearest-neighbour source index with half-pixel centres.
fn nearest_axis(in_size: usize, out_size: usize) -> Vec<usize> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| (((i as f32 + 0.5) * scale).floor() as usize).min(in_size - 1))
        .collect()
}

/// Resizes the window `(top, left, h, w)` of `img` to `out_h x out_w`, writing f32 pixels
/// (0..255, not rescaled, as Keras yields them) into `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize_into<T: Copy + Into<f32>>(
    img: &Image<T>,
    window: (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
    interp: Interpolation,
    out: &mut [f32],
) {
    let (top, left, h, w) = window;
    debug_assert!(top + h <= img.height && left + w <= img.width && h > 0 && w > 0);
    let c = img.channels;
    let px = |y: usize, x: usize, ch: usize| -> f32 {
        img.data[((top + y) * img.width + left + x) * c + ch].into()
    };
    match interp {
        Interpolation::Nearest => {
            let ys = nearest_axis(h, out_h);
            let xs = nearest_axis(w, out_w);
            for (oy, &sy) in ys.iter().enumerate() {
                for (ox, &sx) in xs.iter().enumerate() {
                    for ch in 0..c {
                        out[(oy * out_w + ox) * c + ch] = px(sy, sx, ch);
                    }
                }
            }
        }
        Interpolation::Bilinear => {
            let ys = bilinear_axis(h, out_h);
            // Element offsets of the two source columns within a row, computed once per column.
            let xs: Vec<(usize, usize, f32)> = bilinear_axis(w, out_w)
                .into_iter()
                .map(|(x0, x1, xl)| ((left + x0) * c, (left + x1) * c, xl))
                .collect();
            let rows = |y: usize| {
                let at = (top + y) * img.width * c;
                &img.data[at..at + img.width * c]
            };
            // The channel count as a constant for the common cases, so the inner loop unrolls.
            for (&(y0, y1, yl), out_row) in ys.iter().zip(out.chunks_exact_mut(out_w * c)) {
                let (r0, r1) = (rows(y0), rows(y1));
                match c {
                    3 => bilinear_row::<T, 3>(r0, r1, &xs, yl, out_row),
                    1 => bilinear_row::<T, 1>(r0, r1, &xs, yl, out_row),
                    4 => bilinear_row::<T, 4>(r0, r1, &xs, yl, out_row),
                    _ => {
                        for (&(a, b, xl), o) in xs.iter().zip(out_row.chunks_exact_mut(c)) {
                            for (ch, o) in o.iter_mut().enumerate() {
                                *o = lerp2(r0, r1, a + ch, b + ch, xl, yl);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// TensorFlow's bilinear blend of one value: `top + (bottom - top) * yl`, each of `top` and
/// `bottom` being `left + (right - left) * xl` (this order, in f32).
#[inline(always)]
fn lerp2<T: Copy + Into<f32>>(r0: &[T], r1: &[T], a: usize, b: usize, xl: f32, yl: f32) -> f32 {
    let (tl, tr): (f32, f32) = (r0[a].into(), r0[b].into());
    let (bl, br): (f32, f32) = (r1[a].into(), r1[b].into());
    let t = tl + (tr - tl) * xl;
    let bo = bl + (br - bl) * xl;
    t + (bo - t) * yl
}

/// One output row of `C`-channel pixels from source rows `r0` (upper) and `r1` (lower).
#[inline(always)]
fn bilinear_row<T: Copy + Into<f32>, const C: usize>(
    r0: &[T],
    r1: &[T],
    xs: &[(usize, usize, f32)],
    yl: f32,
    out_row: &mut [f32],
) {
    for (&(a, b, xl), o) in xs.iter().zip(out_row.chunks_exact_mut(C)) {
        for (ch, v) in o.iter_mut().enumerate() {
            *v = lerp2(r0, r1, a + ch, b + ch, xl, yl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_upsampling_interpolates() {
        let data: Vec<u8> = (0..12).map(|v| v * 10).collect();
        let img = Image8 {
            data: &data,
            height: 2,
            width: 6,
            channels: 1,
        };
        let mut out = vec![0.0; 12];
        resize_into(&img, (0, 0, 2, 6), 2, 6, Interpolation::Bilinear, &mut out);
        assert_eq!(out, data.iter().map(|&v| v as f32).collect::<Vec<_>>());
        // 1x2 -> 1x4: sample points at -0.25, 0.25, 0.75, 1.25 (clamped): 0, 2.5, 7.5, 10.
        let img = Image8 {
            data: &[0, 10],
            height: 1,
            width: 2,
            channels: 1,
        };
        let mut out = vec![0.0; 4];
        resize_into(&img, (0, 0, 1, 2), 1, 4, Interpolation::Bilinear, &mut out);
        assert_eq!(out, vec![0.0, 2.5, 7.5, 10.0]);
    }

    #[test]
    fn crop_box_is_keras_smart_resize() {
        // 30 wide, 40 high to a square: 30x30 window starting at row 5.
        assert_eq!(crop_box(40, 30, (16, 16)), (5, 0, 30, 30));
        assert_eq!(crop_box(10, 30, (10, 15)), (0, 7, 10, 15));
    }
}
