//! The search space, declared by running the user's closure ("define by run").
//!
//! As in KerasTuner and Optuna, there is no separate space declaration: the
//! closure calls `hp.int(..)`, `hp.float(..)`, ... and each call both declares
//! the hyperparameter and returns the value chosen for this trial. A value is
//! part of a trial only if the closure asked for it, which gives conditional
//! hyperparameters for free (`units_3` exists only in trials where the closure
//! built a fourth layer).
//!
//! Each declaration is validated; a name declared again with a different range
//! (in the same trial or in any earlier trial of the stored study) is an error,
//! because the history of that name would no longer be comparable.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::error::SpaceError;

/// How a float range is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Uniform in `[low, high]`.
    Linear,
    /// Uniform in `[ln low, ln high]`: right for learning rates and other
    /// values that matter by order of magnitude. Needs `0 < low`.
    Log,
}

/// The declared range of one hyperparameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParamSpec {
    /// Integers `low, low+step, ..., <= high`.
    Int { low: i64, high: i64, step: i64 },
    /// Floats in `[low, high]`; with `step`, only `low + k*step`.
    Float {
        low: f64,
        high: f64,
        scale: Scale,
        step: Option<f64>,
    },
    /// One of a list of strings.
    Choice { options: Vec<String> },
    /// `false` or `true`.
    Boolean,
}

/// The value of one hyperparameter in one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

impl ParamValue {
    /// The value as `i64`, if it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(v) => Some(*v),
            _ => None,
        }
    }
    /// The value as `f64` (integers are converted).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Float(v) => Some(*v),
            ParamValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
    /// The value as `&str`, if it is a choice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Str(v) => Some(v),
            _ => None,
        }
    }
    /// The value as `bool`, if it is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Bool(v) => Some(*v),
            _ => None,
        }
    }
}

/// A float as a user writes it: 4 significant digits, trailing zeros
/// dropped, plain decimals from 1e-5 to 1e6 (`0.0065`, `0.1`, `250`) and
/// exponent notation beyond (`1.5e-7`).
pub(crate) fn plain_float(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let exp = v.abs().log10().floor() as i32;
    if (-5..6).contains(&exp) {
        let decimals = (3 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}")).to_string()
    } else {
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((mantissa, e)) => format!("{}e{e}", trim(mantissa)),
            None => s,
        }
    }
}

impl fmt::Display for ParamValue {
    /// Values as a user writes them: `2`, `0.0065`, `relu`, `true`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => f.write_str(&plain_float(*v)),
            ParamValue::Str(v) => write!(f, "{v}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for ParamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamSpec::Int { low, high, step } => write!(f, "int[{low}, {high}] step {step}"),
            ParamSpec::Float {
                low,
                high,
                scale,
                step,
            } => {
                let s = match scale {
                    Scale::Linear => "linear",
                    Scale::Log => "log",
                };
                match step {
                    Some(st) => write!(f, "float[{low}, {high}] {s} step {st}"),
                    None => write!(f, "float[{low}, {high}] {s}"),
                }
            }
            ParamSpec::Choice { options } => write!(f, "choice{options:?}"),
            ParamSpec::Boolean => write!(f, "boolean"),
        }
    }
}

/// Number of points a float range without a step gets in a grid search.
pub(crate) const DEFAULT_FLOAT_GRID_POINTS: usize = 5;

