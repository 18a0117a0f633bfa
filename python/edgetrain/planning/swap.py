"""The swap schedule: which buffers leave memory between their uses, when they are written
out and read back, and where they sit in the resident arena and in the swap file.

The unit of swapping is a *buffer* (``spec/sharing.md``): tensors that share bytes on
purpose move together. A swapped buffer's uses are cut into *segments* wherever two
consecutive uses are at least ``lookahead + 2`` orders apart; each segment is resident
from its start (a read-in ``lookahead`` orders before its first use, or the order it is
born) to its last use, and each gets its own block in the resident arena, placed by the
same planners as the unswapped plan. Persistent buffers (weights, optimizer state) of a
swapped buffer are in the swap file between iterations. Every rule, with its reasons:
``spec/swapping.md``; ``swap_check.py`` verifies a schedule without this code.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..layers.base import StepKind
from ..program import Program
from ..tensors import TensorKind
from .bounds import live_bytes, lower_bound
from .lifetimes import Lifespan
from .plan import BufferPlan, MemoryPlan, plan_memory
from .planners import ALIGNMENT, Block, arena_size, get_planner


class Exit(enum.Enum):
    """How a segment ends, after the step at its last order."""

    #: copied to the swap file (the file's copy is stale or absent)
    WRITE = "write"
    #: the swap file already holds these exact bytes: released without a copy
    DROP = "drop"
    #: the buffer's last use in the iteration: released, nothing kept
    FREE = "free"


@dataclass(frozen=True)
class Segment:
    """Buffer ``buffer`` resident over orders ``[start, end]`` at ``offset`` in the resident
    arena; ``read_in`` when it is read from the swap file before order ``start`` runs
    (otherwise it is born there), ``exit`` says what happens after order ``end``. Its arena
    block stays reserved through order ``held`` (``end + 1`` for a write-out, clamped to
    the last order, so the copy can run beside the next step; ``end`` otherwise)."""

    buffer: str
    number: int
    start: int
    end: int
    uses: tuple[int, ...]
    read_in: bool
    exit: Exit
    offset: int
    size: int
    held: int


@dataclass(frozen=True)
class SwapSlot:
    """Bytes ``[offset, offset + size)`` of the swap file, held by ``buffer`` over orders
    ``[first, last]`` (every order for persistent buffers)."""

    buffer: str
    size: int
    first: int
    last: int
    offset: int


@dataclass(frozen=True)
class OrderSwap:
    """One execution order: buffers read in before the step runs, written out or dropped
    after it, and every buffer resident while it runs."""

    order: int
    read_in: tuple[str, ...]
    written_out: tuple[str, ...]
    dropped: tuple[str, ...]
    resident: tuple[str, ...]
    resident_bytes: int


@dataclass(frozen=True)
class SwapSchedule:
    """Everything decided about swapping one training program (``spec/swapping.md``).

    ``plan`` is the plan without swapping (tensors, buffers, sharing); the resident
    arena replaces its arena: unswapped buffers at ``resident_offsets``, swapped ones
    per segment. ``bytes_written``/``bytes_read`` are per iteration (buffer bytes)."""

    lookahead: int
    planner: str
    alignment: int
    plan: MemoryPlan
    #: written-out blocks held one order longer, so the copies overlap the next step
    overlap_writes: bool
    swapped: tuple[str, ...]
    segments: dict[str, tuple[Segment, ...]]
    resident_offsets: dict[str, int]
    resident_bytes: int
    resident_lower_bound: int
    resident_peak_order: int
    slots: dict[str, SwapSlot]
    swap_file_bytes: int
    orders: tuple[OrderSwap, ...]
    bytes_written: int
    bytes_read: int

    @property
    def bytes_moved(self) -> int:
        return self.bytes_written + self.bytes_read

    def buffer_nbytes(self, buffer: str) -> int:
        """Bytes one transfer of ``buffer`` copies (its largest member, unaligned)."""
        return buffer_nbytes(self.plan, buffer)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the schedule (the plan itself is not repeated)."""
        return {
            "lookahead": self.lookahead,
            "overlap_writes": self.overlap_writes,
            "planner": self.planner,
            "alignment": self.alignment,
            "resident_bytes": self.resident_bytes,
            "resident_lower_bound": self.resident_lower_bound,
            "resident_peak_order": self.resident_peak_order,
            "swap_file_bytes": self.swap_file_bytes,
            "bytes_written": self.bytes_written,
            "bytes_read": self.bytes_read,
            "swapped": list(self.swapped),
            "resident_offsets": dict(self.resident_offsets),
            "segments": {
                name: [
                    {
                        "start": s.start,
                        "end": s.end,
                        "uses": list(s.uses),
                        "read_in": s.read_in,
                        "exit": s.exit.value,
                        "held": s.held,
                        "offset": s.offset,
                        "bytes": s.size,
                    }
                    for s in segs
                ]
                for name, segs in self.segments.items()
            },
            "slots": {
                s.buffer: {"offset": s.offset, "bytes": s.size, "first": s.first, "last": s.last}
                for s in self.slots.values()
            },
            "orders": [
                {
                    "order": o.order,
                    "read_in": list(o.read_in),
                    "written_out": list(o.written_out),
                    "dropped": list(o.dropped),
                    "resident": list(o.resident),
                    "resident_bytes": o.resident_bytes,
                }
                for o in self.orders
            ],
        }


