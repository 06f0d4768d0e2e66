//! Keras-style progress output: a live bar per epoch on a terminal (indicatif), one plain line per
//! epoch otherwise (logs, CI), nothing with `verbose = 0`.

use super::callbacks::Logs;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub(crate) struct Progress {
    verbose: u8,
    bar: Option<ProgressBar>,
    /// Steps per epoch when the data's length is known (tensors, image folders).
    steps: Option<usize>,
    /// Steps done so far this epoch.
    done: std::cell::Cell<usize>,
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
    /// Starts an epoch's output; `steps` is `None` for a dataset of unknown length (the bar then
    /// counts without a total).
    pub(crate) fn start_epoch(
        verbose: u8,
        epoch: usize,
        epochs: usize,
        steps: Option<usize>,
    ) -> Progress {
        if verbose > 0 {
            println!("Epoch {}/{}", epoch + 1, epochs);
        }
        let bar = (verbose == 1 && std::io::stdout().is_terminal()).then(|| match steps {
            Some(n) => {
                let b = ProgressBar::new(n as u64);
                b.set_style(
                    ProgressStyle::with_template(
                        "{pos}/{len} {bar:20} {elapsed} (eta {eta}) {msg}",
                    )
                    .expect("static template")
                    .progress_chars("━━ "),
                );
                b
            }
            None => {
                let b = ProgressBar::no_length();
                b.set_style(
                    ProgressStyle::with_template("{pos}/Unknown {elapsed} {msg}")
                        .expect("static template"),
                );
                b
            }
        });
        Progress {
            verbose,
            bar,
            steps,
            done: std::cell::Cell::new(0),
            start: Instant::now(),
        }
    }

    pub(crate) fn batch_done(&self, logs: &Logs) {
        self.done.set(self.done.get() + 1);
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(fmt_logs(logs));
        }
    }

    pub(crate) fn epoch_done(self, logs: &Logs) {
        let secs = self.start.elapsed().as_secs_f64();
        let done = self.done.get();
        let per_step = secs * 1000.0 / done.max(1) as f64;
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if self.verbose > 0 {
            println!(
                "{}/{} - {:.0}s - {:.0}ms/step - {}",
                done,
                self.steps.unwrap_or(done),
                secs,
                per_step,
                fmt_logs(logs)
            );
        }
    }
}
