"""The memory plan as a picture: execution order across, byte offset up, one box per
tensor coloured by kind (``docs/memory-plan.md`` explains how to read it).

matplotlib is optional (``pip install edgetrain[chart]``) and imported only when a chart
is drawn; the figure is built without pyplot, so drawing never opens a window or touches
global state.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..tensors import TensorKind
from .plan import MemoryPlan
from .report import KIND_LABELS, format_bytes
from .swap import Exit, SwapSchedule

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: colours per kind (matplotlib's tab10, chosen so that persistent kinds are cool and
#: per-iteration kinds warm)
KIND_COLOURS: dict[TensorKind, str] = {
    TensorKind.WEIGHT: "#1f77b4",
    TensorKind.OPTIMIZER_STATE: "#9467bd",
    TensorKind.GRADIENT: "#17becf",
    TensorKind.ACTIVATION: "#2ca02c",
    TensorKind.DERIVATIVE: "#d62728",
    TensorKind.SCRATCH: "#ff7f0e",
    TensorKind.INPUT: "#8c564b",
    TensorKind.LABEL: "#e377c2",
}

#: font size of the names written in large boxes
_LABEL_POINTS = 6.5

_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B"))


def _byte_unit(nbytes: int) -> tuple[int, str]:
    """The largest binary unit not bigger than ``nbytes`` (the arena's height)."""
    for size, name in _UNITS:
        if nbytes >= size:
            return size, name
    return 1, "B"


def _matplotlib_figure() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "drawing a memory chart needs matplotlib: pip install edgetrain[chart]"
        ) from None
    return Figure


def plan_figure(plan: MemoryPlan, *, title: str | None = None) -> Figure:
    """A matplotlib figure of ``plan``: above, boxes per tensor at their arena offsets with
    the arena size and the lower bound; below, the bytes alive at each order."""
    figure_class = _matplotlib_figure()
    orders = len(plan.steps)
    figure = figure_class(figsize=(min(18.0, max(10.0, orders / 14)), 7.5), layout="constrained")
    arena_ax, live_ax = figure.subplots(2, 1, sharex=True, height_ratios=(4, 1))
    unit, unit_name = _byte_unit(max(plan.arena_bytes, 1))
    top = max(plan.arena_bytes, plan.lower_bound_bytes, 1) / unit * 1.04
    for ax in (arena_ax, live_ax):
        _draw_phases(ax, plan)
    _draw_tensors(arena_ax, plan, unit)
    width, height = figure.get_size_inches()
    _name_large_tensors(arena_ax, plan, unit, (width - 2.6, (height - 1.6) * 0.8))
    _draw_levels(arena_ax, plan, unit)
    _draw_live(live_ax, plan, unit)
    _label_phases(arena_ax, plan)
    arena_ax.set_xlim(-0.5, orders - 0.5)
    arena_ax.set_ylim(0, top)
    live_ax.set_ylim(0, top)
    arena_ax.set_ylabel(f"byte offset in the arena ({unit_name})")
    live_ax.set_ylabel(f"alive ({unit_name})")
    live_ax.set_xlabel("execution order")
    arena_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    live_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    heading = (
        f"{plan.planner}: arena {format_bytes(plan.arena_bytes)}, lower bound "
        f"{format_bytes(plan.lower_bound_bytes)}, naive total {format_bytes(plan.naive_bytes)}"
    )
    arena_ax.set_title(f"{title}\n{heading}" if title else heading, fontsize="medium", pad=16)
    return figure


