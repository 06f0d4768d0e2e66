//! Hyperparameter importance by PED-ANOVA (S. Watanabe, A. Bansal, F. Hutter, "PED-ANOVA:
//! Efficiently Quantifying Hyperparameter Importance in Arbitrary Subspaces", IJCAI 2023).
//!
//! fANOVA needs a fitted surrogate (a random forest) and integrals over its partitions; PED-ANOVA
//! has a closed form that needs only one-dimensional density estimates, so it stays in the
//! milliseconds on 10,000 trials. Its definition (the paper's Theorem 1), for the top-γ set
//! `D_γ` of the observations (the best `γ` fraction) inside a region `D_γ'` (here all the trials,
//! `γ' = 1`):
//!
//! ```text
//! v_d = (γ/γ')² · E_{x_d ~ p_d(·|D_γ')} [ (p_d(x_d|D_γ) / p_d(x_d|D_γ') − 1)² ]
//! ```
//!
//! the Pearson divergence between the marginal density of parameter `d` among the best trials and
//! among all trials: a parameter whose best values are spread like all its values does not
//! matter; one whose best values concentrate does. The importance shown is `v_d / Σ v`.
//!
//! The densities are Parzen estimators on a grid, as in the paper and Optuna's
//! `PedAnovaImportanceEvaluator`: a continuous range is cut into `grid_steps` points (evenly in
//! log space for a log-scaled one), a small discrete range (ints, stepped floats) keeps its
//! values, each observation is a discretised Gaussian with Scott's bandwidth (at least half a
//! grid step), choices and booleans are counted; a uniform prior with weight `prior_weight`
//! keeps the ratio finite where no trial landed.
//!
//! A conditional parameter (asked only in some trials) is measured on the trials where it
//! exists: its importance in that subspace, which is what PED-ANOVA's "arbitrary subspaces" are
//! for. How stable the numbers are is shown by recomputing them on bootstrap resamples of the
//! trials, one per seed: the mean ± standard deviation over the seeds.

use std::collections::BTreeMap;

use crate::rng::Rng;
use crate::space::{ParamSpec, ParamValue, Scale};
use crate::store::{TrialRecord, TrialState};
use crate::study::Direction;

/// Settings of [`ped_anova`].
#[derive(Debug, Clone, PartialEq)]
pub struct PedAnovaOptions {
    /// `γ`: the fraction of trials counted as the best (Optuna's default 0.1).
    pub target_quantile: f64,
    /// Grid points of a continuous range (Optuna's default 50).
    pub grid_steps: usize,
    /// Weight of the uniform prior of each density, in observations.
    pub prior_weight: f64,
    /// Bootstrap resamples (seeds `0..seeds`) for the stability estimate.
    pub seeds: u64,
}

impl Default for PedAnovaOptions {
    fn default() -> Self {
        PedAnovaOptions {
            target_quantile: 0.1,
            grid_steps: 50,
            prior_weight: 1.0,
            seeds: 5,
        }
    }
}

/// The importance of one hyperparameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    pub name: String,
    /// Share of the total (all parameters sum to 1, or all are 0), on all complete trials.
    pub importance: f64,
    /// Mean of the share over the bootstrap seeds.
    pub mean: f64,
    /// Sample standard deviation of the share over the bootstrap seeds (0 with one seed).
    pub sd: f64,
    /// Complete trials in which the parameter exists.
    pub trials: usize,
}

/// Where one parameter's values fall on its grid.
#[derive(Debug, Clone)]
struct Domain {
    size: usize,
    categorical: bool,
    spec: ParamSpec,
    grid_steps: usize,
}

impl Domain {
    fn new(spec: &ParamSpec, grid_steps: usize) -> Domain {
        let grid_steps = grid_steps.max(2);
        let (size, categorical) = match spec {
            ParamSpec::Choice { options } => (options.len(), true),
            ParamSpec::Boolean => (2, true),
            ParamSpec::Float {
                low,
                high,
                step: None,
                ..
            } => (if low == high { 1 } else { grid_steps }, false),
            other => {
                let n = other.discrete_size().unwrap_or(u64::MAX);
                (
                    usize::try_from(n).unwrap_or(usize::MAX).min(grid_steps),
                    false,
                )
            }
        };
        Domain {
            size,
            categorical,
            spec: spec.clone(),
            grid_steps,
        }
    }

