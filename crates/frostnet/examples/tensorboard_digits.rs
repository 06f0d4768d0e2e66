//! Trains a small MLP on the bundled digits with the TensorBoard callback (per-epoch and
//! per-batch scalars, weight histograms) and a CsvLogger beside it, so
//! `tools/check_tensorboard.py` can read the event files with TensorBoard's own reader and compare
//! them with the CSV.
//!
//! `cargo run --example tensorboard_digits -- LOG_DIR`, then `tensorboard --logdir LOG_DIR`.

use frostnet::datasets::load_digits;
use frostnet::layers::{ActivationFn, Dense, Input};
use frostnet::training::{Adam, CsvLogger, FitOptions, Loss, Metric, TensorBoard, UpdateFreq};
use frostnet::Sequential;

fn main() -> frostnet::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "logs/digits".to_string());
    let digits = load_digits()?;
    let x = digits.flat();
    let mut model = Sequential::new();
    model.add(Input::new(&[64]))?;
    model.add(Dense::new(32).activation(ActivationFn::Relu))?;
    model.add(Dense::new(10).activation(ActivationFn::Softmax))?;
    model.compile(
        Adam::default(),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let csv = format!("{dir}/history.csv");
    std::fs::create_dir_all(&dir).map_err(|source| frostnet::Error::Io {
        path: dir.clone(),
        source,
    })?;
    model.fit(
        &x,
        &digits.labels,
        FitOptions {
            epochs: 5,
            batch_size: 64,
            validation_split: 0.2,
            seed: Some(0),
            verbose: 0,
            callbacks: vec![
                Box::new(
                    TensorBoard::new(&dir)
                        .update_freq(UpdateFreq::Batches(5))
                        .histogram_freq(1),
                ),
                Box::new(CsvLogger::new(&csv)),
            ],
            ..Default::default()
        },
    )?;
    println!("wrote {dir}/train, {dir}/validation and {csv}");
    Ok(())
}
