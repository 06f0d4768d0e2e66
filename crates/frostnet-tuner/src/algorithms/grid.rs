//! Grid search over a define-by-run space, conditional values included.
//!
//! The space is a tree: each hyperparameter the closure asks for is a
//! decision, and later decisions may depend on earlier values (`units_3`
//! exists only if `num_layers > 3`). Grid search walks this tree depth-first,
//! like an odometer whose digits are the decisions of the previous trial:
//! trial `n+1` keeps the decisions of trial `n`, increments the last one that
//! can still be incremented, and lets every later decision start at its first
//! value. Each leaf (combination of *active* values) is visited exactly once,
//! with no duplicates from inactive conditional values.
//!
//! Consequence: trial `n+1` can be planned only once the decisions of trial
//! `n` are final. They are frozen at the trial's first `report` (or at its
//! end), so with several workers the next trial starts as soon as the
//! previous one built its model. Hyperparameters first asked for *after* the
//! first report are not enumerated: they keep their first value.
//!
//! Discrete ranges contribute all their values; a continuous float range
//! contributes [`GridConfig::float_points`] evenly spaced points (log-spaced
//! for `Scale::Log`), ends included.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::space::{ParamSource, ParamSpec, ParamValue, DEFAULT_FLOAT_GRID_POINTS};
use crate::store::{GridStep, TrialRecord};

/// Settings of grid search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridConfig {
    /// Points taken from a continuous float range (>= 2).
    pub float_points: usize,
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            float_points: DEFAULT_FLOAT_GRID_POINTS,
        }
    }
}

pub(crate) enum Next {
    Prefix(Vec<u64>),
    Wait,
    Exhausted,
}

/// The prefix of the next trial, from the last trial's final decisions.
pub(crate) fn next_prefix(history: &[TrialRecord]) -> Next {
    let Some(last) = history.iter().max_by_key(|t| t.number) else {
        return Next::Prefix(Vec::new());
    };
    let Some(path) = &last.grid_path else {
        return Next::Wait;
    };
    for j in (0..path.len()).rev() {
        if path[j].index + 1 < path[j].size {
            let mut prefix: Vec<u64> = path[..j].iter().map(|s| s.index).collect();
            prefix.push(path[j].index + 1);
            return Next::Prefix(prefix);
        }
    }
    Next::Exhausted
}

/// The decisions of a running grid trial, shared with its trial context
/// (which freezes and stores them).
#[derive(Debug, Default)]
pub(crate) struct GridTrack {
    pub(crate) path: Vec<GridStep>,
    pub(crate) frozen: bool,
}

pub(crate) struct GridSource {
    pub(crate) prefix: Vec<u64>,
    pub(crate) float_points: usize,
    pub(crate) track: Rc<RefCell<GridTrack>>,
}

impl ParamSource for GridSource {
    fn suggest(&mut self, name: &str, spec: &ParamSpec) -> ParamValue {
        let size = spec.grid_size(self.float_points);
        let mut track = self.track.borrow_mut();
        if track.frozen {
            return spec.grid_value(0, self.float_points);
        }
        let k = track.path.len();
        let index = match self.prefix.get(k) {
            Some(&i) if i < size => i,
            _ => 0,
        };
        track.path.push(GridStep {
            name: name.to_string(),
            index,
            size,
        });
        spec.grid_value(index, self.float_points)
    }
}
