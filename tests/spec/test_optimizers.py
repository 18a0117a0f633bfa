"""Optimizers against their formulas written out here independently (float64 references),
over several steps, with and without momentum and decay; and the layer-level
regularizer/decay properties as they reach the update."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgetrain import ConfigError, Model
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.layers.base import WeightPenalty

STEPS = 6


def _gradients(shape: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.normal(size=shape) for _ in range(STEPS)]


def _run(optimizer: O.Optimizer, w0: np.ndarray, grads: list[np.ndarray], lrs: list[float],
         decay: float, dtype: Any) -> np.ndarray:
    weight = w0.astype(dtype)
    state = {name: np.zeros_like(weight) for name in optimizer.state_names()}
    for step, (g, lr) in enumerate(zip(grads, lrs), start=1):
        optimizer.apply(weight, g.astype(dtype), state, lr, step, decay=decay)
    return weight


def sgd_reference(w: np.ndarray, grads: list[np.ndarray], lrs: list[float], momentum: float,
                  decay: float) -> np.ndarray:
    """torch.optim.SGD (dampening 0, no nesterov): d = g + wd w; b = mu b + d (b = d at
    the first step); w -= lr b."""
    w = w.copy()
    buf = None
    for g, lr in zip(grads, lrs):
        d = g + decay * w
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + d
            d = buf
        w = w - lr * d
    return w


def adam_reference(w: np.ndarray, grads: list[np.ndarray], lrs: list[float], b1: float,
                   b2: float, eps: float, coupled: float, decoupled: float) -> np.ndarray:
    """torch.optim.Adam (coupled decay) / AdamW (decoupled decay), step by step."""
    w = w.copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        w = w * (1 - lr * decoupled)
        g = g + coupled * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


W0 = np.random.default_rng(5).normal(size=(4, 3))
LRS = [0.1, 0.05, 0.05, 0.02, 0.2, 0.01]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("decay", [0.0, 0.3])
def test_sgd_matches_formula(momentum: float, decay: float) -> None:
    grads = _gradients(W0.shape)
    expected = sgd_reference(W0, grads, LRS, momentum, decay)
    opt = O.SGD(0.1, momentum=momentum)
    np.testing.assert_allclose(_run(opt, W0, grads, LRS, decay, np.float64), expected, rtol=1e-12)
    np.testing.assert_allclose(_run(opt, W0, grads, LRS, decay, np.float32), expected, atol=2e-6)


@pytest.mark.parametrize("decay", [0.0, 0.2])
@pytest.mark.parametrize(("b1", "b2", "eps"), [(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3)])
def test_adam_matches_formula(decay: float, b1: float, b2: float, eps: float) -> None:
    grads = _gradients(W0.shape)
    expected = adam_reference(W0, grads, LRS, b1, b2, eps, coupled=decay, decoupled=0.0)
    opt = O.Adam(0.1, beta1=b1, beta2=b2, epsilon=eps)
    np.testing.assert_allclose(_run(opt, W0, grads, LRS, decay, np.float64), expected, rtol=1e-12)
    np.testing.assert_allclose(_run(opt, W0, grads, LRS, decay, np.float32), expected, atol=1e-5)


@pytest.mark.parametrize(("weight_decay", "layer_decay"), [(0.0, 0.0), (0.01, 0.0), (0.05, 0.1)])
def test_adamw_matches_formula(weight_decay: float, layer_decay: float) -> None:
    grads = _gradients(W0.shape)
    expected = adam_reference(
        W0, grads, LRS, 0.9, 0.999, 1e-8, coupled=0.0, decoupled=weight_decay + layer_decay
    )
    opt = O.AdamW(0.1, weight_decay=weight_decay)
    got = _run(opt, W0, grads, LRS, layer_decay, np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_adamw_without_decay_is_adam() -> None:
    grads = _gradients(W0.shape)
    adam = _run(O.Adam(0.1), W0, grads, LRS, 0.0, np.float64)
    adamw = _run(O.AdamW(0.1, weight_decay=0.0), W0, grads, LRS, 0.0, np.float64)
    np.testing.assert_array_equal(adam, adamw)


def test_defaults_are_torchs() -> None:
    adam = O.Adam()
    assert (adam.beta1, adam.beta2, adam.epsilon) == (0.9, 0.999, 1e-8)
    assert O.AdamW().weight_decay == 0.01
    assert O.SGD().momentum == 0.0
    assert O.SGD().state_names() == ()
    assert O.SGD(momentum=0.5).state_names() == ("momentum",)
    assert O.Adam().state_names() == ("m", "v")


@pytest.mark.parametrize(
    "make",
    [
        lambda: O.SGD(momentum=1.0),
        lambda: O.SGD(momentum=-0.1),
        lambda: O.SGD(0.0),
        lambda: O.SGD(-1.0),
        lambda: O.SGD(math.inf),
        lambda: O.Adam(beta1=1.0),
        lambda: O.Adam(beta2=-0.5),
        lambda: O.Adam(epsilon=0.0),
        lambda: O.AdamW(weight_decay=-0.01),
    ],
)
def test_bad_optimizer_settings_are_refused(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()


# -- the layer's regularizer and decay, through the model ------------------------------------


def _fc_model(**fc: Any) -> Model:
    model = Model(
        [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=2, name="fc", **fc)], loss="mse"
    )
    model.compile(O.SGD(0.1), batch_size=4, dtype=np.float64, seed=3)
    return model


def _fc_mse_gradients(x: np.ndarray, t: np.ndarray, w: np.ndarray, b: np.ndarray
                      ) -> tuple[float, np.ndarray, np.ndarray]:
    y = x @ w + b
    dy = 2.0 * (y - t) / y.size
    return float(np.mean((y - t) ** 2)), x.T @ dy, dy.sum(axis=0)


def test_l2_regularizer_adds_to_weight_gradient_and_loss() -> None:
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    model = _fc_model(weight_regularizer="l2norm", weight_regularizer_constant=0.5)
    before = model.get_weights()
    w, b = before["fc:weight"], before["fc:bias"]
    data_loss, gw, gb = _fc_mse_gradients(x, t, w, b)
    loss = model.train_step(x, t)
    after = model.get_weights()
    assert loss == pytest.approx(data_loss + 0.25 * float(np.sum(w * w)), rel=1e-12)
    np.testing.assert_allclose(after["fc:weight"], w - 0.1 * (gw + 0.5 * w), rtol=1e-12)
    # the bias is never regularized (NNTrainer's rule)
    np.testing.assert_allclose(after["fc:bias"], b - 0.1 * gb, rtol=1e-12)


def test_weight_and_bias_decay_are_coupled_for_sgd() -> None:
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    model = _fc_model(weight_decay=0.3, bias_decay=0.7)
    before = model.get_weights()
    w, b = before["fc:weight"], before["fc:bias"] + 0.5
    model.set_weights({"fc:bias": b})
    data_loss, gw, gb = _fc_mse_gradients(x, t, w, b)
    loss = model.train_step(x, t)
    after = model.get_weights()
    assert loss == pytest.approx(data_loss, rel=1e-12)  # decay is not a loss term
    np.testing.assert_allclose(after["fc:weight"], w - 0.1 * (gw + 0.3 * w), rtol=1e-12)
    np.testing.assert_allclose(after["fc:bias"], b - 0.1 * (gb + 0.7 * b), rtol=1e-12)


def test_frozen_layer_ignores_its_decay() -> None:
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    model = _fc_model(weight_decay=0.3, trainable=False, weight_regularizer="l2norm")
    # nothing trains: compile needs an optimizer but no gradient exists
    before = model.get_weights()
    model.train_step(x, t)
    after = model.get_weights()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("weight_regularizer", "l1"),
        ("weight_regularizer_constant", -1.0),
        ("weight_decay", -0.1),
        ("bias_decay", float("nan")),
        ("weight_decay", "lots"),
    ],
)
def test_bad_regularizer_settings_name_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        L.FullyConnected(unit=2, name="fc", **{key: value})
    assert err.value.key == key


def test_which_weights_take_which_penalty() -> None:
    """NNTrainer's assignment: kernels take the regularizer and weight_decay, biases and
    betas bias_decay, normalization scales weight_decay without the regularizer."""
    common = {"weight_regularizer": "l2norm", "weight_regularizer_constant": 0.5,
              "weight_decay": 0.1, "bias_decay": 0.2}
    fc = L.FullyConnected(unit=2, name="fc", **common)
    penalties = {w.name: fc.weight_penalty(w) for w in fc.setup([(4, 3)]).weights}
    assert penalties == {"weight": WeightPenalty(0.5, 0.1), "bias": WeightPenalty(0.0, 0.2)}
    bn = L.BatchNormalization(name="bn", **common)
    penalties = {w.name: bn.weight_penalty(w) for w in bn.setup([(4, 3)]).weights if w.trainable}
    assert penalties == {"gamma": WeightPenalty(0.0, 0.1), "beta": WeightPenalty(0.0, 0.2)}
    plain = L.FullyConnected(unit=2, name="plain")
    assert all(plain.weight_penalty(w) == WeightPenalty() for w in plain.setup([(4, 3)]).weights)
