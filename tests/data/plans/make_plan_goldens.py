"""Make planner_cases.json: blocks and every planner's offsets, for the Rust core to
replay exactly (``spec/planning.md`` section 5) and for the spec to stay put.

Run from the repository root: ``.venv/bin/python tests/data/plans/make_plan_goldens.py``.
Cases: the training and inference programs of the example model files at their batch
sizes (and ResNet-18's training blocks handed in reversed, to pin that only ``index``
breaks ties), random blocks from a fixed seed (sizes, intervals and persistent blocks),
and tie-heavy random blocks (few orders, few sizes, zero-byte blocks, indices that are
not positions, shuffled). Each case also stores the lower bound's ``peak_order`` and
``live_bytes`` per order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from edgetrain.graph import build_graph
from edgetrain.ini import read_ini
from edgetrain.losses import make_loss
from edgetrain.planning import (
    PLANNERS,
    Block,
    align,
    arena_size,
    get_planner,
    live_bytes,
    lower_bound,
    plan_memory,
)
from edgetrain.program import build_program

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).with_name("planner_cases.json")


def _case(name: str, blocks: list[Block], orders: int) -> dict[str, Any]:
    offsets = {p: get_planner(p).place(blocks) for p in PLANNERS}
    return {
        "name": name,
        "orders": orders,
        "blocks": [[b.name, b.size, b.first, b.last, b.index] for b in blocks],
        "lower_bound": lower_bound(blocks, orders)[0],
        "peak_order": lower_bound(blocks, orders)[1],
        "live_bytes": live_bytes(blocks, orders),
        "arena": {p: arena_size(blocks, o) for p, o in offsets.items()},
        "offsets": {p: [o[b.name] for b in blocks] for p, o in offsets.items()},
    }


def model_cases() -> list[dict[str, Any]]:
    cases = []
    for stem in ("mlp", "lenet5", "vgg16", "resnet18", "digits_cnn"):
        desc = read_ini(ROOT / "examples" / f"{stem}.ini")
        assert desc.optimizer is not None and desc.loss is not None
        for training in (True, False):
            graph = build_graph(desc.layers, desc.batch_size, make_loss(desc.loss))
            state = desc.optimizer.state_names() if training else ()
            program = build_program(graph, training=training, optimizer_state=state)
            plan = plan_memory(program)
            blocks = [
                Block(b.name, b.size, b.first, b.last, i)
                for i, b in enumerate(plan.buffers.values())
            ]
            cases.append(
                _case(f"{stem}_{'train' if training else 'infer'}", blocks, len(program.steps))
            )
            if stem == "resnet18" and training:
                cases.append(_case("resnet18_train_reversed", blocks[::-1], len(program.steps)))
    return cases


def random_cases() -> list[dict[str, Any]]:
    rng = random.Random(1234)
    cases = []
    for n in range(20):
        orders = rng.randint(1, 40)
        blocks = []
        for i in range(rng.randint(1, 60)):
            first = rng.randrange(orders)
            last = rng.randrange(first, orders)
            if rng.random() < 0.1:
                first, last = 0, orders - 1
            blocks.append(
                Block(
                    f"t{i}",
                    align(rng.choice([1, 64, 100, 4096, rng.randint(1, 50000)])),
                    first,
                    last,
                    i,
                )
            )
        cases.append(_case(f"random_{n}", blocks, orders))
    return cases


def tie_cases() -> list[dict[str, Any]]:
    rng = random.Random(5678)
    cases = []
    for n in range(10):
        orders = rng.randint(1, 6)
        count = rng.randint(1, 40)
        indices = rng.sample(range(1000), count)
        blocks = []
        for i, index in enumerate(indices):
            first = rng.randrange(orders)
            last = rng.randrange(first, orders)
            blocks.append(
                Block(f"t{i}", rng.choice([0, 64, 64, 128, 128, 192]), first, last, index)
            )
        rng.shuffle(blocks)
        cases.append(_case(f"ties_{n}", blocks, orders))
    return cases


def main() -> None:
    OUT.write_text(
        json.dumps(
            {"alignment": 64, "cases": model_cases() + random_cases() + tie_cases()},
            separators=(",", ":"),
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
