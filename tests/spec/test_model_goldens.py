"""Whole training runs against NNTrainer's model goldens (``tests/data/nntrainer/models``).

Each golden was recorded from PyTorch (seed 1234) by NNTrainer's ``genModelTests_v2.py``
and ``genModelsMultiout_v2.py`` with ``recorder_v2.py``. Per iteration the file holds the
inputs, the labels, every parameter *before* that iteration's update (in the torch
module's order; fully-connected weights transposed to ``(in, out)``, which is edgetrain's
layout too) and the model output. NNTrainer's own check
(``test/unittest/models/models_test_utils.cpp``) loads the parameters at iteration 0,
then per iteration compares the parameters (from iteration 1 on) and the output. It
accepts ``|a - b| <= 1e-5`` element-wise (``Tensor::epsilon``) and otherwise falls back to
``mse <= 10 - 4`` (a typo for 1e-4 that accepts an MSE up to 6); we use only the strict
element-wise bound. The model definitions are NNTrainer's
``test/unittest/models/unittest_models.cpp`` and ``unittest_models_multiout.cpp``; the
loss each iteration is checked too (recomputed from the golden output and label).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain import optimizers as O
from goldens import read_model_golden

ATOL = 1e-5  # NNTrainer's Tensor::epsilon for golden comparisons

Build = Callable[[], tuple[list[L.Layer], O.Optimizer]]


@dataclass(frozen=True)
class GoldenModel:
    """One golden: how to build the model and how the file's tensors map onto it."""

    build: Build
    batch: int
    input_shape: tuple[int, ...]
    label_shape: tuple[int, ...]
    #: edgetrain weight names with their shapes, in the file's parameter order
    weights: tuple[tuple[str, tuple[int, ...]], ...]
    frozen: frozenset[str] = frozenset()


def _fc_weights(*layers: tuple[str, int, int]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    out: list[tuple[str, tuple[int, ...]]] = []
    for name, fan_in, unit in layers:
        out += [(f"{name}:weight", (fan_in, unit)), (f"{name}:bias", (unit,))]
    return tuple(out)


def _single_fc(optimizer: O.Optimizer, **fc: float) -> Build:
    """NNTrainer's makeFCSGD / makeFCAdam / makeFCAdamW: input 1:1:3, fc unit 4, mse."""

    def build() -> tuple[list[L.Layer], O.Optimizer]:
        return [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=4, name="fc", **fc)], optimizer

    return build


def _fc_relu_decay() -> tuple[list[L.Layer], O.Optimizer]:
    """The ini model ``fc_relu_decay``: torch gives fc.weight and fc1.bias weight_decay 0.9."""
    return [
        L.Input(shape=(3,), name="input"),
        L.FullyConnected(unit=10, name="dense", weight_decay=0.9),
        L.Activation("relu", name="act"),
        L.FullyConnected(unit=2, name="dense_1", bias_decay=0.9),
        L.Activation("sigmoid", name="act_1"),
    ], O.SGD(0.1)


def _non_trainable_fc(idx: int) -> Build:
    def build() -> tuple[list[L.Layer], O.Optimizer]:
        return [
            L.Input(shape=(3,), name="in"),
            L.FullyConnected(unit=10, name="fc1", activation="relu", trainable=idx != 1),
            L.FullyConnected(unit=10, name="fc2", activation="relu", trainable=idx != 2),
            L.FullyConnected(unit=2, name="fc3", activation="sigmoid", trainable=idx != 3),
        ], O.SGD(0.1)

    return build


def _add_operation() -> tuple[list[L.Layer], O.Optimizer]:
    """``out = x + fc(x)``: the input is read twice, so the graph adds a multiout node."""
    return [
        L.Input(shape=(2,), name="in"),
        L.FullyConnected(unit=2, name="fc", input_layers=["in"]),
        L.Addition(name="add_layer", input_layers=["in", "fc"]),
    ], O.SGD(0.1)


def _one_to_one() -> tuple[list[L.Layer], O.Optimizer]:
    """fc -> split a (width) -> b = a(0) + a(1)."""
    return [
        L.Input(shape=(1, 1, 3), name="in"),
        L.FullyConnected(unit=2, name="fc"),
        L.Split(name="a", input_layers=["fc"], axis=3),
        L.Addition(name="b", input_layers=["a(0)", "a(1)"]),
    ], O.SGD(0.1)


