"""The independent swap checker finds broken schedules: a read-in after the use, a drop
of changed bytes, a freed weight, overlapping resident blocks or swap-file slots, a
buffer missing, a use while out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgetrain import Model
from edgetrain.planning.swap import Exit, SwapSchedule, plan_swap
from edgetrain.planning.swap_check import SwapCheckError, changed_orders, check_swap
from planning_models import BUILDERS


def _schedule(name: str = "mlp", lookahead: int = 0) -> tuple[Model, SwapSchedule]:
    layers, loss, _, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    return model, plan_swap(model.program, lookahead=lookahead)


def _with_segment(
    schedule: SwapSchedule, buffer: str, index: int, **changes: object
) -> SwapSchedule:
    segments = list(schedule.segments[buffer])
    segments[index] = replace(segments[index], **changes)  # type: ignore[arg-type]
    return replace(schedule, segments={**schedule.segments, buffer: tuple(segments)})


def _fails(model: Model, schedule: SwapSchedule, match: str) -> None:
    with pytest.raises(SwapCheckError, match=match) as info:
        check_swap(model.program, schedule)
    assert "the swap schedule is unsafe" in str(info.value)


def test_a_correct_schedule_passes() -> None:
    model, schedule = _schedule()
    check_swap(model.program, schedule)


def test_a_read_in_after_the_use_is_caught() -> None:
    model, schedule = _schedule()
    second = schedule.segments["x:output"][1]
    late = _with_segment(schedule, "x:output", 1, start=second.start + 1)
    _fails(model, late, "'x:output' .* used at order .* but not resident")


def test_dropping_changed_bytes_is_caught() -> None:
    model, schedule = _schedule()
    dropped = _with_segment(schedule, "x:output", 0, exit=Exit.DROP)
    _fails(model, dropped, "dropped at order 1 with changes the swap file does not hold")


def test_a_weight_update_never_written_out_is_caught() -> None:
    model, schedule = _schedule()
    last = len(schedule.segments["fc1:weight"]) - 1
    lost = _with_segment(schedule, "fc1:weight", last, exit=Exit.DROP)
    _fails(model, lost, "'fc1:weight' dropped")


def test_freeing_a_persistent_buffer_is_caught() -> None:
    model, schedule = _schedule()
    freed = _with_segment(schedule, "fc1:bias", 0, exit=Exit.FREE)
    _fails(model, freed, "persistent 'fc1:bias' is freed")


def test_overlapping_resident_blocks_are_caught() -> None:
    model, _ = _schedule()
    schedule = plan_swap(model.program, ["x:output"], lookahead=0)
    resident = dict(schedule.resident_offsets)
    clash = replace(schedule, resident_offsets={**resident, "fc2:weight": resident["fc1:weight"]})
    _fails(model, clash, "'fc1:weight@0' .* overlaps 'fc2:weight@0'|'fc2:weight@0' .* overlaps")
    segment = schedule.segments["x:output"][1]
    on_weight = _with_segment(schedule, "x:output", 1, offset=resident["fc1:weight"])
    _fails(model, on_weight, f"x:output@{segment.start}")


def test_a_block_reused_while_its_write_out_runs_is_caught() -> None:
    """A written-out segment's block is reserved through the order after its last use; a
    schedule that gives those bytes to a block starting at that order is unsafe, as is one
    claiming a shorter reservation."""
    model, _ = _schedule()
    schedule = plan_swap(model.program, ["x:output"], lookahead=0)
    first = schedule.segments["x:output"][0]
    assert first.exit is Exit.WRITE and first.held == first.end + 1
    _fails(model, _with_segment(schedule, "x:output", 0, held=first.end + 2), "holds its block through")
    second = schedule.segments["x:output"][1]
    assert second.exit is Exit.FREE
    _fails(model, _with_segment(schedule, "x:output", 1, held=second.end + 1), "holds its block through")
    check_swap(model.program, _with_segment(schedule, "x:output", 0, held=first.end))  # waited at once
    everything = plan_swap(model.program, lookahead=0)
    pairs = [
        (s, o)
        for ss in everything.segments.values()
        for s in ss
        for os in everything.segments.values()
        for o in os
        if s.held == s.end + 1 and o.start == s.held and o.buffer != s.buffer
    ]
    assert pairs, "some segment should start at the order a write-out runs beside"
    written, starting = pairs[0]
    clash = _with_segment(everything, starting.buffer, starting.number, offset=written.offset)
    name = f"'{written.buffer}@{written.start}'"
    _fails(model, clash, f"{name} .* overlaps|overlaps {name}")


def test_overlapping_swap_slots_are_caught() -> None:
    model, schedule = _schedule()
    slots = dict(schedule.slots)
    slots["fc2:weight"] = replace(slots["fc2:weight"], offset=slots["fc1:weight"].offset)
    _fails(model, replace(schedule, slots=slots), "swap file: .* overlaps")


def test_a_slot_outside_the_swap_file_is_caught() -> None:
    model, schedule = _schedule()
    _fails(model, replace(schedule, swap_file_bytes=64), "outside the arena")


def test_a_missing_buffer_is_caught() -> None:
    model, schedule = _schedule()
    segments = dict(schedule.segments)
    del segments["fc1:weight"]
    _fails(
        model, replace(schedule, segments=segments), "'fc1:weight' is neither resident nor swapped"
    )


def test_a_swapped_buffer_used_while_out_is_caught() -> None:
    model, schedule = _schedule()
    first = schedule.segments["x:output"][0]
    short = _with_segment(schedule, "x:output", 0, end=first.end - 1)
    _fails(model, short, "'x:output' .* used at order 1 but not resident")


def test_forward_steps_may_change_untrained_weights() -> None:
    layers, loss, _, optimizer = BUILDERS["convnet"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    changed = changed_orders(model.program)
    forward = [
        k
        for k, s in enumerate(model.program.steps)
        if s.node == "bn1" and s.kind.value == "forward"
    ]
    assert changed["bn1:moving_mean"] == set(forward)
    assert all(
        model.program.steps[k].kind.value == "apply_gradient" for k in changed["conv1:weight"]
    )
