//! Loss layers (`python/edgetrain/losses.py`): forward (the prediction, and the batch
//! loss when a label is given) and the derivative with respect to the loss input.
//! The label always has the input's shape (class ids arrive one-hot). Loss sums
//! accumulate in f64.

use crate::error::{check_len, invalid, Result};
use crate::kernels::elements;

fn check_pair(op: &'static str, dims: &[usize], x: usize, label: Option<usize>) -> Result<usize> {
    let size = elements(op, dims)?;
    check_len(op, "input", dims, x)?;
    if let Some(len) = label {
        check_len(op, "label", dims, len)?;
    }
    Ok(size)
}

/// The batch (first axis) and class (last axis) counts softmax cross entropy needs.
fn batch_and_classes(op: &'static str, dims: &[usize]) -> Result<(usize, usize)> {
    match (dims.first(), dims.last()) {
        (Some(&batch), Some(&classes)) if dims.len() >= 2 && batch > 0 && classes > 0 => {
            Ok((batch, classes))
        }
        _ => Err(invalid(
            op,
            "shape",
            format!("{dims:?} needs a non-empty batch and class axis"),
        )),
    }
}

/// `probs` = softmax of `x` over its last axis, as `exp(log_softmax)`; with a label,
/// returns `-sum(label * log_softmax(x)) / batch`.
pub fn softmax_cross_entropy_forward(
    dims: &[usize],
    x: &[f32],
    label: Option<&[f32]>,
    probs: &mut [f32],
) -> Result<Option<f32>> {
    const OP: &str = "softmax_cross_entropy_forward";
    check_pair(OP, dims, x.len(), label.map(<[f32]>::len))?;
    check_len(OP, "probs", dims, probs.len())?;
    let (batch, classes) = batch_and_classes(OP, dims)?;
    let mut total = 0f64;
    for (row, (out, logits)) in probs
        .chunks_exact_mut(classes)
        .zip(x.chunks_exact(classes))
        .enumerate()
    {
        let peak = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_norm = logits.iter().map(|&v| (v - peak).exp()).sum::<f32>().ln();
        for (p, &v) in out.iter_mut().zip(logits) {
            *p = (v - peak) - log_norm;
        }
        if let Some(t) = label {
            let targets = &t[row * classes..(row + 1) * classes];
            total += out
                .iter()
                .zip(targets)
                .map(|(&lp, &tv)| f64::from(tv * lp))
                .sum::<f64>();
        }
        out.iter_mut().for_each(|p| *p = p.exp());
    }
    Ok(label.map(|_| (-total / batch as f64) as f32))
}

/// `dx = (probs - label) / batch`.
pub fn softmax_cross_entropy_backward(
    dims: &[usize],
    probs: &[f32],
    label: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy_backward";
    check_pair(OP, dims, probs.len(), Some(label.len()))?;
    check_len(OP, "dx", dims, dx.len())?;
    let (batch, _) = batch_and_classes(OP, dims)?;
    let batch = batch as f32;
    for ((d, &p), &t) in dx.iter_mut().zip(probs).zip(label) {
        *d = (p - t) / batch;
    }
    Ok(())
}

/// `mean((y - label)^2)` over every element (the prediction is `y` itself).
pub fn mse_forward(dims: &[usize], y: &[f32], label: &[f32]) -> Result<f32> {
    let size = check_pair("mse_forward", dims, y.len(), Some(label.len()))?;
    let sum: f64 = y
        .iter()
        .zip(label)
        .map(|(&p, &t)| f64::from((p - t) * (p - t)))
        .sum();
    Ok((sum / size.max(1) as f64) as f32)
}

/// `dx = (y - label) * (2 / size)`.
pub fn mse_backward(dims: &[usize], y: &[f32], label: &[f32], dx: &mut [f32]) -> Result<()> {
    const OP: &str = "mse_backward";
    let size = check_pair(OP, dims, y.len(), Some(label.len()))?;
    check_len(OP, "dx", dims, dx.len())?;
    let factor = 2.0f32 / size as f32;
    for ((d, &p), &t) in dx.iter_mut().zip(y).zip(label) {
        *d = (p - t) * factor;
    }
    Ok(())
}

/// `probs = sigmoid(x)`; with a label, returns the mean over every element of
/// `log(1 + exp(-|x|)) + max(x, 0) - x * label` (binary cross entropy, stable for any x).
pub fn sigmoid_cross_entropy_forward(
    dims: &[usize],
    x: &[f32],
    label: Option<&[f32]>,
    probs: &mut [f32],
) -> Result<Option<f32>> {
    const OP: &str = "sigmoid_cross_entropy_forward";
    let size = check_pair(OP, dims, x.len(), label.map(<[f32]>::len))?;
    check_len(OP, "probs", dims, probs.len())?;
    let loss = label.map(|t| {
        let sum: f64 = x
            .iter()
            .zip(t)
            .map(|(&v, &tv)| f64::from((-v.abs()).exp().ln_1p() + v.max(0.0) - v * tv))
            .sum();
        (sum / size.max(1) as f64) as f32
    });
    for (p, &v) in probs.iter_mut().zip(x) {
        *p = 1.0 / (1.0 + (-v).exp());
    }
    Ok(loss)
}

/// `dx = (probs - label) / size`.
pub fn sigmoid_cross_entropy_backward(
    dims: &[usize],
    probs: &[f32],
    label: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    const OP: &str = "sigmoid_cross_entropy_backward";
    let size = check_pair(OP, dims, probs.len(), Some(label.len()))?;
    check_len(OP, "dx", dims, dx.len())?;
    let size = size as f32;
    for ((d, &p), &t) in dx.iter_mut().zip(probs).zip(label) {
        *d = (p - t) / size;
    }
    Ok(())
}
