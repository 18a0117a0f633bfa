"""The swap schedule computed by the core (``_core.plan_swap``, ``spec/swapping.md``):
the plan's facts about each buffer go in, ``SwapSchedule.to_json()`` comes out.

The spec's ``plan_swap`` and the core's are two implementations of §3–§6 from the same
facts; the conformance tests demand equal schedules, field for field. Which buffers to
swap under a budget stays the spec's decision (``choose_swap``)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from ..planning.plan import MemoryPlan
from ..planning.swap import buffer_nbytes, buffer_uses, buffer_writes, untrained_weights
from ..program import Program


def swap_request(
    program: Program,
    plan: MemoryPlan,
    swapped: Collection[str] | None,
    lookahead: int,
    overlap_writes: bool = True,
) -> dict[str, Any]:
    """What the core needs to schedule ``swapped`` (None: every swappable buffer) of
    ``program`` laid out by ``plan``, as ``plan_swap`` with the same arguments would:
    per buffer, in the plan's order, its aligned size, transfer bytes, interval, uses,
    the orders that change it, and its lifespan."""
    untrained = untrained_weights(program)
    external = set(plan.external)
    buffers = [
        {
            "name": b.name,
            "size": b.size,
            "nbytes": buffer_nbytes(plan, b.name),
            "first": b.first,
            "last": b.last,
            "uses": list(buffer_uses(plan, b)),
            "changes": sorted(buffer_writes(program, plan, b, untrained)),
            "lifespan": b.lifespan.value,
            "external": b.name in external or bool(external & set(b.members)),
        }
        for b in plan.buffers.values()
    ]
    return {
        "orders": len(program.steps),
        "lookahead": int(lookahead),
        "overlap_writes": bool(overlap_writes),
        "planner": plan.planner,
        "swapped": None if swapped is None else list(swapped),
        "buffers": buffers,
    }


def core_swap_schedule(
    program: Program,
    plan: MemoryPlan,
    swapped: Collection[str] | None,
    lookahead: int,
    overlap_writes: bool = True,
) -> dict[str, Any]:
    """The core's schedule, as ``SwapSchedule.to_json()`` gives the spec's; the core's
    refusals (unknown or unswappable buffers) as ``ConfigError``."""
    from .. import _core
    from .rust import _core_call

    request = json.dumps(swap_request(program, plan, swapped, lookahead, overlap_writes))
    answer: dict[str, Any] = json.loads(_core_call(lambda: _core.plan_swap(request)))
    return answer
