//! # frostnet
//!
//! Deep learning in Rust built around Keras's central idea: a model's weights are of two kinds.
//! *Trainable* weights are updated by backpropagation; *non-trainable* ones never are — the weights
//! of frozen layers, BatchNormalization's moving statistics, a fixed filter. frostnet keeps that
//! split exact to Keras 3 (counts, summaries, semantics) and makes it cheap: a frozen prefix of a
//! network costs a forward pass and nothing else.
//!
//! Compile, fit, evaluate, save and load, as in Keras (the project's `README.md` has the rest:
//! the CLI, the Keras file formats, custom layers):
//!
//! ```
//! use frostnet::prelude::*;
//! // y = 2x - 1 on 64 points of [-1, 1).
//! let x = Tensor::from_vec(&[64, 1], (0..64).map(|i| i as f32 / 32.0 - 1.0).collect())?;
//! let y = Tensor::from_vec(&[64, 1], x.data().iter().map(|v| 2.0 * v - 1.0).collect())?;
//! let mut model = Sequential::new();
//! model.add(Input::new(&[1]))?;
//! model.add(Dense::new(1).named("line"))?;
//! model.compile(Sgd::new(0.2), Loss::MeanSquaredError, &[Metric::MeanAbsoluteError]);
//! let opts = FitOptions { epochs: 100, verbose: 0, ..FitOptions::default() };
//! model.fit(&x, &y, opts)?;
//! let logs = model.evaluate(&x, &y, 32)?;
//! assert!(logs["loss"] < 1e-4, "{logs:?}");
//! let path = std::env::temp_dir().join("frostnet_front_page.keras");
//! let path = path.to_str().unwrap();
//! save_keras(&model, path)?; // a file real Keras 3 loads
//! let mut again = load_model(path)?;
//! assert_eq!(again.predict(&x, 32)?, model.predict(&x, 32)?);
//! # std::fs::remove_file(path).ok();
//! # Ok::<(), frostnet::Error>(())
//! ```
//!
//! The weight split, counted as Keras counts it:
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
//! `datasets/` (bundled data), `io/` (NumPy arrays), `ops/` (differentiable ops for custom layers),
//! `testing/` (the gradient checker), `prelude` (one import for scripts).

pub mod applications;
pub mod constraints;
pub mod datasets;
pub mod error;
pub mod io;
pub mod layers;
pub mod models;
pub mod ops;
pub mod plot;
pub mod prelude;
pub mod regularizers;
pub mod saving;
pub mod seed;
pub mod tensor;
pub mod testing;
pub mod training;

pub use error::{Error, Result};
pub use layers::{Layer, Mode, Shape};
pub use models::{Functional, Model, Sequential, SummaryOptions, SummaryStyle};
/// Re-exported: configs (`Layer::config`, `model_config`) are `serde_json` values.
pub use serde_json;
pub use tensor::Tensor;
