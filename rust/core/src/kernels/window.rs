//! Sliding-window geometry shared by convolution and pooling, and the im2col / col2im
//! rearrangements (`python/edgetrain/layers/window.py`).
//!
//! A window position `(oh, ow)` reads input cell `(oh * sh + i * dh - top,
//! ow * sw + j * dw - left)` for tap `(i, j)`; cells outside the map are padding.

use rayon::prelude::*;

use crate::error::{check_len, invalid, Result};
use crate::kernels::elements;

/// Explicit padding of the two spatial axes; `same` is resolved by the caller (the
/// Python spec's `resolve_window`), so uneven amounts arrive here as numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Padding {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

impl Padding {
    /// The same amount on every side.
    pub fn uniform(amount: usize) -> Self {
        Padding {
            top: amount,
            bottom: amount,
            left: amount,
            right: amount,
        }
    }
}

/// One sliding window over an `input[0] x input[1]` (H x W) map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    /// The map size `(H, W)`.
    pub input: [usize; 2],
    /// Kernel (or pool) size `(kh, kw)`.
    pub kernel: [usize; 2],
    /// Step between window positions `(sh, sw)`.
    pub stride: [usize; 2],
    /// Step between kernel taps `(dh, dw)`.
    pub dilation: [usize; 2],
    /// Cells of zero (or, for pooling, of nothing) around the map.
    pub padding: Padding,
}

impl Window2d {
    /// A `kernel` window with stride and dilation 1 and no padding.
    pub fn new(input: [usize; 2], kernel: [usize; 2]) -> Self {
        Window2d {
            input,
            kernel,
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::default(),
        }
    }

    /// The span of the kernel on the input, dilation included.
    pub fn effective_kernel(&self) -> [usize; 2] {
        [0, 1].map(|a| {
            (self.kernel[a].saturating_sub(1))
                .saturating_mul(self.dilation[a])
                .saturating_add(1)
        })
    }

    /// The input size with padding added.
    pub fn padded(&self) -> [usize; 2] {
        let p = self.padding;
        [
            self.input[0].saturating_add(p.top).saturating_add(p.bottom),
            self.input[1].saturating_add(p.left).saturating_add(p.right),
        ]
    }

    /// Checks the geometry for `op` and returns the output size `(OH, OW)`:
    /// `(padded - effective_kernel) / stride + 1` per axis (a last partial window is dropped).
    pub fn output(&self, op: &'static str) -> Result<[usize; 2]> {
        for (what, pair) in [
            ("kernel", self.kernel),
            ("stride", self.stride),
            ("dilation", self.dilation),
        ] {
            if pair.contains(&0) {
                return Err(invalid(op, what, format!("{pair:?} must be positive")));
            }
        }
        let p = self.padding;
        let too_large = [
            self.input[0],
            p.top,
            p.bottom,
            self.input[1],
            p.left,
            p.right,
        ]
        .iter()
        .chain(&self.kernel)
        .chain(&self.dilation)
        .any(|&v| v > u32::MAX as usize);
        if too_large {
            return Err(invalid(
                op,
                "window",
                format!("{self:?} has a size above 2^32"),
            ));
        }
        let (padded, span) = (self.padded(), self.effective_kernel());
        if padded[0] < span[0] || padded[1] < span[1] {
            return Err(invalid(
                op,
                "window",
                format!(
                    "input {:?} padded by {:?} is {:?}, smaller than the kernel span {:?}",
                    self.input, self.padding, padded, span
                ),
            ));
        }
        Ok([0, 1].map(|a| (padded[a] - span[a]) / self.stride[a] + 1))
    }

    /// Whether the window reads every cell exactly once in order (1x1, stride 1, no
    /// padding), so the column matrix of a map is the map itself.
    pub fn is_identity(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == Padding::default()
    }

    /// The rows of the column matrix per input channel: `kh * kw`.
    pub fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }
}

/// The outputs `o` in `[lo, hi)` of `0..out` whose input `o * stride + offset` lies in
/// `0..size`; outside it the window reads padding.
pub(crate) fn valid_outputs(
    out: usize,
    stride: usize,
    offset: isize,
    size: usize,
) -> (usize, usize) {
    let stride = stride as isize;
    let ceil_div = |a: isize| if a <= 0 { 0 } else { (a + stride - 1) / stride };
    let lo = ceil_div(-offset).min(out as isize) as usize;
    let hi = ceil_div(size as isize - offset).min(out as isize) as usize;
    (lo, hi.max(lo))
}

