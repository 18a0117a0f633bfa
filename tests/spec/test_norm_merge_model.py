"""Normalization, dropout and merge layers inside a whole model: the graph, the program
and the reference executor wire their derivatives correctly (fan-out into an addition,
a concat of two branches), checked by finite differences of the model's loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edgetrain import Model
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.executor import Executor, HeapStore
from edgetrain.graph import build_graph
from edgetrain.initializers import initialize
from edgetrain.losses import make_loss
from edgetrain.program import build_program

Array = NDArray[Any]


def build() -> list[L.Layer]:
    return [
        L.Input(shape=(6,), name="x"),
        L.FullyConnected(unit=8, name="fc1", activation="tanh"),
        L.BatchNormalization(name="bn", momentum=0.9),
        L.Dropout(dropout_rate=0.25, name="drop"),
        L.FullyConnected(unit=8, name="fc2"),
        L.Addition(name="add", input_layers="fc2, bn"),
        L.LayerNormalization(name="ln"),
        L.Concat(axis=1, name="cat", input_layers="ln, bn"),
        L.FullyConnected(unit=3, name="out"),
    ]


def test_model_gradients_through_every_layer_match_finite_differences() -> None:
    """Run over a ``HeapStore`` so the gradients can still be read after the iteration
    (a planned arena reuses their bytes once the update has run)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6))
    y = rng.normal(size=(5, 3))
    graph = build_graph(build(), 5, make_loss("mse"))
    program = build_program(graph, training=True, dtype=np.float64)
    store = HeapStore(program.tensors)
    for node in graph.nodes:
        for spec in node.setup.weights:
            values = initialize(spec.initializer, spec.shape, rng)
            np.copyto(store[program.bindings[node.name].weights[spec.name]], values)
    trainer = Executor(program, store, O.SGD(0.1))

    def loss() -> float:
        trainer.rng = np.random.default_rng(42)  # the same dropout mask every time
        return trainer.train_step([x], y, lr=0.0)

    loss()
    nodes = ("fc1", "bn", "fc2", "ln", "out")
    analytic_of = {  # read before any perturbed iteration overwrites them
        grad: store[grad].copy()
        for node in nodes
        for grad in program.bindings[node].gradients.values()
    }
    checked = 0
    for node in nodes:
        binding = program.bindings[node]
        for weight, grad_name in binding.gradients.items():
            analytic = analytic_of[grad_name]
            values = trainer.store[binding.weights[weight]].reshape(-1)
            for index in rng.choice(values.size, size=min(6, values.size), replace=False):
                original = values[index]
                values[index] = original + 1e-6
                up = loss()
                values[index] = original - 1e-6
                down = loss()
                values[index] = original
                numeric = (up - down) / 2e-6
                got = analytic.reshape(-1)[index]
                assert np.isclose(got, numeric, rtol=1e-5, atol=1e-7), (
                    f"{node}:{weight}[{index}]: analytic {got}, numeric {numeric}"
                )
                checked += 1
    assert checked >= 40


def test_model_trains_and_predicts_with_moving_statistics() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = np.tanh(x[:, :3] - 0.5 * x[:, 3:]).astype(np.float32)
    model = Model(build(), loss="mse")
    model.compile(O.Adam(0.01), batch_size=16, seed=0)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=30)
    after = model.evaluate(x, y)["loss"]
    assert after < 0.5 * before
    weights = model.get_weights()
    assert not np.allclose(weights["bn:moving_mean"], 0.0)
    assert not np.allclose(weights["bn:moving_variance"], 1.0)
    first = model.predict(x)
    np.testing.assert_array_equal(model.predict(x), first)  # inference: no dropout, no batch stats
    np.testing.assert_allclose(model.predict(x[:1]), first[:1], rtol=1e-5, atol=1e-6)


def images() -> list[L.Layer]:
    return [
        L.Input(shape=(3, 4, 4), name="x"),
        L.BatchNormalization(name="bn0"),
        L.Activation("relu", name="r0"),
        L.Dropout(dropout_rate=0.3, name="d0"),
        L.FullyConnected(unit=4, name="fc"),
        L.BatchNormalization(name="bn1", axis=1),
        L.Addition(name="add", input_layers="bn1, d0"),
        L.LayerNormalization(name="ln", axis="1,3"),
        L.Concat(axis=2, name="cat", input_layers="ln, d0"),
        L.Flatten(name="flat"),
        L.FullyConnected(unit=3, name="out"),
    ]


def train(
    build: Callable[[], list[L.Layer]], x: Array, y: Array, planner: str | None
) -> tuple[list[float], dict[str, Array], Model]:
    model = Model(build(), loss="mse")
    model.compile(
        O.SGD(0.05), batch_size=4, seed=3, planner=planner, debug_poison=planner is not None
    )
    losses = [model.train_step(x, y) for _ in range(3)]
    return losses, {k: v.copy() for k, v in model.get_weights().items()}, model


@pytest.mark.parametrize(
    ("build", "input_shape", "shared"),
    [
        # dropout reads one of three views of the fanned-out batch norm output, so it
        # must not write over it
        (build, (6,), {"fc1/activation:output": "in_place", "ln:output": "in_place"}),
        (
            images,
            (3, 4, 4),
            {
                "bn0:output": "in_place",
                "bn0:output:grad": "derivative_in_place",
                "bn1:output": "in_place",
                "ln:output": "in_place",
                "add:output:grad": "derivative_in_place",
            },
        ),
    ],
    ids=["vectors", "images"],
)
def test_planned_training_equals_unplanned(
    build: Callable[[], list[L.Layer]], input_shape: tuple[int, ...], shared: dict[str, str]
) -> None:
    """In a planned arena with dead bytes poisoned after every step, outputs written over
    inputs and derivatives over derivatives (the sharing these layers allow) give
    bit-identical training: the declared reads and scratch lifetimes are complete."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *input_shape)).astype(np.float32)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    plain_losses, plain_weights, _ = train(build, x, y, None)
    planned_losses, planned_weights, model = train(build, x, y, "greedy_by_size")
    rules = {t.name: t.shares[0].value for t in model.plan().tensors.values() if t.shares}
    for tensor, rule in shared.items():
        assert rules.get(tensor) == rule, f"{tensor} not shared by {rule}: {rules}"
    assert all(np.isfinite(plain_losses))
    np.testing.assert_array_equal(planned_losses, plain_losses)
    for name, values in plain_weights.items():
        np.testing.assert_array_equal(planned_weights[name], values, err_msg=name)
