//! Batch and layer normalization (`spec/layers/normalization.md`), forward (training and
//! inference) and backward. Both keep `x_hat` and `1/std` in caller scratch, so neither
//! backward reads the input and both may run in place (y over x, dx over dy).
//!
//! Reductions accumulate in f64 one channel (or row) at a time, so no per-channel
//! temporaries are needed; results may differ from numpy's float32 pairwise sums by
//! rounding only.

use super::{elements, InOut};
use crate::error::{check_len, invalid, Result};

/// A tensor of shape `dims` normalised per entry of `axis` (batch norm) or over the
/// trailing `normalized_axes` (layer norm), seen as `(outer, channels, inner)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Blocks {
    outer: usize,
    channels: usize,
    inner: usize,
}

impl Blocks {
    fn around(op: &'static str, dims: &[usize], first: usize, last: usize) -> Result<Self> {
        if first > last || last >= dims.len() {
            return Err(invalid(
                op,
                "axis",
                format!("axes {first}..={last} outside shape {dims:?}"),
            ));
        }
        elements(op, dims)?;
        Ok(Blocks {
            outer: dims[..first].iter().product(),
            channels: dims[first..=last].iter().product(),
            inner: dims[last + 1..].iter().product(),
        })
    }

    /// The flat index ranges holding channel `c`.
    fn channel_ranges(&self, c: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.outer).map(move |o| {
            let start = (o * self.channels + c) * self.inner;
            start..start + self.inner
        })
    }
}

/// Batch norm's shape: statistics per entry of `axis` of a tensor of shape `dims`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormShape<'a> {
    pub dims: &'a [usize],
    pub axis: usize,
}

/// Batch norm's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    pub epsilon: f32,
    pub momentum: f32,
}

/// Batch norm's weights, each of shape `(C,)`; the moving statistics are updated by a
/// training forward.
#[derive(Debug)]
pub struct BatchNormWeights<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub moving_mean: &'a mut [f32],
    pub moving_variance: &'a mut [f32],
}

fn batch_blocks(op: &'static str, shape: &BatchNormShape) -> Result<Blocks> {
    let blocks = Blocks::around(op, shape.dims, shape.axis, shape.axis)?;
    if blocks.outer * blocks.inner == 0 {
        return Err(invalid(
            op,
            "shape",
            format!("{:?} has no element per channel", shape.dims),
        ));
    }
    Ok(blocks)
}

fn check_channels(op: &'static str, c: usize, named: &[(&'static str, usize)]) -> Result<()> {
    named
        .iter()
        .try_for_each(|&(name, len)| check_len(op, name, [c], len))
}

/// Training forward: batch statistics, `x_hat` into `normalized`, `1/std` into
/// `inv_std (C,)`, `y = gamma x_hat + beta`, and the moving statistics updated as
/// `moving = momentum * moving + (1 - momentum) * batch` (biased variance).
pub fn batch_norm_train_forward(
    shape: &BatchNormShape,
    params: &BatchNormParams,
    io: InOut,
    weights: BatchNormWeights,
    normalized: &mut [f32],
    inv_std: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_train_forward";
    let b = batch_blocks(OP, shape)?;
    io.check(OP, shape.dims)?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    let BatchNormWeights {
        gamma,
        beta,
        moving_mean,
        moving_variance,
    } = weights;
    check_channels(
        OP,
        b.channels,
        &[
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("moving_mean", moving_mean.len()),
            ("moving_variance", moving_variance.len()),
            ("inv_std", inv_std.len()),
        ],
    )?;
    let count = (b.outer * b.inner) as f64;
    let x = io.input();
    for c in 0..b.channels {
        let sum: f64 = b
            .channel_ranges(c)
            .flat_map(|r| &x[r])
            .map(|&v| f64::from(v))
            .sum();
        let mean = (sum / count) as f32;
        let mut square_sum = 0f64;
        for r in b.channel_ranges(c) {
            for (h, &v) in normalized[r.clone()].iter_mut().zip(&x[r]) {
                *h = v - mean;
                square_sum += f64::from(*h) * f64::from(*h);
            }
        }
        let variance = (square_sum / count) as f32;
        let keep = params.momentum;
        moving_mean[c] = moving_mean[c] * keep + mean * (1.0 - keep);
        moving_variance[c] = moving_variance[c] * keep + variance * (1.0 - keep);
        inv_std[c] = 1.0 / (variance + params.epsilon).sqrt();
        for r in b.channel_ranges(c) {
            normalized[r].iter_mut().for_each(|h| *h *= inv_std[c]);
        }
    }
    let inner = b.inner;
    io.map_indexed(|i, _| {
        let c = (i / inner) % b.channels;
        normalized[i] * gamma[c] + beta[c]
    });
    Ok(())
}

