"""Where a training step's time goes on ``backend="rust"``: ``python -m bench.step_profile
WORKLOAD [--threads T] [--repeats R]`` runs every entry of the execution order alone
(``RustExecutor.run_order``) after a few whole steps, and prints the median time summed
by (layer type, step kind), largest first. Per-step calls add Python overhead (a few
microseconds each), so the total is a little over a ``train_step``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

from edgetrain import Model
from edgetrain.backends.rust import RustExecutor

from .workloads import select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.step_profile")
    parser.add_argument("workload")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    (workload,) = select([args.workload])
    model = Model.from_ini(workload.path)
    assert model.description is not None
    model.compile(model.description.optimizer, workload.batch_size, backend="rust", threads=args.threads)
    shape = model.graph.input_nodes()[0].output_shapes[0][1:]
    classes = model.program.tensors[model.program.output].shape[-1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(workload.batch_size, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=workload.batch_size)
    for _ in range(2):
        model.train_step(x, y)
    executor = model._trainer()
    assert isinstance(executor, RustExecutor)
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for order, step in enumerate(model.program.steps):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            executor.run_order(order, training=True, label=True, lr=0.0)
            times.append(time.perf_counter() - start)
        layer = model.graph.node(step.node).layer.type_name
        totals[(layer, str(step.kind.value))] += statistics.median(times)
    whole = sum(totals.values())
    print(f"{workload.name}: {whole:.4f} s over {len(model.program.steps)} steps")
    for (layer, kind), seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {layer:<22}{kind:<18}{seconds:>9.4f} s {100 * seconds / whole:>6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
