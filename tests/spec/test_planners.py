"""Planners: every planner's layout passes the independent checker on random blocks and
on random layer graphs, respects the lower bound, is deterministic, and places blocks
exactly as spec/planning.md says (the Rust core replays these offsets)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetrain import Model
from edgetrain.planning import (
    ALIGNMENT,
    PLANNERS,
    Block,
    Placement,
    SharingRule,
    align,
    arena_size,
    check_layout,
    check_plan,
    get_planner,
    live_bytes,
    lower_bound,
    plan_memory,
)
from planning_models import BUILDERS, random_models


@st.composite
def random_blocks(draw: st.DrawFn) -> tuple[list[Block], int]:
    orders = draw(st.integers(1, 30))
    count = draw(st.integers(0, 40))
    blocks = []
    for i in range(count):
        first = draw(st.integers(0, orders - 1))
        last = draw(st.integers(first, orders - 1))
        if draw(st.integers(0, 9)) == 0:
            first, last = 0, orders - 1  # persistent
        size = align(draw(st.sampled_from([1, 64, 100, 4096, draw(st.integers(1, 20000))])))
        blocks.append(Block(f"t{i}", size, first, last, i))
    return blocks, orders


def _layout_problems(blocks: list[Block], offsets: dict[str, int]) -> list[str]:
    placements = [
        Placement(b.name, offsets[b.name], b.size, b.first, b.last, b.name) for b in blocks
    ]
    return check_layout(placements, arena_size(blocks, offsets), ALIGNMENT)


@settings(max_examples=300, deadline=None)
@given(random_blocks())
def test_every_planner_passes_the_checker_on_random_lifetimes(
    case: tuple[list[Block], int],
) -> None:
    blocks, orders = case
    bound, _ = lower_bound(blocks, orders)
    total = sum(b.size for b in blocks)
    for name in PLANNERS:
        offsets = get_planner(name).place(blocks)
        assert set(offsets) == {b.name for b in blocks}
        assert _layout_problems(blocks, offsets) == []
        size = arena_size(blocks, offsets)
        assert bound <= size <= total
        shuffled = list(blocks)
        random.Random(len(blocks)).shuffle(shuffled)
        assert get_planner(name).place(shuffled) == offsets  # input order never matters
    assert arena_size(blocks, get_planner("naive").place(blocks)) == total


@settings(max_examples=300, deadline=None)
@given(random_blocks())
def test_lower_bound_is_the_peak_of_live_bytes(case: tuple[list[Block], int]) -> None:
    blocks, orders = case
    live = live_bytes(blocks, orders)
    for k in range(orders):
        assert live[k] == sum(b.size for b in blocks if b.first <= k <= b.last)
    bound, peak = lower_bound(blocks, orders)
    assert bound == max(live) and live[peak] == bound


def test_disjoint_lifetimes_reuse_the_same_bytes() -> None:
    blocks = [Block("a", 128, 0, 1, 0), Block("b", 128, 2, 3, 1), Block("c", 64, 4, 4, 2)]
    for name in ("sorted", "greedy_by_size"):
        assert get_planner(name).place(blocks) == {"a": 0, "b": 0, "c": 0}
    assert get_planner("naive").place(blocks) == {"a": 0, "b": 128, "c": 256}


def test_greedy_by_size_takes_the_smallest_fitting_gap() -> None:
    # big blocks a (512) and b (512) leave gaps; c (64) must go to the smaller gap
    blocks = [
        Block("wide", 1024, 0, 9, 0),
        Block("gap_big", 512, 0, 2, 1),
        Block("gap_small", 128, 0, 2, 2),
        Block("late", 1024, 3, 9, 3),
        Block("x", 64, 4, 5, 4),
    ]
    offsets = get_planner("greedy_by_size").place(blocks)
    # order by size: wide(0..1024), late (lives 3-9: beside wide at 1024), gap_big (0-2:
    # beside wide at 1024), gap_small (0-2: after gap_big at 1536), x (4-5: wide and late
    # conflict, so the first gap after them)
    assert offsets == {"wide": 0, "late": 1024, "gap_big": 1024, "gap_small": 1536, "x": 2048}


def test_greedy_by_size_best_fit_prefers_the_tighter_hole() -> None:
    blocks = [
        Block("a", 256, 0, 9, 0),
        Block("hole1", 256, 0, 1, 1),
        Block("b", 256, 0, 9, 2),
        Block("hole2", 128, 0, 1, 3),
        Block("c", 192, 0, 9, 4),
        Block("small", 128, 3, 4, 5),
        Block("d", 128, 0, 9, 6),
    ]
    offsets = get_planner("greedy_by_size").place(blocks)
    assert offsets["a"] == 0 and offsets["hole1"] == 256 and offsets["b"] == 512
    # after the holes die, gaps are [256, 512) (256 bytes) and [960, 1088) (128 bytes):
    # the tighter second gap wins over the lower first
    assert offsets["c"] == 768 and offsets["hole2"] == 960 and offsets["d"] == 1088
    assert offsets["small"] == 960


def test_sorted_places_by_first_use_at_the_lowest_free_offset() -> None:
    blocks = [
        Block("late_big", 512, 2, 3, 0),
        Block("early", 128, 0, 2, 1),
        Block("early2", 64, 0, 0, 2),
    ]
    assert get_planner("sorted").place(blocks) == {"early": 0, "early2": 128, "late_big": 128}


def test_alignment_rounds_up_to_64() -> None:
    assert [align(n) for n in (1, 63, 64, 65, 128)] == [64, 64, 64, 128, 128]


@settings(max_examples=25, deadline=None)
@given(random_models(), st.sampled_from(sorted(PLANNERS)))
def test_every_planner_passes_the_checker_on_random_graphs(model_case: tuple, planner: str) -> None:  # type: ignore[type-arg]
    layers, loss, _, optimizer = model_case
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2, planner=planner)
    for program in (model.program, model._inference_executor(3).program):
        plan = plan_memory(program, planner)
        check_plan(program, plan)
        assert (
            plan.lower_bound_bytes <= plan.arena_bytes <= plan.planners["naive"] <= plan.naive_bytes
        )
        assert plan.planners[planner] == plan.arena_bytes


@settings(max_examples=20, deadline=None)
@given(random_models())
def test_random_graphs_train_bit_exactly_in_a_poisoned_arena(model_case: tuple) -> None:  # type: ignore[type-arg]
    layers, loss, shape, optimizer = model_case
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    y = rng.random(size=(4, 3)).astype(np.float32)
    if loss == "cross_entropy":
        y = (y == y.max(axis=1, keepdims=True)).astype(np.float32)
    results = []
    for planner, poison in ((None, False), ("greedy_by_size", True)):
        model = Model(layers, loss=loss)
        model.compile(optimizer(), batch_size=2, seed=3, planner=planner, debug_poison=poison)
        losses = [model.train_step(x[i : i + 2], y[i : i + 2]) for i in (0, 2, 0)]
        results.append((losses, model.get_weights(), model.predict(x)))
    (want_losses, want_weights, want_out), (got_losses, got_weights, got_out) = results
    assert got_losses == want_losses
    for key in want_weights:
        np.testing.assert_array_equal(got_weights[key], want_weights[key])
    np.testing.assert_array_equal(got_out, want_out)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_writes_over_shared_bytes_only_after_every_other_member_is_done(name: str) -> None:
    layers, loss, _, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    plan = model.plan()
    for t in plan.tensors.values():
        if t.shares and t.shares[0] in (SharingRule.IN_PLACE, SharingRule.DERIVATIVE_IN_PLACE):
            order = t.first
            for other in plan.buffers[t.buffer].members:
                o = plan.tensors[other]
                if other != t.name and o.first < order:
                    assert max(o.orders) <= order, (t.name, other)


def test_plans_are_deterministic() -> None:
    layers, loss, _, optimizer = BUILDERS["residual"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    first = model.plan().to_json()
    layers, loss, _, optimizer = BUILDERS["residual"]()
    again = Model(layers, loss=loss)
    again.compile(optimizer(), batch_size=2)
    assert again.plan().to_json() == first


def test_planners_reproduce_the_stored_offsets() -> None:
    """tests/data/plans/planner_cases.json (made by make_plan_goldens.py beside it) is what
    the Rust core replays; the planners must keep producing exactly these offsets."""
    import json
    from pathlib import Path

    data = json.loads(
        (Path(__file__).parents[1] / "data" / "plans" / "planner_cases.json").read_text()
    )
    assert data["alignment"] == ALIGNMENT and len(data["cases"]) >= 20
    for case in data["cases"]:
        blocks = [
            Block(n, size, first, last, index) for n, size, first, last, index in case["blocks"]
        ]
        assert lower_bound(blocks, case["orders"])[0] == case["lower_bound"], case["name"]
        for name, expected in case["offsets"].items():
            offsets = get_planner(name).place(blocks)
            assert [offsets[b.name] for b in blocks] == expected, (case["name"], name)
            assert arena_size(blocks, offsets) == case["arena"][name]
        if case["name"] in ("vgg16_train", "resnet18_train", "vgg16_infer", "resnet18_infer"):
            assert case["arena"]["greedy_by_size"] <= 1.05 * case["lower_bound"], case["name"]
