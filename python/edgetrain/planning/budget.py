"""Training under a memory budget: choose the buffers to swap and the lookahead so that
the resident arena fits, moving as few bytes as the heuristic finds.

The heuristic (``spec/swapping.md`` §6), per lookahead ``L`` tried:

1. *Relieve the peak.* Start from the unswapped plan. While the most bytes alive at one
   order (the resident lower bound) exceed the target, take the order ``k`` where they
   peak first, and among the buffers not yet swapped whose swapping takes them out of
   memory at ``k``, swap the one moving the fewest bytes per byte-order it frees
   (``moved / (bytes x orders out)``, ties by buffer order).
2. *Place.* Plan the resident arena with the planner; if fragmentation puts it above the
   budget, lower the target by the excess and continue step 1. When no buffer left is
   out at the peak, fall back to swapping every swappable buffer.
3. *Prune.* Un-swap chosen buffers, the most bytes moved first, while the lower bound
   still meets the budget and the planned arena still fits.

Among the lookaheads that fit, the largest whose schedule moves at most ``1/32`` more
bytes than the fewest any moves wins (ties: fewer bytes): at lookahead 0 no read-in can
overlap a step (it is issued at the order that needs it), so a few percent more bytes
that the runtime can hide cost less than fewer bytes it cannot.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..program import Program
from .plan import MemoryPlan, plan_memory
from .planners import arena_size, get_planner
from .report import format_bytes
from .swap import (
    Exit,
    Run,
    SwapSchedule,
    buffer_nbytes,
    buffer_runs,
    plan_swap,
    resident_blocks,
    swap_candidates,
    untrained_weights,
)

#: lookaheads tried when the caller does not fix one
LOOKAHEADS = (0, 1, 2, 4)

#: a larger lookahead is preferred while its schedule moves at most this fraction more
#: bytes than the schedule moving the fewest (``spec/swapping.md`` §7)
LOOKAHEAD_SLACK = 1 / 32

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 1000**2,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 1000**3,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 1000**4,
}


def parse_budget(value: float | str, *, plan_bytes: int | None = None) -> int:
    """Bytes from an int or a string such as ``"64MiB"``, ``"1.5GB"``, ``"512k"``
    (``KiB/MiB/GiB`` and bare ``K/M/G`` are powers of 1024, ``KB/MB/GB`` of 1000;
    case does not matter), or ``"25%"`` of ``plan_bytes`` (the arena without swap)."""
    if isinstance(value, bool):
        raise ConfigError(
            f"memory budget must be bytes or a size string, got {value!r}", key="memory_budget"
        )
    percent = (
        re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", value) if isinstance(value, str) else None
    )
    if percent is not None:
        if plan_bytes is None:
            raise ConfigError(
                f"memory budget {value!r} is a share of the plan, which is not known here",
                key="memory_budget",
            )
        nbytes = int(plan_bytes * float(percent.group(1)) / 100)
        if nbytes <= 0:
            raise ConfigError(f"memory budget must be positive, got {value!r}", key="memory_budget")
        return nbytes
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in _UNITS:
            raise ConfigError(
                f"memory budget {value!r} is not a size: use bytes or e.g. '64MiB', '1.5GB', '512K', '25%'",
                key="memory_budget",
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    nbytes = int(number * _UNITS[unit])
    if nbytes <= 0:
        raise ConfigError(f"memory budget must be positive, got {value!r}", key="memory_budget")
    return nbytes


@dataclass(frozen=True)
class _Candidate:
    buffer: str
    index: int
    size: int
    moved: int
    absent: tuple[tuple[int, int], ...]
    runs: tuple[Run, ...]

    @property
    def relief(self) -> int:
        return self.size * sum(stop - start + 1 for start, stop in self.absent)

    def out_at(self, order: int) -> bool:
        return any(start <= order <= stop for start, stop in self.absent)


def _candidates(
    program: Program, base: MemoryPlan, lookahead: int, overlap: bool
) -> list[_Candidate]:
    untrained = untrained_weights(program)
    last = len(base.steps) - 1
    found = []
    for index, name in enumerate(swap_candidates(base, lookahead)):
        buffer = base.buffers[name]
        runs = buffer_runs(program, base, buffer, lookahead, untrained, overlap)
        held = [(0, -1)] + [(r.start, r.held) for r in runs] + [(last + 1, last + 1)]
        absent = tuple(
            (max(a_end + 1, buffer.first), min(b_start - 1, buffer.last))
            for (_, a_end), (b_start, _) in itertools.pairwise(held)
            if max(a_end + 1, buffer.first) <= min(b_start - 1, buffer.last)
        )
        nbytes = buffer_nbytes(base, name)
        moved = nbytes * sum(int(r.read_in) + int(r.exit is Exit.WRITE) for r in runs)
        found.append(_Candidate(name, index, buffer.size, moved, absent, tuple(runs)))
    return found


def _live(base: MemoryPlan, chosen: Sequence[_Candidate]) -> NDArray[np.int64]:
    live = np.array(base.live_bytes, dtype=np.int64)
    for c in chosen:
        for start, stop in c.absent:
            live[start : stop + 1] -= c.size
    return live


def _fit(
    program: Program,
    base: MemoryPlan,
    budget: int,
    lookahead: int,
    planner: str,
    overlap: bool = True,
) -> SwapSchedule | None:
    candidates = _candidates(program, base, lookahead, overlap)
    chosen = _relieve(program, base, budget, lookahead, planner, candidates)
    if chosen is None:
        # fragmentation can defeat step 1 where swapping everything fits: prune from there
        chosen = candidates
    return _prune(program, base, budget, lookahead, planner, chosen, overlap)


def _relieve(
    program: Program,
    base: MemoryPlan,
    budget: int,
    lookahead: int,
    planner: str,
    candidates: list[_Candidate],
) -> list[_Candidate] | None:
    """Steps 1 and 2: swap buffers out of the peak until the planned arena fits."""
    chosen: list[_Candidate] = []
    target = budget
    live = _live(base, chosen)
    while True:
        peak = int(live.max()) if len(live) else 0
        if peak <= target:
            arena = _arena(base, chosen, planner)
            if arena <= budget:
                return chosen
            target -= max(arena - budget, 64)
            continue
        order = int(np.argmax(live))
        taken = {c.buffer for c in chosen}
        options = [c for c in candidates if c.buffer not in taken and c.relief and c.out_at(order)]
        if not options:
            return None
        pick = min(options, key=lambda c: (c.moved / c.relief, c.index))
        chosen.append(pick)
        for start, stop in pick.absent:
            live[start : stop + 1] -= pick.size


def _arena(base: MemoryPlan, chosen: Sequence[_Candidate], planner: str) -> int:
    """The resident arena with ``chosen`` swapped (what ``plan_swap`` would place)."""
    blocks, _ = resident_blocks(base, {c.buffer: c.runs for c in chosen})
    return arena_size(blocks, get_planner(planner).place(blocks))


#: most resident arenas placed while pruning, per lookahead (placing is the slow part)
PRUNE_PLACEMENTS = 48


def _prune(
    program: Program,
    base: MemoryPlan,
    budget: int,
    lookahead: int,
    planner: str,
    chosen: list[_Candidate],
    overlap: bool,
) -> SwapSchedule | None:
    """Step 3: un-swap what is not needed, the most bytes moved first; None if even
    ``chosen`` does not fit. Candidates whose return keeps the live maximum within the
    budget less the current fragmentation are returned as a group; when the group's arena
    does not fit, the longest prefix that does is found by bisection and the candidate
    after it stays swapped. At most ``PRUNE_PLACEMENTS`` arenas are placed."""
    arena = _arena(base, chosen, planner)
    if arena > budget:
        return None
    placements = 1
    keep = list(chosen)
    pending = sorted(chosen, key=lambda c: (-c.moved, c.index))
    while pending and placements < PRUNE_PLACEMENTS:
        live = _live(base, keep)
        limit = budget - (arena - int(live.max()))
        group: list[_Candidate] = []
        for c in pending:
            back = live.copy()
            for start, stop in c.absent:
                back[start : stop + 1] += c.size
            if int(back.max()) <= limit:
                group.append(c)
                live = back
        if not group:
            break
        sizes: dict[int, int] = {}

        def arena_without(
            count: int,
            group: list[_Candidate] = group,
            keep: list[_Candidate] = keep,
            sizes: dict[int, int] = sizes,
        ) -> int:
            if count not in sizes:
                gone = {c.buffer for c in group[:count]}
                sizes[count] = _arena(base, [c for c in keep if c.buffer not in gone], planner)
            return sizes[count]

        low, high = 0, len(group)
        sizes[0] = arena
        if arena_without(high) > budget:
            while high - low > 1 and placements + len(sizes) < PRUNE_PLACEMENTS:
                middle = (low + high) // 2
                if arena_without(middle) <= budget:
                    low = middle
                else:
                    high = middle
            high = low
        placements += len(sizes) - 1
        arena = sizes[high]
        gone = {c.buffer for c in group[:high]}
        blocked = {group[high].buffer} if high < len(group) else set()
        keep = [c for c in keep if c.buffer not in gone]
        pending = [c for c in pending if c.buffer not in gone | blocked]
        if not blocked:
            break
    names = [c.buffer for c in keep]
    return plan_swap(
        program, names, lookahead=lookahead, planner=planner, plan=base, overlap_writes=overlap
    )


def prefer_lookahead(fits: Sequence[SwapSchedule]) -> SwapSchedule:
    """Of schedules that fit, the one with the largest lookahead among those moving at
    most ``LOOKAHEAD_SLACK`` more bytes than the fewest (ties: overlapping write-outs,
    then fewer bytes)."""
    least = min(s.bytes_moved for s in fits)
    near = [s for s in fits if s.bytes_moved <= least * (1 + LOOKAHEAD_SLACK)]
    return max(near, key=lambda s: (s.lookahead, s.overlap_writes, -s.bytes_moved))


def choose_swap(
    program: Program,
    budget: int | str,
    *,
    planner: str = "greedy_by_size",
    lookahead: int | None = None,
    plan: MemoryPlan | None = None,
) -> SwapSchedule | None:
    """The schedule that fits ``budget`` bytes of resident arena with the fewest bytes moved
    the heuristic finds, or None when the plan fits without swapping. ``lookahead`` fixes
    the lookahead (else each of ``LOOKAHEADS`` is tried). Raises :class:`ConfigError`
    naming the smallest budget that would fit when none does."""
    parse_budget(budget, plan_bytes=1 << 40)  # a malformed budget fails before any planning
    get_planner(planner)
    base = plan if plan is not None else plan_memory(program, planner)
    nbytes = parse_budget(budget, plan_bytes=base.arena_bytes)
    if base.arena_bytes <= nbytes:
        return None
    tried = (lookahead,) if lookahead is not None else LOOKAHEADS
    fits = []
    for L in tried:  # overlapping write-outs if that fits, else waiting for them
        found = _fit(program, base, nbytes, L, planner) or _fit(
            program, base, nbytes, L, planner, overlap=False
        )
        if found is not None:
            fits.append(found)
    if fits:
        return prefer_lookahead(fits)
    smallest = min(
        (
            plan_swap(program, None, lookahead=L, planner=planner, plan=base, overlap_writes=False)
            for L in tried
        ),
        key=lambda s: (s.resident_bytes, -s.lookahead),
    )
    raise ConfigError(
        f"no swap schedule fits a memory budget of {format_bytes(nbytes)} ({nbytes:,} bytes): "
        f"the smallest resident arena is {format_bytes(smallest.resident_bytes)} "
        f"({smallest.resident_bytes:,} bytes, every swappable buffer swapped at lookahead "
        f"{smallest.lookahead}); without swapping the plan needs {format_bytes(base.arena_bytes)}",
        key="memory_budget",
    )
