"""An independent check of any memory plan, written without the planners' code.

It re-derives from the program, by its own walk over the steps, the orders where every
tensor must hold its value, then verifies the plan: every tensor lies inside the arena
at an aligned offset, its planned interval covers those orders, tensors that share on
purpose sit at one offset, and no two tensors alive at a common order overlap in bytes
unless the plan puts them in the same buffer. Planner bugs show up here as named
errors rather than as wrong numbers. A program with recompute steps
(``spec/recompute.md``) is also checked to recompute from values that are still the
forward pass's when the step runs, before any backward step reads the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..layers.base import Operand, StepKind
from ..losses import LossLayer
from ..program import Program, Step
from ..tensors import TensorKind
from .plan import MemoryPlan


class PlanCheckError(AssertionError):
    """A plan that breaks a memory-safety rule; ``problems`` lists every finding."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(
            f"the memory plan is unsafe ({len(self.problems)} problem(s)):\n  {shown}{more}"
        )


@dataclass(frozen=True)
class Placement:
    """One tensor as the checker sees it: bytes ``[offset, offset + nbytes)`` needed over
    orders ``[first, last]``; tensors with equal ``group`` share on purpose."""

    name: str
    offset: int
    nbytes: int
    first: int
    last: int
    group: str


def check_layout(placements: Sequence[Placement], arena_bytes: int, alignment: int) -> list[str]:
    """Problems with a layout: outside the arena, misaligned, or overlapping another
    tensor alive at a common order without sharing on purpose."""
    problems: list[str] = []
    for p in placements:
        if p.offset < 0 or p.offset + p.nbytes > arena_bytes:
            problems.append(
                f"'{p.name}' [{p.offset}, {p.offset + p.nbytes}) lies outside the arena of {arena_bytes} bytes"
            )
        if p.offset % alignment:
            problems.append(f"'{p.name}' offset {p.offset} is not a multiple of {alignment}")
        if p.first > p.last:
            problems.append(f"'{p.name}' has an empty interval [{p.first}, {p.last}]")
    by_start = sorted(placements, key=lambda p: (p.offset, p.name))
    for i, a in enumerate(by_start):
        a_end = a.offset + a.nbytes
        for b in by_start[i + 1 :]:
            if b.offset >= a_end:
                break
            if a.group == b.group:
                if a.offset != b.offset:
                    problems.append(
                        f"'{a.name}' and '{b.name}' share a buffer at different offsets"
                    )
                continue
            if a.first <= b.last and b.first <= a.last:
                problems.append(
                    f"'{a.name}' [{a.offset}, {a_end}) orders {a.first}-{a.last} overlaps "
                    f"'{b.name}' [{b.offset}, {b.offset + b.nbytes}) orders {b.first}-{b.last}"
                )
    return problems


def required_orders(program: Program) -> dict[str, set[int]]:
    """Per tensor, the orders at which some step (or the batch load) touches it, derived
    from the bindings and the layers' declared reads."""
    needed: dict[str, set[int]] = {name: set() for name in program.tensors}
    for name in program.inputs:
        needed[name].add(0)
    if program.label is not None:
        needed[program.label].add(0)
    recomputed = {r.tensor: r.recomputed for r in program.recompute.values()}
    for k, step in enumerate(program.steps):
        b = program.bindings[step.node]
        layer = program.node(step.node).layer
        touched: list[str] = list(step.zero_fill)
        declared = {s.name: s.used_in for s in program.node(step.node).setup.scratch}
        touched += [t for s, t in b.scratch.items() if step.kind in declared[s]]
        if step.kind is StepKind.RECOMPUTE:
            r = program.recompute[step.node]
            touched += [*r.reads, r.recomputed]
        elif step.kind is StepKind.FORWARD:
            touched += b.inputs + b.outputs + list(b.weights.values())
        elif step.kind is StepKind.APPLY_GRADIENT:
            for w, g in b.gradients.items():
                touched += [g, b.weights[w], *b.optimizer_state[w].values()]
        else:
            reads = (
                layer.gradient_reads
                if step.kind is StepKind.CALC_GRADIENT
                else layer.derivative_reads
            )
            touched += b.grad_outputs
            touched += [recomputed.get(n, n) for n in b.inputs] if Operand.INPUTS in reads else []
            touched += [recomputed.get(n, n) for n in b.outputs] if Operand.OUTPUTS in reads else []
            touched += list(b.weights.values()) if Operand.WEIGHTS in reads else []
            touched += (
                list(b.gradients.values()) if step.kind is StepKind.CALC_GRADIENT else b.grad_inputs
            )
        if (
            isinstance(layer, LossLayer)
            and program.label is not None
            and step.kind is not StepKind.APPLY_GRADIENT
        ):
            touched.append(program.label)
        for name in touched:
            needed[name].add(k)
    return needed


