//! One error type for the whole library.
//!
//! Every variant names *what* went wrong and *where* (the layer, the weight, the file), because a
//! shape error deep inside a 300-layer model is useless without the layer's name.

use crate::Shape;

/// The library's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer was given inputs whose shape it cannot accept.
    #[error("layer '{layer}': incompatible input shape {got}, expected {expected}")]
    IncompatibleShape {
        layer: String,
        expected: String,
        got: String,
    },
    /// Two shapes that must agree do not (merging layers, weights, data).
    #[error("{context}: shape {left} does not match shape {right}")]
    ShapeMismatch {
        context: String,
        left: String,
        right: String,
    },
    /// `set_weights` got the wrong number of arrays.
    #[error("{target}: expected {expected} weight arrays, got {got}")]
    WeightCount {
        target: String,
        expected: usize,
        got: usize,
    },
    /// A weight got a value of the wrong shape.
    #[error("weight '{weight}' has shape {expected}, got a value of shape {got}")]
    WeightShape {
        weight: String,
        expected: String,
        got: String,
    },
    /// `get_layer` or a similar lookup found nothing.
    #[error("no layer named '{name}' in model '{model}'")]
    UnknownLayer { model: String, name: String },
    /// A layer index past the end.
    #[error("layer index {index} out of range: model '{model}' has {len} layers")]
    LayerIndex {
        model: String,
        index: usize,
        len: usize,
    },
    /// Two layers of one model share a name.
    #[error("model '{model}' already has a layer named '{name}'; layer names must be unique")]
    DuplicateLayerName { model: String, name: String },
    /// A configuration value is out of range or contradictory.
    #[error("{0}")]
    InvalidConfig(String),
    /// The model graph is malformed (cycle, disconnected output, unknown node).
    #[error("invalid model graph: {0}")]
    Graph(String),
    /// Training data is unusable.
    #[error("invalid data: {0}")]
    Data(String),
    /// An operation needs something not yet done (compile before fit, build before use).
    #[error("{0}")]
    State(String),
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// An I/O error with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a shape the way Keras prints it: `(None, 28, 28, 1)`.
pub(crate) fn fmt_batch_shape(shape: &Shape) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(shape.iter().map(|d| match d {
        Some(n) => n.to_string(),
        None => "None".to_string(),
    }));
    if parts.len() == 1 {
        "(None,)".to_string()
    } else {
        join_dims(parts)
    }
}

/// Formats a concrete tensor shape: `(8, 28, 28, 1)`.
pub(crate) fn fmt_dims(dims: &[usize]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => join_dims(dims.iter().map(|d| d.to_string()).collect()),
    }
}

/// Most axes a shape shows in a message; a longer one (only a hostile file has one) shows its
/// first and last axes and how many are left out, so the message stays one short line.
const MAX_SHOWN_AXES: usize = 8;

fn join_dims(parts: Vec<String>) -> String {
    if parts.len() <= MAX_SHOWN_AXES {
        return format!("({})", parts.join(", "));
    }
    format!(
        "({}, ... {} more axes ..., {})",
        parts[..3].join(", "),
        parts.len() - 5,
        parts[parts.len() - 2..].join(", ")
    )
}

/// `text` cut to at most `max` characters by replacing its middle with ` ... `: what a
/// message is about comes first and what is wrong with it last, so both ends are kept.
/// Newlines become `; ` so the result is one line.
pub(crate) fn elide(text: &str, max: usize) -> String {
    let one_line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let chars: Vec<char> = one_line.chars().collect();
    if chars.len() <= max {
        return one_line;
    }
    let keep = max.saturating_sub(5) / 2;
    let head: String = chars[..keep].iter().collect();
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("{head} ... {tail}")
}

/// The longest message a file error carries: with the file name in front, the line stays
/// under ~200 characters for files with ordinary paths.
pub(crate) const MAX_MESSAGE_CHARS: usize = 160;