def draw_plan(plan: MemoryPlan, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Write the chart of ``plan`` to ``path`` (format from the suffix: .png, .svg, .pdf)."""
    figure = plan_figure(plan, title=title)
    try:
        figure.savefig(os.fspath(path), dpi=150)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot write the chart to {os.fspath(path)}: {err}") from None


def _draw_tensors(ax: Axes, plan: MemoryPlan, unit: int) -> None:
    """One bar call per kind (fast for thousands of boxes, one legend entry each)."""
    placed = [t for t in plan.tensors.values() if t.offset is not None]
    edge = 0.6 if len(placed) < 80 else 0.25
    for kind, colour in KIND_COLOURS.items():
        members = [t for t in placed if t.kind is kind]
        if not members:
            continue
        ax.bar(
            [t.first - 0.5 for t in members],
            [t.nbytes / unit for t in members],
            width=[t.last - t.first + 1 for t in members],
            bottom=[(t.offset or 0) / unit for t in members],
            align="edge",
            color=colour,
            edgecolor="white",
            linewidth=edge,
            label=KIND_LABELS[kind],
            zorder=2,
        )


def _name_large_tensors(ax: Axes, plan: MemoryPlan, unit: int, size: tuple[float, float]) -> None:
    """Name every buffer whose box holds the text (across, or upright in a tall narrow
    box) after its longest-lived tensor, so the big tensors read at a glance; ``+n``
    counts the others sharing its bytes in place. ``size`` is the arena panel's
    approximate size in inches, to measure boxes against text."""
    orders = max(len(plan.steps), 1)
    top = max(plan.arena_bytes, 1)
    char, line = _LABEL_POINTS * 0.62 / 72, _LABEL_POINTS * 1.5 / 72
    for buffer in plan.buffers.values():
        members = [plan.tensors[m] for m in buffer.members]
        longest = max(members, key=lambda t: t.last - t.first)
        text = longest.name + (f" (+{len(members) - 1})" if len(members) > 1 else "")
        wide = (buffer.last - buffer.first + 1) / orders * size[0]
        high = buffer.size / top * size[1]
        if wide >= len(text) * char and high >= line:
            rotation = 0
        elif high >= len(text) * char and wide >= line:
            rotation = 90
        else:
            continue
        ax.text(
            (buffer.first + buffer.last) / 2,
            (buffer.offset + buffer.size / 2) / unit,
            text,
            rotation=rotation,
            ha="center",
            va="center",
            fontsize=_LABEL_POINTS,
            color="white",
            clip_on=True,
            zorder=4,
        )


def _draw_levels(ax: Axes, plan: MemoryPlan, unit: int) -> None:
    """The arena's top (what this planner holds) and the lower bound (what any planner
    must hold at the peak order, dotted)."""
    ax.axhline(plan.arena_bytes / unit, color="black", linewidth=1.0, label="arena size", zorder=3)
    ax.axhline(
        plan.lower_bound_bytes / unit,
        color="black",
        linestyle="--",
        linewidth=1.0,
        label="lower bound",
        zorder=3,
    )
    ax.axvline(plan.peak_order, color="black", linestyle=":", linewidth=0.8, zorder=3)


def _draw_live(ax: Axes, plan: MemoryPlan, unit: int) -> None:
    """Bytes alive at each order: the lower bound is this curve's maximum, and the gap up
    to the arena size is the planner's fragmentation."""
    live = [b / unit for b in plan.live_bytes]
    ax.fill_between(range(len(live)), live, step="mid", color="0.55", label="bytes alive", zorder=2)
    ax.axhline(plan.arena_bytes / unit, color="black", linewidth=1.0, label="arena size", zorder=3)
    ax.axvline(
        plan.peak_order, color="black", linestyle=":", linewidth=0.8, label="peak order", zorder=3
    )


def _draw_phases(ax: Axes, plan: MemoryPlan) -> None:
    """Shade the backward pass (every order after the forward steps)."""
    forward = sum(1 for s in plan.steps if s.kind == "forward")
    orders = len(plan.steps)
    if forward < orders:
        ax.axvspan(forward - 0.5, orders - 0.5, color="0.93", zorder=0)


def _label_phases(ax: Axes, plan: MemoryPlan) -> None:
    forward = sum(1 for s in plan.steps if s.kind == "forward")
    orders = len(plan.steps)
    top = ax.get_xaxis_transform()
    ax.text(
        forward / 2 - 0.5,
        1.005,
        "forward",
        transform=top,
        ha="center",
        va="bottom",
        fontsize="small",
    )
    if forward < orders:
        ax.text(
            (forward + orders) / 2 - 0.5,
            1.005,
            "backward and updates (shaded)",
            transform=top,
            ha="center",
            va="bottom",
            fontsize="small",
        )


# -- swap schedules --------------------------------------------------------------------


