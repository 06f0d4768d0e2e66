//! Learning-rate schedules, evaluated at the optimizer's step count before each update.

/// A learning rate that changes with the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LearningRate {
    Constant(f32),
    /// `initial * decay_rate ^ (step / decay_steps)` (floored exponent with `staircase`).
    ExponentialDecay {
        initial: f32,
        decay_steps: usize,
        decay_rate: f32,
        staircase: bool,
    },
    /// Cosine from `initial` to `initial * alpha` over `decay_steps`, then flat.
    CosineDecay {
        initial: f32,
        decay_steps: usize,
        alpha: f32,
    },
}

impl From<f32> for LearningRate {
    fn from(v: f32) -> Self {
        LearningRate::Constant(v)
    }
}

impl LearningRate {
    /// The rate at `step` (0-based).
    pub fn at(&self, step: u64) -> f32 {
        match *self {
            LearningRate::Constant(v) => v,
            LearningRate::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step as f64 / decay_steps.max(1) as f64;
                if staircase {
                    p = p.floor();
                }
                (initial as f64 * (decay_rate as f64).powf(p)) as f32
            }
            LearningRate::CosineDecay {
                initial,
                decay_steps,
                alpha,
            } => {
                let s = (step as f64).min(decay_steps as f64) / decay_steps.max(1) as f64;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * s).cos());
                (initial as f64 * ((1.0 - alpha as f64) * cosine + alpha as f64)) as f32
            }
        }
    }

    /// Whether the optimizer holds the rate as a variable (Keras does not for schedules, which
    /// changes the "Optimizer params" count by one).
    pub(crate) fn is_constant(&self) -> bool {
        matches!(self, LearningRate::Constant(_))
    }
}
