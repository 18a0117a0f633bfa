//! Optimizer steps on one weight (`python/edgetrain/optimizers.py`): PyTorch's SGD,
//! Adam and AdamW formulas with the spec's float32 operation order, so that an update
//! is bit-identical to the numpy spec's. Hyper-parameters are f64 (Python floats) and
//! rounded to f32 exactly where the spec rounds them.

use crate::error::{check_len, invalid, Result};

fn check_same(op: &'static str, weight: usize, named: &[(&'static str, usize)]) -> Result<()> {
    named
        .iter()
        .try_for_each(|&(name, len)| check_len(op, name, [weight], len))
}

fn check_rate(op: &'static str, lr: f64) -> Result<()> {
    if lr.is_finite() {
        Ok(())
    } else {
        Err(invalid(op, "learning_rate", format!("{lr} is not finite")))
    }
}

/// `w -= lr * g` at momentum 0 (no buffer); else `buf = momentum * buf + g;
/// w -= lr * buf` with `buf` starting at zero (so the first step gives `buf = g`).
pub fn sgd_step(
    weight: &mut [f32],
    grad: &[f32],
    buffer: Option<&mut [f32]>,
    lr: f64,
    momentum: f64,
) -> Result<()> {
    const OP: &str = "sgd_step";
    check_rate(OP, lr)?;
    check_same(OP, weight.len(), &[("grad", grad.len())])?;
    let rate = lr as f32;
    match (buffer, momentum == 0.0) {
        (_, true) => weight
            .iter_mut()
            .zip(grad)
            .for_each(|(w, &g)| *w -= rate * g),
        (Some(buf), false) => {
            check_same(OP, weight.len(), &[("momentum buffer", buf.len())])?;
            let keep = momentum as f32;
            for ((w, b), &g) in weight.iter_mut().zip(buf.iter_mut()).zip(grad) {
                *b *= keep;
                *b += g;
                *w -= rate * *b;
            }
        }
        (None, false) => {
            return Err(invalid(
                OP,
                "buffer",
                "momentum > 0 needs a momentum buffer",
            ))
        }
    }
    Ok(())
}

/// Adam's hyper-parameters; `weight_decay > 0` makes it AdamW (decoupled decay
/// `w *= 1 - lr * weight_decay` before the Adam step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// The spec's defaults (epsilon 1e-7 as NNTrainer), no weight decay.
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

/// One Adam/AdamW update at `step` (counted from 1):
/// `m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
/// w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
pub fn adam_step(
    config: &AdamConfig,
    weight: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f64,
    step: u64,
) -> Result<()> {
    const OP: &str = "adam_step";
    check_rate(OP, lr)?;
    check_same(
        OP,
        weight.len(),
        &[("grad", grad.len()), ("m", m.len()), ("v", v.len())],
    )?;
    if step == 0 {
        return Err(invalid(OP, "step", "steps count from 1"));
    }
    let AdamConfig {
        beta1,
        beta2,
        epsilon,
        weight_decay,
    } = *config;
    if weight_decay != 0.0 {
        let decay = (1.0 - lr * weight_decay) as f32;
        weight.iter_mut().for_each(|w| *w *= decay);
    }
    let t = step as f64;
    let (b1, one_minus_b1) = (beta1 as f32, (1.0 - beta1) as f32);
    let (b2, one_minus_b2) = (beta2 as f32, (1.0 - beta2) as f32);
    let step_size = (lr / (1.0 - beta1.powf(t))) as f32;
    let correction2 = (1.0 - beta2.powf(t)).sqrt() as f32;
    let eps = epsilon as f32;
    for (((w, mi), vi), &g) in weight
        .iter_mut()
        .zip(m.iter_mut())
        .zip(v.iter_mut())
        .zip(grad)
    {
        *mi *= b1;
        *mi += one_minus_b1 * g;
        *vi *= b2;
        *vi += one_minus_b2 * g * g;
        let denom = vi.sqrt() / correction2 + eps;
        *w -= step_size * (*mi / denom);
    }
    Ok(())
}
