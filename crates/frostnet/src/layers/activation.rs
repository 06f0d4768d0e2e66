//! Activation functions, and the `Activation` layer that applies one.

use super::registry::LayerEntry;
use super::{check_runtime_shape, expect_inputs, take_cache, ForwardCtx, Layer, LayerBase, Shape};
use crate::error::{Error, Result};
use crate::saving::keras_config::Opts;
use crate::tensor::buffer::Pooled;
use crate::tensor::norm::FusedRelu;
use crate::tensor::{elementwise, map_with_codes, scale_by_codes, Tensor};
use serde_json::json;

/// The activations Keras layers accept by name (`activation="silu"`), with Keras 3's definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ActivationFn {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    /// Softmax over the last axis.
    Softmax,
    /// `x * sigmoid(x)`; Keras's `silu` (alias `swish`).
    Silu,
    /// `x * Φ(x)` with the exact normal CDF (Keras's `gelu`, `approximate=False`).
    Gelu,
    /// GELU's tanh approximation, `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))` (`approximate=True`).
    /// Keras cannot name it in a config (the string `gelu` is the exact form), so it is written
    /// as `gelu_approximate`, which only frostnet reads.
    GeluTanh,
    /// `x` if `x > 0`, else `exp(x) - 1`.
    Elu,
    /// `scale * elu(x, alpha)` with Keras's fixed `alpha` and `scale`.
    Selu,
    /// `log(1 + exp(x))`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// Keras 3's `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `x * hard_sigmoid(x)`; Keras's `hard_silu` (alias `hard_swish`).
    HardSilu,
    /// `x` if `x > 0`, else `0.2 x` (Keras's default `negative_slope`).
    LeakyRelu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `exp(x)`.
    Exponential,
}

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;
const LEAKY_SLOPE: f32 = 0.2;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// `log(1 + exp(v))` without overflow.
fn softplus(v: f32) -> f32 {
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

fn gelu_tanh(v: f32) -> f32 {
    0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v)).tanh())
}

fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// ELU with slope parameter `alpha` (shared with the `ELU` layer).
pub(crate) fn elu(v: f32, alpha: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        alpha * v.exp_m1()
    }
}

impl ActivationFn {
    /// Every activation, for listing what frostnet implements.
    pub const ALL: [ActivationFn; 18] = [
        ActivationFn::Linear,
        ActivationFn::Relu,
        ActivationFn::Sigmoid,
        ActivationFn::Tanh,
        ActivationFn::Softmax,
        ActivationFn::Silu,
        ActivationFn::Gelu,
        ActivationFn::GeluTanh,
        ActivationFn::Elu,
        ActivationFn::Selu,
        ActivationFn::Softplus,
        ActivationFn::Softsign,
        ActivationFn::HardSigmoid,
        ActivationFn::HardSilu,
        ActivationFn::LeakyRelu,
        ActivationFn::Relu6,
        ActivationFn::Mish,
        ActivationFn::Exponential,
    ];

