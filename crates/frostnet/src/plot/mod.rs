//! Pictures: a model's graph ([`plot_model`], like `keras.utils.plot_model`) and training curves
//! ([`plot_history`]), as SVG written directly or PNG rasterised by `resvg`. Pure Rust: no
//! Graphviz, no Cairo, no Python.

mod history;
mod layout;
mod model_graph;
mod raster;
mod svg;

pub use history::{history_to_svg, plot_history, read_history_csv, HistoryPlotter};
pub use model_graph::{model_to_svg, plot_model, PlotOptions, RankDir, TrainStatus};
pub use raster::{svg_to_png, MAX_PIXELS};

#[cfg(test)]
mod tests;
