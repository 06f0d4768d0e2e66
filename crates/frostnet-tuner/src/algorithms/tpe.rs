//! Tree-structured Parzen estimator, as Optuna's default (independent)
//! sampler.
//!
//! Per hyperparameter, the completed trials that used it are split into the
//! best `γ(n) = min(⌈0.1·n⌉, 25)` ("below") and the rest ("above"). Each
//! group becomes a density, `l(x)` and `g(x)`: for numbers a mixture of
//! Gaussians truncated to the range, one per observation plus a wide prior,
//! with bandwidths from the distances to neighbouring observations (in log
//! space for `Scale::Log`); for choices and booleans smoothed category
//! frequencies. `n_ei_candidates` draws from `l` are scored by `l(x)/g(x)`
//! (maximizing expected improvement) and the best is used. The first
//! `n_startup_trials` trials are random.
//!
//! Because a hyperparameter only learns from trials that used it, the tree
//! structure of conditional spaces is respected. Older observations get less
//! weight once a group has more than 25 (Optuna's `default_weights`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::random::sample_uniform;
use crate::rng::Rng;
use crate::space::{ParamSource, ParamSpec, ParamValue, Scale};
use crate::store::{TrialRecord, TrialState};
use crate::study::Direction;

/// Settings of TPE (defaults are Optuna's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TpeConfig {
    pub seed: u64,
    /// Random trials before TPE starts modelling.
    pub n_startup_trials: usize,
    /// Candidates drawn from `l(x)` per decision.
    pub n_ei_candidates: usize,
    /// Weight of the prior component of each density.
    pub prior_weight: f64,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            seed: 0,
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
        }
    }
}

/// One completed trial as TPE sees it.
struct Observation {
    value: f64,
    params: BTreeMap<String, (ParamSpec, ParamValue)>,
}

pub(crate) struct TpeSource {
    cfg: TpeConfig,
    key: u64,
    direction: Direction,
    observations: Vec<Observation>,
}

impl TpeSource {
    pub(crate) fn new(
        cfg: TpeConfig,
        key: u64,
        direction: Direction,
        history: &[TrialRecord],
    ) -> Self {
        let observations = history
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| {
                let value = t.value.filter(|v| v.is_finite())?;
                Some(Observation {
                    value,
                    params: t
                        .params
                        .iter()
                        .map(|p| (p.name.clone(), (p.spec.clone(), p.value.clone())))
                        .collect(),
                })
            })
            .collect();
        TpeSource {
            cfg,
            key,
            direction,
            observations,
        }
    }
}

/// Optuna's `default_weights`: flat up to 25, then older ones ramp down.
fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.resize(n, 1.0);
    w
}

fn gamma(n: usize) -> usize {
    (n as f64 * 0.1).ceil().min(25.0) as usize
}

/// Standard normal CDF via `erf` (Abramowitz & Stegun 7.1.26, |err| < 1.5e-7).
fn norm_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-z * z).exp();
    let erf = if z >= 0.0 { y } else { -y };
    0.5 * (1.0 + erf)
}