/// The offset of tap `tap` on axis `axis`: input index = `o * stride + offset`.
fn tap_offset(w: &Window2d, axis: usize, tap: usize) -> isize {
    let before = if axis == 0 {
        w.padding.top
    } else {
        w.padding.left
    };
    (tap * w.dilation[axis]) as isize - before as isize
}

/// Where one sample's columns sit in a column matrix shared by several samples: rows of
/// `row_len` entries, this sample's `OH*OW` columns starting at `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnBlock {
    /// Entries per row of the shared matrix.
    pub row_len: usize,
    /// The first column of this sample.
    pub first: usize,
}

/// Validates a column matrix of `col_len` elements holding `block` for `op`; returns
/// the number of its rows and the output size.
fn check_columns(
    op: &'static str,
    window: &Window2d,
    channels: usize,
    col_len: usize,
    block: ColumnBlock,
) -> Result<(usize, [usize; 2])> {
    let [oh, ow] = window.output(op)?;
    let rows = elements(op, &[channels, window.kernel[0], window.kernel[1]])?;
    let map = elements(op, &[oh, ow])?;
    if block
        .first
        .checked_add(map)
        .is_none_or(|end| end > block.row_len)
    {
        return Err(invalid(
            op,
            "block",
            format!(
                "{map} columns from {} do not fit rows of {}",
                block.first, block.row_len
            ),
        ));
    }
    elements(op, &[rows, block.row_len])?;
    check_len(op, "col", [rows, block.row_len], col_len)?;
    Ok((rows, [oh, ow]))
}

/// The column matrix of one sample: `x (C, H, W)` into `col (C*kh*kw, OH*OW)`, row
/// `(c, i, j)` (the weight's `(in, kh, kw)` order), column `(oh, ow)`; padding reads 0.
pub fn im2col(window: &Window2d, channels: usize, x: &[f32], col: &mut [f32]) -> Result<()> {
    let [oh, ow] = window.output("im2col")?;
    let whole = ColumnBlock {
        row_len: oh * ow,
        first: 0,
    };
    im2col_block(window, channels, x, col, whole)
}

/// [`im2col`] into the columns `block` names of a matrix shared by several samples.
pub fn im2col_block(
    window: &Window2d,
    channels: usize,
    x: &[f32],
    col: &mut [f32],
    block: ColumnBlock,
) -> Result<()> {
    const OP: &str = "im2col";
    let (_, [oh, ow]) = check_columns(OP, window, channels, col.len(), block)?;
    let [h, w] = window.input;
    check_len(OP, "x", [channels, h, w], x.len())?;
    let spans = TapSpan::all(window, [oh, ow]);
    let taps = spans.len();
    // Channel c owns rows c*taps .. (c+1)*taps: the channels fill disjoint rows.
    let fill = |(c, rows): (usize, &mut [f32])| {
        let map = &x[c * h * w..(c + 1) * h * w];
        for (tap, span) in spans.iter().enumerate() {
            gather_tap(
                span,
                map,
                &mut rows[tap * block.row_len + block.first..][..oh * ow],
            );
        }
    };
    let rows = taps * block.row_len;
    if parallel(channels * taps * oh * ow) {
        col.par_chunks_exact_mut(rows).enumerate().for_each(fill);
    } else {
        col.chunks_exact_mut(rows).enumerate().for_each(fill);
    }
    Ok(())
}

/// The adjoint of [`im2col`]: every column entry added back onto the input cell it was
/// read from, overwriting `x (C, H, W)`; entries read from padding are dropped.
pub fn col2im(window: &Window2d, channels: usize, col: &[f32], x: &mut [f32]) -> Result<()> {
    let [oh, ow] = window.output("col2im")?;
    let whole = ColumnBlock {
        row_len: oh * ow,
        first: 0,
    };
    col2im_block(window, channels, col, x, whole)
}

/// [`col2im`] from the columns `block` names of a matrix shared by several samples.
pub fn col2im_block(
    window: &Window2d,
    channels: usize,
    col: &[f32],
    x: &mut [f32],
    block: ColumnBlock,
) -> Result<()> {
    const OP: &str = "col2im";
    let (_, [oh, ow]) = check_columns(OP, window, channels, col.len(), block)?;
    let [h, w] = window.input;
    check_len(OP, "x", [channels, h, w], x.len())?;
    let spans = TapSpan::all(window, [oh, ow]);
    let taps = spans.len();
    // Channel c's map gathers only from its own rows c*taps .. (c+1)*taps.
    let gather = |(c, map): (usize, &mut [f32])| {
        map.fill(0.0);
        for (tap, span) in spans.iter().enumerate() {
            let row = c * taps + tap;
            scatter_tap(
                span,
                &col[row * block.row_len + block.first..][..oh * ow],
                map,
            );
        }
    };
    if parallel(channels * taps * oh * ow) {
        x.par_chunks_exact_mut(h * w).enumerate().for_each(gather);
    } else {
        x.chunks_exact_mut(h * w).enumerate().for_each(gather);
    }
    Ok(())
}

