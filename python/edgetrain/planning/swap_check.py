"""An independent check of a swap schedule, written without the scheduler's code.

It re-derives from the program, by its own walk over the steps, which orders touch each
tensor and which may change its bytes, then replays two iterations of the schedule with a
version number per buffer (bumped by every step that may write it) and verifies:

* every tensor is resident at every order where a step uses it (results at the last
  order, weights between iterations unless their buffer is swapped);
* no value is lost: a read-in brings back the latest version, a drop only releases bytes
  the swap file already holds, a free only ends a non-persistent buffer after its last
  use, and every swapped persistent buffer is in the file, current, between iterations;
* the resident arena and the swap file are laid out safely: aligned offsets inside their
  sizes, and no two blocks (slots) overlapping in bytes while both are held. A segment
  that is written out may hold its block through the order after its last (the copy
  runs beside that step), the last order at most; any other segment holds it through
  its last order only. The layout is checked over the windows the schedule claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..layers.base import StepKind
from ..program import Program
from ..tensors import TensorKind
from .checker import Placement, PlanCheckError, check_layout, required_orders
from .swap import SwapSchedule


class SwapCheckError(PlanCheckError):
    """A swap schedule that breaks a rule; ``problems`` lists every finding."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        self.args = (f"the swap schedule is unsafe ({len(self.problems)} problem(s)):\n  {shown}{more}",)


@dataclass(frozen=True)
class _Held:
    """Bytes of one buffer resident (usable) over orders ``[first, last]`` at ``offset``,
    its block reserved through ``reserved`` (later than ``last`` while a write-out runs)."""

    buffer: str
    first: int
    last: int
    offset: int
    size: int
    reserved: int


def changed_orders(program: Program) -> dict[str, set[int]]:
    """Per tensor, the orders whose step may change its bytes (the batch load counts as
    order 0). Forward steps may update a layer's untrained weights (moving statistics)."""
    changed: dict[str, set[int]] = {name: set() for name in program.tensors}
    for name in [*program.inputs, *([program.label] if program.label else [])]:
        changed[name].add(0)
    for k, step in enumerate(program.steps):
        b = program.bindings[step.node]
        specs = {s.name: s.used_in for s in program.node(step.node).setup.scratch}
        written = list(step.zero_fill)
        if step.kind is StepKind.RECOMPUTE:
            written.append(program.recompute[step.node].recomputed)
        elif step.kind is StepKind.FORWARD:
            written += b.outputs + [t for s, t in b.scratch.items() if StepKind.FORWARD in specs[s]]
            written += [t for w, t in b.weights.items() if w not in b.gradients]
        elif step.kind is StepKind.APPLY_GRADIENT:
            for w, g in b.gradients.items():
                written += [g, b.weights[w], *b.optimizer_state[w].values()]
        else:
            written += (
                list(b.gradients.values()) if step.kind is StepKind.CALC_GRADIENT else b.grad_inputs
            )
            written += [
                t
                for s, t in b.scratch.items()
                if step.kind in specs[s] and StepKind.FORWARD not in specs[s]
            ]
        for name in written:
            changed[name].add(k)
    return changed


def check_swap(program: Program, schedule: SwapSchedule) -> None:
    """Raise :class:`SwapCheckError` unless ``schedule`` is safe for ``program``."""
    plan = schedule.plan
    last_order = len(program.steps) - 1
    problems: list[str] = []
    buffer_of = {name: t.buffer for name, t in plan.tensors.items()}
    persistent = {
        name
        for name, spec in program.tensors.items()
        if spec.kind in (TensorKind.WEIGHT, TensorKind.OPTIMIZER_STATE)
    }
    results = {program.output} | ({program.loss} if program.loss else set())

    held: list[_Held] = []
    for buffer, offset in schedule.resident_offsets.items():
        b = plan.buffers[buffer]
        held.append(_Held(buffer, b.first, b.last, offset, b.size, b.last))
    for buffer, segs in schedule.segments.items():
        if buffer in schedule.resident_offsets:
            problems.append(f"'{buffer}' is both swapped and resident throughout")
        for s in segs:
            # a write-out may hold its block through the next order (its copy runs beside
            # that step; the runtime waits for it before order held + 1), nothing else
            allowed = {s.end, min(s.end + 1, last_order)} if s.exit.value == "write" else {s.end}
            if s.held not in allowed:
                problems.append(
                    f"'{buffer}' segment at {s.start}..{s.end} ({s.exit.value}) holds its block "
                    f"through {s.held}, not {' or '.join(map(str, sorted(allowed)))}"
                )
            held.append(_Held(buffer, s.start, s.end, s.offset, s.size, max(s.held, s.end)))
    missing = sorted(set(plan.buffers) - {h.buffer for h in held} - set(schedule.segments))
    problems += [f"buffer '{name}' is neither resident nor swapped" for name in missing]

    def resident(buffer: str, order: int) -> bool:
        return any(h.buffer == buffer and h.first <= order <= h.last for h in held)

    # 1. every use is resident
    for name, orders in required_orders(program).items():
        buffer = buffer_of[name]
        need = set(orders)
        if name in results:
            need.add(last_order)
        if name in persistent and buffer not in schedule.segments:
            need |= {0, last_order}
        for k in sorted(need):
            if not resident(buffer, k):
                problems.append(
                    f"'{name}' (buffer '{buffer}') is used at order {k} but not resident"
                )

    # 2. values survive two iterations of transfers
    problems += _replay(program, schedule, buffer_of, persistent)

    # 3. layouts
    problems += check_layout(
        [
            Placement(
                f"{h.buffer}@{h.first}",
                h.offset,
                h.size,
                h.first,
                h.reserved,
                f"{h.buffer}@{h.first}",
            )
            for h in held
        ],
        schedule.resident_bytes,
        schedule.alignment,
    )
    problems += _check_slots(schedule, persistent, buffer_of, last_order)
    if problems:
        raise SwapCheckError(problems)


