//! Prints what frostnet-formats reads from Keras files: the format, each
//! layer with its weight shapes, and the parameter total.
//!
//! ```text
//! cargo run -p frostnet-formats --example keras_dump -- model.keras [more files]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use frostnet_formats::{read_any, KerasFile};

fn main() -> ExitCode {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let start = Instant::now();
        let file = match read_any(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        let elapsed = start.elapsed();
        let kind = match &file {
            KerasFile::Archive(_) => "Keras 3 .keras archive",
            KerasFile::Weights(_) => "Keras 3 .weights.h5",
            KerasFile::Legacy(l) if l.is_full_model() => "legacy .h5 (full model)",
            KerasFile::Legacy(_) => "legacy .h5 (weights only)",
        };
        println!("{path}: {kind}");
        if let Some(class) = file.config().and_then(|c| c.get("class_name")) {
            println!("  model class: {class}");
        }
        let mut params = 0;
        let mut arrays = 0;
        for layer in file.layers() {
            let shapes: Vec<String> = layer
                .weights
                .iter()
                .map(|w| format!("{}{:?}", w.name, w.shape))
                .collect();
            params += layer.weights.iter().map(|w| w.data.len()).sum::<usize>();
            arrays += layer.weights.len();
            println!("  {}  {}", layer.path.join("/"), shapes.join(" "));
        }
        println!(
            "  {} layers, {arrays} weight arrays, {params} parameters, read in {elapsed:.2?}",
            file.layers().len()
        );
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