/// Inference forward: `y = (x - moving_mean) * (gamma / sqrt(moving_variance + eps)) + beta`.
pub fn batch_norm_infer_forward(
    shape: &BatchNormShape,
    epsilon: f32,
    io: InOut,
    gamma: &[f32],
    beta: &[f32],
    moving_mean: &[f32],
    moving_variance: &[f32],
) -> Result<()> {
    const OP: &str = "batch_norm_infer_forward";
    let b = batch_blocks(OP, shape)?;
    io.check(OP, shape.dims)?;
    check_channels(
        OP,
        b.channels,
        &[
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("moving_mean", moving_mean.len()),
            ("moving_variance", moving_variance.len()),
        ],
    )?;
    io.map_indexed(|i, v| {
        let c = (i / b.inner) % b.channels;
        let scale = gamma[c] / (moving_variance[c] + epsilon).sqrt();
        (v - moving_mean[c]) * scale + beta[c]
    });
    Ok(())
}

/// `d_gamma = sum(dy * x_hat)`, `d_beta = sum(dy)` per channel; overwritten.
pub fn batch_norm_grad(
    shape: &BatchNormShape,
    dy: &[f32],
    normalized: &[f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_grad";
    let b = batch_blocks(OP, shape)?;
    check_len(OP, "dy", shape.dims, dy.len())?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    check_channels(
        OP,
        b.channels,
        &[("d_gamma", d_gamma.len()), ("d_beta", d_beta.len())],
    )?;
    for c in 0..b.channels {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for r in b.channel_ranges(c) {
            for (&g, &h) in dy[r.clone()].iter().zip(&normalized[r]) {
                sum += f64::from(g);
                weighted += f64::from(g) * f64::from(h);
            }
        }
        d_beta[c] = sum as f32;
        d_gamma[c] = weighted as f32;
    }
    Ok(())
}

/// `dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat))`, the means per
/// channel taken before `dx` is written (so `grad` may be in place: dx over dy).
pub fn batch_norm_backward(
    shape: &BatchNormShape,
    grad: InOut,
    normalized: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
) -> Result<()> {
    const OP: &str = "batch_norm_backward";
    let b = batch_blocks(OP, shape)?;
    grad.check(OP, shape.dims)?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    check_channels(
        OP,
        b.channels,
        &[("inv_std", inv_std.len()), ("gamma", gamma.len())],
    )?;
    let count = (b.outer * b.inner) as f64;
    let dx = grad.into_output();
    for c in 0..b.channels {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for r in b.channel_ranges(c) {
            for (&g, &h) in dx[r.clone()].iter().zip(&normalized[r]) {
                sum += f64::from(g);
                weighted += f64::from(g) * f64::from(h);
            }
        }
        let (mean_dy, mean_dy_x_hat) = ((sum / count) as f32, (weighted / count) as f32);
        let scale = gamma[c] * inv_std[c];
        for r in b.channel_ranges(c) {
            for (g, &h) in dx[r.clone()].iter_mut().zip(&normalized[r]) {
                *g = (*g - mean_dy - h * mean_dy_x_hat) * scale;
            }
        }
    }
    Ok(())
}

/// Layer norm's shape: a tensor of shape `dims` normalised over its last `normalized`
/// axes (1 = the last axis only). Sets of axes that are not a suffix are not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNormShape<'a> {
    pub dims: &'a [usize],
    pub normalized: usize,
}

fn layer_blocks(op: &'static str, shape: &LayerNormShape) -> Result<Blocks> {
    let rank = shape.dims.len();
    if shape.normalized == 0 || shape.normalized > rank {
        return Err(invalid(
            op,
            "normalized",
            format!(
                "{} trailing axes of shape {:?}",
                shape.normalized, shape.dims
            ),
        ));
    }
    let b = Blocks::around(op, shape.dims, rank - shape.normalized, rank - 1)?;
    if b.channels == 0 {
        return Err(invalid(
            op,
            "shape",
            format!("{:?} normalises over no element", shape.dims),
        ));
    }
    Ok(Blocks {
        outer: b.outer,
        channels: b.channels,
        inner: 1,
    })
}