    /// Keras's name (`"relu"`), as Keras 3 writes it in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationFn::Linear => "linear",
            ActivationFn::Relu => "relu",
            ActivationFn::Sigmoid => "sigmoid",
            ActivationFn::Tanh => "tanh",
            ActivationFn::Softmax => "softmax",
            ActivationFn::Silu => "silu",
            ActivationFn::Gelu => "gelu",
            ActivationFn::GeluTanh => "gelu_approximate",
            ActivationFn::Elu => "elu",
            ActivationFn::Selu => "selu",
            ActivationFn::Softplus => "softplus",
            ActivationFn::Softsign => "softsign",
            ActivationFn::HardSigmoid => "hard_sigmoid",
            ActivationFn::HardSilu => "hard_silu",
            ActivationFn::LeakyRelu => "leaky_relu",
            ActivationFn::Relu6 => "relu6",
            ActivationFn::Mish => "mish",
            ActivationFn::Exponential => "exponential",
        }
    }

    /// Parses Keras's name, including its aliases (`swish`, `hard_swish`).
    pub fn parse(name: &str) -> Result<ActivationFn> {
        let alias = match name {
            "None" => Some(ActivationFn::Linear),
            "swish" => Some(ActivationFn::Silu),
            "hard_swish" => Some(ActivationFn::HardSilu),
            _ => None,
        };
        alias
            .or_else(|| Self::ALL.into_iter().find(|f| f.as_str() == name))
            .ok_or_else(|| Error::InvalidConfig(format!("unknown activation '{name}'")))
    }

    /// Whether `backward` needs the activation's input rather than its output (the functions
    /// whose output does not determine their derivative).
    pub fn saves_input(self) -> bool {
        matches!(
            self,
            ActivationFn::Silu
                | ActivationFn::Gelu
                | ActivationFn::GeluTanh
                | ActivationFn::HardSilu
                | ActivationFn::Mish
        )
    }

    /// Before [`apply`](Self::apply): a copy of the pre-activation values when a backward pass
    /// will follow (`keep`) and this function's derivative needs them.
    pub(crate) fn pre_activation(self, z: &[f32], keep: bool) -> Option<Vec<f32>> {
        (keep && self.saves_input()).then(|| z.to_vec())
    }

    /// What a layer keeps for [`backward`](Self::backward): the pre-activation values from
    /// [`pre_activation`](Self::pre_activation) if there are any, else the output `y`.
    pub(crate) fn kept(self, pre: Option<Vec<f32>>, y: &Tensor) -> Tensor {
        match pre {
            Some(z) => Tensor::from_vec(y.shape(), z).unwrap_or_else(|_| y.clone()),
            None => y.clone(),
        }
    }

    /// Applies the scalar function (every activation but softmax) to `x` in place. Each arm
    /// hands its function to the kernel as a closure, so it is inlined and vectorized (through
    /// a `fn` pointer, ReLU cost 6% of a frozen InceptionV3 step; see `tensor::elementwise`).
    fn map_scalar(self, x: &mut [f32]) {
        macro_rules! map {
            ($f:expr) => {
                elementwise::map_in_place(x, $f)
            };
        }
        match self {
            ActivationFn::Linear | ActivationFn::Softmax => map!(|v| v),
            ActivationFn::Relu => map!(|v| v.max(0.0)),
            ActivationFn::Sigmoid => map!(sigmoid),
            ActivationFn::Tanh => map!(f32::tanh),
            ActivationFn::Silu => map!(|v| v * sigmoid(v)),
            ActivationFn::Gelu => map!(gelu),
            ActivationFn::GeluTanh => map!(gelu_tanh),
            ActivationFn::Elu => map!(|v| elu(v, 1.0)),
            ActivationFn::Selu => map!(|v| SELU_SCALE * elu(v, SELU_ALPHA)),
            ActivationFn::Softplus => map!(softplus),
            ActivationFn::Softsign => map!(|v| v / (1.0 + v.abs())),
            ActivationFn::HardSigmoid => map!(|v| (v + 3.0).clamp(0.0, 6.0) / 6.0),
            ActivationFn::HardSilu => map!(|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
            ActivationFn::LeakyRelu => map!(|v| if v > 0.0 { v } else { LEAKY_SLOPE * v }),
            ActivationFn::Relu6 => map!(|v| v.clamp(0.0, 6.0)),
            ActivationFn::Mish => map!(|v| v * softplus(v).tanh()),
            ActivationFn::Exponential => map!(f32::exp),
        }
    }

    /// `dy *= f'(s)` elementwise, with the derivative written as a function of what
    /// [`kept`](Self::kept) holds in `saved`: the input `x` for the functions that
    /// [`saves_input`](Self::saves_input), else the output `y`. Inlined per arm as in
    /// [`map_scalar`](Self::map_scalar): through a `fn` pointer, mlp_train's ReLU derivative
    /// ran one call per element.
    fn scale_by_derivative(self, dy: &mut [f32], saved: &[f32]) {
        macro_rules! scale {
            ($f:expr) => {{
                let f = typed($f);
                elementwise::zip_map_in_place(dy, saved, |d, s| d * f(s))
            }};
        }
        match self {
            ActivationFn::Linear | ActivationFn::Softmax => scale!(|_| 1.0),
            ActivationFn::Relu => scale!(|y| if y <= 0.0 { 0.0 } else { 1.0 }),
            ActivationFn::Sigmoid => scale!(|y| y * (1.0 - y)),
            ActivationFn::Tanh => scale!(|y| 1.0 - y * y),
            // Output-determined: y > 0 exactly where x > 0 for these.
            ActivationFn::Elu => scale!(|y| if y > 0.0 { 1.0 } else { y + 1.0 }),
            ActivationFn::Selu => scale!(|y| {
                if y > 0.0 {
                    SELU_SCALE
                } else {
                    y + SELU_SCALE * SELU_ALPHA
                }
            }),
            // 1 - exp(-softplus(x)) = sigmoid(x).
            ActivationFn::Softplus => scale!(|y| -(-y).exp_m1()),
            // x = y / (1 - |y|), so 1 / (1 + |x|)^2 = (1 - |y|)^2.
            ActivationFn::Softsign => scale!(|y| (1.0 - y.abs()) * (1.0 - y.abs())),
            ActivationFn::HardSigmoid => {
                scale!(|y| if y > 0.0 && y < 1.0 { 1.0 / 6.0 } else { 0.0 })
            }
            ActivationFn::LeakyRelu => scale!(|y| if y > 0.0 { 1.0 } else { LEAKY_SLOPE }),
            ActivationFn::Relu6 => scale!(|y| if y > 0.0 && y < 6.0 { 1.0 } else { 0.0 }),
            ActivationFn::Exponential => scale!(|y| y),
            // Input-determined.
            ActivationFn::Silu => scale!(|x| {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }),
            ActivationFn::Gelu => scale!(|x| {
                let pdf = (-0.5 * x * x).exp()
                    * (0.5 * std::f32::consts::FRAC_2_SQRT_PI)
                    * std::f32::consts::FRAC_1_SQRT_2;
                0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)) + x * pdf
            }),
            ActivationFn::GeluTanh => scale!(|x| {
                let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
                let t = u.tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }),
            ActivationFn::HardSilu => scale!(|x| {
                if x <= -3.0 {
                    0.0
                } else if x >= 3.0 {
                    1.0
                } else {
                    (2.0 * x + 3.0) / 6.0
                }
            }),
            ActivationFn::Mish => scale!(|x| {
                let sp = softplus(x);
                let t = sp.tanh();
                t + x * (1.0 - t * t) * sigmoid(x)
            }),
        }
    }

    /// Applies the activation in place; `row` is the length of the last axis (for softmax).
    pub fn apply(self, x: &mut [f32], row: usize) {
        match self {
            ActivationFn::Linear => {}
            ActivationFn::Softmax => x.chunks_mut(row.max(1)).for_each(softmax_row),
            _ => self.map_scalar(x),
        }
    }

    /// Turns `dy` (gradient w.r.t. the activation's output) into the gradient w.r.t. its input,
    /// in place. `saved` is what [`kept`](Self::kept) returned: the output `y`, or for the
    /// functions that [`saves_input`](Self::saves_input) the input.
    pub fn backward(self, saved: &[f32], dy: &mut [f32], row: usize) {
        match self {
            ActivationFn::Linear => {}
            ActivationFn::Softmax => {
                let row = row.max(1);
                dy.chunks_mut(row)
                    .zip(saved.chunks(row))
                    .for_each(|(d, y)| {
                        let dot: f32 = d.iter().zip(y).map(|(a, b)| a * b).sum();
                        d.iter_mut().zip(y).for_each(|(d, &y)| *d = y * (*d - dot));
                    })
            }
            _ => self.scale_by_derivative(dy, saved),
        }
    }
}