    /// The grid index of `v`, or `None` for a value of another kind.
    fn index(&self, v: &ParamValue) -> Option<usize> {
        let last = self.size.saturating_sub(1);
        let along = |t: f64| -> usize {
            if !t.is_finite() {
                return 0;
            }
            (t.clamp(0.0, 1.0) * last as f64).round() as usize
        };
        match (&self.spec, v) {
            (ParamSpec::Choice { options }, ParamValue::Str(s)) => {
                options.iter().position(|o| o == s)
            }
            (ParamSpec::Boolean, ParamValue::Bool(b)) => Some(usize::from(*b)),
            (ParamSpec::Int { low, high, step }, ParamValue::Int(x)) => {
                let n = self.spec.discrete_size().unwrap_or(u64::MAX);
                if n <= self.grid_steps as u64 {
                    Some(
                        (((*x as i128 - *low as i128) / (*step).max(1) as i128).max(0) as usize)
                            .min(last),
                    )
                } else {
                    Some(along(
                        (*x as f64 - *low as f64) / (*high as f64 - *low as f64),
                    ))
                }
            }
            (
                ParamSpec::Float {
                    low,
                    high,
                    scale,
                    step,
                },
                ParamValue::Float(x),
            ) => {
                if self.size <= 1 {
                    return Some(0);
                }
                match (step, scale) {
                    (Some(st), _)
                        if self.spec.discrete_size().unwrap_or(u64::MAX)
                            <= self.grid_steps as u64 =>
                    {
                        Some((((x - low) / st).round().max(0.0) as usize).min(last))
                    }
                    (_, Scale::Log) if *low > 0.0 => Some(along(
                        (x.max(*low).ln() - low.ln()) / (high.ln() - low.ln()),
                    )),
                    _ => Some(along((x - low) / (high - low))),
                }
            }
            _ => None,
        }
    }

    /// The density of the observed grid indices on the grid.
    fn density(&self, indices: &[usize], prior_weight: f64) -> Vec<f64> {
        let n = self.size;
        let m = indices.len() as f64;
        let mut counts = vec![0.0f64; n];
        for &i in indices {
            counts[i.min(n - 1)] += 1.0;
        }
        let prior = prior_weight / n as f64;
        if self.categorical || n == 1 {
            return counts
                .iter()
                .map(|c| (c + prior) / (m + prior_weight))
                .collect();
        }
        let sigma = scott_bandwidth(indices).max(0.5);
        let mut p = vec![prior; n];
        for (c, &count) in counts.iter().enumerate() {
            if count == 0.0 {
                continue;
            }
            // A Gaussian kernel discretised on the grid and truncated to it (renormalised).
            let k: Vec<f64> = (0..n)
                .map(|i| {
                    let z = (i as f64 - c as f64) / sigma;
                    (-0.5 * z * z).exp()
                })
                .collect();
            let total: f64 = k.iter().sum();
            for (pi, ki) in p.iter_mut().zip(&k) {
                *pi += count * ki / total;
            }
        }
        p.iter().map(|v| v / (m + prior_weight)).collect()
    }
}

/// Scott's rule, `1.059 · min(sd, IQR/1.34) · m^(-1/5)`, on grid indices (the larger of the two
/// spreads when the smaller is 0, as for a set with many ties).
fn scott_bandwidth(indices: &[usize]) -> f64 {
    let m = indices.len();
    if m < 2 {
        return 0.0;
    }
    let mut v: Vec<f64> = indices.iter().map(|&i| i as f64).collect();
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / m as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1) as f64).sqrt();
    let q = |p: f64| {
        let pos = p * (m - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    let iqr = (q(0.75) - q(0.25)) / 1.34;
    let spread = if sd > 0.0 && iqr > 0.0 {
        sd.min(iqr)
    } else {
        sd.max(iqr)
    };
    1.059 * spread * (m as f64).powf(-0.2)
}

/// One complete trial as the estimator sees it.
struct Obs<'a> {
    value: f64,
    number: u64,
    params: &'a [crate::space::DefinedParam],
}