/// Column entries below which one thread copies them faster than several share them.
const PARALLEL_ENTRIES: usize = 1 << 15;

/// Whether to spread `entries` column entries over the threads of the current pool (the
/// executor's; one thread: never). Each channel's rows and map are its own, so the
/// result is the same either way.
fn parallel(entries: usize) -> bool {
    entries >= PARALLEL_ENTRIES && rayon::current_num_threads() > 1
}

/// Which output cells one kernel tap `(i, j)` reads from inside the map (the rest read
/// padding) and where: the same for every channel and sample, so computed once per tap
/// (its divisions dominated im2col on 2x2 and 4x4 maps when done per row).
#[derive(Clone, Copy, Debug)]
struct TapSpan {
    /// Input width `W` and strides.
    width: usize,
    stride: [usize; 2],
    /// Output size `(OH, OW)`.
    out: [usize; 2],
    /// Input row of output row `o` is `o * sh + off_h`.
    off_h: isize,
    /// Output rows `h_lo..h_hi` and columns `w_lo..w_hi` read inside the map.
    h: (usize, usize),
    w: (usize, usize),
    /// Input column read by output column `w_lo`.
    first: usize,
}

impl TapSpan {
    /// The spans of every tap, indexed `i * kw + j`.
    fn all(window: &Window2d, out: [usize; 2]) -> Vec<TapSpan> {
        let [h, w] = window.input;
        let [sh, sw] = window.stride;
        let [kh, kw] = window.kernel;
        (0..kh * kw)
            .map(|tap| {
                let (off_h, off_w) = (
                    tap_offset(window, 0, tap / kw),
                    tap_offset(window, 1, tap % kw),
                );
                let (w_lo, w_hi) = valid_outputs(out[1], sw, off_w, w);
                TapSpan {
                    width: w,
                    stride: [sh, sw],
                    out,
                    off_h,
                    h: valid_outputs(out[0], sh, off_h, h),
                    w: (w_lo, w_hi),
                    first: (w_lo as isize * sw as isize + off_w).max(0) as usize,
                }
            })
            .collect()
    }

    /// The input row (`W` cells) output row `o` reads, for `o` in `h.0..h.1`.
    fn line_start(&self, o: usize) -> usize {
        (o as isize * self.stride[0] as isize + self.off_h) as usize * self.width
    }
}

/// `rows (OH*OW)` = the cells tap `span` reads from one map, zero where it reads padding.
fn gather_tap(span: &TapSpan, map: &[f32], rows: &mut [f32]) {
    let (h_lo, h_hi) = span.h;
    let (w_lo, w_hi) = span.w;
    let sw = span.stride[1];
    for (o, row) in rows.chunks_exact_mut(span.out[1]).enumerate() {
        if o < h_lo || o >= h_hi || w_lo == w_hi {
            row.fill(0.0);
            continue;
        }
        let line = &map[span.line_start(o)..][..span.width];
        row[..w_lo].fill(0.0);
        row[w_hi..].fill(0.0);
        let first = span.first;
        if sw == 1 {
            row[w_lo..w_hi].copy_from_slice(&line[first..first + (w_hi - w_lo)]);
        } else {
            for (k, v) in row[w_lo..w_hi].iter_mut().enumerate() {
                *v = line[first + k * sw];
            }
        }
    }
}

/// `map += ` the entries of `rows (OH*OW)` at the cells tap `span` read.
fn scatter_tap(span: &TapSpan, rows: &[f32], map: &mut [f32]) {
    let (h_lo, h_hi) = span.h;
    let (w_lo, w_hi) = span.w;
    let sw = span.stride[1];
    if w_lo == w_hi {
        return;
    }
    let ow = span.out[1];
    for o in h_lo..h_hi {
        let row = &rows[o * ow..(o + 1) * ow];
        let start = span.line_start(o);
        let line = &mut map[start..start + span.width];
        let first = span.first;
        if sw == 1 {
            let cells = &mut line[first..first + (w_hi - w_lo)];
            cells
                .iter_mut()
                .zip(&row[w_lo..w_hi])
                .for_each(|(c, &v)| *c += v);
        } else {
            for (k, &v) in row[w_lo..w_hi].iter().enumerate() {
                line[first + k * sw] += v;
            }
        }
    }
}
