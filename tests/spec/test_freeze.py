"""Freezing: ``trainable=False`` (API and INI), ``Model.freeze``/``unfreeze`` and what they
change: the layers selected, the program's steps and tensors, the memory plan, the
weights that training leaves alone, the gradients of the layers that still train, the
optimizer state kept across a recompile, and ``edgetrain plan``'s comparison."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from edgetrain import ConfigError, Model, cli
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.layers.base import StepKind
from edgetrain.planning.report import format_bytes
from edgetrain.tensors import TensorKind

RNG = np.random.default_rng(5)
X = RNG.random((16, 1, 6, 6)).astype(np.float32)
Y = RNG.integers(0, 3, size=16)


def cnn() -> Model:
    """input, conv (relu), batch norm, pool, flatten, dense (relu), dense (softmax)."""
    return Model(
        [
            L.Input(shape=(1, 6, 6), name="image"),
            L.Conv2D(filters=4, kernel_size=3, padding="same", name="conv1", activation="relu"),
            L.BatchNormalization(name="bn1"),
            L.Pooling2D("max", pool_size=2, stride=2, name="pool1"),
            L.Flatten(name="flat"),
            L.FullyConnected(unit=8, name="fc1", activation="relu"),
            L.FullyConnected(unit=3, name="out", activation="softmax"),
        ],
        loss="cross",
    )


def compiled(*, freeze_up_to: str | None = None, **settings: object) -> Model:
    model = cnn()
    if freeze_up_to is not None:
        model.freeze(up_to=freeze_up_to)
    model.compile(O.Adam(0.01), batch_size=8, seed=3, **settings)  # type: ignore[arg-type]
    return model


# -- which layers a call selects -------------------------------------------------------------


def test_freeze_up_to_is_inclusive_in_execution_order() -> None:
    model = cnn()
    assert model.freeze(up_to="bn1") == ["image", "conv1", "bn1"]
    assert [layer.trainable for layer in model.layers] == [False, False, False] + [True] * 4


def test_named_freeze_unfreeze_and_all() -> None:
    model = cnn()
    assert model.freeze(["fc1", "conv1"]) == ["conv1", "fc1"]  # execution order
    assert model.unfreeze("conv1") == ["conv1"]
    assert [layer.name for layer in model.layers if not layer.trainable] == ["fc1"]
    assert len(model.freeze()) == 7 and not any(layer.trainable for layer in model.layers)
    model.unfreeze(up_to="flat")
    assert [layer.name for layer in model.layers if not layer.trainable] == ["fc1", "out"]
    model.unfreeze()
    assert all(layer.trainable for layer in model.layers)


def test_execution_order_not_listing_order_decides_up_to() -> None:
    """``side`` is listed before ``a`` but reads ``b``, so it runs after ``b``."""
    model = Model(
        [
            L.Input(shape=(4,), name="x"),
            L.FullyConnected(unit=3, name="side", input_layers=["b"]),
            L.FullyConnected(unit=3, name="a", input_layers=["x"]),
            L.FullyConnected(unit=3, name="b"),
        ]
    )
    assert model.freeze(up_to="b") == ["x", "a", "b"]
    assert model.layers[1].trainable


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("nope",), {}, r"no layer named 'nope'.*image, conv1, bn1"),
        ((), {"up_to": "missing"}, "no layer named 'missing'"),
        (("conv1/activation",), {}, "follow their layer"),
        ((["fc1"],), {"up_to": "fc1"}, "not both"),
        (([],), {}, "no layer names given"),
    ],
)
def test_bad_selections_are_refused_before_anything_changes(
    args: tuple[object, ...], kwargs: dict[str, str], match: str
) -> None:
    model = cnn()
    with pytest.raises(ConfigError, match=match):
        model.freeze(*args, **kwargs)  # type: ignore[arg-type]
    assert all(layer.trainable for layer in model.layers)


# -- the program and the plan ------------------------------------------------------------------


def test_frozen_layers_lose_gradients_state_and_derivatives_below_the_lowest_trainable() -> None:
    full = compiled().program
    frozen = compiled(freeze_up_to="bn1").program
    assert frozen.trained == {"fc1", "out"}
    backward = {(s.kind, s.node) for s in frozen.steps if s.kind is not StepKind.FORWARD}
    nodes_with_backward = {node for _, node in backward}
    assert nodes_with_backward.isdisjoint({"image", "conv1", "conv1/activation", "bn1"})
    # pool, flatten get no derivative step: nothing below them trains
    assert (StepKind.CALC_DERIVATIVE, "pool1") not in backward
    assert (StepKind.CALC_DERIVATIVE, "flat") not in backward
    assert (StepKind.CALC_DERIVATIVE, "fc1") not in backward
    gone = set(full.tensors) - set(frozen.tensors)
    assert set(frozen.tensors) < set(full.tensors)
    assert {"conv1:weight:grad", "bn1:gamma:m", "bn1:beta:v", "conv1:output:grad"} <= gone
    assert not any(
        n.startswith(("conv1", "bn1"))
        for n, s in frozen.tensors.items()
        if s.kind in (TensorKind.GRADIENT, TensorKind.OPTIMIZER_STATE, TensorKind.DERIVATIVE)
    )


@pytest.mark.parametrize("planner", ["naive", "sorted", "greedy_by_size"])
def test_freezing_shrinks_the_plan_step_by_step(planner: str) -> None:
    sizes = []
    for up_to in (None, "conv1", "bn1", "fc1"):
        model = compiled(freeze_up_to=up_to, planner=planner)
        plan = model.plan()
        sizes.append((plan.arena_bytes, plan.naive_bytes, len(plan.tensors)))
    for bigger, smaller in pairwise(sizes):
        assert smaller[0] < bigger[0] and smaller[1] < bigger[1] and smaller[2] < bigger[2]


def test_ini_trainable_false_gives_the_same_program_as_freeze(tmp_path: Path) -> None:
    model = cnn()
    model.freeze(up_to="bn1")
    model.compile(O.Adam(0.01), batch_size=8)
    model.to_ini(tmp_path / "frozen.ini")
    text = (tmp_path / "frozen.ini").read_text()
    assert text.count("trainable = false") == 3
    again = Model.from_ini(tmp_path / "frozen.ini")
    again.compile(O.Adam(0.01), batch_size=8)
    assert set(again.program.tensors) == set(model.program.tensors)
    assert again.plan().arena_bytes == model.plan().arena_bytes


# -- training ----------------------------------------------------------------------------------


def test_frozen_weights_stay_bit_identical_through_training() -> None:
    model = compiled(freeze_up_to="fc1")
    before = model.get_weights()
    model.fit(X, Y, epochs=3)
    after = model.get_weights()
    for name in ("conv1:weight", "conv1:bias", "bn1:gamma", "bn1:beta", "fc1:weight", "fc1:bias"):
        assert after[name].tobytes() == before[name].tobytes(), name
    assert not np.array_equal(after["out:weight"], before["out:weight"])
    # NNTrainer's rule, documented in freeze(): moving statistics follow the batches
    assert not np.array_equal(after["bn1:moving_mean"], before["bn1:moving_mean"])


@pytest.mark.parametrize("frozen", [["conv1", "bn1"], ["fc1"], ["bn1", "fc1"]])
def test_trainable_gradients_equal_the_unfrozen_models(frozen: list[str]) -> None:
    """Heap stores (``planner=None``) keep every gradient readable after the step."""
    full = compiled(planner=None, dtype=np.float64)
    part = cnn()
    part.freeze(frozen)
    part.compile(O.Adam(0.01), batch_size=8, seed=3, planner=None, dtype=np.float64)
    full.train_step(X[:8], Y[:8])
    part.train_step(X[:8], Y[:8])
    grads = {n for n, s in part.program.tensors.items() if s.kind is TensorKind.GRADIENT}
    assert grads and not any(n.split(":")[0] in frozen for n in grads)
    assert grads < {n for n, s in full.program.tensors.items() if s.kind is TensorKind.GRADIENT}
    for name in sorted(grads):
        np.testing.assert_array_equal(
            part._trainer().store[name], full._trainer().store[name], name
        )


def test_freeze_recompiles_keeping_weights_iteration_and_optimizer_state() -> None:
    model = compiled()
    model.fit(X, Y, epochs=1)
    weights = model.get_weights()
    trainer = model._trainer()
    kept = {"out:weight:m", "out:weight:v", "fc1:bias:m"}
    state = {n: trainer.store[n].copy() for n in kept}
    iteration, count = model.iteration, trainer.update_count
    model.freeze(up_to="bn1")
    assert "conv1:weight:grad" not in model.program.tensors
    after = model.get_weights()
    assert all(np.array_equal(after[n], w) for n, w in weights.items())
    trainer = model._trainer()
    assert model.iteration == iteration and trainer.update_count == count
    for name in kept:
        np.testing.assert_array_equal(trainer.store[name], state[name])
    model.fit(X, Y, epochs=1)
    assert model.get_weights()["conv1:weight"].tobytes() == weights["conv1:weight"].tobytes()


def test_unfreeze_starts_the_optimizer_state_fresh() -> None:
    model = compiled(freeze_up_to="bn1")
    model.fit(X, Y, epochs=1)
    weights = model.get_weights()
    model.unfreeze()
    trainer = model._trainer()
    assert "conv1:weight:grad" in model.program.tensors
    assert trainer.update_count == 0 and not trainer.store["out:weight:m"].any()
    assert all(np.array_equal(model.get_weights()[n], w) for n, w in weights.items())
    model.fit(X, Y, epochs=1)
    assert not np.array_equal(model.get_weights()["conv1:weight"], weights["conv1:weight"])


def test_freeze_before_compile_only_sets_flags() -> None:
    model = cnn()
    model.freeze(["conv1"])
    model.compile(O.SGD(0.1), batch_size=4)
    assert "conv1" not in model.program.trained and "fc1" in model.program.trained


def test_a_fully_frozen_model_still_infers_and_evaluates() -> None:
    model = compiled()
    model.freeze()
    assert model.program.trained == frozenset()
    assert model.predict(X).shape == (16, 3)
    assert 0.0 <= model.evaluate(X, Y)["accuracy"] <= 1.0


# -- edgetrain plan ----------------------------------------------------------------------------


def test_plan_command_compares_the_arena_with_and_without_freezing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = cnn()
    model.freeze(up_to="bn1")
    model.compile(O.Adam(0.01), batch_size=8)
    model.to_ini(tmp_path / "frozen.ini")
    frozen_bytes = model.plan().arena_bytes
    model.unfreeze()
    full_bytes = model.plan().arena_bytes
    assert cli.main(["plan", str(tmp_path / "frozen.ini"), "--brief", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "frozen layers (no gradients, no optimizer state): conv1, bn1 (2)" in out
    assert "layers that train: fc1, out (2)" in out
    line = next(x for x in out.splitlines() if x.startswith("arena ") and "with freezing" in x)
    assert format_bytes(frozen_bytes) in line and format_bytes(full_bytes) in line
    assert cli.main(["plan", str(tmp_path / "frozen.ini"), "--json", "-", "--batch-size", "8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["arena_bytes"], data["unfrozen_arena_bytes"]) == (frozen_bytes, full_bytes)


# -- the tutorial ------------------------------------------------------------------------------


def test_transfer_learning_tutorial_runs(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from doctest_blocks import run_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "tutorials"
    seen = run_markdown(docs / "transfer-learning.md", tmp_path)
    assert seen["frozen_arena"] < seen["full_arena"]
    assert seen["head_only"] > 0.8 and seen["everything"] > 0.8
    assert (tmp_path / "frozen.ini").read_text().count("trainable = false") == 5


def test_freezing_in_a_residual_graph_keeps_the_trainable_gradients() -> None:
    """Fan-out (``a/multiout``) and a merge: freezing the layer that fans out leaves
    the branches' gradients as they were, and ``a`` gets no backward step at all."""

    def residual() -> Model:
        return Model(
            [
                L.Input(shape=(5,), name="x"),
                L.FullyConnected(unit=6, name="a", activation="tanh"),
                L.FullyConnected(unit=6, name="b", activation="tanh"),
                L.Addition(name="sum", input_layers=["a", "b"]),
                L.FullyConnected(unit=3, name="out", activation="softmax"),
            ],
            loss="cross",
        )

    x = RNG.normal(size=(4, 5))
    y = np.array([0, 1, 2, 1])
    full, part = residual(), residual()
    part.freeze(["a"])
    for model in (full, part):
        model.compile(O.SGD(0.1), batch_size=4, seed=1, planner=None, dtype=np.float64)
        model.train_step(x, y)
    assert {s.node for s in part.program.steps if s.kind is not StepKind.FORWARD}.isdisjoint(
        {"a", "a/activation", "a/multiout"}
    )
    for name in ("b:weight:grad", "b:bias:grad", "out:weight:grad"):
        np.testing.assert_array_equal(part._trainer().store[name], full._trainer().store[name])
    assert part.plan("greedy_by_size").arena_bytes < full.plan("greedy_by_size").arena_bytes


def test_summary_counts_frozen_parameters() -> None:
    model = compiled()
    assert "frozen parameters" not in model.summary()
    model.freeze(up_to="bn1")
    # conv1: 4*1*3*3 + 4; bn1: gamma, beta, moving mean and variance of 4 channels
    assert "frozen parameters: 56 in conv1, bn1 (see freeze())" in model.summary()
