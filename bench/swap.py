"""Training under a memory budget (``spec/swapping.md``): for each workload, a run
without swap on ``backend="rust"``, then runs with ``memory_budget`` = 50%, 25%, 10%
(``--budgets``) of that run's planned arena, each in its own process
(``bench/swap_worker.py``), the swap file in the system temp dir.

Per run it prints the budget, the resident plan chosen (arena bytes, lookahead, bytes
swapped), the measured peak-RSS growth and its excess over ``budget + overhead``, the
median step time and its ratio to the run without swap, the bytes written and read per
iteration, the late read-ins per iteration and the time waited on transfers. With
``--repeat N`` the runs without swap and under each budget are made N times,
interleaved; the ratio is the median of the ratios of each budget run to the run without
swap just before it, so a shared machine's changing load cancels out of it.

**Fixed runtime overhead**: the run without swap's peak-RSS growth minus its planned
arena: what the process holds beyond the arena (the model's Python objects, the core's
program, the batch, kernel workspaces, compile-time transients). It does not shrink
with the budget, so the target is stated over it. **Targets** (the issue): the peak
growth of a run at budget ``B`` within ``overhead + 1.1 B`` (``excess = growth -
overhead - B`` at most 10% of ``B``), and at 25% a step time at most 1.3x the run
without swap. The growth is the whole run's (compile included) and, in the JSON rows,
also the timed steps' alone (``training_peak_growth_bytes``).
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from edgetrain.backends.rust import default_threads
from edgetrain.errors import ConfigError
from edgetrain.planning.report import format_bytes

from .measure import run_worker
from .workloads import Workload

DEFAULT_WORKLOADS = ("vgg16-b32", "vgg16-b128", "resnet18-b32", "resnet18-b128")
MAX_EXCESS = 0.10
MAX_TIME_RATIO_AT_25 = 1.3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[50, 25, 10], metavar="PCT",
        help="budgets in percent of the planned arena without swap",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    parser.add_argument("--lookahead", type=int, default=None, help="fix the lookahead")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run may take")
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="run the no-swap and budget runs this many times, interleaved (for a loaded machine)",
    )  # fmt: skip


def default_workloads(chosen: list[Workload], named: list[str] | None) -> list[Workload]:
    """The workloads asked for, or this benchmark's four when none were named."""
    if named:
        return chosen
    return [w for w in chosen if w.name in DEFAULT_WORKLOADS]


def _run(workload: Workload, args: argparse.Namespace, threads: int, budget: int | None) -> dict[str, Any]:
    options = [workload.name, "--threads", str(threads), "--warmup", str(args.warmup),
               "--steps", str(args.steps)]  # fmt: skip
    if budget is not None:
        options += ["--budget", str(budget)]
    if args.lookahead is not None:
        options += ["--lookahead", str(args.lookahead)]
    what = f"{workload.name} at a budget of {budget} bytes" if budget else f"{workload.name} without swap"
    return run_worker("bench.swap_worker", options, args.timeout, what)


def _mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


HEADER = (
    f"{'workload':<14}{'budget':>6}{'MiB':>8}{'arena':>8}{'L':>3}{'swapped':>9}"
    f"{'growth':>9}{'excess':>9}{'s/step':>8}{'ratio':>7}{'wr MiB':>8}{'rd MiB':>8}"
    f"{'late rd':>8}{'wait s':>8}"
)


def _line(label: str, row: dict[str, Any], overhead: int, budget: int | None) -> str:
    ratio = row["time_ratio"]
    excess = "" if budget is None else _mib(row["peak_growth_bytes"] - overhead - budget)
    mark = ""
    if budget is not None and row["peak_growth_bytes"] - overhead - budget > MAX_EXCESS * budget:
        mark += "m"
    if label == "25%" and ratio > MAX_TIME_RATIO_AT_25:
        mark += "t"
    lookahead = "-" if row["lookahead"] is None else str(row["lookahead"])
    return (
        f"{row['workload']:<14}{label:>6}{_mib(budget) if budget else '':>8}"
        f"{_mib(row['resident_bytes'])}{lookahead:>3}{_mib(row['swapped_bytes']):>9}"
        f"{_mib(row['peak_growth_bytes']):>9}{excess:>9}{row['step_time_s']:>8.3f}{ratio:>7.2f}"
        f"{_mib(row['bytes_written_per_iteration'])}{_mib(row['bytes_read_per_iteration'])}"
        f"{row['read_waits_per_iteration']:>8.1f}{row['wait_s_per_iteration']:>8.3f}"
        + (f" !{mark}" if mark else "")
    )


