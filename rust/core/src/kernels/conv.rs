//! 2-D convolution over NCHW input as im2col + GEMM (`python/edgetrain/layers/conv2d.py`,
//! `spec/layers/conv2d.md`).
//!
//! `x (N, C, H, W)`, `weight (F, C, kh, kw)`, `bias (F,)`, `y (N, F, OH, OW)`. Samples go
//! through the GEMM `samples_per_gemm` at a time: their column matrices side by side
//! (`C*kh*kw x s*OH*OW`, the `col` scratch) and, when `s > 1`, the product staged as
//! `F x s*OH*OW` (the `stage` scratch) and reordered into NCHW. One sample at a time
//! (`s = 1`, the spec's layout) needs no stage and the least memory; several make the
//! GEMM wide enough to be fast on small maps (`docs/gemm.md`). A 1x1, stride-1,
//! unpadded window with `s = 1` skips im2col: the map is its own column matrix.

use super::window::{col2im_block, im2col_block, ColumnBlock, Window2d};
use crate::error::{check_len, invalid, Result};
use crate::gemm::{gemm, GemmSpec};
use crate::kernels::{elements, reduce};

/// The shapes of one convolution and how many samples share a GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Samples `N`.
    pub batch: usize,
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `F`.
    pub filters: usize,
    /// Kernel, stride, dilation and padding over the `H x W` map.
    pub window: Window2d,
    /// Samples whose columns go through one GEMM (at least 1; more than `batch` acts
    /// as `batch`).
    pub samples_per_gemm: usize,
}

/// The caller's temporaries: `col` of [`Conv2dShape::col_len`] elements, `stage` of
/// [`Conv2dShape::stage_len`] (empty when one sample goes at a time).
#[derive(Debug)]
pub struct ConvScratch<'a> {
    /// Column matrix, [`Conv2dShape::col_len`] elements.
    pub col: &'a mut [f32],
    /// Staged product, [`Conv2dShape::stage_len`] elements.
    pub stage: &'a mut [f32],
}

/// The validated sizes every conv kernel works with.
struct Geometry {
    in_map: usize,
    out_map: usize,
    taps: usize,
    out: [usize; 2],
    chunk: usize,
}

impl Conv2dShape {
    /// One sample per GEMM (the spec's layout).
    pub fn new(batch: usize, in_channels: usize, filters: usize, window: Window2d) -> Self {
        Conv2dShape {
            batch,
            in_channels,
            filters,
            window,
            samples_per_gemm: 1,
        }
    }

    /// The smallest `samples_per_gemm` giving the GEMM at least `columns` columns
    /// (`s * OH*OW`), capped at the batch. Measured on x86-64 (`docs/gemm.md`): below
    /// ~64 columns one sample per GEMM is several times slower; above, batching only
    /// costs memory.
    pub fn samples_for_columns(&self, columns: usize) -> Result<usize> {
        let [oh, ow] = self.window.output("conv2d")?;
        let map = (oh * ow).max(1);
        Ok(columns.div_ceil(map).clamp(1, self.batch.max(1)))
    }

    /// `(N, F, OH, OW)`, or the reason the geometry is invalid.
    pub fn output_dims(&self) -> Result<[usize; 4]> {
        let [oh, ow] = self.window.output("conv2d")?;
        Ok([self.batch, self.filters, oh, ow])
    }

    fn chunk(&self) -> usize {
        self.samples_per_gemm.min(self.batch).max(1)
    }

    /// Elements of the `col` scratch: `C*kh*kw * s*OH*OW`.
    pub fn col_len(&self) -> Result<usize> {
        let [oh, ow] = self.window.output("conv2d")?;
        let [kh, kw] = self.window.kernel;
        elements("conv2d", &[self.in_channels, kh, kw, self.chunk(), oh, ow])
    }

    /// Elements of the `stage` scratch: `F * s*OH*OW` when `s > 1`, else 0.
    pub fn stage_len(&self) -> Result<usize> {
        let [oh, ow] = self.window.output("conv2d")?;
        if self.chunk() == 1 {
            return Ok(0);
        }
        elements("conv2d", &[self.filters, self.chunk(), oh, ow])
    }

    fn input_dims(&self) -> [usize; 4] {
        let [h, w] = self.window.input;
        [self.batch, self.in_channels, h, w]
    }

    fn weight_dims(&self) -> [usize; 4] {
        let [kh, kw] = self.window.kernel;
        [self.filters, self.in_channels, kh, kw]
    }

