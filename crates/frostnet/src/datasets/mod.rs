//! Data for training: small real data sets bundled in the crate (for examples, the tour and
//! tests), image folders streamed from disk ([`image_dataset_from_directory`]), and the
//! [`Dataset`] trait through which `fit`, `evaluate` and `predict` take streaming batches.

mod digits;
mod image_folder;
mod numpy_shuffle;
pub(crate) mod resize;

pub use digits::{load_digits, Digits};
pub use image_folder::{
    image_dataset_from_directory, image_datasets_from_directory, load_image, ColorMode,
    ImageDataset, ImageDatasetOptions, LabelMode, Labels, Subset, ALLOWLIST_FORMATS,
};
pub use resize::Interpolation;

use crate::error::{Error, Result};
use crate::tensor::{random, Tensor};

/// One batch: inputs, and targets when the data set has labels.
#[derive(Clone, Debug)]
pub struct Batch {
    pub x: Tensor,
    pub y: Option<Tensor>,
}

/// The batches of one pass over a data set, in order; an item is an error when producing that
/// batch failed (a file that does not decode), after which the pass ends.
pub type Batches<'a> = Box<dyn Iterator<Item = Result<Batch>> + 'a>;

/// A source of batches (Keras's `tf.data.Dataset` as `fit` sees it). Each call to
/// [`epoch`](Dataset::epoch) starts a new pass; a shuffling data set reshuffles per pass.
pub trait Dataset {
    /// Batches per pass when known in advance (for progress bars), like Keras's `cardinality`.
    fn num_batches(&self) -> Option<usize>;
    /// Starts one pass over the data.
    fn epoch(&mut self) -> Result<Batches<'_>>;
}

/// In-memory tensors cut into batches: the [`Dataset`] equivalent of passing `x` and `y` to
/// `fit`, so the same data can be given either way (the batches are the same, in the same
/// order, when `shuffle` is off).
pub struct TensorDataset {
    x: Tensor,
    y: Option<Tensor>,
    batch_size: usize,
    shuffle: bool,
    rng: rand::rngs::SmallRng,
}

impl TensorDataset {
    /// Batches of `batch_size` rows of `x` (and `y`), in order.
    pub fn new(x: Tensor, y: Option<Tensor>, batch_size: usize) -> Result<TensorDataset> {
        if batch_size == 0 {
            return Err(Error::InvalidConfig("batch_size must be at least 1".into()));
        }
        if x.shape().is_empty() || x.batch() == 0 {
            return Err(Error::Data("TensorDataset: x is empty".into()));
        }
        if let Some(y) = &y {
            if y.shape().is_empty() || y.batch() != x.batch() {
                return Err(Error::Data(format!(
                    "TensorDataset: x has {} samples but y has {}",
                    x.batch(),
                    y.shape().first().copied().unwrap_or(0)
                )));
            }
        }
        Ok(TensorDataset {
            x,
            y,
            batch_size,
            shuffle: false,
            rng: random::rng(Some(0)),
        })
    }

    /// Shuffles the rows before each pass, seeded.
    pub fn shuffled(mut self, seed: u64) -> TensorDataset {
        self.shuffle = true;
        self.rng = random::rng(Some(seed));
        self
    }
}

impl Dataset for TensorDataset {
    fn num_batches(&self) -> Option<usize> {
        Some(self.x.batch().div_ceil(self.batch_size))
    }

    fn epoch(&mut self) -> Result<Batches<'_>> {
        let n = self.x.batch();
        let order: Vec<usize> = if self.shuffle {
            random::permutation(&mut self.rng, n)
        } else {
            (0..n).collect()
        };
        let (x, y, bs) = (&self.x, &self.y, self.batch_size);
        let chunks: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        Ok(Box::new(chunks.into_iter().map(move |rows| {
            Ok(Batch {
                x: x.gather_batch(&rows),
                y: y.as_ref().map(|y| y.gather_batch(&rows)),
            })
        })))
    }
}