impl ParamSpec {
    pub(crate) fn validate(&self, name: &str) -> Result<(), SpaceError> {
        let name = name.to_string();
        match self {
            ParamSpec::Int { low, high, step } => {
                if low > high {
                    return Err(SpaceError::EmptyRange {
                        name,
                        low: *low as f64,
                        high: *high as f64,
                    });
                }
                if *step <= 0 {
                    return Err(SpaceError::InvalidStep {
                        name,
                        step: *step as f64,
                    });
                }
            }
            ParamSpec::Float {
                low,
                high,
                scale,
                step,
            } => {
                if !low.is_finite() || !high.is_finite() || low > high {
                    return Err(SpaceError::EmptyRange {
                        name,
                        low: *low,
                        high: *high,
                    });
                }
                if *scale == Scale::Log && *low <= 0.0 {
                    return Err(SpaceError::LogRangeNotPositive {
                        name,
                        low: *low,
                        high: *high,
                    });
                }
                if let Some(st) = step {
                    if !st.is_finite() || *st <= 0.0 {
                        return Err(SpaceError::InvalidStep { name, step: *st });
                    }
                }
            }
            ParamSpec::Choice { options } => {
                if options.is_empty() {
                    return Err(SpaceError::EmptyChoice { name });
                }
                for (i, o) in options.iter().enumerate() {
                    if options[..i].contains(o) {
                        return Err(SpaceError::DuplicateChoice {
                            name,
                            option: o.clone(),
                        });
                    }
                }
            }
            ParamSpec::Boolean => {}
        }
        Ok(())
    }

    /// Number of distinct values when the range is discrete (int, stepped
    /// float, choice, boolean); `None` for continuous floats.
    pub(crate) fn discrete_size(&self) -> Option<u64> {
        match self {
            ParamSpec::Int { low, high, step } => {
                let n = (*high as i128 - *low as i128) / (*step).max(1) as i128;
                Some(u64::try_from(n).unwrap_or(u64::MAX).saturating_add(1))
            }
            ParamSpec::Float {
                low,
                high,
                step: Some(st),
                ..
            } => Some((((high - low) / st + 1e-9).floor() as u64).saturating_add(1)),
            ParamSpec::Float { step: None, .. } => None,
            ParamSpec::Choice { options } => Some(options.len() as u64),
            ParamSpec::Boolean => Some(2),
        }
    }

    /// The `i`-th discrete value (`i < discrete_size()`).
    pub(crate) fn discrete_value(&self, i: u64) -> ParamValue {
        match self {
            ParamSpec::Int { low, step, high } => ParamValue::Int(
                (*low as i128 + i as i128 * *step as i128).min(*high as i128) as i64,
            ),
            ParamSpec::Float {
                low,
                high,
                step: Some(st),
                ..
            } => ParamValue::Float((low + i as f64 * st).min(*high)),
            ParamSpec::Float { low, .. } => ParamValue::Float(*low),
            ParamSpec::Choice { options } => {
                ParamValue::Str(options[(i as usize).min(options.len() - 1)].clone())
            }
            ParamSpec::Boolean => ParamValue::Bool(i == 1),
        }
    }

    /// Number of grid points.
    pub(crate) fn grid_size(&self, float_points: usize) -> u64 {
        match self.discrete_size() {
            Some(n) => n,
            None => {
                if let ParamSpec::Float { low, high, .. } = self {
                    if low == high {
                        return 1;
                    }
                }
                float_points.max(2) as u64
            }
        }
    }

    /// The `i`-th grid point: discrete values in order, continuous floats at
    /// `float_points` evenly spaced points (in log space for `Scale::Log`).
    pub(crate) fn grid_value(&self, i: u64, float_points: usize) -> ParamValue {
        match self {
            ParamSpec::Float {
                low, step: None, ..
            } => {
                let n = self.grid_size(float_points);
                if n <= 1 {
                    return ParamValue::Float(*low);
                }
                let t = i as f64 / (n - 1) as f64;
                ParamValue::Float(self.scale_unit(t))
            }
            _ => self.discrete_value(i),
        }
        .clamp_to(self)
    }

    /// Maps `t` in `[0, 1]` to the range (respecting the scale).
    pub(crate) fn scale_unit(&self, t: f64) -> f64 {
        match self {
            ParamSpec::Float {
                low, high, scale, ..
            } => match scale {
                Scale::Linear => low + t * (high - low),
                Scale::Log => (low.ln() + t * (high.ln() - low.ln()))
                    .exp()
                    .clamp(*low, *high),
            },
            ParamSpec::Int { low, high, .. } => *low as f64 + t * (*high - *low) as f64,
            _ => t,
        }
    }

