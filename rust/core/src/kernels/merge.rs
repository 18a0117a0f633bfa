//! Merge layers (`spec/layers/merge.md`): element-wise addition of inputs of one shape,
//! and concatenation along an axis.

use super::elements;
use crate::error::{check_len, Dims, Error, Result};

/// `y = x_0 + x_1 + ...`, summed left to right, overwriting `y`.
pub fn add_forward(inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
    const OP: &str = "add_forward";
    let Some((first, rest)) = inputs.split_first() else {
        return Err(crate::error::invalid(
            OP,
            "inputs",
            "needs at least one input",
        ));
    };
    for (i, x) in inputs.iter().enumerate() {
        if x.len() != y.len() {
            return Err(Error::ShapeMismatch {
                op: OP,
                shapes: inputs.iter().map(|x| Dims(vec![x.len()])).collect(),
                reason: format!("input {i} has {} elements, the output {}", x.len(), y.len()),
            });
        }
    }
    y.copy_from_slice(first);
    for x in rest {
        y.iter_mut().zip(x.iter()).for_each(|(acc, &v)| *acc += v);
    }
    Ok(())
}

/// `dx_i = dy` for every input (the planner may give some `dx_i` the bytes of `dy`; the
/// executor then leaves those out of `dxs`).
pub fn add_backward(dy: &[f32], dxs: &mut [&mut [f32]]) -> Result<()> {
    for dx in dxs.iter() {
        check_len("add_backward", "dx", [dy.len()], dx.len())?;
    }
    dxs.iter_mut().for_each(|dx| dx.copy_from_slice(dy));
    Ok(())
}

/// Each input seen as `(outer, size_i, inner)` around the concatenation axis.
fn concat_blocks(
    op: &'static str,
    input_dims: &[&[usize]],
    axis: usize,
) -> Result<(usize, usize, Vec<usize>)> {
    let mismatch = |reason: String| Error::ShapeMismatch {
        op,
        shapes: input_dims.iter().map(|d| Dims::from(*d)).collect(),
        reason,
    };
    let Some(first) = input_dims.first() else {
        return Err(mismatch("needs at least one input".into()));
    };
    if axis >= first.len() {
        return Err(mismatch(format!(
            "axis {axis} outside rank {}",
            first.len()
        )));
    }
    for (i, dims) in input_dims.iter().enumerate() {
        let same_rank = dims.len() == first.len();
        let same_off_axis = same_rank
            && dims
                .iter()
                .zip(first.iter())
                .enumerate()
                .all(|(a, (p, q))| a == axis || p == q);
        if !same_off_axis {
            return Err(mismatch(format!(
                "input {i} differs from input 0 off axis {axis}"
            )));
        }
        elements(op, dims)?;
    }
    let outer = first[..axis].iter().product();
    let inner: usize = first[axis + 1..].iter().product();
    let sizes = input_dims.iter().map(|d| d[axis] * inner).collect();
    Ok((outer, inner, sizes))
}

/// `y = [x_0 | x_1 | ...]` along `axis`; `input_dims[i]` is the shape of `inputs[i]`.
pub fn concat_forward(
    input_dims: &[&[usize]],
    axis: usize,
    inputs: &[&[f32]],
    y: &mut [f32],
) -> Result<()> {
    const OP: &str = "concat_forward";
    let (outer, _, sizes) = concat_blocks(OP, input_dims, axis)?;
    check_inputs(OP, input_dims, inputs.iter().map(|x| x.len()))?;
    let row: usize = sizes.iter().sum();
    check_len(OP, "y", [outer, row], y.len())?;
    for (o, out) in y.chunks_exact_mut(row.max(1)).take(outer).enumerate() {
        let mut start = 0;
        for (x, &size) in inputs.iter().zip(&sizes) {
            out[start..start + size].copy_from_slice(&x[o * size..(o + 1) * size]);
            start += size;
        }
    }
    Ok(())
}

/// `dx_i = dy[..., o_i : o_i + size_i, ...]` along `axis`, each overwritten.
pub fn concat_backward(
    input_dims: &[&[usize]],
    axis: usize,
    dy: &[f32],
    dxs: &mut [&mut [f32]],
) -> Result<()> {
    const OP: &str = "concat_backward";
    let (outer, _, sizes) = concat_blocks(OP, input_dims, axis)?;
    check_inputs(OP, input_dims, dxs.iter().map(|x| x.len()))?;
    let row: usize = sizes.iter().sum();
    check_len(OP, "dy", [outer, row], dy.len())?;
    for (o, grad) in dy.chunks_exact(row.max(1)).take(outer).enumerate() {
        let mut start = 0;
        for (dx, &size) in dxs.iter_mut().zip(&sizes) {
            dx[o * size..(o + 1) * size].copy_from_slice(&grad[start..start + size]);
            start += size;
        }
    }
    Ok(())
}

fn check_inputs(
    op: &'static str,
    dims: &[&[usize]],
    lens: impl ExactSizeIterator<Item = usize>,
) -> Result<()> {
    if lens.len() != dims.len() {
        return Err(crate::error::invalid(
            op,
            "inputs",
            format!("{} shapes for {} slices", dims.len(), lens.len()),
        ));
    }
    dims.iter()
        .zip(lens)
        .try_for_each(|(d, len)| check_len(op, "input", Dims::from(*d), len))
}
