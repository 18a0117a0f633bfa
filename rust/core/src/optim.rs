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

fn check_step(op: &'static str, at: &Step) -> Result<()> {
    if !at.lr.is_finite() {
        return Err(invalid(
            op,
            "learning_rate",
            format!("{} is not finite", at.lr),
        ));
    }
    if !at.decay.is_finite() || at.decay < 0.0 {
        return Err(invalid(
            op,
            "decay",
            format!("{} must be finite and >= 0", at.decay),
        ));
    }
    if at.step == 0 {
        return Err(invalid(op, "step", "steps count from 1"));
    }
    Ok(())
}

/// What changes from one update of a weight to the next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The learning rate of this step (after the schedule).
    pub lr: f64,
    /// Updates of this weight so far, this one included (from 1; Adam's bias terms).
    pub step: u64,
    /// The weight's own decay (the layer's `weight_decay` / `bias_decay`): folded into
    /// the gradient as `g + decay * w` by SGD and Adam, decoupled by AdamW.
    pub decay: f64,
}

impl Step {
    /// Step `step` at rate `lr` without the weight's own decay.
    pub fn new(lr: f64, step: u64) -> Self {
        Step {
            lr,
            step,
            decay: 0.0,
        }
    }
}

/// `g + decay * w` in the spec's float32 rounding, or `g` when there is no decay.
fn coupled(decay: f32) -> impl Fn(f32, f32) -> f32 {
    move |g, w| if decay != 0.0 { g + decay * w } else { g }
}

/// SGD's hyper-parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SgdConfig {
    /// Momentum in `[0, 1)`; 0 keeps no buffer.
    pub momentum: f64,
}

/// `w -= lr * g` at momentum 0 (no buffer); else `buf = momentum * buf + g;
/// w -= lr * buf` with `buf` starting at zero (so the first step gives `buf = g`).
/// `g` includes the coupled decay; the gradient slice itself is left unchanged.
pub fn sgd_step(
    config: &SgdConfig,
    at: &Step,
    weight: &mut [f32],
    grad: &[f32],
    buffer: Option<&mut [f32]>,
) -> Result<()> {
    const OP: &str = "sgd_step";
    check_step(OP, at)?;
    check_same(OP, weight.len(), &[("grad", grad.len())])?;
    let rate = at.lr as f32;
    let effective = coupled(at.decay as f32);
    match (buffer, config.momentum == 0.0) {
        (_, true) => {
            for (w, &g) in weight.iter_mut().zip(grad) {
                *w -= rate * effective(g, *w);
            }
        }
        (Some(buf), false) => {
            check_same(OP, weight.len(), &[("momentum buffer", buf.len())])?;
            let keep = config.momentum as f32;
            for ((w, b), &g) in weight.iter_mut().zip(buf.iter_mut()).zip(grad) {
                *b *= keep;
                *b += effective(g, *w);
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

/// Adam's hyper-parameters. `decoupled_weight_decay: Some(wd)` makes it AdamW: before
/// the Adam step `w *= 1 - lr * (wd + decay)`, and the weight's own decay is not folded
/// into the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the bias-corrected root of the second moment.
    pub epsilon: f64,
    /// `Some(wd)`: AdamW with decay `wd`; `None`: Adam.
    pub decoupled_weight_decay: Option<f64>,
}

impl Default for AdamConfig {
    /// The spec's (and torch's) defaults: Adam, betas 0.9 / 0.999, epsilon 1e-8.
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            decoupled_weight_decay: None,
        }
    }
}

/// One Adam/AdamW update:
/// `m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
/// w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
pub fn adam_step(
    config: &AdamConfig,
    at: &Step,
    weight: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    const OP: &str = "adam_step";
    check_step(OP, at)?;
    check_same(
        OP,
        weight.len(),
        &[("grad", grad.len()), ("m", m.len()), ("v", v.len())],
    )?;
    let AdamConfig {
        beta1,
        beta2,
        epsilon,
        decoupled_weight_decay,
    } = *config;
    let lr = at.lr;
    let effective = match decoupled_weight_decay {
        Some(weight_decay) => {
            let rate = weight_decay + at.decay;
            if rate != 0.0 {
                let keep = (1.0 - lr * rate) as f32;
                weight.iter_mut().for_each(|w| *w *= keep);
            }
            coupled(0.0)
        }
        None => coupled(at.decay as f32),
    };
    let t = at.step as f64;
    let (b1, one_minus_b1) = (beta1 as f32, (1.0 - beta1) as f32);
    let (b2, one_minus_b2) = (beta2 as f32, (1.0 - beta2) as f32);
    let step_size = (lr / (1.0 - beta1.powf(t))) as f32;
    let correction2 = (1.0 - beta2.powf(t)).sqrt() as f32;
    let eps = epsilon as f32;
    let state = m.iter_mut().zip(v.iter_mut());
    for ((w, (mi, vi)), &raw) in weight.iter_mut().zip(state).zip(grad) {
        let g = effective(raw, *w);
        *mi *= b1;
        *mi += one_minus_b1 * g;
        *vi *= b2;
        *vi += one_minus_b2 * g * g;
        let denom = vi.sqrt() / correction2 + eps;
        *w -= step_size * (*mi / denom);
    }
    Ok(())
}
