//! Search algorithms.
//!
//! An algorithm has two halves:
//! * a **planner**, run inside the store's claim transaction, that looks at
//!   the stored history and decides which trial to create next (its number
//!   and a [`TrialPlan`]) or that the worker must wait / the study is done;
//! * a **source** of values, used while the closure runs, that picks the
//!   value of each hyperparameter the closure asks for.
//!
//! Random choices are drawn from generators keyed by `(seed, plan key,
//! hyperparameter name)`, never from a generator shared across trials, so a
//! trial's values do not depend on which worker runs it or in which order.
//!
//! What multi-worker runs guarantee, for the same seed:
//! * **grid** and **random**: the same set of trials (same numbers, same
//!   values) as one worker, hence the same best result for a deterministic
//!   objective;
//! * **Hyperband**: the same configurations in every slot of every bracket,
//!   and the same promotions (promotion waits until the whole previous rung of
//!   its bracket has finished), hence the same best result; only the trial
//!   numbers may be assigned in another order;
//! * **TPE**: a trial is sampled from the trials *completed when it was
//!   claimed*. With one worker that is every earlier trial and the study is
//!   reproducible; with several workers it depends on timing (as in Optuna),
//!   so only the first `n_startup_trials` (random) trials are reproducible.

pub mod grid;
pub mod hyperband;
pub mod random;
pub mod tpe;

use serde::{Deserialize, Serialize};

pub use self::grid::GridConfig;
pub use self::hyperband::HyperbandConfig;
pub use self::random::RandomConfig;
pub use self::tpe::TpeConfig;

use crate::error::{Error, Result};
use crate::store::{PlanDecision, TrialRecord};
use crate::study::Direction;

/// Which search algorithm a study uses, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Algorithm {
    Grid(GridConfig),
    Random(RandomConfig),
    Hyperband(HyperbandConfig),
    Tpe(TpeConfig),
}

impl Algorithm {
    /// Exhaustive grid search ([`GridConfig::default`]).
    pub fn grid() -> Self {
        Algorithm::Grid(GridConfig::default())
    }
    /// Random search with a seed.
    pub fn random(seed: u64) -> Self {
        Algorithm::Random(RandomConfig { seed })
    }
    /// Hyperband with `max_epochs` as the largest budget and reduction
    /// `factor` (3 is the usual value).
    pub fn hyperband(seed: u64, max_epochs: u64, factor: u64) -> Self {
        Algorithm::Hyperband(HyperbandConfig {
            seed,
            max_epochs,
            factor,
            iterations: 1,
        })
    }
    /// TPE with Optuna's default settings.
    pub fn tpe(seed: u64) -> Self {
        Algorithm::Tpe(TpeConfig {
            seed,
            ..TpeConfig::default()
        })
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Algorithm::Grid(g) if g.float_points < 2 => {
                Err(Error::Config("grid float_points must be >= 2".into()))
            }
            Algorithm::Hyperband(h) => h.validate(),
            Algorithm::Tpe(t) if t.n_ei_candidates == 0 => {
                Err(Error::Config("tpe n_ei_candidates must be >= 1".into()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the algorithm needs `max_trials` to know when to stop.
    pub(crate) fn needs_max_trials(&self) -> bool {
        matches!(self, Algorithm::Random(_) | Algorithm::Tpe(_))
    }

    /// Decides the next trial from the stored history.
    pub(crate) fn plan(
        &self,
        history: &[TrialRecord],
        max_trials: Option<u64>,
        direction: Direction,
    ) -> Result<PlanDecision> {
        let any_running = history.iter().any(|t| !t.state.is_finished());
        let finished_or_wait = if any_running {
            PlanDecision::Wait
        } else {
            PlanDecision::Done
        };
        if let Some(m) = max_trials {
            if history.len() as u64 >= m {
                return Ok(finished_or_wait);
            }
        }
        let number = next_number(history);
        let plan = match self {
            Algorithm::Random(_) => Some(TrialPlan::Random { key: number }),
            Algorithm::Tpe(_) => Some(TrialPlan::Tpe { key: number }),
            Algorithm::Grid(_) => match grid::next_prefix(history) {
                grid::Next::Prefix(prefix) => Some(TrialPlan::Grid { prefix }),
                grid::Next::Wait => return Ok(PlanDecision::Wait),
                grid::Next::Exhausted => None,
            },
            Algorithm::Hyperband(h) => match h.next_slot(history, direction) {
                hyperband::Next::Plan(p) => Some(p),
                hyperband::Next::Wait => return Ok(PlanDecision::Wait),
                hyperband::Next::Exhausted => None,
            },
        };
        Ok(match plan {
            Some(plan) => PlanDecision::New { number, plan },
            None => finished_or_wait,
        })
    }
}

/// The smallest trial number not in the history (numbers are dense; a gap
/// appears only if a claim was released).
fn next_number(history: &[TrialRecord]) -> u64 {
    let mut numbers: Vec<u64> = history.iter().map(|t| t.number).collect();
    numbers.sort_unstable();
    let mut n = 0;
    for x in numbers {
        if x == n {
            n += 1;
        } else if x > n {
            break;
        }
    }
    n
}

/// What the planner decided for one trial; stored with the trial so that a
/// trial taken over after its worker died runs the same plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrialPlan {
    /// Values drawn from `(seed, key, name)`.
    Random { key: u64 },
    /// Grid indices of the first decisions (the rest start at 0).
    Grid { prefix: Vec<u64> },
    /// TPE, keyed like random for its startup trials and candidate draws.
    Tpe { key: u64 },
    /// One slot of a Hyperband bracket.
    Hyperband {
        iteration: u32,
        bracket: u32,
        rung: u32,
        slot: u32,
        /// Epoch budget of this trial.
        epochs: u64,
        /// Key of the configuration; promoted trials keep their key and thus
        /// their values.
        config_key: u64,
        /// Number of the trial (previous rung) this one was promoted from.
        promoted_from: Option<u64>,
    },
}

impl TrialPlan {
    /// The epoch budget, for algorithms that set one.
    pub fn max_epochs(&self) -> Option<u64> {
        match self {
            TrialPlan::Hyperband { epochs, .. } => Some(*epochs),
            _ => None,
        }
    }
}
