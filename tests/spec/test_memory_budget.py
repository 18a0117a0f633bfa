"""Training under a memory budget: sizes parsed, a schedule chosen whose resident arena
fits and passes the checker, an impossible budget refused before training with the
smallest budget that fits (which then does), and the CLI and model-file keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetrain import Model
from edgetrain.cli import main
from edgetrain.errors import ConfigError
from edgetrain.planning.budget import choose_swap, parse_budget
from edgetrain.planning.swap import SwapSchedule, plan_swap
from edgetrain.planning.swap_check import check_swap
from planning_models import BUILDERS, random_models


def _compiled(name: str, batch: int = 4) -> Model:
    layers, loss, _, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=batch)
    return model


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("64MiB", 64 << 20),
        ("64 mib", 64 << 20),
        ("1.5GB", 1_500_000_000),
        ("512k", 512 << 10),
        ("512KB", 512_000),
        ("2G", 2 << 30),
        ("10B", 10),
    ],
)
def test_sizes(text: int | str, nbytes: int) -> None:
    assert parse_budget(text) == nbytes


@pytest.mark.parametrize("text", ["", "MiB", "12 parsecs", "-5MiB", "0", "1e3", True])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ConfigError, match="memory budget"):
        parse_budget(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["mlp", "convnet", "residual", "branches"])
@pytest.mark.parametrize("fraction", [0.9, 0.7, 0.55])
def test_the_chosen_schedule_fits_and_is_safe(name: str, fraction: float) -> None:
    model = _compiled(name)
    plan = model.plan()
    budget = int(plan.arena_bytes * fraction)
    schedule = choose_swap(model.program, budget, plan=plan)
    assert schedule is not None and schedule.resident_bytes <= budget
    check_swap(model.program, schedule)
    everything = plan_swap(model.program, lookahead=schedule.lookahead, plan=plan)
    assert schedule.bytes_moved <= everything.bytes_moved


def test_a_budget_the_plan_meets_swaps_nothing(tmp_path: Path) -> None:
    model = _compiled("mlp")
    assert choose_swap(model.program, model.plan().arena_bytes) is None
    layers, loss, _, optimizer = BUILDERS["mlp"]()
    roomy = Model(layers, loss=loss)
    roomy.compile(optimizer(), batch_size=4, memory_budget="1GiB", swap_dir=tmp_path)
    assert roomy.swap_schedule is None and not list(tmp_path.iterdir())


def test_an_impossible_budget_names_the_smallest_that_fits(tmp_path: Path) -> None:
    model = _compiled("residual")
    weights = model.get_weights()
    _, _, _, optimizer = BUILDERS["residual"]()
    with pytest.raises(
        ConfigError, match="no swap schedule fits a memory budget of 1.00 KiB"
    ) as info:
        model.compile(optimizer(), batch_size=4, memory_budget="1KiB", swap_dir=tmp_path)
    assert info.value.key == "memory_budget"
    found = re.search(r"smallest resident arena is .*? \(([\d,]+) bytes", str(info.value))
    assert found is not None
    smallest = int(found.group(1).replace(",", ""))
    for key, value in weights.items():
        np.testing.assert_array_equal(model.get_weights()[key], value)
    assert not list(tmp_path.iterdir())
    model.compile(optimizer(), batch_size=4, memory_budget=smallest, swap_dir=tmp_path)
    schedule = model.swap_schedule
    assert schedule is not None and schedule.resident_bytes <= smallest
    with pytest.raises(ConfigError, match="no swap schedule fits"):
        choose_swap(model.program, smallest - 64)


def test_a_fixed_lookahead_is_kept() -> None:
    model = _compiled("convnet")
    budget = int(model.plan().arena_bytes * 0.8)
    for lookahead in (0, 3):
        schedule = choose_swap(model.program, budget, lookahead=lookahead)
        assert schedule is not None and schedule.lookahead == lookahead


def test_swap_options_are_checked(tmp_path: Path) -> None:
    layers, loss, _, optimizer = BUILDERS["mlp"]()
    model = Model(layers, loss=loss)
    with pytest.raises(ConfigError, match="applies to training"):
        model.compile(None, batch_size=4, swap=True)
    with pytest.raises(ConfigError, match="needs a planner"):
        model.compile(optimizer(), batch_size=4, swap=True, planner=None)
    with pytest.raises(ConfigError, match="lookahead"):
        model.compile(optimizer(), batch_size=4, swap=True, lookahead=-2)


@settings(max_examples=25, deadline=None)
@given(random_models(), st.floats(0.05, 1.0))
def test_random_budgets_fit_or_name_a_budget_that_fits(model_case: tuple, fraction: float) -> None:  # type: ignore[type-arg]
    layers, loss, _, optimizer = model_case
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    plan = model.plan()
    budget = max(int(plan.arena_bytes * fraction), 1)
    try:
        schedule = choose_swap(model.program, budget, plan=plan)
    except ConfigError as err:
        found = re.search(r"\(([\d,]+) bytes, every", str(err))
        assert found is not None
        smallest = int(found.group(1).replace(",", ""))
        assert smallest > budget
        schedule = choose_swap(model.program, smallest, plan=plan)
        assert schedule is not None
        budget = smallest
    if schedule is None:
        assert plan.arena_bytes <= budget
        return
    assert schedule.resident_bytes <= budget
    check_swap(model.program, schedule)


# -- the command line and the model file ----------------------------------------------------

_MODEL = """
[Model]
type = NeuralNetwork
loss = cross
batch_size = 8
epochs = 1
{swap}

