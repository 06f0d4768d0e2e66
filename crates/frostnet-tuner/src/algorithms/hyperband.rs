//! Hyperband (Li et al., 2018): successive halving over several brackets,
//! with training epochs as the budget.
//!
//! With `R = max_epochs` and reduction factor `η`, `s_max = ⌊log_η R⌋`.
//! Bracket `s` (from `s_max` down to 0) starts `n = ⌈(s_max+1)/(s+1)·η^s⌉`
//! random configurations at `R·η^-s` epochs; after each rung the best `1/η`
//! are trained again with `η` times more epochs, until `R`. The trial reads
//! its budget from `trial.max_epochs()`.
//!
//! Every slot of the schedule is one trial. A promoted trial keeps the
//! configuration key of its source and therefore gets the same values; it
//! trains from scratch unless the closure reloads a checkpoint of the trial
//! it was promoted from (`trial.promoted_from()`).
//!
//! Promotion into rung `i+1` waits until every trial of rung `i` of that
//! bracket has finished, so the promoted set does not depend on timing;
//! brackets are independent and run in parallel on several workers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::TrialPlan;
use crate::error::{Error, Result};
use crate::store::{TrialRecord, TrialState};
use crate::study::Direction;

/// Settings of Hyperband.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HyperbandConfig {
    /// Seed of the random configurations.
    pub seed: u64,
    /// Largest epoch budget of one trial (`R`).
    pub max_epochs: u64,
    /// Reduction factor (`η` >= 2).
    pub factor: u64,
    /// How many times the whole set of brackets is run.
    pub iterations: u32,
}

/// One rung of one bracket in the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    pub iteration: u32,
    pub bracket: u32,
    pub rung: u32,
    /// Trials in the rung.
    pub size: u32,
    /// Epochs of each trial.
    pub epochs: u64,
}

pub(crate) enum Next {
    Plan(TrialPlan),
    Wait,
    Exhausted,
}

impl HyperbandConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_epochs == 0 {
            return Err(Error::Config("hyperband max_epochs must be >= 1".into()));
        }
        if self.factor < 2 {
            return Err(Error::Config("hyperband factor must be >= 2".into()));
        }
        if self.iterations == 0 {
            return Err(Error::Config("hyperband iterations must be >= 1".into()));
        }
        Ok(())
    }

    fn s_max(&self) -> u32 {
        let mut s = 0;
        let mut p = self.factor;
        while p <= self.max_epochs {
            s += 1;
            p = p.saturating_mul(self.factor);
        }
        s
    }

    /// The whole schedule, in planning order.
    pub fn schedule(&self) -> Vec<Rung> {
        let s_max = self.s_max();
        let eta = self.factor as f64;
        let r_max = self.max_epochs as f64;
        let mut out = Vec::new();
        for iteration in 0..self.iterations {
            for (bracket, s) in (0..=s_max).rev().enumerate() {
                let n0 = ((s_max + 1) as f64 / (s + 1) as f64 * eta.powi(s as i32)).ceil();
                let r0 = r_max / eta.powi(s as i32);
                for i in 0..=s {
                    let size = ((n0 / eta.powi(i as i32)).floor() as u32).max(1);
                    let epochs = if i == s {
                        self.max_epochs
                    } else {
                        ((r0 * eta.powi(i as i32)).round() as u64).clamp(1, self.max_epochs)
                    };
                    out.push(Rung {
                        iteration,
                        bracket: bracket as u32,
                        rung: i,
                        size,
                        epochs,
                    });
                }
            }
        }
        out
    }

    /// Total number of trials of the schedule.
    pub fn total_trials(&self) -> u64 {
        self.schedule().iter().map(|r| u64::from(r.size)).sum()
    }

    pub(crate) fn next_slot(&self, history: &[TrialRecord], direction: Direction) -> Next {
        // (iteration, bracket, rung) -> slot -> trial
        let mut by_rung: BTreeMap<(u32, u32, u32), BTreeMap<u32, &TrialRecord>> = BTreeMap::new();
        for t in history {
            if let TrialPlan::Hyperband {
                iteration,
                bracket,
                rung,
                slot,
                ..
            } = t.plan
            {
                by_rung
                    .entry((iteration, bracket, rung))
                    .or_default()
                    .insert(slot, t);
            }
        }
        let empty = BTreeMap::new();
        let schedule = self.schedule();
        let mut prev: Option<&Rung> = None;
        for r in &schedule {
            let same_bracket =
                prev.filter(|p| p.iteration == r.iteration && p.bracket == r.bracket);
            let created = by_rung
                .get(&(r.iteration, r.bracket, r.rung))
                .unwrap_or(&empty);
            let previous_done = match same_bracket {
                None => true,
                Some(p) => {
                    let pt = by_rung
                        .get(&(p.iteration, p.bracket, p.rung))
                        .unwrap_or(&empty);
                    pt.len() as u32 == p.size && pt.values().all(|t| t.state.is_finished())
                }
            };
            if previous_done {
                if let Some(slot) = (0..r.size).find(|s| !created.contains_key(s)) {
                    let (config_key, promoted_from) = match same_bracket {
                        None => (
                            (u64::from(r.iteration) << 40)
                                | (u64::from(r.bracket) << 20)
                                | u64::from(slot),
                            None,
                        ),
                        Some(p) => {
                            let pt = by_rung
                                .get(&(p.iteration, p.bracket, p.rung))
                                .unwrap_or(&empty);
                            let ranked = rank(pt, direction);
                            match ranked.get(slot as usize) {
                                Some(t) => match t.plan {
                                    TrialPlan::Hyperband { config_key, .. } => {
                                        (config_key, Some(t.number))
                                    }
                                    _ => continue,
                                },
                                None => continue,
                            }
                        }
                    };
                    return Next::Plan(TrialPlan::Hyperband {
                        iteration: r.iteration,
                        bracket: r.bracket,
                        rung: r.rung,
                        slot,
                        epochs: r.epochs,
                        config_key,
                        promoted_from,
                    });
                }
            }
            prev = Some(r);
        }
        if history.iter().any(|t| !t.state.is_finished()) {
            Next::Wait
        } else {
            Next::Exhausted
        }
    }
}

/// Trials of a rung, best first: completed trials by objective, then the
/// rest; ties by slot.
fn rank<'a>(rung: &BTreeMap<u32, &'a TrialRecord>, direction: Direction) -> Vec<&'a TrialRecord> {
    let mut v: Vec<(u32, &TrialRecord)> = rung.iter().map(|(s, t)| (*s, *t)).collect();
    v.sort_by(|(sa, a), (sb, b)| {
        let ka = (a.state == TrialState::Complete)
            .then_some(a.value)
            .flatten();
        let kb = (b.state == TrialState::Complete)
            .then_some(b.value)
            .flatten();
        match (ka, kb) {
            (Some(x), Some(y)) => direction.compare(x, y).then(sa.cmp(sb)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => sa.cmp(sb),
        }
    });
    v.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_the_paper() {
        let h = HyperbandConfig {
            seed: 0,
            max_epochs: 9,
            factor: 3,
            iterations: 1,
        };
        let s: Vec<(u32, u32, u32, u64)> = h
            .schedule()
            .iter()
            .map(|r| (r.bracket, r.rung, r.size, r.epochs))
            .collect();
        assert_eq!(
            s,
            vec![
                (0, 0, 9, 1),
                (0, 1, 3, 3),
                (0, 2, 1, 9),
                (1, 0, 5, 3),
                (1, 1, 1, 9),
                (2, 0, 3, 9)
            ]
        );
        assert_eq!(h.total_trials(), 22);
    }
}
