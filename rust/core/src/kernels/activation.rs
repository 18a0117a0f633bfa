//! Element-wise activations and softmax over the last axis
//! (`python/edgetrain/layers/activation.py`), forward and backward.
//!
//! The backward of relu, leaky relu, sigmoid, tanh and softmax reads the *output*, so
//! those may run in place over their input; gelu, tanh_gelu and swish read the input.
//! Arithmetic follows the spec's float32 operation order term by term.

use super::{elements, InOut};
use crate::error::{check_len, invalid, Result};

/// NNTrainer's leaky relu slope.
pub const LEAKY_RELU_SLOPE: f32 = 0.01;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const SQRT_2PI: f32 = 2.506_628_3;
const GELU_CUBIC: f32 = 0.044715;
const GELU_CUBIC_SLOPE: f32 = 0.134145;

/// The activations of the spec, by their model-file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` if `x > 0`, else `0.01 x`.
    LeakyRelu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `exp(x) / sum(exp(x))` over the last axis.
    Softmax,
    /// `x Phi(x)` with the exact normal CDF (erf).
    Gelu,
    /// The tanh approximation of gelu.
    TanhGelu,
    /// `x sigmoid(x)`.
    Swish,
}

impl Activation {
    /// Every activation, in the spec's order.
    pub const ALL: [Activation; 8] = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::Gelu,
        Activation::TanhGelu,
        Activation::Swish,
    ];

    /// The model-file name (`"leaky_relu"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Gelu => "gelu",
            Activation::TanhGelu => "tanh_gelu",
            Activation::Swish => "swish",
        }
    }

    /// The activation a model file names, case and surrounding blanks ignored.
    pub fn from_name(name: &str) -> Result<Self> {
        let key = name.trim().to_ascii_lowercase();
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == key)
            .ok_or_else(|| invalid("activation", "kind", format!("unknown activation {name:?}")))
    }

    /// Whether [`backward`] takes the forward output (else the forward input).
    pub fn backward_reads_output(self) -> bool {
        matches!(
            self,
            Activation::Relu
                | Activation::LeakyRelu
                | Activation::Sigmoid
                | Activation::Tanh
                | Activation::Softmax
        )
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The standard normal CDF, through erf in f64 (as the spec does) and rounded to f32.
fn phi(x: f32) -> f32 {
    (0.5 * (1.0 + libm::erf(f64::from(x) / std::f64::consts::SQRT_2))) as f32
}

fn tanh_gelu_inner(x: f32) -> f32 {
    SQRT_2_OVER_PI * (x + GELU_CUBIC * (x * x * x))
}

#[inline(always)]
fn forward_element(kind: Activation, x: f32) -> f32 {
    match kind {
        Activation::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        Activation::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                x * LEAKY_RELU_SLOPE
            }
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => x * phi(x),
        Activation::TanhGelu => 0.5 * x * (1.0 + tanh_gelu_inner(x).tanh()),
        Activation::Swish => x * sigmoid(x),
        Activation::Softmax => unreachable!("softmax works on rows"),
    }
}

/// `dx` from `dy` and `a`, the output or the input as [`Activation::backward_reads_output`] says.
#[inline(always)]
fn backward_element(kind: Activation, dy: f32, a: f32) -> f32 {
    match kind {
        Activation::Relu => dy * if a > 0.0 { 1.0 } else { 0.0 },
        Activation::LeakyRelu => {
            if a > 0.0 {
                dy
            } else {
                dy * LEAKY_RELU_SLOPE
            }
        }
        Activation::Sigmoid => dy * a * (1.0 - a),
        Activation::Tanh => dy * (1.0 - a * a),
        Activation::Gelu => {
            let pdf = (-0.5 * a * a).exp() / SQRT_2PI;
            dy * (phi(a) + a * pdf)
        }
        Activation::TanhGelu => {
            let t = tanh_gelu_inner(a).tanh();
            let d_inner = SQRT_2_OVER_PI * (1.0 + GELU_CUBIC_SLOPE * a * a);
            dy * (0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * d_inner)
        }
        Activation::Swish => {
            let s = sigmoid(a);
            dy * (s + a * s * (1.0 - s))
        }
        Activation::Softmax => unreachable!("softmax works on rows"),
    }
}

