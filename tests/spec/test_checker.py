"""The independent plan checker accepts correct plans and names every kind of mistake."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from edgetrain import Model
from edgetrain.planning import MemoryPlan, Placement, PlanCheckError, check_layout, check_plan
from edgetrain.program import Program
from planning_models import BUILDERS


def _compiled(name: str = "mlp") -> tuple[Program, MemoryPlan]:
    layers, loss, _, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4)
    return model.program, model.plan()


def _move(plan: MemoryPlan, tensor: str, **changes: Any) -> MemoryPlan:
    return replace(plan, tensors={**plan.tensors, tensor: replace(plan.tensors[tensor], **changes)})


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_correct_plans_pass(name: str) -> None:
    program, plan = _compiled(name)
    check_plan(program, plan)


def test_overlap_of_live_tensors_is_named() -> None:
    program, plan = _compiled()
    target = plan.tensors["fc1:weight"].offset
    broken = _move(plan, "fc2:weight", offset=target)
    with pytest.raises(
        PlanCheckError,
        match="'fc1:weight'.*overlaps 'fc2:weight'|'fc2:weight'.*overlaps 'fc1:weight'",
    ):
        check_plan(program, broken)


def test_tensor_outside_the_arena_is_named() -> None:
    program, plan = _compiled()
    broken = _move(plan, "fc1:weight", offset=plan.arena_bytes)
    with pytest.raises(PlanCheckError, match="'fc1:weight'.*outside the arena"):
        check_plan(program, broken)


def test_misaligned_offset_is_named() -> None:
    program, plan = _compiled()
    broken = _move(plan, "label", offset=plan.tensors["label"].offset + 4)  # type: ignore[operator]
    with pytest.raises(PlanCheckError, match="'label' offset .* not a multiple of 64"):
        check_plan(program, broken)


def test_too_short_lifetime_is_named() -> None:
    program, plan = _compiled()
    t = plan.tensors["x:output"]
    broken = _move(plan, "x:output", last=t.first)
    with pytest.raises(PlanCheckError, match="'x:output' must live over orders 0-"):
        check_plan(program, broken)


def test_shortened_lifetime_makes_reuse_unsafe_even_if_the_plan_agrees() -> None:
    """A planner that trusted a too-short interval would overlap a live tensor; the
    checker derives lifetimes itself, so it still sees the overlap."""
    program, plan = _compiled()
    x = plan.tensors["x:output"]
    grad = plan.tensors["fc1:weight:grad"]  # alive while fc1's calc-gradient reads x
    broken = _move(plan, "fc1:weight:grad", offset=x.offset)
    with pytest.raises(PlanCheckError, match="overlaps"):
        check_plan(program, broken)
    assert grad.first <= max(x.orders)


def test_members_of_a_buffer_must_share_the_offset() -> None:
    placements = [Placement("a", 0, 128, 0, 3, "g"), Placement("b", 64, 64, 2, 5, "g")]
    assert check_layout(placements, 256, 64) == ["'a' and 'b' share a buffer at different offsets"]
    same = [Placement("a", 0, 128, 0, 3, "g"), Placement("b", 0, 128, 2, 5, "g")]
    assert check_layout(same, 128, 64) == []


def test_touching_intervals_and_adjacent_bytes_are_fine() -> None:
    placements = [
        Placement("a", 0, 128, 0, 3, "a"),
        Placement("b", 0, 128, 4, 5, "b"),  # same bytes, next order
        Placement("c", 128, 64, 0, 5, "c"),  # adjacent bytes, same orders
    ]
    assert check_layout(placements, 192, 64) == []
    assert check_layout([*placements, Placement("d", 64, 64, 3, 4, "d")], 192, 64) != []