def _one_to_many() -> tuple[list[L.Layer], O.Optimizer]:
    """Every split output read twice or more: b = a0 + a1, c = a0 + a1, d = b + c + a2."""
    return [
        L.Input(shape=(1, 1, 2), name="in"),
        L.FullyConnected(unit=3, name="fc"),
        L.Split(name="a", input_layers=["fc"], axis=3),
        L.Addition(name="b", input_layers=["a(0)", "a(1)"]),
        L.Addition(name="c", input_layers=["a(0)", "a(1)"]),
        L.Addition(name="d", input_layers=["b", "c", "a(2)"]),
    ], O.SGD(0.1)


def _split_and_join() -> tuple[list[L.Layer], O.Optimizer]:
    """fc -> split a; c = fc(a(1)) listed before b = fc(a(0)); d = b + c."""
    return [
        L.Input(shape=(1, 1, 3), name="in"),
        L.FullyConnected(unit=2, name="fc"),
        L.Split(name="a", input_layers=["fc"], axis=3),
        L.FullyConnected(unit=3, name="c", input_layers=["a(1)"]),
        L.FullyConnected(unit=3, name="b", input_layers=["a(0)"]),
        L.Addition(name="d", input_layers=["b", "c"]),
    ], O.SGD(0.1)


def _split_conv(axis: int, number: int) -> Build:
    """1x1 conv2d (3 filters) on 3:4:5 -> split -> the sum of all parts."""

    def build() -> tuple[list[L.Layer], O.Optimizer]:
        return [
            L.Input(shape=(3, 4, 5), name="in"),
            L.Conv2D(name="conv", filters=3, kernel_size=(1, 1)),
            L.Split(name="split", input_layers=["conv"], axis=axis, split_number=number),
            L.Addition(name="add", input_layers=[f"split({i})" for i in range(number)]),
        ], O.SGD(0.1)

    return build


_CONV_WEIGHTS = (("conv:weight", (3, 3, 1, 1)), ("conv:bias", (3,)))

_NON_TRAINABLE_WEIGHTS = _fc_weights(("fc1", 3, 10), ("fc2", 10, 10), ("fc3", 10, 2))

GOLDENS: dict[str, GoldenModel] = {
    "fc_sgd": GoldenModel(_single_fc(O.SGD(0.001)), 2, (3,), (4,), _fc_weights(("fc", 3, 4))),
    "fc_adam": GoldenModel(
        _single_fc(O.Adam(0.1, beta1=0.9, beta2=0.999, epsilon=1e-8)),
        2, (3,), (4,), _fc_weights(("fc", 3, 4)),
    ),
    # NNTrainer sets the decay on the layer (weight_decay/bias_decay = 0.01); torch's
    # AdamW applied it to both, decoupled
    "fc_adamw": GoldenModel(
        _single_fc(
            O.AdamW(0.1, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0),
            weight_decay=0.01,
            bias_decay=0.01,
        ),
        2, (3,), (4,), _fc_weights(("fc", 3, 4)),
    ),
    "fc_relu_decay": GoldenModel(
        _fc_relu_decay, 3, (3,), (2,), _fc_weights(("dense", 3, 10), ("dense_1", 10, 2))
    ),
    **{
        f"non_trainable_fc_idx{i}": GoldenModel(
            _non_trainable_fc(i), 3, (3,), (2,), _NON_TRAINABLE_WEIGHTS,
            frozen=frozenset({f"fc{i}:weight", f"fc{i}:bias"}),
        )
        for i in (1, 2, 3)
    },
    "add_operation": GoldenModel(_add_operation, 1, (2,), (2,), _fc_weights(("fc", 2, 2))),
    "one_to_one": GoldenModel(_one_to_one, 5, (1, 1, 3), (1, 1, 1), _fc_weights(("fc", 3, 2))),
    "one_to_many": GoldenModel(_one_to_many, 5, (1, 1, 2), (1, 1, 1), _fc_weights(("fc", 2, 3))),
    # torch's parameter order: fc, fc1 (reads a0, NNTrainer's b), fc2 (reads a1, c)
    "split_and_join": GoldenModel(
        _split_and_join, 5, (1, 1, 3), (1, 1, 3), _fc_weights(("fc", 3, 2), ("b", 1, 3), ("c", 1, 3))
    ),
    "split_axis3_split_number5": GoldenModel(_split_conv(3, 5), 2, (3, 4, 5), (3, 4, 1), _CONV_WEIGHTS),
    "split_axis2_split_number4": GoldenModel(_split_conv(2, 4), 2, (3, 4, 5), (3, 1, 5), _CONV_WEIGHTS),
    "split_axis2_split_number2": GoldenModel(_split_conv(2, 2), 2, (3, 4, 5), (3, 2, 5), _CONV_WEIGHTS),
}

