//! Inverted dropout (`spec/layers/dropout.md`) with a one-byte mask per element.
//!
//! Drawing the mask is separate from applying it: [`draw_mask`] takes the uniform source
//! from the caller, so the executor owns the random stream (the numpy spec draws from
//! its own generator, so masks are not expected to match the spec's bit for bit).

use super::InOut;
use crate::error::{check_len, invalid, Result};

/// `1 / (1 - rate)`, or 0 when every element is dropped (`rate = 1`).
pub fn scale(rate: f32) -> f32 {
    if rate >= 1.0 {
        0.0
    } else {
        1.0 / (1.0 - rate)
    }
}

fn check_rate(op: &'static str, rate: f32) -> Result<()> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(invalid(
            op,
            "dropout_rate",
            format!("{rate} is outside [0, 1]"),
        ))
    }
}

/// `mask[i] = (u >= rate)` for a fresh `u = uniform()` in [0, 1) per element.
pub fn draw_mask(rate: f32, mask: &mut [u8], mut uniform: impl FnMut() -> f32) -> Result<()> {
    check_rate("dropout_draw_mask", rate)?;
    mask.iter_mut()
        .for_each(|m| *m = u8::from(uniform() >= rate));
    Ok(())
}

/// `y = x * mask * scale(rate)` (the forward) or `dx = dy * mask * scale(rate)` (the
/// backward): the same product, in place or not. Rate 0 copies.
pub fn apply_mask(rate: f32, io: InOut, mask: &[u8]) -> Result<()> {
    const OP: &str = "dropout_apply_mask";
    check_rate(OP, rate)?;
    let len = io.input().len();
    io.check(OP, &[len])?;
    if rate == 0.0 {
        io.into_output();
        return Ok(());
    }
    check_len(OP, "mask", [len], mask.len())?;
    let s = scale(rate);
    io.map_indexed(|i, v| v * f32::from(mask[i]) * s);
    Ok(())
}
