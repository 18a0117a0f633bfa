"""The swap schedule computed twice (``spec/swapping.md`` §3–§6): by the spec's
``plan_swap`` and by the core's own ``_core.plan_swap`` from the same facts of the plan.
Whole schedules must be equal, field for field and order by order: every buffer swapped,
random subsets, the sets ``choose_swap`` picks under budgets, every planner, several
lookaheads, random layer graphs; and both refuse the same requests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetrain.backends.swap_schedule import core_swap_schedule
from edgetrain.errors import ConfigError
from edgetrain.graph import build_graph
from edgetrain.ini import read_ini
from edgetrain.layers.base import Layer
from edgetrain.losses import make_loss
from edgetrain.planning import plan_memory
from edgetrain.planning.budget import choose_swap
from edgetrain.planning.swap import plan_swap, swap_candidates
from edgetrain.program import Program, build_program
from planning_models import BUILDERS, random_models
from test_swap_rust import ROOT

pytest.importorskip("edgetrain._core")


def _program(layers: list[Layer], loss: str, optimizer: Any, batch: int = 4) -> Program:
    graph = build_graph(layers, batch, make_loss(loss))
    return build_program(graph, training=True, optimizer_state=optimizer.state_names())


def _builder_program(name: str) -> Program:
    layers, loss, _, optimizer = BUILDERS[name]()
    return _program(layers, loss, optimizer())


def _example_program(stem: str) -> Program:
    desc = read_ini(ROOT / "examples" / f"{stem}.ini")
    assert desc.optimizer is not None and desc.loss is not None
    return _program(desc.layers, desc.loss, desc.optimizer, desc.batch_size)


def _same(
    program: Program,
    swapped: list[str] | None,
    lookahead: int,
    planner: str = "greedy_by_size",
    overlap_writes: bool = True,
) -> None:
    plan = plan_memory(program, planner)
    want = plan_swap(
        program, swapped, lookahead=lookahead, planner=planner, plan=plan, overlap_writes=overlap_writes
    ).to_json()
    got = core_swap_schedule(program, plan, swapped, lookahead, overlap_writes)
    assert got == want


@pytest.mark.parametrize("overlap_writes", [True, False])
@pytest.mark.parametrize("planner", ["greedy_by_size", "sorted", "naive"])
@pytest.mark.parametrize("lookahead", [0, 1, 3])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_swappable_buffer(name: str, lookahead: int, planner: str, overlap_writes: bool) -> None:
    _same(_builder_program(name), None, lookahead, planner, overlap_writes)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_random_subsets(name: str) -> None:
    program = _builder_program(name)
    rng = np.random.default_rng(len(name))
    for lookahead in (0, 2):
        candidates = swap_candidates(plan_memory(program), lookahead)
        for _ in range(4):
            picked = [c for c in candidates if rng.random() < 0.5]
            _same(program, picked, lookahead)


@pytest.mark.parametrize(
    ("stem", "fraction"), [("mlp", 0.8), ("lenet5", 0.65), ("resnet18", 0.5), ("resnet18", 0.25), ("vgg16", 0.25)]
)
def test_the_sets_a_budget_picks_in_the_example_models(stem: str, fraction: float) -> None:
    program = _example_program(stem)
    plan = plan_memory(program)
    chosen = choose_swap(program, int(plan.arena_bytes * fraction), plan=plan)
    assert chosen is not None
    got = core_swap_schedule(program, plan, chosen.swapped, chosen.lookahead, chosen.overlap_writes)
    assert got == chosen.to_json()


@settings(max_examples=25, deadline=None)
@given(random_models(), st.integers(0, 4), st.randoms(use_true_random=False))
def test_random_layer_graphs(built: Any, lookahead: int, random: Any) -> None:
    layers, loss, _, optimizer = built
    program = _program(layers, loss, optimizer())
    candidates = swap_candidates(plan_memory(program), lookahead)
    _same(program, None, lookahead)
    _same(program, [c for c in candidates if random.random() < 0.5], lookahead, overlap_writes=random.random() < 0.5)


def test_both_refuse_unknown_and_unswappable_buffers() -> None:
    program = _builder_program("mlp")
    plan = plan_memory(program)
    result = plan.tensors[program.output].buffer
    for bad, message in ((["no_such_buffer"], "not buffers of the program"), ([result], "cannot swap")):
        with pytest.raises(ConfigError, match=message):
            plan_swap(program, bad, plan=plan)
        with pytest.raises(ConfigError, match=message):
            core_swap_schedule(program, plan, bad, 0)