    fn output_shape(&self, g: &Geometry) -> [usize; 4] {
        [self.batch, self.filters, g.out[0], g.out[1]]
    }

    fn geometry(&self, op: &'static str, scratch: &ConvScratch) -> Result<Geometry> {
        if self.filters == 0 || self.in_channels == 0 || self.samples_per_gemm == 0 {
            return Err(invalid(
                op,
                "shape",
                format!("{self:?}: channels, filters and samples_per_gemm must be positive"),
            ));
        }
        let out = self.window.output(op)?;
        let [kh, kw] = self.window.kernel;
        let [h, w] = self.window.input;
        let taps = elements(op, &[self.in_channels, kh, kw])?;
        let out_map = elements(op, &out)?;
        let chunk = self.chunk();
        elements(op, &[self.batch, self.filters, out_map])?;
        let in_map =
            elements(op, &[self.batch.max(1), self.in_channels, h, w])? / self.batch.max(1);
        let columns = elements(op, &[chunk, out_map])?;
        check_len(op, "col", [taps, columns], scratch.col.len())?;
        let stage = if chunk == 1 { 0 } else { self.filters };
        check_len(op, "stage", [stage, columns], scratch.stage.len())?;
        Ok(Geometry {
            in_map,
            out_map,
            taps,
            out,
            chunk,
        })
    }
}

/// Sample ranges `(first, count)` of at most `chunk` samples.
fn chunks(batch: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..batch)
        .step_by(chunk)
        .map(move |first| (first, chunk.min(batch - first)))
}

/// Where sample `n`, filter `f` of a block of `count` samples sits in the staged
/// `F x count*OH*OW` matrix.
fn staged_at(f: usize, n: usize, out_map: usize, count: usize) -> usize {
    f * count * out_map + n * out_map
}

/// The NCHW block of `count` samples (`F x OH*OW` each) laid out as `F x count*OH*OW`.
fn to_stage(block: &[f32], stage: &mut [f32], filters: usize, out_map: usize, count: usize) {
    for (index, map) in block.chunks_exact(out_map).enumerate() {
        let (n, f) = (index / filters, index % filters);
        stage[staged_at(f, n, out_map, count)..][..out_map].copy_from_slice(map);
    }
}

/// The inverse of [`to_stage`].
fn from_stage(stage: &[f32], block: &mut [f32], filters: usize, out_map: usize, count: usize) {
    for (index, map) in block.chunks_exact_mut(out_map).enumerate() {
        let (n, f) = (index / filters, index % filters);
        map.copy_from_slice(&stage[staged_at(f, n, out_map, count)..][..out_map]);
    }
}

/// Writes the column matrix of samples `first..first + count` into `col`.
fn fill_columns(
    shape: &Conv2dShape,
    g: &Geometry,
    x: &[f32],
    first: usize,
    count: usize,
    col: &mut [f32],
) -> Result<()> {
    let row_len = count * g.out_map;
    let col = &mut col[..g.taps * row_len];
    for n in 0..count {
        let sample = &x[(first + n) * g.in_map..][..g.in_map];
        let block = ColumnBlock {
            row_len,
            first: n * g.out_map,
        };
        im2col_block(&shape.window, shape.in_channels, sample, col, block)?;
    }
    Ok(())
}

/// Whether the input maps serve as their own column matrices (1x1 window, one sample
/// per GEMM).
fn direct(shape: &Conv2dShape, g: &Geometry) -> bool {
    shape.window.is_identity() && g.chunk == 1
}

/// `y = weight (F x C*kh*kw) @ columns(x) + bias`, overwritten.
pub fn forward(
    shape: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: ConvScratch,
    threads: usize,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    let g = shape.geometry(OP, &scratch)?;
    check_len(OP, "x", shape.input_dims(), x.len())?;
    check_len(OP, "weight", shape.weight_dims(), weight.len())?;
    check_len(OP, "y", shape.output_shape(&g), y.len())?;
    if let Some(b) = bias {
        check_len(OP, "bias", [shape.filters], b.len())?;
    }
    let per_sample = shape.filters * g.out_map;
    for (first, count) in chunks(shape.batch, g.chunk) {
        let out = &mut y[first * per_sample..(first + count) * per_sample];
        let spec = GemmSpec::new(shape.filters, count * g.out_map, g.taps).threads(threads);
        if direct(shape, &g) {
            gemm(&spec, weight, &x[first * g.in_map..][..g.in_map], out)?;
        } else {
            fill_columns(shape, &g, x, first, count, scratch.col)?;
            let col = &scratch.col[..g.taps * count * g.out_map];
            if count == 1 {
                gemm(&spec, weight, col, out)?;
            } else {
                let stage = &mut scratch.stage[..shape.filters * count * g.out_map];
                gemm(&spec, weight, col, stage)?;
                from_stage(stage, out, shape.filters, g.out_map, count);
            }
        }
        if let Some(b) = bias {
            for (index, map) in out.chunks_exact_mut(g.out_map).enumerate() {
                let bf = b[index % shape.filters];
                map.iter_mut().for_each(|v| *v += bf);
            }
        }
    }
    Ok(())
}

