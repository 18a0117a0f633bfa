"""One speed measurement in its own process: ``python -m bench.speed_worker WORKLOAD
FRAMEWORK --threads T --warmup W --steps S`` prints one JSON row on its last line.

A process per (workload, framework), so the peak resident set is that run's alone.

Both measurements are ``bench/measure.py``'s (the same for every framework): the peak
resident set's growth from just before the model is built (edgetrain: compiled, the
arena allocated; PyTorch: the module and its optimizer made) to the end of training,
and the median step time (forward, backward and the SGD update on one batch) after
the warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgetrain import Model

from .measure import PeakMemory, random_batch, time_steps
from .workloads import select

FRAMEWORKS = ("edgetrain-rust", "edgetrain-python", "pytorch")


def measure_edgetrain(workload_name: str, backend: str, args: argparse.Namespace) -> dict[str, object]:
    (workload,) = select([workload_name])
    x, y, _ = random_batch(Model.from_ini(workload.path), workload.batch_size)
    memory = PeakMemory()
    memory.start()
    model = Model.from_ini(workload.path)
    assert model.description is not None
    model.compile(
        model.description.optimizer, workload.batch_size, backend=backend, threads=args.threads
    )
    seconds = time_steps(lambda: model.train_step(x, y), args.warmup, args.steps)
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
    x_np, y_np, _ = random_batch(description, workload.batch_size)
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

    seconds = time_steps(step, args.warmup, args.steps)
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
