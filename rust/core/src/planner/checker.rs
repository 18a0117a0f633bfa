//! An independent check of any layout (`spec/planning.md` §7, `check_layout` in
//! `python/edgetrain/planning/checker.py`), written without the planners' code: every
//! placement lies inside the arena at an aligned offset, and no two placements alive at
//! a common order overlap in bytes unless they share on purpose (same group, then at
//! one offset). Planner bugs show up here as named problems, not as wrong numbers.
//! Byte ranges are half-open, so a zero-byte placement overlaps nothing.

use std::fmt;

use super::{Block, ALIGNMENT};

/// One tensor as the checker sees it: bytes `[offset, offset + size)` needed over the
/// orders `[first, last]`; placements with equal `group` share their bytes on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The first byte.
    pub offset: usize,
    /// Bytes held.
    pub size: usize,
    /// The first order the bytes must hold their value at.
    pub first: usize,
    /// The last such order.
    pub last: usize,
    /// Placements of one group are one buffer (e.g. a view and its source).
    pub group: usize,
}

/// One thing wrong with a layout; `item`, `a`, `b` are positions in the placements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutProblem {
    /// `[offset, offset + size)` does not fit in `[0, arena_bytes)`.
    OutsideArena {
        /// The placement.
        item: usize,
        /// Its offset.
        offset: usize,
        /// Its size.
        size: usize,
        /// The arena's size.
        arena_bytes: usize,
    },
    /// The offset is not a multiple of the alignment (always, for alignment 0).
    Misaligned {
        /// The placement.
        item: usize,
        /// Its offset.
        offset: usize,
        /// The alignment required.
        alignment: usize,
    },
    /// `first > last`.
    EmptyInterval {
        /// The placement.
        item: usize,
        /// Its first order.
        first: usize,
        /// Its last order.
        last: usize,
    },
    /// Two placements of one group overlap at different offsets.
    GroupSplit {
        /// The lower placement.
        a: usize,
        /// The other.
        b: usize,
    },
    /// Two placements of different groups overlap in bytes and are alive together.
    Overlap {
        /// The lower placement.
        a: usize,
        /// The other.
        b: usize,
    },
    /// A layout gives a different number of offsets than there are blocks.
    OffsetCount {
        /// Blocks.
        blocks: usize,
        /// Offsets.
        offsets: usize,
    },
}

impl fmt::Display for LayoutProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutProblem::OutsideArena {
                item,
                offset,
                size,
                arena_bytes,
            } => write!(
                f,
                "#{item} [{offset}, {}) lies outside the arena of {arena_bytes} bytes",
                offset.saturating_add(size)
            ),
            LayoutProblem::Misaligned {
                item,
                offset,
                alignment,
            } => write!(
                f,
                "#{item} offset {offset} is not a multiple of {alignment}"
            ),
            LayoutProblem::EmptyInterval { item, first, last } => {
                write!(f, "#{item} has an empty interval [{first}, {last}]")
            }
            LayoutProblem::GroupSplit { a, b } => {
                write!(f, "#{a} and #{b} share a buffer at different offsets")
            }
            LayoutProblem::Overlap { a, b } => {
                write!(f, "#{a} and #{b} overlap in bytes while both alive")
            }
            LayoutProblem::OffsetCount { blocks, offsets } => {
                write!(f, "{offsets} offsets for {blocks} blocks")
            }
        }
    }
}

/// Every problem of a layout (empty when it is safe).
pub fn check_layout(
    placements: &[Placement],
    arena_bytes: usize,
    alignment: usize,
) -> Vec<LayoutProblem> {
    let mut problems = Vec::new();
    for (item, p) in placements.iter().enumerate() {
        if p.offset
            .checked_add(p.size)
            .is_none_or(|end| end > arena_bytes)
        {
            problems.push(LayoutProblem::OutsideArena {
                item,
                offset: p.offset,
                size: p.size,
                arena_bytes,
            });
        }
        if p.offset.checked_rem(alignment) != Some(0) {
            problems.push(LayoutProblem::Misaligned {
                item,
                offset: p.offset,
                alignment,
            });
        }
        if p.first > p.last {
            problems.push(LayoutProblem::EmptyInterval {
                item,
                first: p.first,
                last: p.last,
            });
        }
    }
    let mut by_start: Vec<usize> = (0..placements.len()).collect();
    by_start.sort_by_key(|&i| (placements[i].offset, i));
    for (n, &a) in by_start.iter().enumerate() {
        let pa = placements[a];
        let a_end = pa.offset.saturating_add(pa.size);
        for &b in &by_start[n + 1..] {
            let pb = placements[b];
            if pb.offset >= a_end {
                break;
            }
            if pb.size == 0 {
                continue;
            }
            if pa.group == pb.group {
                if pa.offset != pb.offset {
                    problems.push(LayoutProblem::GroupSplit { a, b });
                }
            } else if pa.first <= pb.last && pb.first <= pa.last {
                problems.push(LayoutProblem::Overlap { a, b });
            }
        }
    }
    problems
}

/// [`check_layout`] on a planner's output: `blocks[i]` at `offsets[i]`, each its own
/// group, at [`ALIGNMENT`].
pub fn check_offsets(
    blocks: &[Block],
    offsets: &[usize],
    arena_bytes: usize,
) -> Vec<LayoutProblem> {
    if blocks.len() != offsets.len() {
        return vec![LayoutProblem::OffsetCount {
            blocks: blocks.len(),
            offsets: offsets.len(),
        }];
    }
    let placements: Vec<Placement> = blocks
        .iter()
        .zip(offsets)
        .enumerate()
        .map(|(group, (b, &offset))| Placement {
            offset,
            size: b.size,
            first: b.first,
            last: b.last,
            group,
        })
        .collect();
    check_layout(&placements, arena_bytes, ALIGNMENT)
}