/// `f` itself: gives a closure's argument its type where a macro passes it on.
#[inline(always)]
fn typed<F: Fn(f32) -> f32 + Sync>(f: F) -> F {
    f
}

/// Numerically stable softmax of one row.
pub(crate) fn softmax_row(r: &mut [f32]) {
    let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in r.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    r.iter_mut().for_each(|v| *v /= s);
}

/// Applies an activation function as a layer of its own (Keras's `Activation`).
pub struct Activation {
    base: LayerBase,
    f: ActivationFn,
    shape: Shape,
    out: Option<Kept>,
}

/// What the `Activation` layer keeps for backward.
enum Kept {
    /// What [`ActivationFn::kept`] returns (the output, or the input for some functions).
    Values(Tensor),
    /// ReLU: per element whether the output is positive (its derivative, 0 or 1), one byte each
    /// instead of a full copy of the output.
    Positive(Pooled<u8>),
    /// Nothing: the BatchNormalization before it applied the ReLU and takes its output's
    /// gradient (see [`Activation::pass_through`]).
    Through,
}

impl Activation {
    pub fn new(f: ActivationFn) -> Activation {
        Activation {
            base: LayerBase::new(ACTIVATION.class_name),
            f,
            shape: Vec::new(),
            out: None,
        }
    }
    /// The form a BatchNormalization before it applies it in (the executor's fusion,
    /// models/model.rs): only ReLU is fused.
    pub(crate) fn fused_form(&self) -> Option<FusedRelu> {
        (self.f == ActivationFn::Relu).then_some(FusedRelu::Max)
    }

