//! Layer normalization over any set of axes (`spec/layers/normalization.md`): each
//! *group* (one entry of the axes not normalised, batch included) is normalised over
//! its *features* (the entries of the normalised axes), then scaled by `gamma` and
//! shifted by `beta`, both laid out over the normalised axes in increasing order.
//!
//! `inv_std` has one entry per group, in row-major order over the other axes (the spec's
//! "input shape with the normalised axes set to 1"). Reductions accumulate in f64 one
//! group at a time, so inference needs no scratch at all.

use super::{elements, InOut};
use crate::error::{check_len, invalid, Result};

/// The largest rank the kernels take.
pub const MAX_RANK: usize = 8;

/// Layer norm's shape: a tensor of shape `dims` normalised over `axes` (increasing,
/// no repeats; the spec's `normalized_axes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNormShape<'a> {
    /// The shape of the input (and output).
    pub dims: &'a [usize],
    /// The normalised axes, increasing.
    pub axes: &'a [usize],
}

/// What a training forward keeps for the backward: `x_hat` (input shape) and `1/std`
/// (one per group).
#[derive(Debug)]
pub struct LayerNormCache<'a> {
    /// `x_hat`, input shape.
    pub normalized: &'a mut [f32],
    /// `1 / std`, one per group.
    pub inv_std: &'a mut [f32],
}

/// Some axes of a row-major tensor, walked in row-major order as flat offsets.
#[derive(Clone, Copy, Debug)]
struct Walk {
    rank: usize,
    dims: [usize; MAX_RANK],
    strides: [usize; MAX_RANK],
    len: usize,
}

impl Walk {
    fn offsets(&self) -> Offsets {
        Offsets {
            walk: *self,
            index: [0; MAX_RANK],
            offset: 0,
            remaining: self.len,
        }
    }
}

struct Offsets {
    walk: Walk,
    index: [usize; MAX_RANK],
    offset: usize,
    remaining: usize,
}

impl Iterator for Offsets {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offset;
        let w = &self.walk;
        for d in (0..w.rank).rev() {
            self.index[d] += 1;
            self.offset += w.strides[d];
            if self.index[d] < w.dims[d] {
                break;
            }
            self.offset -= w.dims[d] * w.strides[d];
            self.index[d] = 0;
        }
        Some(current)
    }
}

/// The group walk (axes not normalised) and the feature walk (normalised axes).
fn split(op: &'static str, shape: &LayerNormShape) -> Result<(Walk, Walk)> {
    let (dims, axes) = (shape.dims, shape.axes);
    let increasing = axes.windows(2).all(|p| p[0] < p[1]);
    if dims.len() > MAX_RANK
        || axes.is_empty()
        || !increasing
        || axes.iter().any(|&a| a >= dims.len())
    {
        return Err(invalid(
            op,
            "axes",
            format!("{axes:?} must be increasing axes of shape {dims:?} (rank <= {MAX_RANK})"),
        ));
    }
    elements(op, dims)?;
    let empty = Walk {
        rank: 0,
        dims: [0; MAX_RANK],
        strides: [0; MAX_RANK],
        len: 1,
    };
    let (mut groups, mut features) = (empty, empty);
    let mut stride = 1;
    for d in (0..dims.len()).rev() {
        let walk = if axes.contains(&d) {
            &mut features
        } else {
            &mut groups
        };
        walk.dims[walk.rank] = dims[d];
        walk.strides[walk.rank] = stride;
        walk.rank += 1;
        walk.len *= dims[d];
        stride *= dims[d];
    }
    for walk in [&mut groups, &mut features] {
        walk.dims[..walk.rank].reverse();
        walk.strides[..walk.rank].reverse();
    }
    if features.len == 0 {
        return Err(invalid(
            op,
            "axes",
            format!("{axes:?} of {dims:?} hold no element"),
        ));
    }
    Ok((groups, features))
}

