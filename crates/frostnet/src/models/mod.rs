//! Models: a DAG of layers (`model.rs`), built as a chain (`sequential.rs`) or a graph
//! (`functional.rs`), with Keras's summaries (`summary.rs`, `summary_classic.rs`) and
//! frostnet's `explain()` (`explain.rs`).

mod explain;
mod functional;
mod model;
mod sequential;
mod summary;
mod summary_classic;

pub use functional::{Functional, LayerHandle, SymbolicTensor};
pub use model::{Model, ModelKind};
pub use sequential::Sequential;
pub use summary::{SummaryOptions, SummaryStyle};