[Optimizer]
type = sgd
learning_rate = 0.1
momentum = 0.9

[input]
type = input
input_shape = 1:8:8

[conv]
type = conv2d
filters = 4
kernel_size = 3,3
padding = 1,1

[bn]
type = batch_normalization
activation = relu

[flat]
type = flatten

[out]
type = fully_connected
unit = 10
activation = softmax
"""


def _model_file(tmp_path: Path, swap: str = "") -> Path:
    path = tmp_path / "model.ini"
    path.write_text(_MODEL.format(swap=swap))
    return path


def test_plan_shows_the_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model_file(tmp_path)
    assert main(["plan", str(path), "--json", "-"]) == 0
    arena = json.loads(capsys.readouterr().out)["arena_bytes"]
    budget = str(int(arena * 0.7))
    assert main(["plan", str(path), "--memory-budget", budget]) == 0
    text = capsys.readouterr().out
    assert "swap schedule:" in text and "resident arena" in text and "fits" in text
    assert re.search(r"\n\s+in:\s+\S+", text) and "bytes by kind" in text
    assert main(["plan", str(path), "--memory-budget", budget, "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["swap"]["resident_bytes"] <= int(budget) < data["arena_bytes"]
    assert data["swap"]["memory_budget"] == int(budget)
    assert main(["plan", str(path), "--memory-budget", "10B"]) == 2
    assert "smallest resident arena" in capsys.readouterr().err


def test_plan_chart_marks_swapped_segments(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = _model_file(tmp_path)
    chart = tmp_path / "swap.png"
    assert main(
        ["plan", str(path), "--memory-budget", "4KiB", "--chart", str(chart), "--brief"]
    ) in (0, 2)
    model = Model.from_ini(path)
    model.compile(model.description.optimizer, batch_size=8)  # type: ignore[union-attr]
    from edgetrain.planning.chart import swap_figure

    schedule = plan_swap(model.program, lookahead=1)
    figure = swap_figure(schedule, title="t")
    legend = figure.axes[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert "read in" in labels and "written out" in labels
    assert any(label.endswith("(swapped)") for label in labels)


def test_train_under_a_budget_and_with_the_model_files_swap_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    swap_dir = tmp_path / "swap"
    swap_dir.mkdir()
    path = _model_file(tmp_path)
    common = ["--data", "digits", "--quiet", "--validation-split", "0", "--seed", "1"]
    saved = {}
    for label, extra in (
        ("plain", []),
        ("budget", ["--memory-budget", "40KiB", "--swap-dir", str(swap_dir)]),
    ):
        out = tmp_path / f"{label}.npz"
        assert main(["train", str(path), *common, "--save", str(out), *extra]) == 0, (
            capsys.readouterr().err
        )
        saved[label] = out
    text = capsys.readouterr().out
    assert re.search(r"swap: resident arena .* planned .* written, .* read", text)
    keyed = _model_file(
        tmp_path, "memory_swap = true\nmemory_swap_path = swap\nmemory_swap_lookahead = 2"
    )
    saved["keys"] = tmp_path / "keys.npz"
    assert main(["train", str(keyed), *common, "--save", str(saved["keys"])]) == 0
    assert "swap: resident arena" in capsys.readouterr().out
    assert not list(swap_dir.iterdir())
    want = np.load(saved["plain"])
    for label in ("budget", "keys"):
        got = np.load(saved[label])
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{label} {key}")


def test_plan_follows_the_model_files_swap_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyed = _model_file(tmp_path, "memory_swap = true\nmemory_swap_lookahead = 1")
    assert main(["plan", str(keyed), "--brief"]) == 0
    assert "swap schedule:" in capsys.readouterr().out
    assert main(["plan", str(keyed), "--inference", "--brief"]) == 0  # inference never swaps
    assert "swap schedule:" not in capsys.readouterr().out
    assert main(["plan", str(keyed), "--inference", "--memory-budget", "1MiB"]) == 2
    assert "applies to training" in capsys.readouterr().err


def test_a_budget_in_percent_of_the_plan(tmp_path: Path) -> None:
    assert parse_budget("25%", plan_bytes=1000) == 250
    assert parse_budget(" 12.5 % ", plan_bytes=800) == 100
    with pytest.raises(ConfigError, match="share of the plan"):
        parse_budget("25%")
    with pytest.raises(ConfigError, match="positive"):
        parse_budget("0%", plan_bytes=1000)
    layers, loss, _, optimizer = BUILDERS["convnet"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, memory_budget="60%", swap_dir=tmp_path)
    schedule = model.swap_schedule
    assert schedule is not None
    assert schedule.resident_bytes <= 0.6 * schedule.plan.arena_bytes
    assert model.memory_budget == "60%"
    model.unfreeze("conv1")  # recompiles with the same budget
    again = model.swap_schedule
    assert again is not None and again.to_json() == schedule.to_json()
    assert choose_swap(model.program, "150%") is None


def test_the_swap_file_goes_to_the_temp_dir_unless_the_model_file_names_a_path(tmp_path: Path) -> None:
    """memory_swap = true without memory_swap_path: the system temp dir (no swap_dir), not
    NNTrainer's working directory; a path, even '.', is relative to the model file."""
    import argparse

    from edgetrain.cli import _swap_options

    args = argparse.Namespace(lookahead=None, memory_budget=None, swap_dir=None)
    unset = _swap_options(args, Model.from_ini(_model_file(tmp_path, "memory_swap = true")))
    assert unset == {"swap": True, "lookahead": 0}
    for written, want in (("swap", tmp_path / "swap"), (".", tmp_path), ("/var/tmp", Path("/var/tmp"))):
        keyed = _model_file(tmp_path, f"memory_swap_path = {written}")
        assert _swap_options(args, Model.from_ini(keyed)) == {"swap_dir": want}
    args.swap_dir = tmp_path / "given"
    assert _swap_options(args, Model.from_ini(keyed))["swap_dir"] == tmp_path / "given"


def test_a_larger_lookahead_wins_when_it_moves_at_most_a_32nd_more_bytes() -> None:
    """At lookahead 0 no read-in can run beside a step, so a schedule with a larger
    lookahead is preferred unless it moves more than 1/32 more bytes than the fewest."""
    from dataclasses import replace

    from edgetrain.planning.budget import prefer_lookahead

    layers, loss, _, optimizer = BUILDERS["mlp"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)

    def moving(lookahead: int, nbytes: int) -> SwapSchedule:
        schedule = plan_swap(model.program, lookahead=lookahead)
        return replace(schedule, bytes_written=nbytes, bytes_read=0)

    near = [moving(0, 3200), moving(1, 3300), moving(2, 3300)]
    assert prefer_lookahead(near).lookahead == 2
    far = [moving(0, 3200), moving(2, 3301)]
    assert prefer_lookahead(far).lookahead == 0
    assert prefer_lookahead([moving(1, 9000)]).lookahead == 1