/// `d_weight = sum over samples of dy (F x OH*OW) @ columns(x)^T`, `d_bias = sum of dy
/// over (N, OH, OW)`; both overwritten.
pub fn grad_weight(
    shape: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    scratch: ConvScratch,
    threads: usize,
) -> Result<()> {
    const OP: &str = "conv2d_grad_weight";
    let g = shape.geometry(OP, &scratch)?;
    check_len(OP, "x", shape.input_dims(), x.len())?;
    check_len(OP, "dy", shape.output_shape(&g), dy.len())?;
    check_len(OP, "d_weight", shape.weight_dims(), d_weight.len())?;
    if let Some(db) = &d_bias {
        check_len(OP, "d_bias", [shape.filters], db.len())?;
    }
    d_weight.fill(0.0);
    let per_sample = shape.filters * g.out_map;
    for (first, count) in chunks(shape.batch, g.chunk) {
        let spec = GemmSpec::new(shape.filters, g.taps, count * g.out_map)
            .transpose_b()
            .accumulate()
            .threads(threads);
        let grad = &dy[first * per_sample..(first + count) * per_sample];
        if direct(shape, &g) {
            gemm(&spec, grad, &x[first * g.in_map..][..g.in_map], d_weight)?;
            continue;
        }
        fill_columns(shape, &g, x, first, count, scratch.col)?;
        let col = &scratch.col[..g.taps * count * g.out_map];
        if count == 1 {
            gemm(&spec, grad, col, d_weight)?;
        } else {
            let stage = &mut scratch.stage[..shape.filters * count * g.out_map];
            to_stage(grad, stage, shape.filters, g.out_map, count);
            gemm(&spec, stage, col, d_weight)?;
        }
    }
    if let Some(db) = d_bias {
        // f64 lanes (`reduce`): an f32 running sum would be one dependent addition per
        // element of `dy`, ~3 ms on a 32x32 map of VGG-16 b32.
        let mut sums = vec![0f64; shape.filters];
        for (index, map) in dy.chunks_exact(g.out_map).enumerate() {
            let f = index % shape.filters;
            sums[f] = reduce::add_sum(sums[f], map);
        }
        for (b, sum) in db.iter_mut().zip(sums) {
            *b = sum as f32;
        }
    }
    Ok(())
}

/// `dx = col2im(weight^T (C*kh*kw x F) @ dy)` per sample, overwritten.
pub fn backward_input(
    shape: &Conv2dShape,
    dy: &[f32],
    weight: &[f32],
    dx: &mut [f32],
    scratch: ConvScratch,
    threads: usize,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    let g = shape.geometry(OP, &scratch)?;
    check_len(OP, "dy", shape.output_shape(&g), dy.len())?;
    check_len(OP, "weight", shape.weight_dims(), weight.len())?;
    check_len(OP, "dx", shape.input_dims(), dx.len())?;
    let per_sample = shape.filters * g.out_map;
    for (first, count) in chunks(shape.batch, g.chunk) {
        let spec = GemmSpec::new(g.taps, count * g.out_map, shape.filters)
            .transpose_a()
            .threads(threads);
        let grad = &dy[first * per_sample..(first + count) * per_sample];
        if direct(shape, &g) {
            gemm(&spec, weight, grad, &mut dx[first * g.in_map..][..g.in_map])?;
            continue;
        }
        let row_len = count * g.out_map;
        let col = &mut scratch.col[..g.taps * row_len];
        if count == 1 {
            gemm(&spec, weight, grad, col)?;
        } else {
            let stage = &mut scratch.stage[..shape.filters * row_len];
            to_stage(grad, stage, shape.filters, g.out_map, count);
            gemm(&spec, weight, stage, col)?;
        }
        for n in 0..count {
            let out = &mut dx[(first + n) * g.in_map..][..g.in_map];
            let block = ColumnBlock {
                row_len,
                first: n * g.out_map,
            };
            col2im_block(&shape.window, shape.in_channels, col, out, block)?;
        }
    }
    Ok(())
}
