"""Make swap_cases.json: swap schedules of the example model files, for the Rust core to
reproduce exactly (``spec/swapping.md``) and for the spec to stay put.

Run from the repository root: ``.venv/bin/python tests/data/plans/make_swap_goldens.py``.
Cases: the training programs of the example model files at their batch sizes, with
every swappable buffer swapped at lookaheads 0 and 2 (manual mode), and the schedules
``choose_swap`` picks for budgets of 80% and 65% of the plan (the small models).
Each case carries the core's request (``swap_request``: the plan's facts about every
buffer, the swapped set, the lookahead), so ``rust/core/tests/swap_schedule.rs`` computes
the schedule itself and compares. The per-order lists of ``SwapSchedule.to_json()`` are
left out: they follow from the segments (section 6), and the conformance test
``tests/conformance/test_swap_schedule_core.py`` compares them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgetrain.backends.swap_schedule import swap_request
from edgetrain.graph import build_graph
from edgetrain.ini import read_ini
from edgetrain.losses import make_loss
from edgetrain.planning import plan_memory
from edgetrain.planning.budget import choose_swap
from edgetrain.planning.swap import SwapSchedule, plan_swap
from edgetrain.program import Program, build_program

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).with_name("swap_cases.json")
MODELS = ("mlp", "lenet5", "vgg16", "resnet18")
BUDGETED = ("mlp", "lenet5")


def training_program(stem: str) -> Program:
    desc = read_ini(ROOT / "examples" / f"{stem}.ini")
    assert desc.optimizer is not None and desc.loss is not None
    graph = build_graph(desc.layers, desc.batch_size, make_loss(desc.loss))
    return build_program(graph, training=True, optimizer_state=desc.optimizer.state_names())


def expected(program: Program, schedule: SwapSchedule) -> dict[str, Any]:
    """The core's request and the fields it must reproduce."""
    data = schedule.to_json()
    del data["orders"]
    request = swap_request(
        program, schedule.plan, schedule.swapped, schedule.lookahead, schedule.overlap_writes
    )
    return {"request": request, **data}


def cases() -> list[dict[str, Any]]:
    found = []
    for stem in MODELS:
        program = training_program(stem)
        plan = plan_memory(program)
        for lookahead in (0, 2):
            schedule = plan_swap(program, None, lookahead=lookahead, plan=plan)
            found.append(
                {
                    "name": f"{stem}_all_L{lookahead}",
                    "model": stem,
                    "budget": None,
                    **expected(program, schedule),
                }
            )
        if stem in BUDGETED:
            for fraction in (0.8, 0.65):
                budget = int(plan.arena_bytes * fraction)
                chosen = choose_swap(program, budget, plan=plan)
                assert chosen is not None
                found.append(
                    {
                        "name": f"{stem}_budget_{fraction}",
                        "model": stem,
                        "budget": budget,
                        **expected(program, chosen),
                    }
                )
    return found


if __name__ == "__main__":
    OUT.write_text(
        json.dumps({"planner": "greedy_by_size", "cases": cases()}, separators=(",", ":")) + "\n"
    )
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