# -- uses of a buffer -------------------------------------------------------------------


def buffer_nbytes(plan: MemoryPlan, buffer: str) -> int:
    return max(plan.tensors[m].nbytes for m in plan.buffers[buffer].members)


def buffer_uses(plan: MemoryPlan, buffer: BufferPlan) -> tuple[int, ...]:
    """Every order at which some member of ``buffer`` is read or written."""
    return tuple(sorted({k for m in buffer.members for k in plan.tensors[m].orders}))


def untrained_weights(program: Program) -> frozenset[str]:
    """Weights without a gradient (batch-norm moving statistics, frozen layers): their
    forward step may update them (moving statistics), which the layer contract does not
    declare, so every forward use of one counts as a write."""
    trained = {b.weights[w] for b in program.bindings.values() for w in b.gradients}
    return frozenset(
        name
        for name, spec in program.tensors.items()
        if spec.kind is TensorKind.WEIGHT and name not in trained
    )


def buffer_writes(
    program: Program, plan: MemoryPlan, buffer: BufferPlan, untrained: Collection[str]
) -> frozenset[int]:
    """Orders that may change ``buffer``'s bytes: the members' writes, and the forward
    uses of untrained weights."""
    forward = {k for k, s in enumerate(program.steps) if s.kind is StepKind.FORWARD}
    writes: set[int] = set()
    for m in buffer.members:
        writes |= set(plan.tensors[m].writes)
        if m in untrained:
            writes |= set(plan.tensors[m].orders) & forward
    return frozenset(writes)


def split_uses(uses: Sequence[int], lookahead: int) -> list[tuple[int, ...]]:
    """Runs of uses: a new run starts where a use is at least ``lookahead + 2`` orders
    after the previous one (then the buffer is out for at least one order)."""
    runs: list[list[int]] = []
    for k in uses:
        if runs and k - runs[-1][-1] < lookahead + 2:
            runs[-1].append(k)
        else:
            runs.append([k])
    return [tuple(r) for r in runs]


def swappable(plan: MemoryPlan, buffer: BufferPlan, lookahead: int) -> bool:
    """A buffer swapping can take out of memory at some order: persistent (out between
    iterations), or with a gap of at least ``lookahead + 2`` orders between two uses.
    Results read after the last order (output, loss) and empty buffers never swap."""
    if buffer.lifespan is Lifespan.ITERATION or buffer.size == 0:
        return False
    if buffer.name in plan.external or set(buffer.members) & set(plan.external):
        return False
    if buffer.lifespan is Lifespan.PERSISTENT:
        return True
    return len(split_uses(buffer_uses(plan, buffer), lookahead)) >= 2


def swap_candidates(plan: MemoryPlan, lookahead: int) -> list[str]:
    """Every buffer that can be swapped at ``lookahead``, in buffer order."""
    return [b.name for b in plan.buffers.values() if swappable(plan, b, lookahead)]