/// `y = f(x)` element by element, one loop per kind: with the `match` outside the loop
/// each loop is specialised to one element function, so the simple ones (relu, leaky
/// relu) vectorise (NEON on aarch64, `docs/arm.md`) in every build, not only when the
/// optimizer happens to unswitch a loop around the `match`.
fn map_elements(kind: Activation, io: InOut) {
    use Activation::*;
    match kind {
        Relu => io.map(|x| forward_element(Relu, x)),
        LeakyRelu => io.map(|x| forward_element(LeakyRelu, x)),
        Sigmoid => io.map(|x| forward_element(Sigmoid, x)),
        Tanh => io.map(|x| forward_element(Tanh, x)),
        Gelu => io.map(|x| forward_element(Gelu, x)),
        TanhGelu => io.map(|x| forward_element(TanhGelu, x)),
        Swish => io.map(|x| forward_element(Swish, x)),
        Softmax => unreachable!("softmax works on rows"),
    }
}

/// `dx = f'(dy, a)` element by element, one loop per kind (see [`map_elements`]): relu,
/// leaky relu, sigmoid and tanh vectorise.
fn zip_map_elements(kind: Activation, source: &[f32], grad: InOut) {
    use Activation::*;
    match kind {
        Relu => grad.zip_map(source, |dy, a| backward_element(Relu, dy, a)),
        LeakyRelu => grad.zip_map(source, |dy, a| backward_element(LeakyRelu, dy, a)),
        Sigmoid => grad.zip_map(source, |dy, a| backward_element(Sigmoid, dy, a)),
        Tanh => grad.zip_map(source, |dy, a| backward_element(Tanh, dy, a)),
        Gelu => grad.zip_map(source, |dy, a| backward_element(Gelu, dy, a)),
        TanhGelu => grad.zip_map(source, |dy, a| backward_element(TanhGelu, dy, a)),
        Swish => grad.zip_map(source, |dy, a| backward_element(Swish, dy, a)),
        Softmax => unreachable!("softmax works on rows"),
    }
}

/// The length of the last axis, which softmax normalises over.
fn last_axis(op: &'static str, dims: &[usize]) -> Result<usize> {
    match dims.last() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(invalid(
            op,
            "shape",
            format!("{dims:?} has no non-empty last axis"),
        )),
    }
}

/// `y = f(x)` over a tensor of shape `dims` (softmax: over its last axis).
pub fn forward(kind: Activation, dims: &[usize], io: InOut) -> Result<()> {
    const OP: &str = "activation_forward";
    elements(OP, dims)?;
    io.check(OP, dims)?;
    if kind != Activation::Softmax {
        map_elements(kind, io);
        return Ok(());
    }
    let classes = last_axis(OP, dims)?;
    for row in io.into_output().chunks_exact_mut(classes) {
        let peak = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|v| *v = (*v - peak).exp());
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= sum);
    }
    Ok(())
}

/// `dx` from `dy` (the [`InOut`] pair, in place = dx over dy) and `source`, the forward
/// output or input as [`Activation::backward_reads_output`] says; all of shape `dims`.
pub fn backward(kind: Activation, dims: &[usize], source: &[f32], grad: InOut) -> Result<()> {
    const OP: &str = "activation_backward";
    elements(OP, dims)?;
    grad.check(OP, dims)?;
    check_len(OP, "source", dims, source.len())?;
    if kind != Activation::Softmax {
        zip_map_elements(kind, source, grad);
        return Ok(());
    }
    let classes = last_axis(OP, dims)?;
    let dx = grad.into_output();
    for (row, y) in dx
        .chunks_exact_mut(classes)
        .zip(source.chunks_exact(classes))
    {
        let dot: f32 = row.iter().zip(y).map(|(&g, &p)| g * p).sum();
        row.iter_mut()
            .zip(y)
            .for_each(|(g, &p)| *g = p * (*g - dot));
    }
    Ok(())
}