    /// The value used by [`Hyperparameters::fixed`] for a missing name.
    pub(crate) fn default_value(&self) -> ParamValue {
        self.discrete_value(0)
    }

    /// Whether `v` is a value of this range (type and bounds).
    pub(crate) fn contains(&self, v: &ParamValue) -> bool {
        match (self, v) {
            (ParamSpec::Int { low, high, .. }, ParamValue::Int(x)) => low <= x && x <= high,
            (ParamSpec::Float { low, high, .. }, ParamValue::Float(x)) => *low <= *x && *x <= *high,
            (ParamSpec::Choice { options }, ParamValue::Str(s)) => options.contains(s),
            (ParamSpec::Boolean, ParamValue::Bool(_)) => true,
            _ => false,
        }
    }
}

impl ParamValue {
    fn clamp_to(self, spec: &ParamSpec) -> ParamValue {
        match (spec, self) {
            (ParamSpec::Float { low, high, .. }, ParamValue::Float(x)) => {
                ParamValue::Float(x.clamp(*low, *high))
            }
            (_, v) => v,
        }
    }
}

/// Where the values of a trial come from: one implementation per algorithm.
pub(crate) trait ParamSource {
    /// Chooses the value of `name` for this trial. `spec` is already validated.
    fn suggest(&mut self, name: &str, spec: &ParamSpec) -> ParamValue;
}

/// A value chosen for a trial, in the order the closure asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinedParam {
    pub name: String,
    pub spec: ParamSpec,
    pub value: ParamValue,
}

#[derive(Default)]
pub(crate) struct HpState {
    pub(crate) defined: Vec<DefinedParam>,
    pub(crate) error: Option<SpaceError>,
}

/// The hyperparameters of one trial: each method declares a hyperparameter
/// and returns its value for this trial.
///
/// ```
/// use frostnet_tuner::{Hyperparameters, ParamValue, Scale};
/// use std::collections::BTreeMap;
///
/// // `fixed` replays known values, e.g. to rebuild the best model of a study.
/// let mut best = BTreeMap::new();
/// best.insert("num_layers".to_string(), ParamValue::Int(3));
/// let mut hp = Hyperparameters::fixed(best);
/// let layers = hp.int("num_layers", 1, 4)?;
/// assert_eq!(layers, 3);
/// // Names absent from the fixed values take their first value.
/// assert_eq!(hp.float("lr", 1e-4, 1e-1, Scale::Log)?, 1e-4);
/// assert_eq!(hp.choice("act", &["relu", "tanh"])?, "relu");
/// # Ok::<(), frostnet_tuner::SpaceError>(())
/// ```
pub struct Hyperparameters {
    source: Box<dyn ParamSource>,
    /// Specs stored by earlier trials of the study.
    known: BTreeMap<String, ParamSpec>,
    state: Rc<RefCell<HpState>>,
}

struct FixedSource(BTreeMap<String, ParamValue>);

impl ParamSource for FixedSource {
    fn suggest(&mut self, name: &str, spec: &ParamSpec) -> ParamValue {
        match self.0.get(name) {
            Some(v) if spec.contains(v) => v.clone(),
            _ => spec.default_value(),
        }
    }
}

impl Hyperparameters {
    pub(crate) fn new(
        source: Box<dyn ParamSource>,
        known: BTreeMap<String, ParamSpec>,
    ) -> (Self, Rc<RefCell<HpState>>) {
        let state = Rc::new(RefCell::new(HpState::default()));
        (
            Hyperparameters {
                source,
                known,
                state: state.clone(),
            },
            state,
        )
    }

