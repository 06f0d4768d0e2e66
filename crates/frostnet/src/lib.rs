//! # frostnet
//!
//! Deep learning in Rust built around Keras's central idea: a model's weights are of two kinds.
//! *Trainable* weights are updated by backpropagation; *non-trainable* ones never are — the weights
//! of frozen layers, BatchNormalization's moving statistics, a fixed filter. frostnet keeps that
//! split exact to Keras 3 (counts, summaries, semantics) and makes it cheap: a frozen prefix of a
//! network costs a forward pass and nothing else.
//!
//! ```
//! use frostnet::{Sequential, layers::{Input, Dense, BatchNormalization, Layer, LayerOptions}};
//! let mut model = Sequential::new();
//! model.add(Input::new(&[100]))?;
//! model.add(Dense::new(10))?;
//! model.add(BatchNormalization::new())?;
//! let trainable: usize = model.trainable_weights().iter().map(|w| w.len()).sum();
//! let frozen: usize = model.non_trainable_weights().iter().map(|w| w.len()).sum();
//! assert_eq!((trainable, frozen), (1030, 20)); // BN's moving mean and variance never train
//! # Ok::<(), frostnet::Error>(())
//! ```
//!
//! Layout: `tensor/` (the NHWC engine on `gemm`), `layers/`, `models/`, `training/` (fit and
//! friends), `saving/` (Keras files and the native format), `applications/` (InceptionV3, ...),
//! `datasets/` (bundled data), `io/` (NumPy arrays), `testing/` (the gradient checker).

pub mod applications;
pub mod datasets;
pub mod error;
pub mod io;
pub mod layers;
pub mod models;
pub mod ops;
pub mod saving;
pub mod seed;
pub mod tensor;
pub mod testing;
pub mod training;

pub use error::{Error, Result};
pub use layers::{Layer, Mode, Shape};
pub use models::{Functional, Model, Sequential, SummaryOptions, SummaryStyle};
pub use tensor::Tensor;