def swap_figure(schedule: SwapSchedule, *, title: str | None = None) -> Figure:
    """A figure of the resident arena of a swap schedule: unswapped buffers as in
    :func:`plan_figure`, each resident segment of a swapped buffer hatched, with a
    triangle where it is read in (up, before its first order) and written out (down,
    after its last); below, the resident bytes at each order against the plan without
    swapping."""
    figure_class = _matplotlib_figure()
    plan = schedule.plan
    orders = len(plan.steps)
    figure = figure_class(figsize=(min(18.0, max(10.0, orders / 14)), 7.5), layout="constrained")
    arena_ax, live_ax = figure.subplots(2, 1, sharex=True, height_ratios=(4, 1))
    unit, unit_name = _byte_unit(max(schedule.resident_bytes, 1))
    for ax in (arena_ax, live_ax):
        _draw_phases(ax, plan)
    boxes: dict[TensorKind, list[tuple[float, float, float, float, bool]]] = {}
    for name, offset in schedule.resident_offsets.items():
        b = plan.buffers[name]
        boxes.setdefault(b.kind, []).append((b.first - 0.5, b.last - b.first + 1, offset, b.size, False))
    ins: list[tuple[float, float]] = []
    outs: list[tuple[float, float]] = []
    for name, segments in schedule.segments.items():
        kind = plan.buffers[name].kind
        for s in segments:
            boxes.setdefault(kind, []).append((s.start - 0.5, s.held - s.start + 1, s.offset, s.size, True))
            middle = (s.offset + s.size / 2) / unit
            if s.read_in:
                ins.append((s.start - 0.5, middle))
            if s.exit is Exit.WRITE:
                outs.append((s.end + 0.5, middle))
    edge = 0.6 if sum(len(v) for v in boxes.values()) < 80 else 0.25
    for kind, colour in KIND_COLOURS.items():
        for swapped in (False, True):
            members = [box for box in boxes.get(kind, []) if box[4] is swapped]
            if not members:
                continue
            arena_ax.bar(
                [m[0] for m in members],
                [m[3] / unit for m in members],
                width=[m[1] for m in members],
                bottom=[m[2] / unit for m in members],
                align="edge",
                color=colour,
                edgecolor="white",
                linewidth=edge,
                hatch="////" if swapped else None,
                alpha=0.75 if swapped else 1.0,
                label=f"{KIND_LABELS[kind]}{' (swapped)' if swapped else ''}",
                zorder=2,
            )
    if ins:
        arena_ax.scatter(*zip(*ins), marker="^", s=14, color="black", label="read in", zorder=5)
    if outs:
        arena_ax.scatter(*zip(*outs), marker="v", s=14, color="0.35", label="written out", zorder=5)
    arena_ax.axhline(
        schedule.resident_bytes / unit, color="black", linewidth=1.0, label="resident arena", zorder=3
    )
    resident = [o.resident_bytes / unit for o in schedule.orders]
    live_ax.fill_between(range(orders), resident, step="mid", color="0.55", label="resident", zorder=2)
    live_ax.step(
        range(orders), [b / unit for b in plan.live_bytes], where="mid", color="black",
        linestyle="--", linewidth=0.8, label="alive without swap", zorder=3,
    )  # fmt: skip
    _label_phases(arena_ax, plan)
    top = max(schedule.resident_bytes, 1) / unit * 1.04
    arena_ax.set_xlim(-0.5, orders - 0.5)
    arena_ax.set_ylim(0, top)
    live_ax.set_ylim(0, max(plan.lower_bound_bytes, schedule.resident_bytes, 1) / unit * 1.04)
    arena_ax.set_ylabel(f"byte offset in the resident arena ({unit_name})")
    live_ax.set_ylabel(f"bytes ({unit_name})")
    live_ax.set_xlabel("execution order")
    arena_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    live_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    heading = (
        f"swap, lookahead {schedule.lookahead}: resident {format_bytes(schedule.resident_bytes)} "
        f"(without swap {format_bytes(plan.arena_bytes)}), {len(schedule.swapped)} buffers swapped, "
        f"{format_bytes(schedule.bytes_written)} written and {format_bytes(schedule.bytes_read)} "
        "read per iteration"
    )
    arena_ax.set_title(f"{title}\n{heading}" if title else heading, fontsize="medium", pad=16)
    return figure


def draw_swap(schedule: SwapSchedule, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Write the chart of a swap schedule to ``path`` (format from the suffix)."""
    figure = swap_figure(schedule, title=title)
    try:
        figure.savefig(os.fspath(path), dpi=150)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot write the chart to {os.fspath(path)}: {err}") from None
