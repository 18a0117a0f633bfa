//! The lower bound on arena size (`spec/planning.md` §4): the most bytes alive at any
//! one execution order. No placement of the blocks fits in fewer bytes without
//! swapping, so every planner is measured against it.

use super::Block;
use crate::error::{invalid, Result};

/// The bound and where it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowerBound {
    /// `max_k live(k)` (0 without blocks or orders).
    pub bytes: usize,
    /// The smallest order reaching it (0 without orders).
    pub peak_order: usize,
}

/// Bytes of the blocks alive at each order `0 .. orders`. Refuses a block alive past
/// the last order, with `first > last`, or bytes alive together past `usize::MAX`.
pub fn live_bytes(blocks: &[Block], orders: usize) -> Result<Vec<usize>> {
    let mut born = vec![0usize; orders];
    let mut dead = vec![0usize; orders + 1];
    for (i, b) in blocks.iter().enumerate() {
        if b.first > b.last || b.last >= orders {
            return Err(invalid(
                "live_bytes",
                "blocks",
                format!(
                    "block {i} (index {}) is alive over [{}, {}], outside orders 0..{orders}",
                    b.index, b.first, b.last
                ),
            ));
        }
        born[b.first] = born[b.first].saturating_add(b.size);
        dead[b.last + 1] = dead[b.last + 1].saturating_add(b.size);
    }
    let mut live = Vec::with_capacity(orders);
    let mut total = 0usize;
    for k in 0..orders {
        total = total
            .checked_add(born[k])
            .and_then(|t| t.checked_sub(dead[k]))
            .ok_or_else(|| {
                invalid(
                    "live_bytes",
                    "blocks",
                    format!("bytes alive at order {k} exceed usize::MAX"),
                )
            })?;
        live.push(total);
    }
    Ok(live)
}

/// The bound of [`live_bytes`]: its maximum and the first order reaching it.
pub fn lower_bound(blocks: &[Block], orders: usize) -> Result<LowerBound> {
    let live = live_bytes(blocks, orders)?;
    let bytes = live.iter().copied().max().unwrap_or(0);
    let peak_order = live.iter().position(|&l| l == bytes).unwrap_or(0);
    Ok(LowerBound { bytes, peak_order })
}