UNSUPPORTED: dict[str, str] = {
    "split_and_join_dangle": "two fully-connected layers share one weight (shared_from), "
    "which edgetrain does not support",
    "fc_unroll_single": "recurrent unrolling with weights shared between time steps "
    "(shared_from) and the constant_derivative loss are not supported",
    "fc_unroll_stacked": "recurrent realizer (unroll_for, recurrent_input/output) with "
    "shared weights and the constant_derivative loss are not supported",
    "fc_unroll_stacked_clipped": "recurrent realizer with shared weights, gradient "
    "clipping by global norm and the constant_derivative loss are not supported",
}


def run_golden(name: str, case: GoldenModel, dtype: type = np.float32) -> None:
    iterations, tensors = read_model_golden(name)
    per_iteration = len(tensors) // iterations
    assert per_iteration == 3 + len(case.weights), "golden layout does not match the model"
    layers, optimizer = case.build()
    model = Model(layers, loss="mse")
    model.compile(optimizer, batch_size=case.batch, seed=1234, dtype=dtype)
    previous: dict[str, np.ndarray] | None = None
    for i in range(iterations):
        x, y, *params, expected_out = tensors[i * per_iteration : (i + 1) * per_iteration]
        x = x.reshape(case.batch, *case.input_shape)
        y = y.reshape(case.batch, *case.label_shape)
        golden = {n: p.reshape(s) for (n, s), p in zip(case.weights, params, strict=True)}
        if i == 0:
            model.set_weights(golden)
        else:
            ours = model.get_weights()
            for weight, values in golden.items():
                np.testing.assert_allclose(
                    ours[weight], values, rtol=0, atol=ATOL,
                    err_msg=f"{name}: {weight} before iteration {i}",
                )
                assert previous is not None
                moved = not np.array_equal(previous[weight], values)
                # frozen weights stay bit-identical; the others must have been trained
                assert moved == (weight not in case.frozen), f"{name}: {weight} moved={moved}"
        previous = golden
        out = model.predict(x)
        np.testing.assert_allclose(
            out.reshape(-1), expected_out, rtol=0, atol=ATOL,
            err_msg=f"{name}: output at iteration {i}",
        )
        loss = model.train_step(x, y)
        expected_loss = float(np.mean((expected_out.astype(np.float64) - y.reshape(-1)) ** 2))
        assert loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-7), f"{name}: loss at {i}"


@pytest.mark.parametrize("name", sorted(GOLDENS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_golden(name: str, dtype: type) -> None:
    """float64 runs too: the goldens are float32 torch runs, within 1e-5 of exact."""
    run_golden(name, GOLDENS[name], dtype)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_model_golden(name: str) -> None:
    pytest.skip(UNSUPPORTED[name])


def test_every_model_golden_is_listed() -> None:
    from goldens import DATA

    present = {p.name.removesuffix(".nnmodelgolden") for p in (DATA / "models").iterdir()}
    assert present == set(GOLDENS) | set(UNSUPPORTED)


def test_a_wrong_update_is_caught() -> None:
    """The comparison is not vacuous: a doubled learning rate, or the weight decay left
    out, fails it."""
    sgd = GOLDENS["fc_sgd"]
    with pytest.raises(AssertionError):
        run_golden("fc_sgd", GoldenModel(_single_fc(O.SGD(0.002)), 2, (3,), (4,), sgd.weights))

    def no_decay() -> tuple[list[L.Layer], O.Optimizer]:
        return [
            L.Input(shape=(3,), name="input"),
            L.FullyConnected(unit=10, name="dense"),
            L.Activation("relu", name="act"),
            L.FullyConnected(unit=2, name="dense_1"),
            L.Activation("sigmoid", name="act_1"),
        ], O.SGD(0.1)

    decay = GOLDENS["fc_relu_decay"]
    with pytest.raises(AssertionError):
        run_golden("fc_relu_decay", GoldenModel(no_decay, 3, (3,), (2,), decay.weights))
