//! Keras-style progress output: a live bar per epoch on a terminal (indicatif), one plain line per
//! epoch otherwise (logs, CI), nothing with `verbose = 0`.

use super::callbacks::Logs;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub(crate) struct Progress {
    verbose: u8,
    bar: Option<ProgressBar>,
    steps: usize,
    start: Instant,
}

/// `loss: 0.1234 - accuracy: 0.9000`, loss first, as Keras orders them.
fn fmt_logs(logs: &Logs) -> String {
    let mut items: Vec<(&String, &f64)> = logs.iter().collect();
    items.sort_by_key(|(k, _)| (k.as_str() != "loss", k.starts_with("val_"), k.as_str()));
    items
        .iter()
        .map(|(k, v)| format!("{k}: {v:.4}"))
        .collect::<Vec<_>>()
        .join(" - ")
}

impl Progress {
    pub(crate) fn start_epoch(verbose: u8, epoch: usize, epochs: usize, steps: usize) -> Progress {
        if verbose > 0 {
            println!("Epoch {}/{}", epoch + 1, epochs);
        }
        let bar = (verbose == 1 && std::io::stdout().is_terminal()).then(|| {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template("{pos}/{len} {bar:20} {elapsed} (eta {eta}) {msg}")
                    .expect("static template")
                    .progress_chars("━━ "),
            );
            b
        });
        Progress {
            verbose,
            bar,
            steps,
            start: Instant::now(),
        }
    }

    pub(crate) fn batch_done(&self, logs: &Logs) {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(fmt_logs(logs));
        }
    }

    pub(crate) fn epoch_done(self, logs: &Logs) {
        let secs = self.start.elapsed().as_secs_f64();
        let per_step = secs * 1000.0 / self.steps.max(1) as f64;
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if self.verbose > 0 {
            println!(
                "{}/{} - {:.0}s - {:.0}ms/step - {}",
                self.steps,
                self.steps,
                secs,
                per_step,
                fmt_logs(logs)
            );
        }
    }
}
