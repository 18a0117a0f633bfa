//! Offset planning (`spec/planning.md` §3–§5, `python/edgetrain/planning/planners.py`):
//! every block — a buffer of bytes alive over an interval of execution orders — gets a
//! byte offset in one arena, so that blocks alive at a common order never overlap.
//!
//! The planners replay the spec's algorithms step for step, with the same orderings and
//! tie-breaks, so offsets and arena sizes are *exactly* the spec's
//! (`tests/planner.rs` replays `tests/data/plans/planner_cases.json`). [`bounds`] gives
//! the lower bound every planner is measured against; [`checker`] verifies any layout
//! without sharing code with the planners.

pub mod bounds;
pub mod checker;
mod fit;
pub mod swap;

use std::fmt;
use std::str::FromStr;

use crate::error::{invalid, Error, Result};

/// Every offset and block size is a multiple of this (a cache line; SIMD loads).
pub const ALIGNMENT: usize = 64;

/// `nbytes` rounded up to a multiple of [`ALIGNMENT`] (`None` if that overflows).
pub fn align(nbytes: usize) -> Option<usize> {
    nbytes.checked_next_multiple_of(ALIGNMENT)
}

/// What a planner places: `size` bytes alive over the closed interval of orders
/// `[first, last]`. `index` is the block's position in the program's list of buffers:
/// the final tie-break of every ordering, so the result does not depend on the order
/// blocks are handed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Block {
    /// Bytes, a multiple of [`ALIGNMENT`].
    pub size: usize,
    /// The first order the block is alive at.
    pub first: usize,
    /// The last order the block is alive at (`first <= last`).
    pub last: usize,
    /// Distinct among the blocks planned together.
    pub index: usize,
}

impl Block {
    /// Alive at a common order (intervals are closed).
    pub fn meets(&self, other: &Block) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// The three planners of the spec, selected by name as `compile(planner=...)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Planner {
    /// Every block its own bytes, in index order: no reuse over time.
    Naive,
    /// NNTrainer's approach: blocks by `(first, -size, index)`, each at the lowest
    /// offset free over its whole interval (first fit).
    Sorted,
    /// TFLite's `ArenaPlanner`: blocks by `(-size, first, index)`, each at the start of
    /// the smallest gap that holds it (best fit), else above every conflict.
    GreedyBySize,
}

impl Planner {
    /// Every planner, in the spec's order.
    pub const ALL: [Planner; 3] = [Planner::Naive, Planner::Sorted, Planner::GreedyBySize];

    /// The name users select it by (`"naive"`, `"sorted"`, `"greedy_by_size"`).
    pub fn name(self) -> &'static str {
        match self {
            Planner::Naive => "naive",
            Planner::Sorted => "sorted",
            Planner::GreedyBySize => "greedy_by_size",
        }
    }
}

impl fmt::Display for Planner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Planner {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Planner::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                invalid(
                    "plan_offsets",
                    "planner",
                    format!("unknown planner {name:?} (known: naive, sorted, greedy_by_size)"),
                )
            })
    }
}

/// A planner's answer: `offsets[i]` is where `blocks[i]` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// One offset per block, in the order the blocks were given.
    pub offsets: Vec<usize>,
    /// `max(offset + size)` over the blocks (0 without blocks).
    pub arena_bytes: usize,
}

/// Places `blocks` with `planner`. Refuses blocks a plan cannot come from: a size that
/// is not a multiple of [`ALIGNMENT`], `first > last`, a repeated `index`, or sizes
/// whose sum overflows (every offset is at most that sum, so nothing later can).
pub fn plan_offsets(planner: Planner, blocks: &[Block]) -> Result<Layout> {
    validate(blocks)?;
    let offsets = match planner {
        Planner::Naive => fit::naive(blocks),
        Planner::Sorted => fit::ordered(
            blocks,
            |a, b| (a.first, b.size, a.index).cmp(&(b.first, a.size, b.index)),
            fit::first_fit,
        ),
        Planner::GreedyBySize => fit::ordered(
            blocks,
            |a, b| (b.size, a.first, a.index).cmp(&(a.size, b.first, b.index)),
            fit::best_fit,
        ),
    };
    let arena_bytes = arena_size(blocks, &offsets);
    Ok(Layout {
        offsets,
        arena_bytes,
    })
}

/// Bytes an arena needs to hold every block at its offset (`offsets[i]` for
/// `blocks[i]`); saturates instead of overflowing.
pub fn arena_size(blocks: &[Block], offsets: &[usize]) -> usize {
    blocks
        .iter()
        .zip(offsets)
        .map(|(b, &o)| o.saturating_add(b.size))
        .max()
        .unwrap_or(0)
}

fn validate(blocks: &[Block]) -> Result<()> {
    let refuse = |reason: String| Err(invalid("plan_offsets", "blocks", reason));
    let mut total = 0usize;
    for (i, b) in blocks.iter().enumerate() {
        if b.size % ALIGNMENT != 0 {
            return refuse(format!(
                "block {i} (index {}) has size {}, not a multiple of {ALIGNMENT}",
                b.index, b.size
            ));
        }
        if b.first > b.last {
            return refuse(format!(
                "block {i} (index {}) has an empty interval [{}, {}]",
                b.index, b.first, b.last
            ));
        }
        total = match total.checked_add(b.size) {
            Some(t) => t,
            None => return refuse("the block sizes add up past usize::MAX".into()),
        };
    }
    let mut indices: Vec<usize> = blocks.iter().map(|b| b.index).collect();
    indices.sort_unstable();
    if let Some(pair) = indices.windows(2).find(|w| w[0] == w[1]) {
        return refuse(format!("index {} is given to several blocks", pair[0]));
    }
    Ok(())
}
