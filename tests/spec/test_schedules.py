"""Learning-rate schedules: values at chosen iterations (NNTrainer's own test values where
it has them, ``test/unittest/unittest_nntrainer_lr_scheduler.cpp``), bad settings, and the
model using the rate of the iteration it runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgetrain import ConfigError, Model
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain import schedules as S


def test_constant() -> None:
    schedule = S.Constant(0.5)
    assert [schedule.lr_at(i) for i in (0, 1, 100)] == [0.5, 0.5, 0.5]


def test_exponential_is_continuous() -> None:
    schedule = S.Exponential(1.0, decay_rate=0.9, decay_steps=1)
    assert schedule.lr_at(0) == 1.0
    assert schedule.lr_at(1) == pytest.approx(0.9)
    assert schedule.lr_at(3) == pytest.approx(0.9**3)
    half = S.Exponential(0.1, decay_rate=0.5, decay_steps=4)
    assert half.lr_at(2) == pytest.approx(0.1 * 0.5**0.5)  # not a staircase
    assert half.lr_at(8) == pytest.approx(0.025)


def test_step_switches_after_each_boundary() -> None:
    schedule = S.Step(iterations=[10, 20, 30], learning_rates=[1.0, 0.1, 0.01, 0.001])
    expected = {0: 1.0, 5: 1.0, 10: 1.0, 11: 0.1, 15: 0.1, 20: 0.1, 21: 0.01, 25: 0.01,
                30: 0.01, 31: 0.001, 35: 0.001, 1000: 0.001}
    assert {i: schedule.lr_at(i) for i in expected} == expected
    single = S.Step(iterations=[1], learning_rates=[1.0, 0.1])
    assert [single.lr_at(i) for i in (0, 1, 2, 3)] == [1.0, 1.0, 0.1, 0.1]


def test_cosine_restarts_every_decay_steps() -> None:
    schedule = S.Cosine(max_learning_rate=1.0, decay_steps=4, min_learning_rate=0.2)
    values = [schedule.lr_at(i) for i in range(9)]
    expected = [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * (i % 4) / 4)) for i in range(9)]
    assert values == pytest.approx(expected)
    assert values[0] == values[4] == values[8] == pytest.approx(1.0)
    assert values[2] == pytest.approx(0.6)
    assert all(0.2 <= v <= 1.0 for v in values)


def test_linear_decays_then_stays_at_minimum() -> None:
    schedule = S.Linear(max_learning_rate=1.0, decay_steps=4, min_learning_rate=0.2)
    assert [schedule.lr_at(i) for i in range(7)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2])


def test_a_number_means_a_constant_schedule() -> None:
    assert isinstance(S.as_schedule(0.3), S.Constant)
    step = S.Step([1], [0.1, 0.01])
    assert S.as_schedule(step) is step
    assert O.SGD(step).schedule is step
    assert set(S.SCHEDULES) == {"constant", "exponential", "step", "cosine", "linear"}


@pytest.mark.parametrize(
    "make",
    [
        lambda: S.Constant(0.0),
        lambda: S.Constant(float("nan")),
        lambda: S.Constant("fast"),
        lambda: S.Exponential(0.1, 0.9, 0),
        lambda: S.Exponential(0.1, 0.9, 0.5),
        lambda: S.Exponential(0.1, -0.9, 10),
        lambda: S.Step([1, 2], [0.1, 0.01]),
        lambda: S.Step([2, 1], [0.1, 0.01, 0.001]),
        lambda: S.Step([1, 1], [0.1, 0.01, 0.001]),
        lambda: S.Step([-1], [0.1, 0.01]),
        lambda: S.Cosine(1.0, 10, min_learning_rate=2.0),
        lambda: S.Cosine(1.0, 0),
        lambda: S.Linear(1.0, 10, min_learning_rate=-0.1),
        lambda: S.Linear(1.0, True),
    ],
)
def test_bad_schedules_are_refused(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()


def test_model_uses_the_rate_of_each_iteration() -> None:
    """``y = x W`` with mse: each update is ``-lr * x^T dy``, so the rate can be read back."""
    rng = np.random.default_rng(4)
    x, t = rng.normal(size=(2, 3)), rng.normal(size=(2, 1))
    schedule = S.Step(iterations=[0, 1], learning_rates=[0.1, 0.01, 0.001])
    model = Model([L.Input(shape=(3,), name="in"), L.FullyConnected(unit=1, bias=False, name="fc")],
                  loss="mse")
    model.compile(O.SGD(schedule), batch_size=2, dtype=np.float64)
    for rate in (0.1, 0.01, 0.001, 0.001):
        w = model.get_weights()["fc:weight"]
        grad = x.T @ (2.0 * (x @ w - t) / t.size)
        model.train_step(x, t)
        np.testing.assert_allclose(model.get_weights()["fc:weight"], w - rate * grad, rtol=1e-12)