@dataclass(frozen=True)
class Run:
    """One segment before it is placed (``spec/swapping.md`` section 3)."""

    start: int
    end: int
    uses: tuple[int, ...]
    read_in: bool
    exit: Exit
    held: int


def buffer_runs(
    program: Program,
    plan: MemoryPlan,
    buffer: BufferPlan,
    lookahead: int,
    untrained: Collection[str],
    overlap_writes: bool = True,
) -> list[Run]:
    """The segments of a swapped buffer, before offsets are given (``spec/swapping.md`` §3);
    with ``overlap_writes`` a segment written out keeps its block one order longer, for
    the copy to overlap the next step (§3)."""
    uses = buffer_uses(plan, buffer)
    writes = buffer_writes(program, plan, buffer, untrained)
    persistent = buffer.lifespan is Lifespan.PERSISTENT
    runs = split_uses(uses, lookahead)
    last_order = len(program.steps) - 1
    result: list[Run] = []
    for j, run in enumerate(runs):
        dirty = any(k in writes for k in run)
        if j == 0 and not persistent:
            start, read_in = run[0], False
        else:
            start, read_in = max(0, run[0] - lookahead), True
        if persistent:
            exit_ = Exit.WRITE if dirty else Exit.DROP
        elif j == len(runs) - 1:
            exit_ = Exit.FREE
        else:
            exit_ = Exit.WRITE if (j == 0 or dirty) else Exit.DROP
        overlaps = overlap_writes and exit_ is Exit.WRITE
        held = min(run[-1] + 1, last_order) if overlaps else run[-1]
        result.append(Run(start, run[-1], run, read_in, exit_, held))
    return result


# -- the schedule ------------------------------------------------------------------------


def resident_blocks(
    base: MemoryPlan, runs: Mapping[str, Sequence[Run]]
) -> tuple[list[Block], dict[str, tuple[str, int | None]]]:
    """The resident arena's blocks in buffer order: one per unswapped buffer, one per
    segment (``<buffer>#<j>``) of each buffer in ``runs``; and each block's (buffer,
    segment number or None)."""
    blocks: list[Block] = []
    owner: dict[str, tuple[str, int | None]] = {}
    for buffer in base.buffers.values():
        if buffer.name in runs:
            for j, run in enumerate(runs[buffer.name]):
                block_name = f"{buffer.name}#{j}"
                blocks.append(Block(block_name, buffer.size, run.start, run.held, len(blocks)))
                owner[block_name] = (buffer.name, j)
        else:
            blocks.append(Block(buffer.name, buffer.size, buffer.first, buffer.last, len(blocks)))
            owner[buffer.name] = (buffer.name, None)
    if len(owner) != len(blocks):
        raise ConfigError("buffer names collide with swap segment names ('<buffer>#<n>')")
    return blocks, owner


