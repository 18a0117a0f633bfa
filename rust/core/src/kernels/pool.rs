//! 2-D pooling over NCHW maps (`python/edgetrain/layers/pooling.py`) with NNTrainer's
//! semantics: padded cells never take part (max ignores them, average divides by the
//! number of real cells in the window); max keeps the flat position `h * W + w` of each
//! window's first maximum as `i32`, so its backward needs neither input nor output;
//! global max shares the derivative equally among tied maxima.

use super::window::Window2d;
use crate::error::{check_len, invalid, Result};
use crate::kernels::elements;

/// The shapes of one windowed pooling: `x (N, C, H, W)` to `y (N, C, OH, OW)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dShape {
    /// Samples `N`.
    pub batch: usize,
    /// Channels `C`.
    pub channels: usize,
    /// Pool size, stride and padding (dilation must be 1).
    pub window: Window2d,
}

struct Maps {
    count: usize,
    input: usize,
    output: usize,
    out: [usize; 2],
}

impl Pool2dShape {
    /// `(N, C, OH, OW)`, or the reason the geometry is invalid.
    pub fn output_dims(&self) -> Result<[usize; 4]> {
        let [oh, ow] = self.window.output("pool2d")?;
        Ok([self.batch, self.channels, oh, ow])
    }

    fn maps(&self, op: &'static str, x_len: usize, y_len: usize) -> Result<Maps> {
        let w = &self.window;
        let out = w.output(op)?;
        let p = w.padding;
        if w.dilation != [1, 1] {
            return Err(invalid(op, "dilation", "pooling has no dilation"));
        }
        if p.top.max(p.bottom) >= w.kernel[0] || p.left.max(p.right) >= w.kernel[1] {
            return Err(invalid(
                op,
                "padding",
                format!(
                    "{p:?} must be smaller than the pool size {:?} on every side",
                    w.kernel
                ),
            ));
        }
        let [h, wd] = w.input;
        if h == 0 || wd == 0 {
            return Err(invalid(
                op,
                "input",
                format!("{:?} is an empty map", w.input),
            ));
        }
        elements(op, &[self.batch, self.channels, h, wd])?;
        elements(op, &[self.batch, self.channels, out[0], out[1]])?;
        check_len(op, "x", [self.batch, self.channels, h, wd], x_len)?;
        check_len(op, "y", [self.batch, self.channels, out[0], out[1]], y_len)?;
        Ok(Maps {
            count: self.batch * self.channels,
            input: h * wd,
            output: out[0] * out[1],
            out,
        })
    }
}

/// Input rows `[lo, hi)` window position `o` covers on one axis (padding excluded).
fn span(w: &Window2d, axis: usize, o: usize) -> (usize, usize) {
    let before = if axis == 0 {
        w.padding.top
    } else {
        w.padding.left
    } as isize;
    let start = (o * w.stride[axis]) as isize - before;
    let end = start + w.kernel[axis] as isize;
    (
        start.max(0) as usize,
        end.min(w.input[axis] as isize) as usize,
    )
}

/// Calls `visit(position, rows, cols)` for every output cell of one map.
fn for_each_window(
    w: &Window2d,
    out: [usize; 2],
    mut visit: impl FnMut(usize, (usize, usize), (usize, usize)),
) {
    for oh in 0..out[0] {
        let rows = span(w, 0, oh);
        for ow in 0..out[1] {
            visit(oh * out[1] + ow, rows, span(w, 1, ow));
        }
    }
}

/// `y` = the largest real cell of every window, `argmax` = its position `h * W + w`
/// in the map (the first in row-major order on ties).
pub fn max_forward(
    shape: &Pool2dShape,
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [i32],
) -> Result<()> {
    const OP: &str = "max_pool2d_forward";
    let m = shape.maps(OP, x.len(), y.len())?;
    check_len(OP, "argmax", shape.output_dims()?, argmax.len())?;
    if m.input > i32::MAX as usize {
        return Err(invalid(
            OP,
            "input",
            "a map of more than 2^31 cells cannot be indexed by i32",
        ));
    }
    let width = shape.window.input[1];
    for map in 0..m.count {
        let cells = &x[map * m.input..(map + 1) * m.input];
        let peaks = &mut y[map * m.output..(map + 1) * m.output];
        let positions = &mut argmax[map * m.output..(map + 1) * m.output];
        for_each_window(&shape.window, m.out, |o, (r0, r1), (c0, c1)| {
            let (mut best, mut at) = (f32::NEG_INFINITY, r0 * width + c0);
            for r in r0..r1 {
                for (c, &v) in cells[r * width + c0..r * width + c1].iter().enumerate() {
                    if v > best {
                        (best, at) = (v, r * width + c0 + c);
                    }
                }
            }
            peaks[o] = cells[at];
            positions[o] = at as i32;
        });
    }
    Ok(())
}

