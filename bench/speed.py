"""Speed and memory against PyTorch: step time and peak-memory growth of every workload in
edgetrain (``backend="rust"``, and ``"python"`` for reference) and, when PyTorch is
installed (the optional ``bench`` extra), in PyTorch on the same number of threads.

Each (workload, framework) runs in its own process (``bench/speed_worker.py``, which
defines both measurements precisely), so a run's peak memory is its own. PyTorch runs
the same network: the module is made from edgetrain's compiled graph of the same model
file (``bench/torch_models.py``), with SGD of the file's momentum and the fused
softmax cross-entropy. Prints a table with the ratios edgetrain-rust / PyTorch and
returns the rows (``workload``, ``framework``, ``batch``, ``threads``, ``step_time_s``,
``peak_memory_growth_bytes``). Targets (the product issue): step time at most PyTorch's,
peak-memory growth at most half of PyTorch's, on every workload.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from edgetrain.backends.rust import default_threads
from edgetrain.planning.report import format_bytes

from .measure import run_worker
from .speed_worker import FRAMEWORKS
from .workloads import Workload

MAX_TIME_RATIO = 1.0
MAX_MEMORY_RATIO = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (median)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for every framework (default: all cores)"
    )
    parser.add_argument(
        "--frameworks",
        nargs="+",
        choices=FRAMEWORKS,
        default=list(FRAMEWORKS),
        help="frameworks to run (pytorch is skipped with a note when it is not installed)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds one run may take"
    )


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _run_one(workload: Workload, framework: str, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    measured = run_worker(
        "bench.speed_worker",
        [workload.name, framework, "--threads", str(threads),
         "--warmup", str(args.warmup), "--steps", str(args.steps)],
        args.timeout,
        f"{workload.name} on {framework}",
    )  # fmt: skip
    return {
        "workload": workload.name,
        "framework": framework,
        "batch": workload.batch_size,
        "threads": threads,
        "step_time_s": measured["step_time_s"],
        "peak_memory_growth_bytes": measured["peak_memory_growth_bytes"],
    }


def _ratio(ours: float | None, theirs: float | None, limit: float) -> str:
    if ours is None or theirs is None or theirs <= 0:
        return f"{'-':>9}"
    ratio = ours / theirs
    return f"{ratio:>8.2f}" + (" " if ratio <= limit else "!")


def run(workloads: list[Workload], args: argparse.Namespace) -> list[dict[str, Any]]:
    threads = args.threads or default_threads()
    frameworks = list(args.frameworks)
    if "pytorch" in frameworks and not torch_available():
        frameworks.remove("pytorch")
        print("PyTorch was not found (pip install 'edgetrain[bench]' or torch): edgetrain only")
    print(f"{threads} threads; median of {args.steps} steps after {args.warmup}; "
          "memory = peak RSS growth while building and training")
    header = f"{'workload':<14}{'framework':<18}{'s/step':>10}{'peak growth':>13}"
    print(header + (f"{'time/torch':>11}{'mem/torch':>10}" if "pytorch" in frameworks else ""))
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        results = {f: _run_one(workload, f, threads, args) for f in frameworks}
        torch_row = results.get("pytorch")
        for framework, row in results.items():
            rows.append(row)
            line = (
                f"{workload.name:<14}{framework:<18}{row['step_time_s']:>10.4f}"
                f"{format_bytes(row['peak_memory_growth_bytes']):>13}"
            )
            if framework != "pytorch" and torch_row is not None:
                line += _ratio(row["step_time_s"], torch_row["step_time_s"], MAX_TIME_RATIO)
                line += " " + _ratio(
                    row["peak_memory_growth_bytes"],
                    torch_row["peak_memory_growth_bytes"],
                    MAX_MEMORY_RATIO,
                )
            print(line, flush=True)
    if "pytorch" in frameworks:
        print("'!' marks a ratio over its target (time <= 1, memory <= 0.5 of PyTorch's)")
    return rows