/// A truncated Gaussian mixture on `[lo, hi]`.
struct Parzen {
    weights: Vec<f64>,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Parzen {
    fn new(obs: &[f64], obs_w: &[f64], prior_weight: f64, lo: f64, hi: f64) -> Self {
        let width = (hi - lo).max(1e-12);
        let prior_mu = 0.5 * (lo + hi);
        let mut comp: Vec<(f64, f64)> = obs.iter().copied().zip(obs_w.iter().copied()).collect();
        comp.push((prior_mu, prior_weight));
        let n = comp.len();
        // Bandwidth: distance to the farther neighbour in sorted order.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| comp[a].0.total_cmp(&comp[b].0));
        let mut sigmas = vec![width; n];
        let min_sigma = width / (100f64).min(1.0 + n as f64);
        for (k, &i) in order.iter().enumerate() {
            let left = if k == 0 { lo } else { comp[order[k - 1]].0 };
            let right = if k + 1 == n { hi } else { comp[order[k + 1]].0 };
            let s = (comp[i].0 - left).max(right - comp[i].0);
            sigmas[i] = s.clamp(min_sigma, width);
        }
        // The prior is wide by construction.
        sigmas[n - 1] = width;
        let total: f64 = comp.iter().map(|c| c.1).sum();
        Parzen {
            weights: comp.iter().map(|c| c.1 / total).collect(),
            mus: comp.iter().map(|c| c.0).collect(),
            sigmas,
            lo,
            hi,
        }
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let u = rng.uniform();
        let mut acc = 0.0;
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                k = i;
                break;
            }
        }
        for _ in 0..100 {
            let x = self.mus[k] + self.sigmas[k] * rng.normal();
            if x >= self.lo && x <= self.hi {
                return x;
            }
        }
        self.lo + rng.uniform() * (self.hi - self.lo)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let mut terms = Vec::with_capacity(self.mus.len());
        for i in 0..self.mus.len() {
            let (m, s) = (self.mus[i], self.sigmas[i]);
            let z = norm_cdf((self.hi - m) / s) - norm_cdf((self.lo - m) / s);
            let d = (x - m) / s;
            let lp = -0.5 * d * d
                - s.ln()
                - 0.5 * (2.0 * std::f64::consts::PI).ln()
                - z.max(1e-300).ln()
                + self.weights[i].max(1e-300).ln();
            terms.push(lp);
        }
        let mx = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        mx + terms.iter().map(|t| (t - mx).exp()).sum::<f64>().ln()
    }
}

/// Internal (continuous) coordinates of a numeric range.
fn numeric_bounds(spec: &ParamSpec) -> Option<(f64, f64)> {
    match spec {
        ParamSpec::Int { low, high, step } => {
            let h = *step as f64 / 2.0;
            Some((*low as f64 - h, *high as f64 + h))
        }
        ParamSpec::Float {
            low,
            high,
            scale: Scale::Log,
            step: None,
        } => Some((low.ln(), high.ln())),
        ParamSpec::Float {
            low, high, step, ..
        } => {
            let h = step.unwrap_or(0.0) / 2.0;
            Some((low - h, high + h))
        }
        _ => None,
    }
}

fn to_internal(spec: &ParamSpec, v: &ParamValue) -> Option<f64> {
    match spec {
        ParamSpec::Float {
            scale: Scale::Log,
            step: None,
            ..
        } => v.as_f64().map(f64::ln),
        _ => v.as_f64(),
    }
}

fn from_internal(spec: &ParamSpec, x: f64) -> ParamValue {
    match spec {
        ParamSpec::Int { low, high, step } => {
            let k = ((x - *low as f64) / *step as f64).round().max(0.0) as i64;
            ParamValue::Int(
                low.saturating_add(k.saturating_mul(*step))
                    .clamp(*low, *high),
            )
        }
        ParamSpec::Float {
            low,
            high,
            scale: Scale::Log,
            step: None,
        } => ParamValue::Float(x.exp().clamp(*low, *high)),
        ParamSpec::Float {
            low,
            high,
            step: Some(st),
            ..
        } => {
            let k = ((x - low) / st).round().max(0.0);
            ParamValue::Float((low + k * st).clamp(*low, *high))
        }
        ParamSpec::Float { low, high, .. } => ParamValue::Float(x.clamp(*low, *high)),
        _ => spec.default_value(),
    }
}

/// Index of a categorical value.
fn category(spec: &ParamSpec, v: &ParamValue) -> Option<usize> {
    match (spec, v) {
        (ParamSpec::Choice { options }, ParamValue::Str(s)) => options.iter().position(|o| o == s),
        (ParamSpec::Boolean, ParamValue::Bool(b)) => Some(usize::from(*b)),
        _ => None,
    }
}