    /// Records that the BatchNormalization before it computed its output (with `keep`, that
    /// backward passes the gradient straight through: the BN applies the derivative).
    pub(crate) fn pass_through(&mut self, keep: bool) {
        self.out = keep.then_some(Kept::Through);
    }

    pub fn function(&self) -> ActivationFn {
        self.f
    }
}

impl Layer for Activation {
    /// The output only (one byte per value for ReLU).
    fn kept_for_backward(&self, _inputs: &[u64], output: u64) -> u64 {
        if self.f == ActivationFn::Relu {
            output
        } else {
            output * 4
        }
    }
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        ACTIVATION.class_name
    }
    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let s = &expect_inputs(&self.base.name, inputs, 1)?[0];
        self.shape = s.clone();
        self.base.built = true;
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        check_runtime_shape(&self.base.name, &self.shape, inputs[0])?;
        let x = inputs[0];
        if self.f == ActivationFn::Relu {
            // One pass: the output and (for backward) its sign, no copies. `y` is never NaN
            // (`max` returns the non-NaN operand), so `y > 0` is the derivative's own test
            // `!(y <= 0)` and backward is bit-identical to the general path.
            let (y, positive) = map_with_codes(x.data(), ctx.keep, |v| {
                let y = v.max(0.0);
                (y, u8::from(y > 0.0))
            });
            self.out = positive.map(Kept::Positive);
            return Tensor::from_vec(x.shape(), y);
        }
        let mut y = x.clone();
        let row = *y.shape().last().unwrap_or(&1);
        let pre = self.f.pre_activation(y.data(), ctx.keep);
        self.f.apply(y.data_mut(), row);
        self.out = ctx.keep.then(|| Kept::Values(self.f.kept(pre, &y)));
        Ok(y)
    }
    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        match take_cache(&mut self.out, &self.base.name)? {
            Kept::Positive(codes) => {
                if codes.len() != grad.len() {
                    return Err(Error::ShapeMismatch {
                        context: format!("layer '{}': gradient", self.base.name),
                        left: format!("{} values kept", codes.len()),
                        right: format!("{} values", grad.len()),
                    });
                }
                let dx = scale_by_codes(grad.data(), &codes, &[0.0, 1.0]);
                Ok(vec![Some(Tensor::from_vec(grad.shape(), dx)?)])
            }
            Kept::Through => Ok(vec![Some(grad.clone())]),
            Kept::Values(y) => {
                let mut dx = grad.clone();
                let row = *y.shape().last().unwrap_or(&1);
                self.f.backward(y.data(), dx.data_mut(), row);
                Ok(vec![Some(dx)])
            }
        }
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.base.name, "trainable": self.base.trainable, "activation": self.f.as_str()})
    }
    fn clear_cache(&mut self) {
        self.out = None;
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

// Keras config reading.

/// `Activation`'s Keras class name and config reader, listed in the [registry](super::registry).
pub(crate) const ACTIVATION: LayerEntry = LayerEntry {
    class_name: "Activation",
    from_config: activation_from_config,
};

fn activation_from_config(o: &Opts, _inputs: &[Shape]) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Activation::new(o.activation()?)))
}
