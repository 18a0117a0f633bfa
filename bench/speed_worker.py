"""One speed measurement in its own process: ``python -m bench.speed_worker WORKLOAD
FRAMEWORK --threads T --warmup W --steps S`` prints one JSON row on its last line.

A process per (workload, framework), so the peak resident set is that run's alone.

**Peak-memory growth** (the same for every framework): after the imports, the random
batch and a garbage collection, the kernel's peak-RSS mark is reset (``5`` written to
``/proc/self/clear_refs``) and the resident set ``VmRSS`` is read as the baseline. Then
the model is built, compiled (edgetrain: the arena is allocated; PyTorch: the module and
its optimizer are made) and trained for ``warmup + steps`` steps. The growth is the
peak ``VmHWM`` after training minus the baseline: every byte the model, its
activations, gradients, optimizer state and workspaces held at once at the worst
moment, beyond what the process already held. Where the mark cannot be reset (not
Linux), it is ``ru_maxrss`` after training minus ``ru_maxrss`` at the baseline.

**Step time**: the median of ``steps`` timed training steps (forward, backward and the
SGD update on one batch) after ``warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edgetrain import Model

from .workloads import select

FRAMEWORKS = ("edgetrain-rust", "edgetrain-python", "pytorch")


def _status_bytes(key: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in bytes."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """The growth of this process's peak resident set from ``start()`` to ``growth()``."""

    def start(self) -> None:
        gc.collect()
        self.reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            pass
        rss = _status_bytes("VmRSS") if self.reset else None
        self.reset = rss is not None
        self.baseline = rss if rss is not None else _maxrss_bytes()
        self.method = "VmHWM - VmRSS (peak mark reset)" if self.reset else "ru_maxrss difference"

    def growth(self) -> int:
        peak = _status_bytes("VmHWM") if self.reset else None
        return (peak if peak is not None else _maxrss_bytes()) - self.baseline


def _time_steps(step: Callable[[], object], warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batch(model: Model, batch: int) -> tuple[NDArray[np.float32], NDArray[np.int64], int]:
    """Random inputs of the model file's input shape and class labels (no allocation of
    the model: only the graph's shapes)."""
    from edgetrain.graph import build_graph

    graph = build_graph(model.layers, batch)
    shape = graph.input_nodes()[0].output_shapes[0][1:]
    classes = graph.nodes[-1].output_shapes[0][-1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=batch)
    return x, y, classes


def measure_edgetrain(workload_name: str, backend: str, args: argparse.Namespace) -> dict[str, object]:
    (workload,) = select([workload_name])
    x, y, _ = _batch(Model.from_ini(workload.path), workload.batch_size)
    memory = PeakMemory()
    memory.start()
    model = Model.from_ini(workload.path)
    assert model.description is not None
    model.compile(
        model.description.optimizer, workload.batch_size, backend=backend, threads=args.threads
    )
    seconds = _time_steps(lambda: model.train_step(x, y), args.warmup, args.steps)
    return {"step_time_s": seconds, "peak_memory_growth_bytes": memory.growth(), "memory_method": memory.method}


def measure_pytorch(workload_name: str, args: argparse.Namespace) -> dict[str, object]:
    import torch

    from edgetrain.backends.lowering import lower_optimizer
    from edgetrain.graph import build_graph
    from edgetrain.losses import make_loss

    from .torch_models import GraphModule

    torch.set_num_threads(args.threads)
    (workload,) = select([workload_name])
    description = Model.from_ini(workload.path)
    assert description.description is not None and description.loss_name is not None
    optimizer_spec = lower_optimizer(description.description.optimizer)
    if optimizer_spec is None or optimizer_spec["type"] != "sgd":
        raise SystemExit(f"{workload.name}: the PyTorch twin runs SGD only, got {optimizer_spec}")
    graph = build_graph(description.layers, workload.batch_size, make_loss(description.loss_name))
    x_np, y_np, _ = _batch(description, workload.batch_size)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    memory = PeakMemory()
    memory.start()
    module = GraphModule(graph)
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=optimizer_spec["momentum"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = module(x, y)
        loss.backward()
        optimizer.step()

    seconds = _time_steps(step, args.warmup, args.steps)
    return {"step_time_s": seconds, "peak_memory_growth_bytes": memory.growth(), "memory_method": memory.method}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed_worker")
    parser.add_argument("workload")
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    if args.framework == "pytorch":
        result = measure_pytorch(args.workload, args)
    else:
        result = measure_edgetrain(args.workload, args.framework.removeprefix("edgetrain-"), args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
