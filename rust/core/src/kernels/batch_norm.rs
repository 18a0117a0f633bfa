//! Batch normalization (`spec/layers/normalization.md`), forward (training and
//! inference) and backward. `x_hat` and `1/std` stay in caller scratch, so the backward
//! never reads the input and both directions may run in place (y over x, dx over dy).
//!
//! Every pass sweeps the tensor in memory order (a channel's values are `outer` ranges
//! `inner` long, `channels * inner` apart), keeping per-channel running sums in small
//! `(C,)` vectors: one stream the prefetchers follow, where a channel-by-channel loop
//! jumped between ranges and ran 2-3x slower on VGG-16's maps. Reductions accumulate in
//! f64 (`reduce`: independent lanes, NEON on aarch64, `docs/arm.md`), each channel's
//! ranges in index order; results differ from numpy's float32 pairwise sums by rounding
//! only.

use super::{elements, reduce, InOut};
use crate::error::{check_len, invalid, Result};

/// A tensor of shape `dims` normalised per entry of one axis, seen as
/// `(outer, channels, inner)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Blocks {
    outer: usize,
    channels: usize,
    inner: usize,
}

impl Blocks {
    fn around(op: &'static str, dims: &[usize], axis: usize) -> Result<Self> {
        if axis >= dims.len() {
            return Err(invalid(
                op,
                "axis",
                format!("axis {axis} outside shape {dims:?}"),
            ));
        }
        elements(op, dims)?;
        Ok(Blocks {
            outer: dims[..axis].iter().product(),
            channels: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        })
    }

    /// Every `(channel, range)` in memory order: sweeps that stream through the tensor
    /// once, as the hardware prefetchers like, with per-channel running values.
    fn ranges(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
        (0..self.outer * self.channels).map(move |i| {
            let start = i * self.inner;
            (i % self.channels, start..start + self.inner)
        })
    }
}

/// Batch norm's shape: statistics per entry of `axis` of a tensor of shape `dims`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormShape<'a> {
    /// The shape of the input (and output).
    pub dims: &'a [usize],
    /// The axis whose entries have their own statistics (1 = channels in NCHW).
    pub axis: usize,
}

/// Batch norm's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    /// Added to the variance.
    pub epsilon: f32,
    /// Weight of the old moving statistics.
    pub momentum: f32,
}

/// Batch norm's weights, each of shape `(C,)`; the moving statistics are updated by a
/// training forward.
#[derive(Debug)]
pub struct BatchNormWeights<'a> {
    /// Scale, `(C,)`.
    pub gamma: &'a [f32],
    /// Shift, `(C,)`.
    pub beta: &'a [f32],
    /// Moving mean, `(C,)`, updated by the training forward.
    pub moving_mean: &'a mut [f32],
    /// Moving (biased) variance, `(C,)`, updated by the training forward.
    pub moving_variance: &'a mut [f32],
}

fn batch_blocks(op: &'static str, shape: &BatchNormShape) -> Result<Blocks> {
    let blocks = Blocks::around(op, shape.dims, shape.axis)?;
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
pub fn train_forward(
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
    let (source, out) = io.split();
    // Three sweeps in memory order: the sums; `x - mean` into `normalized` and its
    // squares; `normalized` scaled and `y` written (the input, when `y` is over it, has
    // been read by then). Each channel's ranges are added in the same order as a
    // channel-by-channel loop would.
    let x: &[f32] = source.unwrap_or(&*out);
    let mut sums = vec![0f64; b.channels];
    for (c, r) in b.ranges() {
        sums[c] = reduce::add_sum(sums[c], &x[r]);
    }
    let means: Vec<f32> = sums.iter().map(|&s| (s / count) as f32).collect();
    let mut squares = vec![0f64; b.channels];
    for (c, r) in b.ranges() {
        let mean = means[c];
        for (h, &v) in normalized[r.clone()].iter_mut().zip(&x[r.clone()]) {
            *h = v - mean;
        }
        squares[c] = reduce::add_sum_of_squares(squares[c], &normalized[r]);
    }
    let keep = params.momentum;
    for c in 0..b.channels {
        let (mean, variance) = (means[c], (squares[c] / count) as f32);
        moving_mean[c] = moving_mean[c] * keep + mean * (1.0 - keep);
        moving_variance[c] = moving_variance[c] * keep + variance * (1.0 - keep);
        inv_std[c] = 1.0 / (variance + params.epsilon).sqrt();
    }
    for (c, r) in b.ranges() {
        let (inv, g, shift) = (inv_std[c], gamma[c], beta[c]);
        for (y, h) in out[r.clone()].iter_mut().zip(&mut normalized[r]) {
            *h *= inv;
            *y = *h * g + shift;
        }
    }
    Ok(())
}

/// Inference forward: `y = (x - moving_mean) * (gamma / sqrt(moving_variance + eps)) + beta`.
pub fn infer_forward(
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
    let (source, out) = io.split();
    let scales: Vec<f32> = (0..b.channels)
        .map(|c| gamma[c] / (moving_variance[c] + epsilon).sqrt())
        .collect();
    for (c, r) in b.ranges() {
        let (mean, scale, shift) = (moving_mean[c], scales[c], beta[c]);
        match source {
            Some(x) => {
                for (y, &v) in out[r.clone()].iter_mut().zip(&x[r]) {
                    *y = (v - mean) * scale + shift;
                }
            }
            None => out[r]
                .iter_mut()
                .for_each(|v| *v = (*v - mean) * scale + shift),
        }
    }
    Ok(())
}

/// Per channel `(sum(dy), sum(dy * x_hat))`, in one sweep in memory order.
fn sums_and_dots(b: &Blocks, dy: &[f32], normalized: &[f32]) -> Vec<(f64, f64)> {
    let mut sums = vec![(0f64, 0f64); b.channels];
    for (c, r) in b.ranges() {
        sums[c] = reduce::add_sum_and_dot(sums[c], &dy[r.clone()], &normalized[r]);
    }
    sums
}

/// `d_gamma = sum(dy * x_hat)`, `d_beta = sum(dy)` per channel; overwritten.
pub fn grad(
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
    let sums = sums_and_dots(&b, dy, normalized);
    for (c, &(sum, weighted)) in sums.iter().enumerate() {
        d_beta[c] = sum as f32;
        d_gamma[c] = weighted as f32;
    }
    Ok(())
}

/// `dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat))`, the means per
/// channel taken before `dx` is written (so `grad` may be in place: dx over dy).
pub fn backward(
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
    let means: Vec<(f32, f32)> = sums_and_dots(&b, dx, normalized)
        .iter()
        .map(|&(sum, weighted)| ((sum / count) as f32, (weighted / count) as f32))
        .collect();
    for (c, r) in b.ranges() {
        let (mean_dy, mean_dy_x_hat) = means[c];
        let scale = gamma[c] * inv_std[c];
        for (g, &h) in dx[r.clone()].iter_mut().zip(&normalized[r]) {
            *g = (*g - mean_dy - h * mean_dy_x_hat) * scale;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_around_axes() {
        let b = Blocks::around("t", &[2, 3, 4, 5], 1).unwrap();
        assert_eq!((b.outer, b.channels, b.inner), (2, 3, 20));
        let ranges: Vec<_> = b.ranges().collect();
        assert_eq!(ranges.len(), 6);
        assert_eq!((ranges[1].clone(), ranges[4].clone()), ((1, 20..40), (1, 80..100)));
        assert!(Blocks::around("t", &[2, 3], 2).is_err());
    }
}