def _combine(runs: list[dict[str, Any]], bases: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs: the median step time, the median of the ratios to the
    run without swap made just before each (paired, so a change in the machine's load
    between repeats cancels out), the largest peak growth."""
    row = dict(runs[0])
    times = [r["step_time_s"] for r in runs]
    row["step_times_s"] = times
    row["step_time_s"] = statistics.median(times)
    row["time_ratios"] = [r["step_time_s"] / b["step_time_s"] for r, b in zip(runs, bases, strict=True)]
    row["time_ratio"] = statistics.median(row["time_ratios"])
    row["peak_growth_bytes"] = max(r["peak_growth_bytes"] for r in runs)
    return row


def _budget_run(
    workload: Workload, args: argparse.Namespace, threads: int, percent: int, budget: int
) -> dict[str, Any] | str:
    """A run at ``budget``, or the reason no schedule fits it."""
    try:
        return _run(workload, args, threads, budget)
    except ConfigError as err:
        message = str(err)
        if "no swap schedule fits" not in message:
            raise
        return message[message.index("the smallest") :]


def run(workloads: list[Workload], args: argparse.Namespace) -> list[dict[str, Any]]:
    workloads = default_workloads(workloads, getattr(args, "workloads", None))
    threads = args.threads or default_threads()
    print(f"{threads} threads; median of {args.steps} steps after {args.warmup}; "
          f"{args.repeat} interleaved repeat(s), ratio = median of paired ratios; backend rust; "
          "growth = peak RSS growth of the whole run; overhead = growth - arena without swap")  # fmt: skip
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        bases: list[dict[str, Any]] = []
        runs: dict[int, list[dict[str, Any]]] = {p: [] for p in args.budgets}
        refused: dict[int, str] = {}
        for _ in range(args.repeat):
            bases.append(_run(workload, args, threads, None))
            for percent in args.budgets:
                if percent in refused:
                    continue
                budget = bases[0]["plan_arena_bytes"] * percent // 100
                result = _budget_run(workload, args, threads, percent, budget)
                if isinstance(result, str):
                    refused[percent] = result
                else:
                    runs[percent].append(result | {"paired_base": len(bases) - 1})
        base = _combine(bases, bases)
        overhead = base["peak_growth_bytes"] - base["plan_arena_bytes"]
        common = {"workload": workload.name, "batch": workload.batch_size, "threads": threads,
                  "overhead_bytes": overhead, "load_average": os.getloadavg()[0]}  # fmt: skip
        rows.append(common | {"budget_percent": None, "budget_bytes": None} | base)
        print(_line("none", rows[-1], overhead, None), flush=True)
        for percent in args.budgets:
            budget = base["plan_arena_bytes"] * percent // 100
            if percent in refused:
                print(f"{workload.name:<14}{percent:>5}%{_mib(budget)}  does not fit: "
                      f"{refused[percent]}", flush=True)  # fmt: skip
                rows.append(common | {"budget_percent": percent, "budget_bytes": budget,
                                      "error": refused[percent]})  # fmt: skip
                continue
            paired = [bases[r["paired_base"]] for r in runs[percent]]
            row = _combine(runs[percent], paired)
            excess = row["peak_growth_bytes"] - overhead - budget
            rows.append(common | {"budget_percent": percent, "budget_bytes": budget,
                                  "excess_bytes": excess} | row)  # fmt: skip
            print(_line(f"{percent}%", rows[-1], overhead, budget), flush=True)
    print(
        f"'!m': growth over overhead + {1 + MAX_EXCESS:g} x budget; '!t': at 25% over "
        f"{MAX_TIME_RATIO_AT_25:g}x the step time without swap. {format_bytes(2**20)} = 1 MiB"
    )
    return rows
