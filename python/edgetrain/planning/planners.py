"""Offset planners: give every block (a buffer with an interval of orders) a byte offset
in one arena so that blocks alive at a common order never overlap.

Three planners share one interface (a name and ``place(blocks) -> offsets``); each is
deterministic: it orders blocks by an explicit key ending in the block's index (its
position in the program), and scans placed blocks sorted by (offset, index). The Rust
core replays these algorithms and must produce the same offsets (``spec/planning.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigError

#: every offset and block size is a multiple of this (a cache line; SIMD loads)
ALIGNMENT = 64


def align(nbytes: int, alignment: int = ALIGNMENT) -> int:
    """``nbytes`` rounded up to a multiple of ``alignment``."""
    return -(-nbytes // alignment) * alignment


@dataclass(frozen=True)
class Block:
    """What a planner places: ``size`` bytes (aligned) alive over orders ``[first, last]``;
    ``index`` is the block's position in the program, the final tie-break."""

    name: str
    size: int
    first: int
    last: int
    index: int

    def meets(self, other: Block) -> bool:
        """Alive at a common order."""
        return self.first <= other.last and other.first <= self.last


class Planner(Protocol):
    """Gives each block an offset; ``name`` is how users select it."""

    name: str

    def place(self, blocks: Sequence[Block]) -> dict[str, int]: ...


def arena_size(blocks: Sequence[Block], offsets: dict[str, int]) -> int:
    """Bytes an arena needs to hold every block at its offset."""
    return max((offsets[b.name] + b.size for b in blocks), default=0)


def _conflicts(block: Block, placed: list[tuple[int, Block]]) -> list[tuple[int, Block]]:
    """Placed (offset, block) pairs alive with ``block``, by offset then index."""
    hits = [(offset, other) for offset, other in placed if other.meets(block)]
    hits.sort(key=lambda pair: (pair[0], pair[1].index))
    return hits


def _first_fit(block: Block, conflicts: list[tuple[int, Block]]) -> int:
    """The lowest offset where ``block`` overlaps none of ``conflicts``."""
    candidate = 0
    for offset, other in conflicts:
        if offset >= candidate + block.size:
            break
        candidate = max(candidate, offset + other.size)
    return candidate


def _best_fit(block: Block, conflicts: list[tuple[int, Block]]) -> int:
    """The start of the smallest gap between ``conflicts`` that holds ``block`` (the
    lowest such gap on ties), else the end of the highest conflict (TFLite's
    ``SimpleMemoryArena::Allocate``)."""
    best: int | None = None
    best_gap = 0
    end = 0
    for offset, other in conflicts:
        gap = offset - end
        if gap >= block.size and (best is None or gap < best_gap):
            best, best_gap = end, gap
        end = max(end, offset + other.size)
    return end if best is None else best


class _OrderedPlanner:
    """Places blocks one at a time in ``key`` order with ``fit``."""

    def __init__(
        self,
        name: str,
        key: Callable[[Block], tuple[int, ...]],
        fit: Callable[[Block, list[tuple[int, Block]]], int],
    ) -> None:
        self.name = name
        self._key = key
        self._fit = fit

    def place(self, blocks: Sequence[Block]) -> dict[str, int]:
        placed: list[tuple[int, Block]] = []
        offsets: dict[str, int] = {}
        for block in sorted(blocks, key=self._key):
            offset = self._fit(block, _conflicts(block, placed))
            offsets[block.name] = offset
            placed.append((offset, block))
        return offsets


class NaivePlanner:
    """Every block its own bytes, in index order: no reuse over time."""

    name = "naive"

    def place(self, blocks: Sequence[Block]) -> dict[str, int]:
        offsets: dict[str, int] = {}
        end = 0
        for block in sorted(blocks, key=lambda b: b.index):
            offsets[block.name] = end
            end += block.size
        return offsets


def sorted_planner() -> Planner:
    """NNTrainer's approach: blocks by first use (larger first, then index), each at the
    lowest offset free over its whole lifetime."""
    return _OrderedPlanner("sorted", lambda b: (b.first, -b.size, b.index), _first_fit)


def greedy_by_size_planner() -> Planner:
    """TFLite's ``ArenaPlanner``: largest block first (then earlier first use, then
    index), best fit among the gaps free over its lifetime."""
    return _OrderedPlanner("greedy_by_size", lambda b: (-b.size, b.first, b.index), _best_fit)


PLANNERS: dict[str, Callable[[], Planner]] = {
    "naive": NaivePlanner,
    "sorted": sorted_planner,
    "greedy_by_size": greedy_by_size_planner,
}


def get_planner(name: str) -> Planner:
    """The planner called ``name``, with a clear error for unknown names."""
    if name not in PLANNERS:
        raise ConfigError(f"unknown planner {name!r} (known: {', '.join(PLANNERS)})", key="planner")
    return PLANNERS[name]()