/// `dx` = each output's derivative routed to its window's maximum (overwritten).
pub fn max_backward(shape: &Pool2dShape, dy: &[f32], argmax: &[i32], dx: &mut [f32]) -> Result<()> {
    const OP: &str = "max_pool2d_backward";
    let m = shape.maps(OP, dx.len(), dy.len())?;
    check_len(OP, "argmax", shape.output_dims()?, argmax.len())?;
    if let Some(bad) = argmax.iter().find(|&&p| p < 0 || p as usize >= m.input) {
        return Err(invalid(
            OP,
            "argmax",
            format!("position {bad} outside a map of {} cells", m.input),
        ));
    }
    dx.fill(0.0);
    for map in 0..m.count {
        let cells = &mut dx[map * m.input..(map + 1) * m.input];
        let grads = &dy[map * m.output..(map + 1) * m.output];
        for (&g, &p) in grads
            .iter()
            .zip(&argmax[map * m.output..(map + 1) * m.output])
        {
            cells[p as usize] += g;
        }
    }
    Ok(())
}

/// `y` = the mean of the real cells of every window.
pub fn average_forward(shape: &Pool2dShape, x: &[f32], y: &mut [f32]) -> Result<()> {
    let m = shape.maps("average_pool2d_forward", x.len(), y.len())?;
    let width = shape.window.input[1];
    for map in 0..m.count {
        let cells = &x[map * m.input..(map + 1) * m.input];
        let means = &mut y[map * m.output..(map + 1) * m.output];
        for_each_window(&shape.window, m.out, |o, (r0, r1), (c0, c1)| {
            let sum: f32 = (r0..r1)
                .map(|r| cells[r * width + c0..r * width + c1].iter().sum::<f32>())
                .sum();
            means[o] = sum / ((r1 - r0) * (c1 - c0)) as f32;
        });
    }
    Ok(())
}

/// `dx` = each output's derivative spread evenly over its window's real cells.
pub fn average_backward(shape: &Pool2dShape, dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let m = shape.maps("average_pool2d_backward", dx.len(), dy.len())?;
    let width = shape.window.input[1];
    dx.fill(0.0);
    for map in 0..m.count {
        let cells = &mut dx[map * m.input..(map + 1) * m.input];
        let grads = &dy[map * m.output..(map + 1) * m.output];
        for_each_window(&shape.window, m.out, |o, (r0, r1), (c0, c1)| {
            let share = grads[o] / ((r1 - r0) * (c1 - c0)) as f32;
            for r in r0..r1 {
                cells[r * width + c0..r * width + c1]
                    .iter_mut()
                    .for_each(|v| *v += share);
            }
        });
    }
    Ok(())
}

/// Shapes of a global pooling: `x (N, C, H, W)` to `y (N, C, 1, 1)`.
fn global_maps(
    op: &'static str,
    dims: [usize; 4],
    x_len: usize,
    y_len: usize,
) -> Result<(usize, usize)> {
    let [n, c, h, w] = dims;
    elements(op, &dims)?;
    if h == 0 || w == 0 {
        return Err(invalid(op, "input", format!("{dims:?} has an empty map")));
    }
    check_len(op, "x", dims, x_len)?;
    check_len(op, "y", [n, c, 1, 1], y_len)?;
    Ok((n * c, h * w))
}

/// `y` = the largest cell of every map; `mask` marks (1) every cell equal to it.
pub fn global_max_forward(
    dims: [usize; 4],
    x: &[f32],
    y: &mut [f32],
    mask: &mut [u8],
) -> Result<()> {
    const OP: &str = "global_max_pool2d_forward";
    let (count, size) = global_maps(OP, dims, x.len(), y.len())?;
    check_len(OP, "mask", dims, mask.len())?;
    for map in 0..count {
        let cells = &x[map * size..(map + 1) * size];
        let peak = cells.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (flag, &v) in mask[map * size..(map + 1) * size].iter_mut().zip(cells) {
            *flag = u8::from(v == peak);
        }
        y[map] = peak;
    }
    Ok(())
}

/// `dx` = each map's derivative shared equally among its tied maxima.
pub fn global_max_backward(
    dims: [usize; 4],
    dy: &[f32],
    mask: &[u8],
    dx: &mut [f32],
) -> Result<()> {
    const OP: &str = "global_max_pool2d_backward";
    let (count, size) = global_maps(OP, dims, dx.len(), dy.len())?;
    check_len(OP, "mask", dims, mask.len())?;
    for map in 0..count {
        let flags = &mask[map * size..(map + 1) * size];
        let ties = flags.iter().map(|&f| f as f32).sum::<f32>();
        let share = dy[map] / ties;
        for (v, &f) in dx[map * size..(map + 1) * size].iter_mut().zip(flags) {
            *v = f as f32 * share;
        }
    }
    Ok(())
}

/// `y` = the mean of every map.
pub fn global_average_forward(dims: [usize; 4], x: &[f32], y: &mut [f32]) -> Result<()> {
    let (count, size) = global_maps("global_average_pool2d_forward", dims, x.len(), y.len())?;
    for map in 0..count {
        y[map] = x[map * size..(map + 1) * size].iter().sum::<f32>() / size as f32;
    }
    Ok(())
}

/// `dx` = each map's derivative divided evenly over its cells.
pub fn global_average_backward(dims: [usize; 4], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let (count, size) = global_maps("global_average_pool2d_backward", dims, dx.len(), dy.len())?;
    for map in 0..count {
        let share = dy[map] / size as f32;
        dx[map * size..(map + 1) * size].fill(share);
    }
    Ok(())
}