/// `x_hat = (x - mean) / sqrt(var + eps)` per group (biased variance), then
/// `y = gamma x_hat + beta`. With a cache (training) `x_hat` and `1/std` are kept there;
/// without (inference) the output is the working space.
pub fn forward(
    shape: &LayerNormShape,
    epsilon: f32,
    io: InOut,
    gamma: &[f32],
    beta: &[f32],
    cache: Option<LayerNormCache>,
) -> Result<()> {
    const OP: &str = "layer_norm_forward";
    let (groups, features) = split(OP, shape)?;
    io.check(OP, shape.dims)?;
    check_len(OP, "gamma", [features.len], gamma.len())?;
    check_len(OP, "beta", [features.len], beta.len())?;
    if let Some(c) = &cache {
        check_len(OP, "normalized", shape.dims, c.normalized.len())?;
        check_len(OP, "inv_std", [groups.len], c.inv_std.len())?;
    }
    let count = features.len as f64;
    let (work, mut output, mut inv_std) = match cache {
        Some(LayerNormCache {
            normalized,
            inv_std,
        }) => {
            normalized.copy_from_slice(io.input());
            (normalized, Some(io.into_output_unread()), Some(inv_std))
        }
        None => (io.into_output(), None, None),
    };
    for (g, base) in groups.offsets().enumerate() {
        let sum: f64 = features.offsets().map(|f| f64::from(work[base + f])).sum();
        let mean = (sum / count) as f32;
        let mut square_sum = 0f64;
        for f in features.offsets() {
            work[base + f] -= mean;
            square_sum += f64::from(work[base + f]).powi(2);
        }
        let inv = 1.0 / ((square_sum / count) as f32 + epsilon).sqrt();
        if let Some(kept) = inv_std.as_deref_mut() {
            kept[g] = inv;
        }
        for (p, f) in features.offsets().enumerate() {
            let h = work[base + f] * inv;
            work[base + f] = h;
            let y = h * gamma[p] + beta[p];
            match output {
                Some(ref mut out) => out[base + f] = y,
                None => work[base + f] = y,
            }
        }
    }
    Ok(())
}

/// `d_gamma = sum over groups of dy * x_hat`, `d_beta = sum over groups of dy`, per
/// feature; overwritten.
pub fn grad(
    shape: &LayerNormShape,
    dy: &[f32],
    normalized: &[f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_grad";
    let (groups, features) = split(OP, shape)?;
    check_len(OP, "dy", shape.dims, dy.len())?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    check_len(OP, "d_gamma", [features.len], d_gamma.len())?;
    check_len(OP, "d_beta", [features.len], d_beta.len())?;
    for (p, f) in features.offsets().enumerate() {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for base in groups.offsets() {
            sum += f64::from(dy[base + f]);
            weighted += f64::from(dy[base + f]) * f64::from(normalized[base + f]);
        }
        d_beta[p] = sum as f32;
        d_gamma[p] = weighted as f32;
    }
    Ok(())
}

/// With `g = dy * gamma`: `dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))` per
/// group, the means taken before the group is written (so `grad` may be dx over dy).
pub fn backward(
    shape: &LayerNormShape,
    grad: InOut,
    normalized: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
) -> Result<()> {
    const OP: &str = "layer_norm_backward";
    let (groups, features) = split(OP, shape)?;
    grad.check(OP, shape.dims)?;
    check_len(OP, "normalized", shape.dims, normalized.len())?;
    check_len(OP, "inv_std", [groups.len], inv_std.len())?;
    check_len(OP, "gamma", [features.len], gamma.len())?;
    let count = features.len as f64;
    let dx = grad.into_output();
    for (base, &inv) in groups.offsets().zip(inv_std) {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for (p, f) in features.offsets().enumerate() {
            let g = f64::from(dx[base + f] * gamma[p]);
            sum += g;
            weighted += g * f64::from(normalized[base + f]);
        }
        let (mean_g, mean_g_x_hat) = ((sum / count) as f32, (weighted / count) as f32);
        for (p, f) in features.offsets().enumerate() {
            let i = base + f;
            dx[i] = (dx[i] * gamma[p] - mean_g - normalized[i] * mean_g_x_hat) * inv;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_split_axes_into_groups_and_features() {
        let dims = [2, 3, 4, 5];
        let (groups, features) = split(
            "t",
            &LayerNormShape {
                dims: &dims,
                axes: &[1, 3],
            },
        )
        .unwrap();
        assert_eq!((groups.len, features.len), (8, 15));
        let g: Vec<usize> = groups.offsets().collect();
        assert_eq!(g, vec![0, 5, 10, 15, 60, 65, 70, 75]);
        let f: Vec<usize> = features.offsets().take(7).collect();
        assert_eq!(f, vec![0, 1, 2, 3, 4, 20, 21]);
        for bad in [&[][..], &[3, 1], &[4], &[1, 1]] {
            assert!(
                split(
                    "t",
                    &LayerNormShape {
                        dims: &dims,
                        axes: bad
                    }
                )
                .is_err(),
                "{bad:?}"
            );
        }
    }
}
