//! Models: a DAG of layers (`model.rs`), built as a chain (`sequential.rs`) or a graph
//! (`functional.rs`), with Keras's summaries (`summary.rs`, `summary_classic.rs`) and
//! frostnet's `explain()` (`explain.rs`) and summary extras (mult-adds, memory:
//! `summary_extras.rs`).

mod explain;
mod functional;
pub(crate) mod masking;
mod model;
mod parallel;
mod sequential;
mod summary;
mod summary_classic;
mod summary_extras;

pub use functional::{Functional, LayerHandle, SymbolicTensor};
pub use model::{Model, ModelKind};
pub use sequential::Sequential;
pub use summary::{terminal_width, SummaryOptions, SummaryStyle};
pub use summary_extras::MemoryEstimate;
