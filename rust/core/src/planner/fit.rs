//! The placement loops of the spec's planners (`spec/planning.md` §5), kept literal so
//! that each line can be compared with `planners.py`.

use std::cmp::Ordering;

use super::Block;

/// Offsets in index order, each block right after the previous one.
pub(super) fn naive(blocks: &[Block]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| blocks[i].index);
    let mut offsets = vec![0; blocks.len()];
    let mut end = 0;
    for i in order {
        offsets[i] = end;
        end += blocks[i].size;
    }
    offsets
}

/// Places blocks one at a time in `key` order; each takes the offset `fit` picks among
/// the already placed blocks alive with it, scanned by `(offset, index)`.
pub(super) fn ordered(
    blocks: &[Block],
    key: impl Fn(&Block, &Block) -> Ordering,
    fit: fn(&Block, &[(usize, Block)]) -> usize,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| key(&blocks[a], &blocks[b]));
    let mut placed: Vec<(usize, Block)> = Vec::with_capacity(blocks.len());
    let mut conflicts: Vec<(usize, Block)> = Vec::with_capacity(blocks.len());
    let mut offsets = vec![0; blocks.len()];
    for i in order {
        let block = blocks[i];
        conflicts.clear();
        conflicts.extend(placed.iter().filter(|(_, other)| other.meets(&block)));
        let offset = fit(&block, &conflicts);
        offsets[i] = offset;
        let at = placed.partition_point(|(o, b)| (*o, b.index) < (offset, block.index));
        placed.insert(at, (offset, block));
    }
    offsets
}

/// The lowest offset where `block` overlaps none of `conflicts`.
pub(super) fn first_fit(block: &Block, conflicts: &[(usize, Block)]) -> usize {
    let mut candidate = 0;
    for (offset, other) in conflicts {
        if *offset >= candidate + block.size {
            break;
        }
        candidate = candidate.max(offset + other.size);
    }
    candidate
}

/// The start of the smallest gap between `conflicts` that holds `block` (the lowest
/// such gap on ties), else the end of the highest conflict (TFLite's
/// `SimpleMemoryArena::Allocate`). `end` is a running maximum, so overlapping
/// conflicts never open a negative gap.
pub(super) fn best_fit(block: &Block, conflicts: &[(usize, Block)]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    let mut end = 0;
    for (offset, other) in conflicts {
        if let Some(gap) = offset.checked_sub(end) {
            if gap >= block.size && best.is_none_or(|(_, best_gap)| gap < best_gap) {
                best = Some((end, gap));
            }
        }
        end = end.max(offset + other.size);
    }
    best.map_or(end, |(start, _)| start)
}