def _replay(
    program: Program, schedule: SwapSchedule, buffer_of: dict[str, str], persistent: set[str]
) -> list[str]:
    problems: list[str] = []
    changed = changed_orders(program)
    writes_at: dict[int, set[str]] = {}
    for name, orders in changed.items():
        for k in orders:
            writes_at.setdefault(k, set()).add(buffer_of[name])
    uses = required_orders(program)
    last_use: dict[str, int] = {}
    for name, orders in uses.items():
        if orders:
            last_use[buffer_of[name]] = max(last_use.get(buffer_of[name], -1), max(orders))
    persistent_buffers = {buffer_of[n] for n in persistent}
    swapped = schedule.segments
    latest: dict[str, int] = {b: 0 for b in swapped}
    in_file: dict[str, int | None] = {b: (0 if b in persistent_buffers else None) for b in swapped}
    in_memory: dict[str, int | None] = {b: None for b in swapped}
    for iteration in range(2):
        for b in swapped:
            if b not in persistent_buffers:
                in_file[b] = in_memory[b] = None
                latest[b] = 0
        for k in range(len(program.steps)):
            for b, segs in swapped.items():
                for s in segs:
                    if s.start != k:
                        continue
                    if s.read_in:
                        if in_file[b] is None or in_file[b] != latest[b]:
                            problems.append(
                                f"iteration {iteration}: '{b}' read in at order {k} but the swap "
                                "file does not hold its latest value"
                            )
                        in_memory[b] = in_file[b]
                    elif b in persistent_buffers:
                        problems.append(f"persistent '{b}' enters memory at {k} without a read-in")
                    else:
                        in_memory[b] = latest[b]
            for b in writes_at.get(k, ()):
                if b in swapped:
                    latest[b] += 1
                    in_memory[b] = latest[b]
            for b, segs in swapped.items():
                for s in segs:
                    if s.end != k:
                        continue
                    if s.exit.value == "write":
                        in_file[b] = in_memory[b]
                    elif s.exit.value == "drop":
                        if in_file[b] != in_memory[b]:
                            problems.append(
                                f"iteration {iteration}: '{b}' dropped at order {k} with changes "
                                "the swap file does not hold"
                            )
                    else:
                        if b in persistent_buffers:
                            problems.append(f"persistent '{b}' is freed at order {k}")
                        elif last_use.get(b, -1) > k:
                            problems.append(
                                f"'{b}' is freed at order {k} but used again at {last_use[b]}"
                            )
                    in_memory[b] = None
        for b in swapped:
            if b in persistent_buffers and in_file[b] != latest[b]:
                problems.append(
                    f"iteration {iteration}: persistent '{b}' ends the iteration without its "
                    "latest value in the swap file"
                )
        if problems:
            break
    return problems


def _check_slots(
    schedule: SwapSchedule, persistent: set[str], buffer_of: dict[str, str], last_order: int
) -> list[str]:
    """Each swapped buffer has a slot held from its first write-out (every order when
    persistent) to the first use of its last read-in."""
    problems: list[str] = []
    persistent_buffers = {buffer_of[n] for n in persistent}
    placements: list[Placement] = []
    for b, segs in schedule.segments.items():
        slot = schedule.slots.get(b)
        if slot is None:
            problems.append(f"swapped '{b}' has no slot in the swap file")
            continue
        if b in persistent_buffers:
            first, last = 0, last_order
        else:
            writes = [s.end for s in segs if s.exit.value == "write"]
            reads = [s.uses[0] for s in segs if s.read_in]
            if not writes or not reads:
                problems.append(f"swapped '{b}' is never both written out and read in")
                continue
            first, last = min(writes), max(reads)
        if slot.size < schedule.plan.buffers[b].size:
            problems.append(f"the slot of '{b}' is smaller than the buffer")
        placements.append(Placement(b, slot.offset, slot.size, first, last, b))
    problems += [
        f"swap file: {p}"
        for p in check_layout(placements, schedule.swap_file_bytes, schedule.alignment)
    ]
    return problems