def check_recompute(program: Program) -> list[str]:
    """Problems with the program's recompute steps: each recomputes an activation (one
    input, alias-safe forward) of a normalization's output from that normalization's
    ``normalized`` scratch, ``gamma`` and ``beta``; it runs once, in the backward pass,
    before every backward step that reads the recomputed tensor, and none of what it
    reads changes between the forward steps and it."""
    problems: list[str] = []
    forward_end = sum(1 for s in program.steps if s.kind is StepKind.FORWARD)
    orders = {(s.kind, s.node): k for k, s in enumerate(program.steps)}
    written: dict[str, list[int]] = {}
    for k, step in enumerate(program.steps):
        b = program.bindings[step.node]
        declared = {s.name: s.used_in for s in program.node(step.node).setup.scratch}
        names = list(step.zero_fill)
        if step.kind is StepKind.FORWARD:
            names += b.outputs + [t for s, t in b.scratch.items() if StepKind.FORWARD in declared[s]]
        elif step.kind is StepKind.APPLY_GRADIENT:
            names += [b.weights[w] for w in b.gradients]
        elif step.kind is not StepKind.RECOMPUTE:
            names += [t for s, t in b.scratch.items() if step.kind in declared[s] and StepKind.FORWARD not in declared[s]]
        for name in names:
            written.setdefault(name, []).append(k)
    for node, r in program.recompute.items():
        where = f"recompute of '{node}'"
        at = orders.get((StepKind.RECOMPUTE, node))
        if at is None or at < forward_end:
            problems.append(f"{where}: no recompute step in the backward pass")
            continue
        b, source = program.bindings[node], program.bindings.get(r.source)
        layer = program.node(node).layer
        if source is None or b.inputs != [source.outputs[0]] or b.outputs != [r.tensor]:
            problems.append(f"{where}: '{r.source}' is not its only input, or '{r.tensor}' not its output")
            continue
        if not layer.supports_in_place or Operand.INPUTS in layer.derivative_reads | layer.gradient_reads:
            problems.append(f"{where}: its forward is not alias-safe or its backward reads its input")
        wanted = [source.scratch.get("normalized"), source.weights.get("gamma"), source.weights.get("beta")]
        if sorted(r.reads) != sorted(str(n) for n in wanted) or None in wanted:
            problems.append(f"{where}: reads {list(r.reads)}, not '{r.source}''s normalized, gamma and beta")
        if program.tensors[r.recomputed].shape != program.tensors[r.tensor].shape:
            problems.append(f"{where}: '{r.recomputed}' and '{r.tensor}' differ in shape")
        forward = orders[(StepKind.FORWARD, node)]
        for name in r.reads:
            late = [k for k in written.get(name, []) if forward < k < at]
            if late:
                problems.append(f"{where}: '{name}' is written at order {late[0]}, between the forward step and the recompute")
        readers = [k for k, s in enumerate(program.steps) if s.kind in (StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE) and r.recomputed in _read_names(program, s)]
        if readers and min(readers) < at:
            problems.append(f"{where}: '{r.recomputed}' is read at order {min(readers)}, before the recompute at {at}")
        if [s for s in program.steps if s.kind is StepKind.RECOMPUTE and s.node == node][1:]:
            problems.append(f"{where}: more than one recompute step")
    return problems


def _read_names(program: Program, step: Step) -> list[str]:
    """Forward tensors a backward step reads, with recomputed names substituted."""
    b = program.bindings[step.node]
    layer = program.node(step.node).layer
    reads = layer.gradient_reads if step.kind is StepKind.CALC_GRADIENT else layer.derivative_reads
    recomputed = {r.tensor: r.recomputed for r in program.recompute.values()}
    names = (b.inputs if Operand.INPUTS in reads else []) + (b.outputs if Operand.OUTPUTS in reads else [])
    return [recomputed.get(n, n) for n in names]


def check_plan(program: Program, plan: MemoryPlan) -> None:
    """Raise :class:`PlanCheckError` unless ``plan`` is safe for ``program``."""
    problems: list[str] = check_recompute(program)
    last_order = len(program.steps) - 1
    results = {program.output} | ({program.loss} if program.loss else set())
    placements: list[Placement] = []
    for name, orders in required_orders(program).items():
        t = plan.tensors.get(name)
        if t is None:
            problems.append(f"'{name}' is missing from the plan")
            continue
        if t.offset is None:
            if name not in plan.external:
                problems.append(f"'{name}' has no offset but is not external")
            continue
        kind = program.tensors[name].kind
        if kind in (TensorKind.WEIGHT, TensorKind.OPTIMIZER_STATE):
            first, last = 0, last_order
        else:
            first, last = min(orders, default=0), max(orders, default=0)
            if name in results:
                last = last_order
        if t.first > first or t.last < last:
            problems.append(
                f"'{name}' must live over orders {first}-{last} but is planned for {t.first}-{t.last}"
            )
        if t.nbytes != program.tensors[name].nbytes:
            problems.append(
                f"'{name}' is planned with {t.nbytes} bytes, needs {program.tensors[name].nbytes}"
            )
        placements.append(
            Placement(name, t.offset, program.tensors[name].nbytes, first, last, t.buffer)
        )
    problems += check_layout(placements, plan.arena_bytes, plan.alignment)
    if problems:
        raise PlanCheckError(problems)
