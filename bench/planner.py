"""Planner benchmark: for each standard workload, the naive total, every planner's arena,
the lower bound and the ratios, and whether the planner targets are met.

Targets (from the product issue): ``greedy_by_size`` within 5% of the lower bound on every
workload; its arena at most a third of the naive total on VGG-16 and ResNet-18 at batch
128. A missed target is printed with what is alive at the peak order, the bytes no
planner can avoid without changing lifetimes or sharing.

Each workload is planned as compiled by default and with ``recompute=True``
(``spec/recompute.md``; ``--recompute off|on|both``, default both: two tables). The naive
total a recompute plan is compared with is the one *without* recompute (every tensor of
the model its own bytes): the recomputed copies are extra tensors, and counting them
would flatter the ratio.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from edgetrain.planning import MemoryPlan, plan_memory
from edgetrain.planning.report import KIND_LABELS, format_bytes

from .workloads import Workload

PLANNER = "greedy_by_size"
MAX_OVER_BOUND = 1.05
MAX_OVER_NAIVE = 1 / 3
NAIVE_TARGET_WORKLOADS = ("vgg16-b128", "resnet18-b128")


@dataclass(frozen=True)
class PlannerResult:
    """One workload's plan and how long planning took (every planner, the bound);
    ``base`` is the same workload's result without recompute (None for that one)."""

    workload: Workload
    plan: MemoryPlan
    seconds: float
    base: PlannerResult | None = None

    @property
    def recompute(self) -> bool:
        return self.base is not None

    @property
    def naive_bytes(self) -> int:
        """The naive total without recompute (every tensor of the model its own bytes)."""
        return (self.base or self).plan.naive_bytes

    @property
    def over_bound(self) -> float:
        return self.plan.planners[PLANNER] / self.plan.lower_bound_bytes

    @property
    def over_naive(self) -> float:
        return self.plan.planners[PLANNER] / self.naive_bytes

    @property
    def saved(self) -> int:
        """Arena bytes recompute saves (0 without recompute)."""
        return 0 if self.base is None else self.base.plan.planners[PLANNER] - self.plan.planners[PLANNER]


@dataclass(frozen=True)
class Target:
    """One target on one workload: the measured ratio against its limit."""

    name: str
    workload: str
    value: float
    limit: float

    @property
    def met(self) -> bool:
        return self.value <= self.limit


def measure(workload: Workload, base: PlannerResult | None = None) -> PlannerResult:
    """Compile the workload for training (recomputing when ``base``, the result without,
    is given) and take its plan (``Model.plan``, as ``edgetrain plan`` does); the time is
    one fresh ``plan_memory`` of the program (every planner and the bound), since
    ``Model.plan`` returns the plan made at compile time."""
    model = workload.compile(recompute=base is not None)
    start = time.perf_counter()
    plan_memory(model.program, PLANNER)
    seconds = time.perf_counter() - start
    return PlannerResult(workload, model.plan(PLANNER), seconds, base)


def _mode(result: PlannerResult) -> str:
    return " with recompute" if result.recompute else ""


def targets(results: list[PlannerResult]) -> list[Target]:
    found = [
        Target(f"{PLANNER}{_mode(r)} / lower bound", r.workload.name, r.over_bound, MAX_OVER_BOUND)
        for r in results
    ]
    found += [
        Target(f"{PLANNER}{_mode(r)} / naive total", r.workload.name, r.over_naive, MAX_OVER_NAIVE)
        for r in results
        if r.workload.name in NAIVE_TARGET_WORKLOADS
    ]
    return found


def peak_breakdown(plan: MemoryPlan) -> list[tuple[str, int]]:
    """Bytes alive at the peak order grouped by kind (scratch by its name: ``normalized``,
    ``argmax``, ...), largest first: what would have to shrink to lower the bound."""
    groups: dict[str, int] = {}
    for buffer in plan.buffers.values():
        if buffer.first <= plan.peak_order <= buffer.last:
            label = KIND_LABELS[buffer.kind]
            if ":scratch:" in buffer.name:
                label = f"scratch '{buffer.name.rsplit(':', 1)[1]}'"
            groups[label] = groups.get(label, 0) + buffer.size
    return sorted(groups.items(), key=lambda item: -item[1])


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f}"


