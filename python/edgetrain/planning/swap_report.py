"""The swap schedule as text: what ``edgetrain plan --memory-budget`` prints after the plan.

Read from a :class:`SwapSchedule` only, like ``report.py`` reads a plan: the resident
arena against the plan without swapping and the budget, resident and swapped bytes by
kind, the traffic per iteration, and every order where something moves.
"""

from __future__ import annotations

from ..tensors import TensorKind
from .report import KIND_LABELS, format_bytes
from .swap import SwapSchedule

_WIDTH = 100


def render_swap(schedule: SwapSchedule, *, budget: int | None = None, orders: bool = True) -> str:
    """The schedule's summary table, the split by kind and (when ``orders``) the transfers
    at each order."""
    sections = [_summary(schedule, budget), _kinds(schedule)]
    if orders:
        sections.append(_transfers(schedule))
    return "\n\n".join(sections)


def _row(label: str, nbytes: int, note: str = "") -> tuple[str, str, str, str]:
    return (label, f"{nbytes:,}", format_bytes(nbytes), note)


def _summary(schedule: SwapSchedule, budget: int | None) -> str:
    plan = schedule.plan
    swapped_bytes = sum(plan.buffers[b].size for b in schedule.swapped)
    head = (
        f"swap schedule: {len(schedule.swapped)} of {len(plan.buffers)} buffers swapped, "
        f"lookahead {schedule.lookahead}, {schedule.planner}"
    )
    peak = plan.steps[schedule.resident_peak_order] if plan.steps else None
    where = f"order {schedule.resident_peak_order} ({peak.kind} {peak.node})" if peak else ""
    rows = [
        ("", "bytes", "", ""),
        _row("resident arena", schedule.resident_bytes, "the memory training holds"),
        _row(
            "resident lower bound", schedule.resident_lower_bound, f"most resident at once: {where}"
        ),
    ]
    if budget is not None:
        rows.append(
            _row(
                "memory budget", budget, "fits" if schedule.resident_bytes <= budget else "EXCEEDED"
            )
        )
    rows += [
        _row("arena without swap", plan.arena_bytes, f"{plan.planner}, the same planner"),
        _row("swapped buffers", swapped_bytes, "their bytes, summed"),
        _row("swap file", schedule.swap_file_bytes, "slots placed by the planner"),
        _row("written per iteration", schedule.bytes_written, "to the swap file"),
        _row("read per iteration", schedule.bytes_read, "from the swap file"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head]
    for r in rows:
        lines.append(
            f"{r[0]:{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
        )
    return "\n".join(lines)


def _kinds(schedule: SwapSchedule) -> str:
    """Per kind: bytes of buffers that stay resident and of buffers that are swapped."""
    plan = schedule.plan
    resident = {kind: 0 for kind in TensorKind}
    swapped = {kind: 0 for kind in TensorKind}
    for b in plan.buffers.values():
        (swapped if b.name in schedule.segments else resident)[b.kind] += b.size
    rows = [("bytes by kind", "never swapped", "swapped")]
    for kind, label in KIND_LABELS.items():
        if resident[kind] or swapped[kind]:
            rows.append((f"  {label}", format_bytes(resident[kind]), format_bytes(swapped[kind])))
    rows.append(
        ("  total", format_bytes(sum(resident.values())), format_bytes(sum(swapped.values())))
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}".rstrip() for r in rows
    )


def _transfers(schedule: SwapSchedule) -> str:
    """Orders where a buffer is read in (before the step) or written out / dropped (after
    it); ``in`` before the step, ``out`` after it."""
    plan = schedule.plan
    width = max([len("node"), *(len(s.node) for s in plan.steps)])
    header = (
        f"order  {'step':17}  {'node':{width}}  {'resident':>10}   transfers "
        "(in: read before the step; out: written after it; drop: released, the file is current)"
    )
    lines = [header]
    for o in schedule.orders:
        step = plan.steps[o.order]
        mark = "  <- peak" if o.order == schedule.resident_peak_order else ""
        lines.append(
            f"{o.order:5}  {step.kind:17}  {step.node:{width}}  "
            f"{format_bytes(o.resident_bytes):>10}{mark}"
        )
        if o.read_in:
            lines.append(_wrap("       in:  ", [_sized(schedule, b) for b in o.read_in]))
        if o.written_out:
            lines.append(_wrap("       out: ", [_sized(schedule, b) for b in o.written_out]))
        if o.dropped:
            lines.append(_wrap("       drop:", list(o.dropped)))
    return "\n".join(lines)


def _sized(schedule: SwapSchedule, buffer: str) -> str:
    return f"{buffer} {format_bytes(schedule.buffer_nbytes(buffer))}"


def _wrap(prefix: str, items: list[str]) -> str:
    lines, line = [], prefix
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        if len(line) + 1 + len(text) > _WIDTH and line != prefix:
            lines.append(line)
            line = " " * len(prefix)
        line += ("" if line.endswith(" ") else " ") + text
    lines.append(line)
    return "\n".join(lines)