    /// Hyperparameters that return the given values (e.g. the best trial's
    /// `params`), and each range's first value for names not given.
    pub fn fixed(values: BTreeMap<String, ParamValue>) -> Self {
        Self::new(Box::new(FixedSource(values)), BTreeMap::new()).0
    }

    /// The values chosen so far in this trial, by name.
    pub fn values(&self) -> BTreeMap<String, ParamValue> {
        self.state
            .borrow()
            .defined
            .iter()
            .map(|d| (d.name.clone(), d.value.clone()))
            .collect()
    }

    fn define(&mut self, name: &str, spec: ParamSpec) -> Result<ParamValue, SpaceError> {
        let r = self.define_inner(name, spec);
        if let Err(e) = &r {
            let mut st = self.state.borrow_mut();
            if st.error.is_none() {
                st.error = Some(e.clone());
            }
        }
        r
    }

    fn define_inner(&mut self, name: &str, spec: ParamSpec) -> Result<ParamValue, SpaceError> {
        if name.is_empty() {
            return Err(SpaceError::EmptyName);
        }
        spec.validate(name)?;
        if let Some(d) = self.state.borrow().defined.iter().find(|d| d.name == name) {
            if d.spec != spec {
                return Err(SpaceError::Redefined {
                    name: name.into(),
                    previous: d.spec.to_string(),
                    new: spec.to_string(),
                });
            }
            return Ok(d.value.clone());
        }
        if let Some(prev) = self.known.get(name) {
            if *prev != spec {
                return Err(SpaceError::Redefined {
                    name: name.into(),
                    previous: format!("{prev} (as stored for the study)"),
                    new: spec.to_string(),
                });
            }
        }
        let mut value = self.source.suggest(name, &spec);
        if !spec.contains(&value) {
            value = spec.default_value();
        }
        self.state.borrow_mut().defined.push(DefinedParam {
            name: name.into(),
            spec,
            value: value.clone(),
        });
        Ok(value)
    }

    /// An integer in `[low, high]` (both inclusive).
    pub fn int(&mut self, name: &str, low: i64, high: i64) -> Result<i64, SpaceError> {
        self.int_step(name, low, high, 1)
    }

    /// An integer in `{low, low+step, ...} <= high`.
    pub fn int_step(
        &mut self,
        name: &str,
        low: i64,
        high: i64,
        step: i64,
    ) -> Result<i64, SpaceError> {
        let v = self.define(name, ParamSpec::Int { low, high, step })?;
        Ok(v.as_i64().unwrap_or(low))
    }

    /// A float in `[low, high]`, sampled linearly or by order of magnitude.
    pub fn float(
        &mut self,
        name: &str,
        low: f64,
        high: f64,
        scale: Scale,
    ) -> Result<f64, SpaceError> {
        let v = self.define(
            name,
            ParamSpec::Float {
                low,
                high,
                scale,
                step: None,
            },
        )?;
        Ok(v.as_f64().unwrap_or(low))
    }

    /// A float in `{low, low+step, ...} <= high`.
    pub fn float_step(
        &mut self,
        name: &str,
        low: f64,
        high: f64,
        step: f64,
    ) -> Result<f64, SpaceError> {
        let v = self.define(
            name,
            ParamSpec::Float {
                low,
                high,
                scale: Scale::Linear,
                step: Some(step),
            },
        )?;
        Ok(v.as_f64().unwrap_or(low))
    }

