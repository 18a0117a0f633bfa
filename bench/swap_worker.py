"""One swap measurement in its own process: ``python -m bench.swap_worker WORKLOAD
--threads T --warmup W --steps S [--budget BYTES] [--lookahead N]`` prints one JSON row
on its last line (``bench/swap.py`` runs it; the measurements are ``bench/measure.py``'s).

The model file is compiled on ``backend="rust"``, with ``memory_budget=BYTES`` when a
budget is given (the swap file in the system temp dir), and trained on one random batch.
Besides the step time, the row gives the resident plan (arena bytes, lookahead, swapped
bytes, swap file bytes), the peak-RSS growth over the whole run and over the timed
steps only (the peak mark is reset after the warm-up: compile-time transients, such as
the initial weights before they are copied into the arena or the swap file, are not in
it), and per timed iteration the bytes written and read and the waits on transfers.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from edgetrain import Model
from edgetrain.swapping import SwapTraffic

from .measure import PeakMemory, random_batch, time_steps
from .workloads import select


def _traffic(model: Model) -> SwapTraffic:
    traffic = model.swap_traffic
    return SwapTraffic(**vars(traffic)) if traffic is not None else SwapTraffic()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    (workload,) = select([args.workload])
    x, y, _ = random_batch(Model.from_ini(workload.path), workload.batch_size)
    memory = PeakMemory()
    memory.start()
    model = Model.from_ini(workload.path)
    assert model.description is not None
    started = time.perf_counter()
    model.compile(
        model.description.optimizer,
        workload.batch_size,
        backend="rust",
        threads=args.threads,
        memory_budget=args.budget,
        lookahead=args.lookahead,
    )
    compile_seconds = time.perf_counter() - started
    for _ in range(args.warmup):
        model.train_step(x, y)
    compile_growth = memory.growth()
    training_only = memory.restart_peak()
    before = _traffic(model)
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = time_steps(lambda: model.train_step(x, y), 0, args.steps)
    faults_after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    after = _traffic(model)
    growth = memory.growth()
    schedule = model.swap_schedule
    plan = model.plan()
    steps = args.steps
    row: dict[str, Any] = {
        "step_time_s": seconds,
        "compile_s": compile_seconds,
        "plan_arena_bytes": plan.arena_bytes,
        "resident_bytes": schedule.resident_bytes if schedule else plan.arena_bytes,
        "lookahead": schedule.lookahead if schedule else None,
        "swapped_bytes": sum(plan.buffers[b].size for b in schedule.swapped) if schedule else 0,
        "swap_file_bytes": schedule.swap_file_bytes if schedule else 0,
        "read_ins_per_iteration": (
            sum(s.read_in for ss in schedule.segments.values() for s in ss) if schedule else 0
        ),
        "bytes_written_per_iteration": (after.total_written - before.total_written) // steps,
        "bytes_read_per_iteration": (after.total_read - before.total_read) // steps,
        "read_waits_per_iteration": (after.waits - before.waits) / steps,
        "write_waits_per_iteration": (after.write_waits - before.write_waits) / steps,
        "wait_s_per_iteration": (after.wait_seconds - before.wait_seconds) / steps,
        "read_wait_s_per_iteration": (after.read_wait_seconds - before.read_wait_seconds) / steps,
        "write_wait_s_per_iteration": (after.write_wait_seconds - before.write_wait_seconds)
        / steps,
        "transfer_s_per_iteration": (after.transfer_seconds - before.transfer_seconds) / steps,
        "minor_faults_per_iteration": (faults_after - faults_before) / steps,
        "peak_growth_bytes": max(growth, compile_growth),
        "training_peak_growth_bytes": growth if training_only else None,
        "memory_method": memory.method,
    }
    model.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.swap_worker")
    parser.add_argument("workload")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--budget", type=int, default=None, help="memory_budget in bytes")
    parser.add_argument("--lookahead", type=int, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
