//! The outcome of a study: every trial in a printable table, and the best.
//!
//! The tuner does not keep models; the caller rebuilds (or reloads) the best
//! one from [`Results::best`]'s number and parameters, e.g. with
//! [`crate::Hyperparameters::fixed`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::space::ParamValue;
use crate::store::{TrialRecord, TrialState};
use crate::study::Direction;

/// One trial, as shown in the results.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSummary {
    /// Store-wide id of the trial.
    pub id: i64,
    /// Number within the study.
    pub number: u64,
    pub state: TrialState,
    /// Hyperparameters the trial asked for.
    pub params: BTreeMap<String, ParamValue>,
    /// Objective value (best reported), for complete and pruned trials.
    pub value: Option<f64>,
    /// Last value of every reported metric.
    pub metrics: BTreeMap<String, f64>,
    /// Wall time of the attempt that finished the trial.
    pub duration: Option<Duration>,
    /// Epoch budget given by the algorithm (Hyperband).
    pub max_epochs: Option<u64>,
    /// Times the trial was started (2 or more after a worker died or a retry).
    pub attempts: u32,
    /// Attempts that failed (the closure returned an error or panicked).
    pub failures: u32,
    /// Attempts lost with their worker (lease expired or process gone).
    pub preemptions: u32,
    pub error: Option<String>,
    pub worker: Option<String>,
}

/// All trials of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub study: String,
    pub objective: String,
    pub direction: Direction,
    /// By trial number.
    pub trials: Vec<TrialSummary>,
}

impl Results {
    pub(crate) fn new(
        study: &str,
        objective: &str,
        direction: Direction,
        records: &[TrialRecord],
    ) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let me = crate::store::Holder::this_process();
        let dead = |r: &TrialRecord| match (&r.host, r.pid) {
            (Some(h), Some(p)) => me.holder_is_dead(h, p),
            _ => false,
        };
        let trials = records
            .iter()
            .map(|r| TrialSummary {
                id: r.id,
                number: r.number,
                // A running trial given back after a failure waits for its
                // retry: shown as failed; one whose lease ran out while held,
                // or whose holder on this host is gone, was preempted.
                state: match r.state {
                    TrialState::Running if r.released && r.failures > 0 => TrialState::Failed,
                    TrialState::Running if !r.released && (r.lease_until < now || dead(r)) => {
                        TrialState::Preempted
                    }
                    s => s,
                },
                params: r
                    .params
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect(),
                value: r.value,
                metrics: r.metrics.clone(),
                duration: r
                    .duration()
                    .filter(|_| r.state.is_finished())
                    .map(Duration::from_secs_f64),
                max_epochs: r.plan.max_epochs(),
                attempts: r.attempts,
                failures: r.failures,
                preemptions: r.preemptions,
                error: r.error.clone(),
                worker: r.worker.clone(),
            })
            .collect();
        Results {
            study: study.into(),
            objective: objective.into(),
            direction,
            trials,
        }
    }

    /// The complete trial with the best objective (lowest number on ties).
    pub fn best(&self) -> Option<&TrialSummary> {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| t.value.map(|v| (v, t)))
            .min_by(|(a, ta), (b, tb)| {
                self.direction
                    .compare(*a, *b)
                    .then(ta.number.cmp(&tb.number))
            })
            .map(|(_, t)| t)
    }

    /// The best trial's hyperparameters.
    pub fn best_params(&self) -> Option<&BTreeMap<String, ParamValue>> {
        self.best().map(|t| &t.params)
    }

    /// How many trials are in `state`.
    pub fn count(&self, state: TrialState) -> usize {
        self.trials.iter().filter(|t| t.state == state).count()
    }
}

impl fmt::Display for Results {
    /// A text table: one row per trial, one column per hyperparameter
    /// (`-` where a conditional one was absent), the best trial marked `*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: BTreeSet<&str> = self
            .trials
            .iter()
            .flat_map(|t| t.params.keys().map(String::as_str))
            .collect();
        let best = self.best().map(|t| t.number);
        let mut header = vec![
            "#".to_string(),
            "state".to_string(),
            self.objective.clone(),
            "duration".to_string(),
        ];
        let with_epochs = self.trials.iter().any(|t| t.max_epochs.is_some());
        if with_epochs {
            header.push("epochs".into());
        }
        header.extend(names.iter().map(|n| n.to_string()));
        header.push("note".into());
        let mut rows = vec![header];
        for t in &self.trials {
            let mark = if Some(t.number) == best { "*" } else { "" };
            let mut row = vec![
                format!("{}{mark}", t.number),
                t.state.to_string(),
                t.value
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_else(|| "-".into()),
                t.duration
                    .map(|d| format!("{:.2}s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into()),
            ];
            if with_epochs {
                row.push(
                    t.max_epochs
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "-".into()),
                );
            }
            for n in &names {
                row.push(
                    t.params
                        .get(*n)
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                );
            }
            let mut note = String::new();
            if t.attempts > 1 {
                note.push_str(&format!("{} attempts", t.attempts));
            }
            let mut more = |s: String| {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(&s);
            };
            if t.preemptions > 0 {
                more(format!("preempted {}x", t.preemptions));
            }
            if t.failures > 0 && t.state != TrialState::Failed {
                more(format!("failed {}x before", t.failures));
            }
            if let Some(e) = &t.error {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                let short: String = e.chars().take(60).collect();
                note.push_str(&short);
            }
            row.push(note);
            rows.push(row);
        }
        let cols = rows[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        writeln!(
            f,
            "study `{}`: {} trials, objective {} ({:?})",
            self.study,
            self.trials.len(),
            self.objective,
            self.direction
        )?;
        for (i, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            writeln!(f, "{}", line.join("  ").trim_end())?;
            if i == 0 {
                let total = widths.iter().sum::<usize>() + 2 * (cols - 1);
                writeln!(f, "{}", "-".repeat(total))?;
            }
        }
        match self.best() {
            Some(b) => {
                let params: Vec<String> =
                    b.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(
                    f,
                    "best: trial {} {} = {:.6} with {}",
                    b.number,
                    self.objective,
                    b.value.unwrap_or(f64::NAN),
                    params.join(", ")
                )
            }
            None => write!(f, "best: none (no trial completed)"),
        }
    }
}