def plan_swap(
    program: Program,
    swapped: Collection[str] | None = None,
    *,
    lookahead: int = 0,
    planner: str = "greedy_by_size",
    plan: MemoryPlan | None = None,
    overlap_writes: bool = True,
) -> SwapSchedule:
    """The schedule swapping ``swapped`` buffers (None: every swappable one) of a training
    program at ``lookahead``, its resident arena and its swap file placed by ``planner``.
    ``plan`` may pass the program's unswapped plan with that planner to save its cost.
    ``overlap_writes``: written-out blocks are held one order longer so the copies run
    beside the next step (more resident bytes at some orders; ``spec/swapping.md`` §3)."""
    if isinstance(lookahead, bool) or int(lookahead) != lookahead or lookahead < 0:
        raise ConfigError(
            f"lookahead must be a non-negative integer, got {lookahead!r}", key="lookahead"
        )
    chosen = get_planner(planner)
    base = plan if plan is not None else plan_memory(program, planner)
    if base.external:
        raise ConfigError(
            "a swap schedule is made for a training program, not one borrowing weights"
        )
    wanted = set(swap_candidates(base, lookahead) if swapped is None else swapped)
    unknown = sorted(wanted - set(base.buffers))
    if unknown:
        raise ConfigError(f"cannot swap {unknown}: not buffers of the program")
    refused = sorted(n for n in wanted if not swappable(base, base.buffers[n], lookahead))
    if refused:
        raise ConfigError(
            f"cannot swap {refused} at lookahead {lookahead}: a result read after the last "
            "order, or no gap of lookahead + 2 orders between two uses"
        )
    untrained = untrained_weights(program)
    order_names = [b for b in base.buffers if b in wanted]
    runs = {
        name: buffer_runs(program, base, base.buffers[name], lookahead, untrained, overlap_writes)
        for name in order_names
    }
    blocks, owner = resident_blocks(base, runs)
    offsets = chosen.place(blocks)
    orders = len(program.steps)
    bound, peak = lower_bound(blocks, orders)
    live = live_bytes(blocks, orders)
    segments = {
        name: tuple(
            Segment(
                name,
                j,
                r.start,
                r.end,
                r.uses,
                r.read_in,
                r.exit,
                offsets[f"{name}#{j}"],
                base.buffers[name].size,
                r.held,
            )
            for j, r in enumerate(runs[name])
        )
        for name in order_names
    }
    resident_offsets = {b.name: offsets[b.name] for b in blocks if owner[b.name][1] is None}
    slots = _place_slots(base, order_names, segments, orders, chosen.place)
    return SwapSchedule(
        lookahead=int(lookahead),
        overlap_writes=overlap_writes,
        planner=chosen.name,
        alignment=ALIGNMENT,
        plan=base,
        swapped=tuple(order_names),
        segments=segments,
        resident_offsets=resident_offsets,
        resident_bytes=arena_size(blocks, offsets),
        resident_lower_bound=bound,
        resident_peak_order=peak,
        slots=slots,
        swap_file_bytes=arena_size(
            [Block(s.buffer, s.size, s.first, s.last, 0) for s in slots.values()],
            {s.buffer: s.offset for s in slots.values()},
        ),
        orders=_order_events(base, blocks, owner, segments, live),
        bytes_written=sum(
            buffer_nbytes(base, n) for n in order_names for s in segments[n] if s.exit is Exit.WRITE
        ),
        bytes_read=sum(
            buffer_nbytes(base, n) for n in order_names for s in segments[n] if s.read_in
        ),
    )


def _place_slots(
    base: MemoryPlan,
    names: Sequence[str],
    segments: dict[str, tuple[Segment, ...]],
    orders: int,
    place: Any,
) -> dict[str, SwapSlot]:
    """Swap-file slots: persistent buffers hold theirs at every order; others from their
    first write-out to the first use of their last read-in segment."""
    blocks: list[Block] = []
    for index, name in enumerate(names):
        buffer, segs = base.buffers[name], segments[name]
        if buffer.lifespan is Lifespan.PERSISTENT:
            first, last = 0, orders - 1
        else:
            first, last = segs[0].end, segs[-1].uses[0]
        blocks.append(Block(name, buffer.size, first, last, index))
    offsets: dict[str, int] = place(blocks)
    return {b.name: SwapSlot(b.name, b.size, b.first, b.last, offsets[b.name]) for b in blocks}


def _order_events(
    base: MemoryPlan,
    blocks: Sequence[Block],
    owner: dict[str, tuple[str, int | None]],
    segments: dict[str, tuple[Segment, ...]],
    live: Sequence[int],
) -> tuple[OrderSwap, ...]:
    segs = [s for ss in segments.values() for s in ss]
    starts: dict[int, list[Segment]] = {}
    ends: dict[int, list[Segment]] = {}
    for seg in segs:
        starts.setdefault(seg.start, []).append(seg)
        ends.setdefault(seg.end, []).append(seg)
    alive: dict[int, list[str]] = {}
    for b in blocks:
        for k in range(b.first, b.last + 1):
            alive.setdefault(k, []).append(owner[b.name][0])
    result = []
    for k in range(len(base.steps)):
        leaving = ends.get(k, [])
        result.append(
            OrderSwap(
                order=k,
                read_in=tuple(s.buffer for s in starts.get(k, []) if s.read_in),
                written_out=tuple(s.buffer for s in leaving if s.exit is Exit.WRITE),
                dropped=tuple(s.buffer for s in leaving if s.exit is Exit.DROP),
                resident=tuple(alive.get(k, [])),
                resident_bytes=live[k],
            )
        )
    return tuple(result)
