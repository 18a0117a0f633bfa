"""The swap schedule (spec/swapping.md): segments cut at gaps of lookahead + 2 orders,
read-ins lookahead orders early, write-outs only of changed bytes, persistent buffers in
the file between iterations; deterministic; every schedule passes the independent
checker, on the example models and on random graphs."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetrain import Model
from edgetrain.errors import ConfigError
from edgetrain.planning import plan_memory
from edgetrain.planning.budget import choose_swap
from edgetrain.planning.lifetimes import Lifespan
from edgetrain.planning.swap import Exit, plan_swap, split_uses, swap_candidates
from edgetrain.planning.swap_check import check_swap
from planning_models import BUILDERS, random_models


def _compiled(name: str, batch: int = 2) -> Model:
    layers, loss, _, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=batch)
    return model


def test_split_uses_cuts_where_the_buffer_can_be_out_one_order() -> None:
    assert split_uses([1, 2, 4, 9, 10], 0) == [(1, 2), (4,), (9, 10)]
    assert split_uses([1, 2, 4, 9, 10], 1) == [(1, 2, 4), (9, 10)]
    assert split_uses([1, 2, 4, 9, 10], 6) == [(1, 2, 4, 9, 10)]
    assert split_uses([], 0) == []


def test_an_activation_is_written_after_its_forward_use_and_read_back_before_its_gradient() -> None:
    model = _compiled("mlp")
    plan = model.plan()
    for lookahead in (0, 1, 3):
        schedule = plan_swap(model.program, ["x:output"], lookahead=lookahead)
        uses = plan.tensors["x:output"].orders  # loaded at 0, read by fc1 at 1, its gradient late
        first, second = schedule.segments["x:output"]
        assert (first.start, first.end, first.read_in, first.exit) == (0, 1, False, Exit.WRITE)
        # the write-out runs beside order 2: the block stays reserved through it
        assert first.held == 2 and second.held == second.end
        assert "x:output" in schedule.orders[2].resident
        assert second.read_in and second.start == uses[-1] - lookahead
        assert second.end == uses[-1] and second.exit is Exit.FREE
        assert schedule.orders[second.start].read_in == ("x:output",)
        assert schedule.orders[1].written_out == ("x:output",)
        assert "x:output" not in schedule.orders[second.start - 1].resident
        assert "x:output" in schedule.orders[second.start].resident
        nbytes = plan.tensors["x:output"].nbytes
        assert schedule.bytes_written == schedule.bytes_read == nbytes


def test_a_written_out_block_is_reserved_one_order_longer_and_dropped_ones_are_not() -> None:
    model = _compiled("mlp")
    last = len(model.program.steps) - 1
    for lookahead in (0, 2):
        schedule = plan_swap(model.program, lookahead=lookahead)
        for segments in schedule.segments.values():
            for s in segments:
                want = min(s.end + 1, last) if s.exit is Exit.WRITE else s.end
                assert s.held == want, s
        held = [s for ss in schedule.segments.values() for s in ss if s.held > s.end]
        assert held, "some write-out should hold its block past its last use"
        waiting = plan_swap(model.program, lookahead=lookahead, overlap_writes=False)
        check_swap(model.program, waiting)
        assert all(s.held == s.end for ss in waiting.segments.values() for s in ss)
        assert waiting.resident_lower_bound <= schedule.resident_lower_bound
        assert waiting.to_json()["overlap_writes"] is False
        for s in held:
            # nobody else is given the block's bytes while the copy runs
            for others in schedule.segments.values():
                for o in others:
                    if o is s or not (o.start <= s.held and s.start <= o.held):
                        continue
                    assert o.offset + o.size <= s.offset or s.offset + s.size <= o.offset


def test_a_weight_is_dropped_when_unchanged_and_written_after_its_update() -> None:
    model = _compiled("mlp")
    schedule = plan_swap(model.program, ["fc2:weight", "fc2:weight:momentum"], lookahead=0)
    segments = schedule.segments["fc2:weight"]
    assert all(s.read_in for s in segments)  # persistent: in the file between iterations
    assert [s.exit for s in segments[:-1]] == [Exit.DROP] * (len(segments) - 1)
    assert segments[-1].exit is Exit.WRITE
    apply = [
        k
        for k, s in enumerate(model.program.steps)
        if s.kind.value == "apply_gradient" and s.node == "fc2"
    ]
    assert segments[-1].end == apply[0]
    (momentum,) = schedule.segments["fc2:weight:momentum"]
    assert (momentum.start, momentum.end, momentum.exit) == (apply[0], apply[0], Exit.WRITE)
    slot = schedule.slots["fc2:weight"]
    assert (slot.first, slot.last) == (0, len(model.program.steps) - 1)


def test_moving_statistics_updated_in_the_forward_step_are_written_out() -> None:
    model = _compiled("convnet")
    schedule = plan_swap(model.program, ["bn1:moving_mean"], lookahead=0)
    first = schedule.segments["bn1:moving_mean"][0]
    assert model.program.steps[first.end].kind.value == "forward"
    assert first.exit is Exit.WRITE


def test_views_and_in_place_tensors_swap_as_one_buffer() -> None:
    model = _compiled("convnet")
    plan = model.plan()
    shared = [b for b in plan.buffers.values() if len(b.members) > 1]
    assert shared
    schedule = plan_swap(model.program, lookahead=0)
    swapped_members = {m for b in schedule.swapped for m in plan.buffers[b].members}
    assert any(len(plan.buffers[b].members) > 1 for b in schedule.swapped)
    for name in swapped_members:
        assert name not in schedule.swapped or plan.tensors[name].buffer == name
    check_swap(model.program, schedule)


def test_results_are_never_swapped_and_unknown_buffers_are_refused() -> None:
    model = _compiled("mlp")
    program = model.program
    plan = model.plan()
    candidates = swap_candidates(plan, 0)
    assert program.output not in candidates and program.loss not in candidates
    with pytest.raises(ConfigError, match="result read after the last order"):
        plan_swap(program, [plan.tensors[program.loss or ""].buffer])
    with pytest.raises(ConfigError, match="not buffers"):
        plan_swap(program, ["nope"])
    with pytest.raises(ConfigError, match="lookahead"):
        plan_swap(program, lookahead=-1)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("lookahead", [0, 1, 2, 5])
def test_every_example_schedule_passes_the_checker(name: str, lookahead: int) -> None:
    model = _compiled(name)
    base = model.plan()
    schedule = plan_swap(model.program, lookahead=lookahead)
    check_swap(model.program, schedule)
    assert schedule.resident_lower_bound <= base.lower_bound_bytes
    assert schedule.resident_lower_bound <= schedule.resident_bytes
    assert max(o.resident_bytes for o in schedule.orders) == schedule.resident_lower_bound
    for buffer in schedule.swapped:
        segments = schedule.segments[buffer]
        for a, b in itertools.pairwise(segments):
            assert b.uses[0] - a.uses[-1] >= lookahead + 2
            assert b.start == b.uses[0] - lookahead and a.end == a.uses[-1]
        if base.buffers[buffer].lifespan is Lifespan.PERSISTENT:
            assert all(s.exit is not Exit.FREE for s in segments)
        else:
            assert segments[-1].exit is Exit.FREE and not segments[0].read_in
    moved = sum(
        schedule.buffer_nbytes(b) * (int(s.read_in) + int(s.exit is Exit.WRITE))
        for b in schedule.swapped
        for s in schedule.segments[b]
    )
    assert schedule.bytes_moved == moved


def test_schedules_are_deterministic_and_independent_of_the_order_asked() -> None:
    model = _compiled("residual")
    names = swap_candidates(model.plan(), 1)
    one = plan_swap(model.program, names, lookahead=1)
    two = plan_swap(model.program, list(reversed(names)), lookahead=1)
    again = _compiled("residual")
    three = plan_swap(again.program, names, lookahead=1)
    assert one.to_json() == two.to_json() == three.to_json()


def test_swapping_nothing_is_the_plain_plan() -> None:
    model = _compiled("branches")
    schedule = plan_swap(model.program, [], lookahead=0)
    plan = plan_memory(model.program)
    assert schedule.resident_bytes == plan.arena_bytes
    assert schedule.resident_offsets == {b.name: b.offset for b in plan.buffers.values()}
    assert schedule.swap_file_bytes == 0 and schedule.bytes_moved == 0


@settings(max_examples=40, deadline=None)
@given(random_models(), st.integers(0, 4), st.randoms(use_true_random=False))
def test_random_schedules_pass_the_checker(model_case: tuple, lookahead: int, rnd: object) -> None:  # type: ignore[type-arg]
    import random

    assert isinstance(rnd, random.Random)
    layers, loss, _, optimizer = model_case
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    candidates = swap_candidates(model.plan(), lookahead)
    chosen = [c for c in candidates if rnd.random() < 0.6]
    schedule = plan_swap(model.program, chosen, lookahead=lookahead)
    check_swap(model.program, schedule)
    assert set(schedule.swapped) == set(chosen)


def test_schedules_reproduce_the_stored_cases() -> None:
    """tests/data/plans/swap_cases.json (made by make_swap_goldens.py beside it) is what
    the Rust core must reproduce; the spec must keep producing exactly these schedules."""
    import importlib.util
    import json
    from pathlib import Path

    folder = Path(__file__).parents[1] / "data" / "plans"
    spec = importlib.util.spec_from_file_location(
        "make_swap_goldens", folder / "make_swap_goldens.py"
    )
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    data = json.loads((folder / "swap_cases.json").read_text())
    assert len(data["cases"]) >= 10
    programs = {}
    for case in data["cases"]:
        model = case["model"]
        if model not in programs:
            programs[model] = maker.training_program(model)
        program = programs[model]
        schedule = plan_swap(
            program,
            case["swapped"],
            lookahead=case["lookahead"],
            overlap_writes=case["overlap_writes"],
        )
        assert maker.expected(program, schedule) == {
            k: v for k, v in case.items() if k not in ("name", "model", "budget")
        }, case["name"]
        if case["budget"] is None:
            assert case["swapped"] == swap_candidates(schedule.plan, case["lookahead"])
        else:
            assert schedule.resident_bytes <= case["budget"]
            chosen = choose_swap(program, case["budget"], plan=schedule.plan)
            assert chosen is not None and list(chosen.swapped) == case["swapped"], case["name"]
            assert chosen.lookahead == case["lookahead"]
            assert chosen.overlap_writes == case["overlap_writes"]
