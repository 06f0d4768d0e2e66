//! Early stopping of unpromising trials.
//!
//! The median rule (Optuna's `MedianPruner`, Google Vizier's median stopping
//! rule): a trial whose objective at step `s` is worse than the median of the
//! completed trials' values at the same step is unlikely to end up best, so
//! its remaining epochs are better spent on other trials. Warm-up protects
//! the first trials (nothing to compare with yet) and the first steps (early
//! epochs are noisy).
//!
//! The completed trials are those stored when the trial was claimed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{TrialRecord, TrialState};
use crate::study::Direction;

/// Which pruner a study uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pruner {
    /// Never prune.
    None,
    /// Prune at step `s` if the value is worse than the median of completed
    /// trials at `s`, once `n_startup_trials` trials completed and from step
    /// `n_warmup_steps` on.
    Median {
        n_startup_trials: usize,
        n_warmup_steps: u64,
    },
}

impl Pruner {
    /// The median pruner.
    pub fn median(n_startup_trials: usize, n_warmup_steps: u64) -> Self {
        Pruner::Median {
            n_startup_trials,
            n_warmup_steps,
        }
    }
}

/// What a pruner needs from the history, taken at claim time.
pub(crate) struct PrunerState {
    pruner: Pruner,
    direction: Direction,
    completed: Vec<BTreeMap<u64, f64>>,
}

impl PrunerState {
    pub(crate) fn new(pruner: Pruner, direction: Direction, history: &[TrialRecord]) -> Self {
        let completed = history
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .map(|t| t.intermediate.clone())
            .collect();
        PrunerState {
            pruner,
            direction,
            completed,
        }
    }

    /// Whether a trial reporting `value` at `step` should stop.
    pub(crate) fn should_prune(&self, step: u64, value: f64) -> bool {
        let Pruner::Median {
            n_startup_trials,
            n_warmup_steps,
        } = self.pruner
        else {
            return false;
        };
        if self.completed.len() < n_startup_trials.max(1) || step < n_warmup_steps {
            return false;
        }
        let mut at: Vec<f64> = self
            .completed
            .iter()
            .filter_map(|m| m.get(&step).copied())
            .collect();
        if at.is_empty() {
            return false;
        }
        at.sort_by(f64::total_cmp);
        let n = at.len();
        let median = if n % 2 == 1 {
            at[n / 2]
        } else {
            0.5 * (at[n / 2 - 1] + at[n / 2])
        };
        // NaN is never better than anything.
        !value.is_finite() || self.direction.compare(value, median) == std::cmp::Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_rule() {
        let mut s = PrunerState {
            pruner: Pruner::median(2, 1),
            direction: Direction::Minimize,
            completed: vec![],
        };
        for v in [1.0, 2.0, 3.0] {
            let mut m = BTreeMap::new();
            m.insert(1, v);
            m.insert(0, v);
            s.completed.push(m);
        }
        assert!(!s.should_prune(0, 100.0), "warm-up step");
        assert!(s.should_prune(1, 2.5));
        assert!(!s.should_prune(1, 1.5));
        assert!(!s.should_prune(7, 100.0), "no data at step 7");
        s.direction = Direction::Maximize;
        assert!(s.should_prune(1, 1.5));
    }
}
