//! Random search: every value uniform in its range (log-uniform for
//! `Scale::Log`), drawn from a generator keyed by `(seed, trial, name)`.
//!
//! Keying by name rather than drawing in call order keeps values stable when
//! conditional hyperparameters appear in some trials only, and makes trial
//! `n` identical whichever worker runs it.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::space::{ParamSource, ParamSpec, ParamValue};

/// Settings of random search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomConfig {
    pub seed: u64,
}

/// Draws a value uniformly from `spec`.
pub(crate) fn sample_uniform(spec: &ParamSpec, rng: &mut Rng) -> ParamValue {
    match spec.discrete_size() {
        Some(n) => spec.discrete_value(rng.below(n)),
        None => ParamValue::Float(spec.scale_unit(rng.uniform())),
    }
}

/// Values of one random trial.
pub(crate) struct RandomSource {
    pub(crate) seed: u64,
    pub(crate) key: u64,
}

impl ParamSource for RandomSource {
    fn suggest(&mut self, name: &str, spec: &ParamSpec) -> ParamValue {
        let mut rng = Rng::for_decision(self.seed, self.key, name, 0);
        sample_uniform(spec, &mut rng)
    }
}
