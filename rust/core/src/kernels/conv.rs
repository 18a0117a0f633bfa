//! 2-D convolution over NCHW input as im2col + GEMM per sample
//! (`python/edgetrain/layers/conv2d.py`, `spec/layers/conv2d.md`).
//!
//! `x (N, C, H, W)`, `weight (F, C, kh, kw)`, `bias (F,)`, `y (N, F, OH, OW)`. The column
//! matrix of one sample (`C*kh*kw x OH*OW`, [`Conv2dShape::col_len`]) is the only
//! temporary; the caller passes it as `col`. A 1x1, stride-1, unpadded window skips it:
//! the map itself is its column matrix.

use super::window::{col2im, im2col, Window2d};
use crate::error::{check_len, invalid, Result};
use crate::gemm::{gemm, GemmSpec};
use crate::kernels::elements;

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_channels: usize,
    pub filters: usize,
    pub window: Window2d,
}

/// The validated sizes every conv kernel works with.
struct Geometry {
    in_map: usize,
    out_map: usize,
    taps: usize,
    out: [usize; 2],
}

impl Conv2dShape {
    /// `(N, F, OH, OW)`, or the reason the geometry is invalid.
    pub fn output_dims(&self) -> Result<[usize; 4]> {
        let [oh, ow] = self.window.output("conv2d")?;
        Ok([self.batch, self.filters, oh, ow])
    }

    /// Elements of the `col` scratch: `C*kh*kw * OH*OW`.
    pub fn col_len(&self) -> Result<usize> {
        let [oh, ow] = self.window.output("conv2d")?;
        let [kh, kw] = self.window.kernel;
        elements("conv2d", &[self.in_channels, kh, kw, oh, ow])
    }

    fn input_dims(&self) -> [usize; 4] {
        let [h, w] = self.window.input;
        [self.batch, self.in_channels, h, w]
    }

    fn weight_dims(&self) -> [usize; 4] {
        let [kh, kw] = self.window.kernel;
        [self.filters, self.in_channels, kh, kw]
    }

    fn geometry(&self, op: &'static str, col: &[f32]) -> Result<Geometry> {
        let out = self.window.output(op)?;
        let [kh, kw] = self.window.kernel;
        let [h, w] = self.window.input;
        let taps = elements(op, &[self.in_channels, kh, kw])?;
        let out_map = elements(op, &out)?;
        elements(op, &[taps, out_map])?;
        elements(op, &[self.batch, self.filters, out_map])?;
        let in_map = elements(op, &[self.batch, self.in_channels, h, w])? / self.batch.max(1);
        check_len(op, "col", [taps, out_map], col.len())?;
        if self.filters == 0 || self.in_channels == 0 {
            return Err(invalid(
                op,
                "channels",
                "in_channels and filters must be positive",
            ));
        }
        Ok(Geometry {
            in_map,
            out_map,
            taps,
            out,
        })
    }

    fn output_shape(&self, g: &Geometry) -> [usize; 4] {
        [self.batch, self.filters, g.out[0], g.out[1]]
    }
}

/// `y[n] = weight (F x C*kh*kw) @ col(x[n]) + bias`.
pub fn forward(
    shape: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    col: &mut [f32],
    threads: usize,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    let g = shape.geometry(OP, col)?;
    check_len(OP, "x", shape.input_dims(), x.len())?;
    check_len(OP, "weight", shape.weight_dims(), weight.len())?;
    check_len(OP, "y", shape.output_shape(&g), y.len())?;
    if let Some(b) = bias {
        check_len(OP, "bias", [shape.filters], b.len())?;
    }
    let spec = GemmSpec::new(shape.filters, g.out_map, g.taps).threads(threads);
    let per_sample = shape.filters * g.out_map;
    for n in 0..shape.batch {
        let sample = &x[n * g.in_map..(n + 1) * g.in_map];
        let out = &mut y[n * per_sample..(n + 1) * per_sample];
        if shape.window.is_identity() {
            gemm(&spec, weight, sample, out)?;
        } else {
            im2col(&shape.window, shape.in_channels, sample, col)?;
            gemm(&spec, weight, col, out)?;
        }
        if let Some(b) = bias {
            for (map, &bf) in out.chunks_exact_mut(g.out_map).zip(b) {
                map.iter_mut().for_each(|v| *v += bf);
            }
        }
    }
    Ok(())
}

/// `d_weight = sum_n dy[n] (F x OH*OW) @ col(x[n])^T`, `d_bias = sum over (N, OH, OW)`
/// of `dy`; both overwritten.
pub fn grad_weight(
    shape: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    col: &mut [f32],
    threads: usize,
) -> Result<()> {
    const OP: &str = "conv2d_grad_weight";
    let g = shape.geometry(OP, col)?;
    check_len(OP, "x", shape.input_dims(), x.len())?;
    check_len(OP, "dy", shape.output_shape(&g), dy.len())?;
    check_len(OP, "d_weight", shape.weight_dims(), d_weight.len())?;
    if let Some(db) = &d_bias {
        check_len(OP, "d_bias", [shape.filters], db.len())?;
    }
    if shape.batch == 0 {
        d_weight.fill(0.0);
    }
    let first = GemmSpec::new(shape.filters, g.taps, g.out_map)
        .transpose_b()
        .threads(threads);
    let per_sample = shape.filters * g.out_map;
    for n in 0..shape.batch {
        let sample = &x[n * g.in_map..(n + 1) * g.in_map];
        let grad = &dy[n * per_sample..(n + 1) * per_sample];
        let spec = if n == 0 { first } else { first.accumulate() };
        if shape.window.is_identity() {
            gemm(&spec, grad, sample, d_weight)?;
        } else {
            im2col(&shape.window, shape.in_channels, sample, col)?;
            gemm(&spec, grad, col, d_weight)?;
        }
    }
    if let Some(db) = d_bias {
        db.fill(0.0);
        for (index, map) in dy.chunks_exact(g.out_map.max(1)).enumerate() {
            db[index % shape.filters] += map.iter().sum::<f32>();
        }
    }
    Ok(())
}

/// `dx[n] = col2im(weight^T (C*kh*kw x F) @ dy[n])`, overwritten.
pub fn backward_input(
    shape: &Conv2dShape,
    dy: &[f32],
    weight: &[f32],
    dx: &mut [f32],
    col: &mut [f32],
    threads: usize,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    let g = shape.geometry(OP, col)?;
    check_len(OP, "dy", shape.output_shape(&g), dy.len())?;
    check_len(OP, "weight", shape.weight_dims(), weight.len())?;
    check_len(OP, "dx", shape.input_dims(), dx.len())?;
    let spec = GemmSpec::new(g.taps, g.out_map, shape.filters)
        .transpose_a()
        .threads(threads);
    let per_sample = shape.filters * g.out_map;
    for n in 0..shape.batch {
        let grad = &dy[n * per_sample..(n + 1) * per_sample];
        let out = &mut dx[n * g.in_map..(n + 1) * g.in_map];
        if shape.window.is_identity() {
            gemm(&spec, weight, grad, out)?;
        } else {
            gemm(&spec, weight, grad, col)?;
            col2im(&shape.window, shape.in_channels, col, out)?;
        }
    }
    Ok(())
}
