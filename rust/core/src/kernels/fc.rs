//! Fully connected layer over the last axis (`python/edgetrain/layers/fully_connected.py`):
//! `y = x @ W + b` with `x (rows, in)`, `W (in, units)`, `b (units,)`, `y (rows, units)`,
//! where `rows` is the product of every leading axis of the input.

use crate::error::{check_len, invalid, Result};
use crate::gemm::{gemm, GemmSpec};
use crate::kernels::elements;

/// The sizes of one fully connected product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcShape {
    /// Rows of the input: every axis but the last, multiplied.
    pub rows: usize,
    /// Input features (the last axis of `x`).
    pub inputs: usize,
    /// Output features.
    pub units: usize,
}

impl FcShape {
    fn check(&self, op: &'static str) -> Result<()> {
        if self.inputs == 0 || self.units == 0 {
            return Err(invalid(
                op,
                "shape",
                format!("{self:?}: inputs and units must be positive"),
            ));
        }
        elements(op, &[self.rows, self.inputs])?;
        elements(op, &[self.inputs, self.units])?;
        elements(op, &[self.rows, self.units])?;
        Ok(())
    }
}

/// `y = x @ weight (+ bias)`, overwriting `y`.
pub fn forward(
    shape: &FcShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    const OP: &str = "fc_forward";
    let FcShape {
        rows,
        inputs,
        units,
    } = *shape;
    shape.check(OP)?;
    check_len(OP, "x", [rows, inputs], x.len())?;
    check_len(OP, "weight", [inputs, units], weight.len())?;
    check_len(OP, "y", [rows, units], y.len())?;
    if let Some(b) = bias {
        check_len(OP, "bias", [units], b.len())?;
    }
    gemm(
        &GemmSpec::new(rows, units, inputs).threads(threads),
        x,
        weight,
        y,
    )?;
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(units) {
            row.iter_mut().zip(b).for_each(|(v, &bj)| *v += bj);
        }
    }
    Ok(())
}

/// `d_weight = x^T @ dy`, `d_bias = sum of dy over rows`; both overwritten.
pub fn grad_weight(
    shape: &FcShape,
    x: &[f32],
    dy: &[f32],
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    threads: usize,
) -> Result<()> {
    const OP: &str = "fc_grad_weight";
    let FcShape {
        rows,
        inputs,
        units,
    } = *shape;
    shape.check(OP)?;
    check_len(OP, "x", [rows, inputs], x.len())?;
    check_len(OP, "dy", [rows, units], dy.len())?;
    check_len(OP, "d_weight", [inputs, units], d_weight.len())?;
    if let Some(db) = &d_bias {
        check_len(OP, "d_bias", [units], db.len())?;
    }
    let spec = GemmSpec::new(inputs, units, rows)
        .transpose_a()
        .threads(threads);
    gemm(&spec, x, dy, d_weight)?;
    if let Some(db) = d_bias {
        db.fill(0.0);
        for row in dy.chunks_exact(units) {
            db.iter_mut().zip(row).for_each(|(acc, &g)| *acc += g);
        }
    }
    Ok(())
}

/// `dx = dy @ weight^T`, overwritten.
pub fn backward_input(
    shape: &FcShape,
    dy: &[f32],
    weight: &[f32],
    dx: &mut [f32],
    threads: usize,
) -> Result<()> {
    const OP: &str = "fc_backward_input";
    let FcShape {
        rows,
        inputs,
        units,
    } = *shape;
    shape.check(OP)?;
    check_len(OP, "dy", [rows, units], dy.len())?;
    check_len(OP, "weight", [inputs, units], weight.len())?;
    check_len(OP, "dx", [rows, inputs], dx.len())?;
    let spec = GemmSpec::new(rows, inputs, units)
        .transpose_b()
        .threads(threads);
    gemm(&spec, dy, weight, dx)
}
