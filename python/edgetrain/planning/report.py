"""The memory plan as text: what ``edgetrain plan`` prints (``docs/memory-plan.md``).

Everything shown is read from a :class:`MemoryPlan`; nothing is recomputed, so the text,
the JSON (``MemoryPlan.to_json``) and the chart always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..tensors import TensorKind
from .lifetimes import Lifespan
from .plan import MemoryPlan, TensorPlan
from .recompute import RecomputeSummary

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")

#: how each kind is named in the split, in the order the issue lists them
KIND_LABELS: dict[TensorKind, str] = {
    TensorKind.WEIGHT: "weights",
    TensorKind.GRADIENT: "gradients",
    TensorKind.ACTIVATION: "activations",
    TensorKind.DERIVATIVE: "derivatives",
    TensorKind.OPTIMIZER_STATE: "optimizer state",
    TensorKind.SCRATCH: "scratch",
    TensorKind.INPUT: "inputs",
    TensorKind.LABEL: "labels",
}

_WIDTH = 100

#: one line on what each planner does, beside its arena size
_PLANNER_NOTES = {
    "naive": "buffers back to back: in-place sharing, no reuse over time",
    "sorted": "NNTrainer's: by first use, lowest free offset",
    "greedy_by_size": "TFLite's: largest first, best-fitting gap",
}


def format_bytes(nbytes: int) -> str:
    """``nbytes`` in binary units with three significant figures: ``512 B``, ``1.50 KiB``,
    ``244 MiB``, ``0.98 KiB`` (a unit is left at 1000, so there are never four digits)."""
    value = float(nbytes)
    unit = 0
    while abs(value) >= 1000 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{nbytes} B"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f} {_UNITS[unit]}"


@dataclass(frozen=True)
class LayerTraining:
    """Which layers with weights train in the planned program, and which are frozen
    (their weights get no gradient and no optimizer state, so the plan is smaller)."""

    trained: tuple[str, ...]
    frozen: tuple[str, ...]


def layer_training(plan: MemoryPlan) -> LayerTraining:
    """Layers with weights split by whether the program has a calc_gradient step for them
    (an inference program trains none)."""
    trained = {s.node for s in plan.steps if s.kind == "calc_gradient"}
    owners: list[str] = []
    for tensor in plan.tensors.values():
        owner = tensor.name.split(":", 1)[0]
        if tensor.kind is TensorKind.WEIGHT and owner not in owners:
            owners.append(owner)
    return LayerTraining(
        tuple(o for o in owners if o in trained), tuple(o for o in owners if o not in trained)
    )


def render_plan(
    plan: MemoryPlan,
    *,
    title: str | None = None,
    orders: bool = True,
    unfrozen: MemoryPlan | None = None,
    recompute: RecomputeSummary | None = None,
) -> str:
    """The whole report: header, planners against the bounds, the split by kind and (when
    ``orders``) every execution order with what is born and freed there. ``unfrozen`` is
    the plan of the same model with every layer trainable, ``recompute`` what recompute
    changed and the plan without it, both compared in the header."""
    sections = [
        _header(plan, title, unfrozen, recompute),
        _planner_table(plan),
        _kind_table(plan),
        _persistent(plan),
        _orders(plan) if orders else "",
    ]
    return "\n\n".join(s for s in sections if s)


def plan_json(
    plan: MemoryPlan,
    unfrozen: MemoryPlan | None = None,
    *,
    recompute: RecomputeSummary | None = None,
    **context: Any,
) -> dict[str, Any]:
    """``plan.to_json()`` with what the plan was made from (``context``: model file,
    batch size, ...) and which layers train, as ``edgetrain plan --json`` writes it;
    ``unfrozen_arena_bytes`` is the arena with every layer trainable (when any is frozen);
    ``recompute`` (when compiled with it): the recomputed activations, the max pooling
    layers without argmax, and the arena and bound without recompute."""
    training = layer_training(plan)
    extra: dict[str, Any] = {}
    if unfrozen is not None:
        extra["unfrozen_arena_bytes"] = unfrozen.arena_bytes
    if recompute is not None:
        extra["recompute"] = {
            "recomputed": list(recompute.recomputed),
            "pooling_without_argmax": list(recompute.pooling),
            "arena_bytes_without": recompute.without.arena_bytes,
            "lower_bound_bytes_without": recompute.without.lower_bound_bytes,
        }
    return {
        **context,
        "trained_layers": list(training.trained),
        "frozen_layers": list(training.frozen),
        **extra,
        **plan.to_json(),
    }


def _header(
    plan: MemoryPlan,
    title: str | None,
    unfrozen: MemoryPlan | None = None,
    recompute: RecomputeSummary | None = None,
) -> str:
    training = layer_training(plan)
    lines = [title] if title else []
    lines.append(
        f"{len(plan.steps)} execution orders, {len(plan.tensors)} tensors "
        f"({len(plan.buffers)} arena buffers after in-place sharing), alignment {plan.alignment} B"
    )
    if plan.external:
        lines.append(f"{len(plan.external)} tensors live outside the arena (borrowed weights)")
    if not any(s.kind != "forward" for s in plan.steps):
        lines.append("inference: forward steps only, no layer trains")
    else:
        lines.append(_wrap("layers that train:", _names(training.trained)))
        lines.append(
            _wrap("frozen layers (no gradients, no optimizer state):", _names(training.frozen))
        )
        if unfrozen is not None:
            saved = unfrozen.arena_bytes - plan.arena_bytes
            lines.append(
                f"arena {format_bytes(plan.arena_bytes)} with freezing, "
                f"{format_bytes(unfrozen.arena_bytes)} with every layer trainable "
                f"(freezing saves {format_bytes(saved)}, "
                f"{saved / unfrozen.arena_bytes:.0%})"
            )
        if recompute is not None:
            lines.append(
                _wrap(
                    "recomputed in the backward pass instead of kept:",
                    _names(recompute.recomputed),
                )
            )
            lines.append(_wrap("max pooling without argmax scratch:", _names(recompute.pooling)))
            before = recompute.without.arena_bytes
            lines.append(
                f"arena {format_bytes(plan.arena_bytes)} with recompute, {format_bytes(before)} "
                f"without (recompute saves {format_bytes(before - plan.arena_bytes)}, "
                f"{(before - plan.arena_bytes) / before:.0%}; lower bound "
                f"{format_bytes(recompute.without.lower_bound_bytes)} -> "
                f"{format_bytes(plan.lower_bound_bytes)})"
            )
    return "\n".join(lines)


def _names(names: tuple[str, ...]) -> list[str]:
    return [*names[:-1], f"{names[-1]} ({len(names)})"] if names else ["none"]


def _planner_table(plan: MemoryPlan) -> str:
    bound, naive = plan.lower_bound_bytes, plan.naive_bytes
    rows = [("", "bytes", "", "/ lower bound", "/ naive total", "")]
    for name, size in plan.planners.items():
        note = _PLANNER_NOTES.get(name, "") + ("  <- this plan" if name == plan.planner else "")
        rows.append(
            (
                f"arena, {name}",
                f"{size:,}",
                format_bytes(size),
                _ratio(size, bound),
                _ratio(size, naive),
                note,
            )
        )
    peak = plan.steps[plan.peak_order] if plan.steps else None
    where = (
        f"most bytes alive at once: order {plan.peak_order} ({peak.kind} {peak.node})"
        if peak
        else ""
    )
    rows.append(
        (
            "lower bound",
            f"{bound:,}",
            format_bytes(bound),
            _ratio(bound, bound),
            _ratio(bound, naive),
            where,
        )
    )
    rows.append(
        (
            "naive total",
            f"{naive:,}",
            format_bytes(naive),
            _ratio(naive, bound),
            _ratio(naive, naive),
            "every tensor its own bytes, no reuse",
        )
    )
    return _table(rows, align_right=(1, 2, 3, 4))


def _ratio(size: int, base: int) -> str:
    return f"{size / base:.3f}" if base else "-"


def _kind_table(plan: MemoryPlan) -> str:
    rows = [("bytes by kind", "all buffers", "alive at the peak")]
    for kind, label in KIND_LABELS.items():
        total = plan.bytes_by_kind.get(kind.value, 0)
        peak = plan.peak_bytes_by_kind.get(kind.value, 0)
        if total or peak or kind in (TensorKind.WEIGHT, TensorKind.ACTIVATION):
            rows.append((f"  {label}", format_bytes(total), format_bytes(peak)))
    rows.append(
        (
            "  total",
            format_bytes(sum(plan.bytes_by_kind.values())),
            format_bytes(sum(plan.peak_bytes_by_kind.values())),
        )
    )
    return _table(rows, align_right=(1, 2))


def _persistent(plan: MemoryPlan) -> str:
    """Weights and optimizer state live at every order; summed here instead of listed as
    born at order 0."""
    groups: dict[TensorKind, list[TensorPlan]] = {}
    for t in plan.tensors.values():
        if t.lifespan is Lifespan.PERSISTENT and t.offset is not None:
            groups.setdefault(t.kind, []).append(t)
    if not groups:
        return ""
    lines = ["alive at every order (kept across iterations):"]
    for kind, members in groups.items():
        size = sum(t.nbytes for t in members)
        lines.append(f"  {KIND_LABELS[kind]}: {format_bytes(size)} in {len(members)} tensors")
    return "\n".join(lines)


def _orders(plan: MemoryPlan) -> str:
    width = max([len("node"), *(len(s.node) for s in plan.steps)])
    lines = [f"order  {'step':17}  {'node':{width}}  {'alive':>10}"]
    for step in plan.steps:
        mark = "  <- peak" if step.order == plan.peak_order else ""
        live = plan.live_bytes[step.order] if step.order < len(plan.live_bytes) else 0
        lines.append(
            f"{step.order:5}  {step.kind:17}  {step.node:{width}}  {format_bytes(live):>10}{mark}"
        )
        born = [
            plan.tensors[n]
            for n in step.born
            if plan.tensors[n].lifespan is not Lifespan.PERSISTENT
        ]
        if born:
            lines.append(_wrap("       born: ", [_born(t) for t in born]))
        if step.freed:
            lines.append(_wrap("       freed:", [_freed(plan, n, step.order) for n in step.freed]))
    return "\n".join(lines)


def _born(tensor: TensorPlan) -> str:
    if tensor.shares is not None:
        rule, source = tensor.shares
        return f"{tensor.name} (in {source}, {rule.value})"
    return f"{tensor.name} {format_bytes(tensor.nbytes)}"


def _freed(plan: MemoryPlan, name: str, order: int) -> str:
    """A freed tensor, and the tensor keeping its bytes when its buffer lives on."""
    buffer = plan.buffers.get(plan.tensors[name].buffer)
    if buffer is None or buffer.last <= order:
        return name
    heir = max((plan.tensors[m] for m in buffer.members), key=lambda t: (t.last, t.first))
    return f"{name} (bytes live on in {heir.name})"


def _wrap(prefix: str, items: list[str]) -> str:
    """``items`` joined by commas after ``prefix``, broken between items (never inside
    one) to keep lines near the report's width."""
    lines, line = [], prefix
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        if line.strip() and len(line) + 1 + len(text) > _WIDTH and line != prefix:
            lines.append(line)
            line = " " * len(prefix)
        line += ("" if line.endswith(" ") else " ") + text
    lines.append(line)
    return "\n".join(lines)


def _table(rows: Sequence[tuple[str, ...]], align_right: tuple[int, ...]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            c.rjust(w) if i in align_right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