/// `v_d` of every parameter on `obs` (not normalised).
fn local_hpi(
    obs: &[&Obs<'_>],
    domains: &BTreeMap<String, Domain>,
    direction: Direction,
    opts: &PedAnovaOptions,
) -> BTreeMap<String, (f64, usize)> {
    let mut out = BTreeMap::new();
    for (name, dom) in domains {
        let mut seen: Vec<(f64, u64, usize)> = obs
            .iter()
            .filter_map(|o| {
                let p = o.params.iter().find(|p| &p.name == name)?;
                Some((o.value, o.number, dom.index(&p.value)?))
            })
            .collect();
        let n = seen.len();
        let gamma = opts.target_quantile.clamp(0.0, 1.0);
        let k = ((gamma * n as f64).ceil() as usize).clamp(1, n.max(1));
        if n < 2 || dom.size < 2 || k >= n {
            out.insert(name.clone(), (0.0, n));
            continue;
        }
        seen.sort_by(|a, b| direction.compare(a.0, b.0).then(a.1.cmp(&b.1)));
        let all: Vec<usize> = seen.iter().map(|s| s.2).collect();
        let p_top = dom.density(&all[..k], opts.prior_weight);
        let p_all = dom.density(&all, opts.prior_weight);
        let divergence: f64 = p_top
            .iter()
            .zip(&p_all)
            .map(|(t, a)| a * (t / a - 1.0).powi(2))
            .sum();
        let ratio = k as f64 / n as f64;
        out.insert(name.clone(), (ratio * ratio * divergence, n));
    }
    out
}

fn normalise(v: &BTreeMap<String, (f64, usize)>) -> BTreeMap<String, f64> {
    let total: f64 = v.values().map(|x| x.0).filter(|x| x.is_finite()).sum();
    v.iter()
        .map(|(k, (x, _))| {
            let share = if total > 0.0 && x.is_finite() {
                x / total
            } else {
                0.0
            };
            (k.clone(), share)
        })
        .collect()
}

/// The importance of every hyperparameter of the complete trials (finite objective), most
/// important first; empty without complete trials. See the module documentation.
pub fn ped_anova(
    records: &[TrialRecord],
    direction: Direction,
    opts: &PedAnovaOptions,
) -> Vec<Importance> {
    let obs: Vec<Obs<'_>> = records
        .iter()
        .filter(|r| r.state == TrialState::Complete)
        .filter_map(|r| {
            let value = r.value.filter(|v| v.is_finite())?;
            Some(Obs {
                value,
                number: r.number,
                params: &r.params,
            })
        })
        .collect();
    let mut domains: BTreeMap<String, Domain> = BTreeMap::new();
    for o in &obs {
        for p in o.params {
            domains
                .entry(p.name.clone())
                .or_insert_with(|| Domain::new(&p.spec, opts.grid_steps));
        }
    }
    if obs.is_empty() || domains.is_empty() {
        return Vec::new();
    }
    let refs: Vec<&Obs<'_>> = obs.iter().collect();
    let full = local_hpi(&refs, &domains, direction, opts);
    let shares = normalise(&full);
    let mut boot: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for seed in 0..opts.seeds {
        let mut rng = Rng::for_decision(seed, 0x9ed, "ped-anova-bootstrap", 0);
        let sample: Vec<&Obs<'_>> = (0..obs.len())
            .map(|_| &obs[rng.below(obs.len() as u64) as usize])
            .collect();
        for (k, v) in normalise(&local_hpi(&sample, &domains, direction, opts)) {
            boot.entry(k).or_default().push(v);
        }
    }
    let mut out: Vec<Importance> = shares
        .iter()
        .map(|(name, &importance)| {
            let b = boot.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let mean = if b.is_empty() {
                importance
            } else {
                b.iter().sum::<f64>() / b.len() as f64
            };
            let sd = if b.len() < 2 {
                0.0
            } else {
                (b.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (b.len() - 1) as f64).sqrt()
            };
            Importance {
                name: name.clone(),
                importance,
                mean,
                sd,
                trials: full.get(name).map(|x| x.1).unwrap_or(0),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.importance
            .total_cmp(&a.importance)
            .then(a.name.cmp(&b.name))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densities_sum_to_one() {
        for spec in [
            ParamSpec::Float {
                low: 1e-4,
                high: 1.0,
                scale: Scale::Log,
                step: None,
            },
            ParamSpec::Choice {
                options: vec!["a".into(), "b".into(), "c".into()],
            },
            ParamSpec::Int {
                low: 1,
                high: 4,
                step: 1,
            },
        ] {
            let d = Domain::new(&spec, 50);
            let p = d.density(&[0, 1, 1, 2], 1.0);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{spec}: {p:?}");
        }
    }

    #[test]
    fn log_values_are_placed_by_order_of_magnitude() {
        let d = Domain::new(
            &ParamSpec::Float {
                low: 1e-4,
                high: 1.0,
                scale: Scale::Log,
                step: None,
            },
            5,
        );
        // 1e-4, 1e-3, 1e-2, 1e-1, 1: five points one decade apart.
        for (i, v) in [1e-4, 1e-3, 1e-2, 1e-1, 1.0].iter().enumerate() {
            assert_eq!(d.index(&ParamValue::Float(*v)), Some(i));
        }
    }
}
