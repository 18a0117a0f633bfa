//! Forward and backward kernels of the layers, each module the Rust twin of a spec
//! module in `python/edgetrain/`.

pub mod activation;
pub mod batch_norm;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod fc;
pub mod layer_norm;
pub mod loss;
pub mod merge;
pub mod pool;
mod reduce;
pub mod window;

use crate::error::{check_len, Dims, Result};

/// An op's input and output: two buffers, or one buffer that the output overwrites (the
/// planner's in-place reuse). Safe Rust cannot alias a `&[f32]` with a `&mut [f32]`,
/// so in-place ops take this instead of a pair of slices.
#[derive(Debug)]
pub enum InOut<'a> {
    /// Read the first slice, write the second.
    Separate(&'a [f32], &'a mut [f32]),
    /// Read and write the same slice.
    InPlace(&'a mut [f32]),
}

impl<'a> InOut<'a> {
    /// Validates both sides against `dims` for `op` (names `input` / `output`).
    pub(crate) fn check(&self, op: &'static str, dims: &[usize]) -> Result<()> {
        match self {
            InOut::Separate(input, output) => {
                check_len(op, "input", Dims::from(dims), input.len())?;
                check_len(op, "output", Dims::from(dims), output.len())
            }
            InOut::InPlace(buffer) => check_len(op, "buffer", Dims::from(dims), buffer.len()),
        }
    }

    /// The input as it is before anything is written.
    pub(crate) fn input(&self) -> &[f32] {
        match self {
            InOut::Separate(input, _) => input,
            InOut::InPlace(buffer) => buffer,
        }
    }

    /// `output[i] = f(input[i])` for every element, alias-safe.
    pub(crate) fn map(self, f: impl Fn(f32) -> f32) {
        match self {
            InOut::Separate(input, output) => {
                output.iter_mut().zip(input).for_each(|(y, &x)| *y = f(x));
            }
            InOut::InPlace(buffer) => buffer.iter_mut().for_each(|v| *v = f(*v)),
        }
    }

    /// `output[i] = f(input[i], other[i])` for every element, alias-safe.
    pub(crate) fn zip_map(self, other: &[f32], f: impl Fn(f32, f32) -> f32) {
        match self {
            InOut::Separate(input, output) => {
                for ((y, &x), &o) in output.iter_mut().zip(input).zip(other) {
                    *y = f(x, o);
                }
            }
            InOut::InPlace(buffer) => {
                for (v, &o) in buffer.iter_mut().zip(other) {
                    *v = f(*v, o);
                }
            }
        }
    }

    /// `output[i] = f(i, input[i])` for every element, alias-safe; returns the output.
    pub(crate) fn map_indexed(self, f: impl Fn(usize, f32) -> f32) -> &'a mut [f32] {
        match self {
            InOut::Separate(input, output) => {
                for (i, (y, &x)) in output.iter_mut().zip(input).enumerate() {
                    *y = f(i, x);
                }
                output
            }
            InOut::InPlace(buffer) => {
                for (i, v) in buffer.iter_mut().enumerate() {
                    *v = f(i, *v);
                }
                buffer
            }
        }
    }

    /// The output slice, whose contents the caller will overwrite without reading (the
    /// input must have been consumed already).
    pub(crate) fn into_output_unread(self) -> &'a mut [f32] {
        match self {
            InOut::Separate(_, output) => output,
            InOut::InPlace(buffer) => buffer,
        }
    }

    /// The input when it is a buffer of its own (None in place: the output holds it until
    /// written), and the output: for ops that read a value and then write its cell.
    pub(crate) fn split(self) -> (Option<&'a [f32]>, &'a mut [f32]) {
        match self {
            InOut::Separate(input, output) => (Some(input), output),
            InOut::InPlace(buffer) => (None, buffer),
        }
    }

    /// The output, holding a copy of the input (nothing to copy in place), for ops that
    /// then rewrite it row by row after reading each row whole (softmax).
    pub(crate) fn into_output(self) -> &'a mut [f32] {
        match self {
            InOut::Separate(input, output) => {
                output.copy_from_slice(input);
                output
            }
            InOut::InPlace(buffer) => buffer,
        }
    }
}

/// The element count of `dims`, or an error naming `op` when it overflows.
pub(crate) fn elements(op: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| {
            crate::error::invalid(op, "shape", format!("{} overflows usize", Dims::from(dims)))
        })
    })
}