impl ParamSource for TpeSource {
    fn suggest(&mut self, name: &str, spec: &ParamSpec) -> ParamValue {
        let mut rng = Rng::for_decision(self.cfg.seed, self.key, name, 0);
        // Observations of this name with this exact range, in trial order.
        let obs: Vec<(f64, &ParamValue)> = self
            .observations
            .iter()
            .filter_map(|o| match o.params.get(name) {
                Some((s, v)) if s == spec => Some((o.value, v)),
                _ => None,
            })
            .collect();
        if obs.len() < self.cfg.n_startup_trials.max(1) {
            return sample_uniform(spec, &mut rng);
        }
        let mut ranked: Vec<usize> = (0..obs.len()).collect();
        let dir = self.direction;
        ranked.sort_by(|&a, &b| dir.compare(obs[a].0, obs[b].0).then(a.cmp(&b)));
        let n_below = gamma(obs.len()).max(1);
        let mut below: Vec<usize> = ranked[..n_below].to_vec();
        let mut above: Vec<usize> = ranked[n_below..].to_vec();
        // Weights follow trial age, so restore trial order inside each group.
        below.sort_unstable();
        above.sort_unstable();
        let (wb, wa) = (default_weights(below.len()), default_weights(above.len()));
        let mut rng = Rng::for_decision(self.cfg.seed, self.key, name, 1);

        if let Some((lo, hi)) = numeric_bounds(spec) {
            let xs = |idx: &[usize]| -> Vec<f64> {
                idx.iter()
                    .filter_map(|&i| to_internal(spec, obs[i].1))
                    .collect()
            };
            let (xb, xa) = (xs(&below), xs(&above));
            let l = Parzen::new(&xb, &wb[..xb.len()], self.cfg.prior_weight, lo, hi);
            let g = Parzen::new(&xa, &wa[..xa.len()], self.cfg.prior_weight, lo, hi);
            let mut best = (f64::NEG_INFINITY, 0.5 * (lo + hi));
            for _ in 0..self.cfg.n_ei_candidates {
                let x = l.sample(&mut rng);
                let score = l.log_pdf(x) - g.log_pdf(x);
                if score > best.0 {
                    best = (score, x);
                }
            }
            return from_internal(spec, best.1);
        }

        let k = spec.discrete_size().unwrap_or(1) as usize;
        let probs = |idx: &[usize], w: &[f64]| -> Vec<f64> {
            let mut p = vec![self.cfg.prior_weight / k as f64; k];
            for (j, &i) in idx.iter().enumerate() {
                if let Some(c) = category(spec, obs[i].1) {
                    p[c] += w[j];
                }
            }
            let s: f64 = p.iter().sum();
            p.iter().map(|x| x / s).collect()
        };
        let (pb, pa) = (probs(&below, &wb), probs(&above, &wa));
        let mut best = (f64::NEG_INFINITY, 0usize);
        for _ in 0..self.cfg.n_ei_candidates {
            let u = rng.uniform();
            let mut acc = 0.0;
            let mut c = k - 1;
            for (i, p) in pb.iter().enumerate() {
                acc += p;
                if u < acc {
                    c = i;
                    break;
                }
            }
            let score = pb[c].ln() - pa[c].ln();
            if score > best.0 {
                best = (score, c);
            }
        }
        spec.discrete_value(best.1 as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_and_weights() {
        assert!((norm_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((norm_cdf(1.96) - 0.975).abs() < 1e-3);
        assert_eq!(default_weights(3), vec![1.0; 3]);
        let w = default_weights(30);
        assert_eq!(w.len(), 30);
        assert!(w[0] < w[4] && w[29] == 1.0);
        assert_eq!(gamma(10), 1);
        assert_eq!(gamma(1000), 25);
    }

    #[test]
    fn parzen_density_prefers_observations() {
        let p = Parzen::new(&[0.2, 0.25], &[1.0, 1.0], 1.0, 0.0, 1.0);
        assert!(p.log_pdf(0.22) > p.log_pdf(0.9));
        let mut rng = Rng::for_decision(1, 2, "x", 3);
        for _ in 0..100 {
            let x = p.sample(&mut rng);
            assert!((0.0..=1.0).contains(&x));
        }
    }
}
