"""The memory plan of one program: lifetimes, sharing and offsets as one typed object.

``plan_memory`` runs the whole analysis (usage, sharing, every planner, the lower bound)
and returns a :class:`MemoryPlan` that an arena store executes and that tools (the
``edgetrain plan`` CLI, charts) read. ``MemoryPlan.to_json()`` is self-describing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..program import Program
from ..tensors import TensorKind
from .bounds import live_bytes, lower_bound
from .lifetimes import Lifespan, analyse_usage
from .planners import ALIGNMENT, PLANNERS, Block, align, arena_size, get_planner
from .sharing import Buffer, SharingRule, find_sharing, group_buffers


@dataclass(frozen=True)
class StepPlan:
    """One execution order: the step run there and the tensors born (first alive) and
    freed (last alive; results are freed after the last order) there."""

    order: int
    kind: str
    node: str
    born: tuple[str, ...]
    freed: tuple[str, ...]


@dataclass(frozen=True)
class TensorPlan:
    """One tensor: what it is, where it is used, how long it lives and where it is.

    ``offset`` is None for external tensors (given by the caller, outside the arena).
    ``buffer`` names the buffer it lives in (itself unless it shares); ``shares`` is
    ``(rule, source tensor)`` when it takes another tensor's bytes on purpose.
    """

    name: str
    kind: TensorKind
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    first: int
    last: int
    lifespan: Lifespan
    offset: int | None
    buffer: str
    shares: tuple[SharingRule, str] | None

    @property
    def orders(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.reads) | set(self.writes)))


@dataclass(frozen=True)
class BufferPlan:
    """Bytes ``[offset, offset + size)`` of the arena, shared by ``members``."""

    name: str
    members: tuple[str, ...]
    size: int
    first: int
    last: int
    lifespan: Lifespan
    kind: TensorKind
    offset: int


@dataclass(frozen=True)
class MemoryPlan:
    """Everything decided about memory for one program (see ``spec/planning.md``)."""

    planner: str
    alignment: int
    arena_bytes: int
    lower_bound_bytes: int
    peak_order: int
    naive_bytes: int
    planners: dict[str, int]
    steps: tuple[StepPlan, ...]
    tensors: dict[str, TensorPlan]
    buffers: dict[str, BufferPlan]
    live_bytes: tuple[int, ...]
    bytes_by_kind: dict[str, int]
    peak_bytes_by_kind: dict[str, int]
    external: tuple[str, ...]

    @property
    def efficiency(self) -> float:
        """lower bound / arena (1.0 is optimal)."""
        return self.lower_bound_bytes / self.arena_bytes if self.arena_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole plan."""
        return {
            "planner": self.planner,
            "alignment": self.alignment,
            "arena_bytes": self.arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "peak_order": self.peak_order,
            "naive_bytes": self.naive_bytes,
            "planners": dict(self.planners),
            "bytes_by_kind": dict(self.bytes_by_kind),
            "peak_bytes_by_kind": dict(self.peak_bytes_by_kind),
            "live_bytes": list(self.live_bytes),
            "external": list(self.external),
            "steps": [
                {
                    "order": s.order,
                    "kind": s.kind,
                    "node": s.node,
                    "born": list(s.born),
                    "freed": list(s.freed),
                }
                for s in self.steps
            ],
            "tensors": {
                t.name: {
                    "kind": t.kind.value,
                    "shape": list(t.shape),
                    "dtype": t.dtype,
                    "bytes": t.nbytes,
                    "reads": list(t.reads),
                    "writes": list(t.writes),
                    "orders": list(t.orders),
                    "first": t.first,
                    "last": t.last,
                    "lifespan": t.lifespan.value,
                    "offset": t.offset,
                    "buffer": t.buffer,
                    "shares": None
                    if t.shares is None
                    else {"rule": t.shares[0].value, "source": t.shares[1]},
                }
                for t in self.tensors.values()
            },
            "buffers": {
                b.name: {
                    "members": list(b.members),
                    "bytes": b.size,
                    "first": b.first,
                    "last": b.last,
                    "lifespan": b.lifespan.value,
                    "kind": b.kind.value,
                    "offset": b.offset,
                }
                for b in self.buffers.values()
            },
        }


def _blocks(buffers: list[Buffer], external: Collection[str]) -> list[Block]:
    return [
        Block(b.name, align(b.nbytes), b.first, b.last, index)
        for index, b in enumerate(buffers)
        if not set(b.members) & set(external)
    ]


def plan_memory(
    program: Program,
    planner: str = "greedy_by_size",
    *,
    external: Collection[str] = (),
) -> MemoryPlan:
    """Analyse ``program`` and place its tensors with ``planner``. ``external`` tensors
    (weights an inference program borrows) get no arena bytes and never share."""
    chosen = get_planner(planner)
    usage = analyse_usage(program)
    shares = [
        s
        for s in find_sharing(program, usage)
        if s.tensor not in external and s.source not in external
    ]
    buffers = group_buffers(usage, shares)
    blocks = _blocks(buffers, external)
    orders = len(program.steps)
    results = {name: arena_size(blocks, PLANNERS[name]().place(blocks)) for name in PLANNERS}
    offsets = chosen.place(blocks)
    bound, peak = lower_bound(blocks, orders)
    by_block = {b.name: b for b in blocks}
    buffer_plans = {
        b.name: BufferPlan(
            b.name,
            b.members,
            by_block[b.name].size,
            b.first,
            b.last,
            b.lifespan,
            b.kind,
            offsets[b.name],
        )
        for b in buffers
        if b.name in by_block
    }
    buffer_of = {m: b.name for b in buffers for m in b.members}
    share_of = {s.tensor: (s.rule, s.source) for s in shares}
    tensors: dict[str, TensorPlan] = {}
    for name, u in usage.items():
        spec = program.tensors[name]
        home = buffer_plans.get(buffer_of[name])
        tensors[name] = TensorPlan(
            name=name,
            kind=u.kind,
            shape=spec.shape,
            dtype=str(spec.dtype),
            nbytes=u.nbytes,
            reads=u.reads,
            writes=u.writes,
            first=u.first,
            last=u.last,
            lifespan=u.lifespan,
            offset=None if home is None else home.offset,
            buffer=buffer_of[name],
            shares=share_of.get(name),
        )
    steps = tuple(
        StepPlan(
            order=k,
            kind=step.kind.value,
            node=step.node,
            born=tuple(t.name for t in tensors.values() if t.first == k and t.offset is not None),
            freed=tuple(
                t.name
                for t in tensors.values()
                if t.last == k and t.offset is not None and t.lifespan is not Lifespan.PERSISTENT
            ),
        )
        for k, step in enumerate(program.steps)
    )
    by_kind: dict[str, int] = {kind.value: 0 for kind in TensorKind}
    peak_by_kind: dict[str, int] = {kind.value: 0 for kind in TensorKind}
    for b in buffer_plans.values():
        by_kind[b.kind.value] += b.size
        if b.first <= peak <= b.last:
            peak_by_kind[b.kind.value] += b.size
    return MemoryPlan(
        planner=chosen.name,
        alignment=ALIGNMENT,
        arena_bytes=arena_size(blocks, offsets),
        lower_bound_bytes=bound,
        peak_order=peak,
        naive_bytes=sum(align(u.nbytes) for name, u in usage.items() if name not in external),
        planners=results,
        steps=steps,
        tensors=tensors,
        buffers=buffer_plans,
        live_bytes=tuple(live_bytes(blocks, orders)),
        bytes_by_kind=by_kind,
        peak_bytes_by_kind=peak_by_kind,
        external=tuple(n for n in program.tensors if n in external),
    )