    /// One of `options`.
    pub fn choice<'a>(&mut self, name: &str, options: &[&'a str]) -> Result<&'a str, SpaceError> {
        let spec = ParamSpec::Choice {
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        let v = self.define(name, spec)?;
        let s = v.as_str().unwrap_or_default();
        Ok(options
            .iter()
            .copied()
            .find(|o| *o == s)
            .unwrap_or(options[0]))
    }

    /// `false` or `true`.
    pub fn boolean(&mut self, name: &str) -> Result<bool, SpaceError> {
        let v = self.define(name, ParamSpec::Boolean)?;
        Ok(v.as_bool().unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #13, point 10: values print as a user writes them, not as
    /// `6.5000e-3` or Rust's debug form.
    #[test]
    fn values_display_as_written() {
        let shown = |v: ParamValue| v.to_string();
        assert_eq!(shown(ParamValue::Float(0.0065)), "0.0065");
        assert_eq!(shown(ParamValue::Float(0.006512345)), "0.006512");
        assert_eq!(shown(ParamValue::Float(0.1)), "0.1");
        assert_eq!(shown(ParamValue::Float(1e-4)), "0.0001");
        assert_eq!(shown(ParamValue::Float(250.0)), "250");
        assert_eq!(shown(ParamValue::Float(-3.25)), "-3.25");
        assert_eq!(shown(ParamValue::Float(1.5e-7)), "1.5e-7");
        assert_eq!(shown(ParamValue::Float(2e9)), "2e9");
        assert_eq!(shown(ParamValue::Float(0.0)), "0");
        assert_eq!(shown(ParamValue::Int(2)), "2");
        assert_eq!(shown(ParamValue::Str("relu".into())), "relu");
        assert_eq!(shown(ParamValue::Bool(true)), "true");
    }

    #[test]
    fn validation_errors() {
        let mut hp = Hyperparameters::fixed(BTreeMap::new());
        assert!(matches!(
            hp.int("a", 5, 1),
            Err(SpaceError::EmptyRange { .. })
        ));
        assert!(matches!(
            hp.float("b", 0.0, 1.0, Scale::Log),
            Err(SpaceError::LogRangeNotPositive { .. })
        ));
        assert!(matches!(
            hp.float("c", -1.0, 1.0, Scale::Log),
            Err(SpaceError::LogRangeNotPositive { .. })
        ));
        assert!(matches!(
            hp.choice("d", &[]),
            Err(SpaceError::EmptyChoice { .. })
        ));
        assert!(matches!(
            hp.int_step("e", 0, 4, 0),
            Err(SpaceError::InvalidStep { .. })
        ));
        assert_eq!(hp.int("f", 1, 4), Ok(1));
        assert_eq!(hp.int("f", 1, 4), Ok(1));
        assert!(matches!(
            hp.int("f", 1, 5),
            Err(SpaceError::Redefined { .. })
        ));
    }

    #[test]
    fn extreme_ranges_do_not_overflow() {
        let mut hp = Hyperparameters::fixed(BTreeMap::new());
        assert_eq!(hp.int("a", i64::MIN, i64::MAX), Ok(i64::MIN));
        assert_eq!(hp.float_step("b", 0.0, 1e300, 1e-300), Ok(0.0));
        let s = ParamSpec::Int {
            low: i64::MIN,
            high: i64::MAX,
            step: 1,
        };
        assert_eq!(s.discrete_size(), Some(u64::MAX));
        let mut rng = crate::rng::Rng::for_decision(1, 2, "a", 0);
        let v = crate::algorithms::random::sample_uniform(&s, &mut rng);
        assert!(s.contains(&v));
    }

    #[test]
    fn grid_points() {
        let s = ParamSpec::Float {
            low: 1e-4,
            high: 1.0,
            scale: Scale::Log,
            step: None,
        };
        assert_eq!(s.grid_size(5), 5);
        let v: Vec<f64> = (0..5)
            .map(|i| s.grid_value(i, 5).as_f64().unwrap().log10())
            .collect();
        for (i, x) in v.iter().enumerate() {
            assert!((x - (i as f64 - 4.0)).abs() < 1e-9, "{v:?}");
        }
        let i = ParamSpec::Int {
            low: 1,
            high: 10,
            step: 3,
        };
        assert_eq!(i.grid_size(5), 4);
        assert_eq!(i.grid_value(3, 5), ParamValue::Int(10));
    }
}