/// Forward: per row `x_hat = (x - mean) / sqrt(var + eps)` (biased variance),
/// `y = gamma x_hat + beta`; `inv_std (rows,)` always written, `x_hat` kept in
/// `normalized` when given (training), else worked out in the output.
pub fn layer_norm_forward(
    shape: &LayerNormShape,
    epsilon: f32,
    io: InOut,
    gamma: &[f32],
    beta: &[f32],
    normalized: Option<&mut [f32]>,
    inv_std: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_forward";
    let b = layer_blocks(OP, shape)?;
    io.check(OP, shape.dims)?;
    let features = b.channels;
    check_len(OP, "gamma", [features], gamma.len())?;
    check_len(OP, "beta", [features], beta.len())?;
    check_len(OP, "inv_std", [b.outer], inv_std.len())?;
    if let Some(n) = &normalized {
        check_len(OP, "normalized", shape.dims, n.len())?;
    }
    let (work, output) = match normalized {
        Some(n) => {
            n.copy_from_slice(io.input());
            (n, Some(io))
        }
        None => (io.into_output(), None),
    };
    for (row, inv) in work.chunks_exact_mut(features).zip(inv_std.iter_mut()) {
        let mean = (row.iter().map(|&v| f64::from(v)).sum::<f64>() / features as f64) as f32;
        row.iter_mut().for_each(|v| *v -= mean);
        let square_sum: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        *inv = 1.0 / ((square_sum / features as f64) as f32 + epsilon).sqrt();
        row.iter_mut().for_each(|v| *v *= *inv);
    }
    match output {
        Some(io) => {
            io.map_indexed(|i, _| work[i] * gamma[i % features] + beta[i % features]);
        }
        None => {
            for (i, v) in work.iter_mut().enumerate() {
                *v = *v * gamma[i % features] + beta[i % features];
            }
        }
    }
    Ok(())
}

/// `d_gamma = sum over rows of dy * x_hat`, `d_beta = sum over rows of dy`; overwritten.
pub fn layer_norm_grad(
    shape: &LayerNormShape,
    dy: &[f32],
    normalized: &[f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_grad";
    let b = layer_blocks(OP, shape)?;
    check_len(OP, "dy", shape.dims, dy.len())?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    check_len(OP, "d_gamma", [b.channels], d_gamma.len())?;
    check_len(OP, "d_beta", [b.channels], d_beta.len())?;
    d_gamma.fill(0.0);
    d_beta.fill(0.0);
    for (g_row, h_row) in dy
        .chunks_exact(b.channels)
        .zip(normalized.chunks_exact(b.channels))
    {
        for (f, (&g, &h)) in g_row.iter().zip(h_row).enumerate() {
            d_beta[f] += g;
            d_gamma[f] += g * h;
        }
    }
    Ok(())
}

/// With `g = dy * gamma`: `dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))` per
/// row, the means taken before the row is written (so `grad` may be dx over dy).
pub fn layer_norm_backward(
    shape: &LayerNormShape,
    grad: InOut,
    normalized: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
) -> Result<()> {
    const OP: &str = "layer_norm_backward";
    let b = layer_blocks(OP, shape)?;
    grad.check(OP, shape.dims)?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    check_len(OP, "inv_std", [b.outer], inv_std.len())?;
    check_len(OP, "gamma", [b.channels], gamma.len())?;
    let n = b.channels as f64;
    let dx = grad.into_output();
    let rows = dx
        .chunks_exact_mut(b.channels)
        .zip(normalized.chunks_exact(b.channels));
    for ((row, h_row), &inv) in rows.zip(inv_std) {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for ((&d, &h), &w) in row.iter().zip(h_row).zip(gamma) {
            let g = f64::from(d * w);
            sum += g;
            weighted += g * f64::from(h);
        }
        let (mean_g, mean_g_x_hat) = ((sum / n) as f32, (weighted / n) as f32);
        for ((d, &h), &w) in row.iter_mut().zip(h_row).zip(gamma) {
            *d = (*d * w - mean_g - h * mean_g_x_hat) * inv;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_around_axes() {
        let b = Blocks::around("t", &[2, 3, 4, 5], 1, 1).unwrap();
        assert_eq!((b.outer, b.channels, b.inner), (2, 3, 20));
        let ranges: Vec<_> = b.channel_ranges(1).collect();
        assert_eq!(ranges, vec![20..40, 80..100]);
        assert!(Blocks::around("t", &[2, 3], 2, 2).is_err());
    }
}