def _table(results: list[PlannerResult]) -> list[str]:
    names = list(results[0].plan.planners) if results else []
    recompute = any(r.recompute for r in results)
    header = ["workload", "orders", "tensors", "naive total"] + names
    header += ["lower bound", f"{PLANNER}/bound", f"{PLANNER}/naive"]
    header += ["saved", "plan s"] if recompute else ["plan s"]
    rows = [header]
    for r in results:
        p = r.plan
        row = [r.workload.name, str(len(p.steps)), str(len(p.tensors)), _mib(r.naive_bytes)]
        row += [_mib(p.planners[n]) for n in names]
        row += [_mib(p.lower_bound_bytes), f"{r.over_bound:.4f}", f"{r.over_naive:.3f}"]
        if recompute:
            assert r.base is not None
            row.append(f"{_mib(r.saved)} ({r.saved / r.base.plan.planners[PLANNER]:.0%})")
        rows.append(row + [f"{r.seconds:.3f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    return lines


def render(results: list[PlannerResult]) -> str:
    """A table per mode (without, with recompute), then the targets, then the peak of
    every workload missing one."""
    lines: list[str] = []
    plain = [r for r in results if not r.recompute]
    recomputed = [r for r in results if r.recompute]
    if plain:
        lines.append("planner benchmark: training plans, sizes in MiB (arena bytes per planner)")
        lines += _table(plain)
    if recomputed:
        if lines:
            lines.append("")
        lines.append(
            "with recompute (spec/recompute.md): naive total and ratio are the model's "
            "without recompute; saved = greedy_by_size arena saved"
        )
        lines += _table(recomputed)
    found = targets(results)
    lines.append("")
    lines.append("targets:")
    for t in found:
        verdict = "met" if t.met else "MISSED"
        lines.append(f"  {t.name} <= {t.limit:.3f} on {t.workload}: {t.value:.4f} {verdict}")
    for r in results:
        own = [t for t in found if t.workload == r.workload.name and t.name.startswith(f"{PLANNER}{_mode(r)} /")]
        if any(not t.met for t in own):
            lines.append("")
            lines.append(_peak_text(r))
    return "\n".join(lines)


def _peak_text(result: PlannerResult) -> str:
    plan = result.plan
    step = plan.steps[plan.peak_order]
    head = (
        f"{result.workload.name}{_mode(result)}: lower bound "
        f"{format_bytes(plan.lower_bound_bytes)} at order {plan.peak_order} ({step.kind} "
        f"{step.node}); a third of the naive total is {format_bytes(result.naive_bytes // 3)}. "
        "Alive at the peak:"
    )
    lines = [head]
    for label, size in peak_breakdown(plan):
        if size * 100 >= plan.lower_bound_bytes:
            lines.append(f"  {label:28} {format_bytes(size):>10}")
    if (
        result.workload.name in NAIVE_TARGET_WORKLOADS
        and plan.lower_bound_bytes * 3 > result.naive_bytes
    ):
        lines.append(
            "The lower bound alone is above a third of the naive total: no placement can meet "
            "that target; fewer bytes must be alive at the peak."
        )
    if result.over_bound > MAX_OVER_BOUND:
        gap = plan.planners[PLANNER] - plan.lower_bound_bytes
        lines.append(
            f"{PLANNER} is {format_bytes(gap)} above the bound: a better placement would help."
        )
    return "\n".join(lines)


def to_json(results: list[PlannerResult]) -> dict[str, Any]:
    return {
        "benchmark": "planner",
        "planner": PLANNER,
        "workloads": [
            {
                "name": r.workload.name,
                "model": r.workload.model,
                "description": r.workload.description,
                "batch_size": r.workload.batch_size,
                "recompute": r.recompute,
                "orders": len(r.plan.steps),
                "tensors": len(r.plan.tensors),
                "naive_bytes": r.naive_bytes,
                "program_naive_bytes": r.plan.naive_bytes,
                "lower_bound_bytes": r.plan.lower_bound_bytes,
                "planners": dict(r.plan.planners),
                "over_lower_bound": {
                    n: size / r.plan.lower_bound_bytes for n, size in r.plan.planners.items()
                },
                "over_naive": {n: size / r.naive_bytes for n, size in r.plan.planners.items()},
                "saved_bytes": r.saved,
                "peak_order": r.plan.peak_order,
                "peak_bytes": dict(peak_breakdown(r.plan)),
                "seconds": r.seconds,
            }
            for r in results
        ],
        "targets": [
            {
                "name": t.name,
                "workload": t.workload,
                "value": t.value,
                "limit": t.limit,
                "met": t.met,
            }
            for t in targets(results)
        ],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--recompute off|on|both`` (default both) besides ``--json``/``--workloads``."""
    parser.add_argument(
        "--recompute",
        choices=("off", "on", "both"),
        default="both",
        help="plan as compiled by default (off), with compile(recompute=True) (on), or both",
    )


def run(workloads: list[Workload], args: argparse.Namespace) -> dict[str, Any]:
    """Measure, print the tables and return the JSON data."""
    mode = getattr(args, "recompute", "both")
    bases = [measure(w) for w in workloads]
    results = [] if mode == "on" else list(bases)
    if mode != "off":
        results += [measure(b.workload, b) for b in bases]
    print(render(results))
    return to_json(results)
