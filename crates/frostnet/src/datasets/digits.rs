//! The UCI optical digits (8x8, 1,797 samples, CC BY 4.0), bundled; see `data/README.md`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::io::Read;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The digits as tensors.
pub struct Digits {
    /// `(1797, 8, 8, 1)` images scaled to `[0, 1]` (pixel / 16), NHWC.
    pub images: Tensor,
    /// `(1797,)` labels 0..9 as f32 class indices.
    pub labels: Tensor,
}

impl Digits {
    /// The images flattened to `(n, 64)`, for dense models.
    pub fn flat(&self) -> Tensor {
        self.images
            .clone()
            .reshape(&[self.images.batch(), 64])
            .expect("same element count")
    }

    /// Splits off the first `n` samples (the file's order is already mixed).
    pub fn split(&self, n: usize) -> ((Tensor, Tensor), (Tensor, Tensor)) {
        let total = self.images.batch();
        let n = n.min(total);
        (
            (self.images.slice_batch(0, n), self.labels.slice_batch(0, n)),
            (
                self.images.slice_batch(n, total),
                self.labels.slice_batch(n, total),
            ),
        )
    }
}

/// Decodes the bundled file.
pub fn load_digits() -> Result<Digits> {
    let bad = |m: String| Error::File {
        path: "bundled digits.csv.gz".into(),
        message: m,
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    let mut pixels = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (i, line) in text.lines().enumerate() {
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if vals.len() != 65 {
            return Err(bad(format!(
                "line {} has {} values, expected 65",
                i + 1,
                vals.len()
            )));
        }
        pixels.extend(vals[..64].iter().map(|v| v / 16.0));
        labels.push(vals[64]);
    }
    let n = labels.len();
    Ok(Digits {
        images: Tensor::from_vec(&[n, 8, 8, 1], pixels)?,
        labels: Tensor::from_vec(&[n], labels)?,
    })
}
