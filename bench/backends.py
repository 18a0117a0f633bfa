"""Training-step time of ``backend="python"`` and ``backend="rust"`` on the workloads:
the median of ``--steps`` steps after ``--warmup`` steps, random data, the workload's
optimizer, ``--threads`` threads for the core. Prints a table with the speed-up and
returns the rows. Timings are for reading, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from edgetrain import Model

from .workloads import Workload

BACKENDS = ("python", "rust")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=3, help="timed steps per backend (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="core threads (default: all)")
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="backends to time"
    )


def _step_time(workload: Workload, backend: str, args: argparse.Namespace) -> float:
    model = Model.from_ini(workload.path)
    assert model.description is not None
    model.compile(
        model.description.optimizer, workload.batch_size, backend=backend, threads=args.threads
    )
    rng = np.random.default_rng(0)
    shape = model.graph.input_nodes()[0].output_shapes[0][1:]
    x = rng.normal(size=(workload.batch_size, *shape)).astype(np.float32)
    classes = model.program.tensors[model.program.output].shape[-1]
    y = rng.integers(0, classes, size=workload.batch_size)
    for _ in range(args.warmup):
        model.train_step(x, y)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_step(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(workloads: list[Workload], args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    print(f"{'workload':<16}" + "".join(f"{b + ' s/step':>16}" for b in args.backends) + f"{'speed-up':>10}")
    for workload in workloads:
        times = {b: _step_time(workload, b, args) for b in args.backends}
        for backend, seconds in times.items():
            rows.append(
                {
                    "workload": workload.name,
                    "framework": f"edgetrain-{backend}",
                    "batch": workload.batch_size,
                    "threads": args.threads,
                    "step_time_s": seconds,
                }
            )
        both = {"python", "rust"} <= times.keys()
        ratio = f"{times['python'] / times['rust']:>9.1f}x" if both else f"{'-':>10}"
        print(f"{workload.name:<16}" + "".join(f"{t:>16.4f}" for t in times.values()) + ratio)
    return {"rows": rows}
