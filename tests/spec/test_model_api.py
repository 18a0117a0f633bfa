"""The Model API: compile, train_step, fit, predict, evaluate, get/set_weights, seeding and
the errors of each."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgetrain import ConfigError, DataError, Model, ShapeError, StateError
from edgetrain import layers as L
from edgetrain import optimizers as O


def linear_model(**compile_args: Any) -> Model:
    model = Model([L.Input(shape=(3,), name="in"), L.FullyConnected(unit=2, name="fc")], loss="mse")
    if compile_args:
        model.compile(**compile_args)
    return model


def classifier(loss: str = "cross_entropy", activation: str = "softmax", dropout: bool = False) -> Model:
    layers: list[L.Layer] = [
        L.Input(shape=(4,), name="in"),
        L.FullyConnected(unit=8, name="hidden", activation="relu"),
    ]
    if dropout:
        layers.append(L.LAYER_TYPES["dropout"](name="drop", dropout_rate=0.3))
    layers.append(L.FullyConnected(unit=3, name="out", activation=activation))
    return Model(layers, loss=loss)


RNG = np.random.default_rng(21)
X = RNG.normal(size=(24, 3))
TRUE_W = np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 1.5]])
Y = X @ TRUE_W + np.array([0.3, -0.1])


# -- compile -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"dtype": np.float16}, "dtype"),
    ],
)
def test_compile_refuses_bad_settings(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        linear_model().compile(O.SGD(0.1), **args)


def test_training_needs_a_loss() -> None:
    model = Model([L.Input(shape=(3,), name="in"), L.FullyConnected(unit=2, name="fc")])
    with pytest.raises(ConfigError, match="loss"):
        model.compile(O.SGD(0.1))
    model.compile()  # inference only is fine
    assert model.predict(X).shape == (24, 2)
    with pytest.raises(ConfigError, match="unknown loss"):
        Model([L.Input(shape=(3,), name="in")], loss="hinge").compile()


def test_calls_before_compile_raise_state_errors() -> None:
    model = linear_model()
    for call in (lambda: model.train_step(X[:4], Y[:4]), lambda: model.predict(X),
                 model.get_weights, lambda: model.set_weights({}), lambda: model.fit(X, Y)):
        with pytest.raises(StateError, match="compile"):
            call()
    with pytest.raises(StateError):
        model.summary()


def test_inference_only_model_cannot_train() -> None:
    model = linear_model(batch_size=4)
    with pytest.raises(StateError, match="optimizer"):
        model.train_step(X[:4], Y[:4])


def test_compile_reports_shape_errors_with_layer_names() -> None:
    model = Model([L.Input(shape=(3,), name="in"), L.FullyConnected(unit=2, name="a"),
                   L.FullyConnected(unit=2, name="b", input_layers=["in"]),
                   L.Concat(name="cat", input_layers=["a", "b"], axis=1),
                   L.Addition(name="bad", input_layers=["cat", "in"])], loss="mse")
    with pytest.raises(ShapeError, match=r"'bad'.*'cat' gives \(4, 4\).*'in' gives \(4, 3\)"):
        model.compile(O.SGD(0.1), batch_size=4)


def test_recompiling_keeps_the_weights() -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4)
    model.train_step(X[:4], Y[:4])
    trained = model.get_weights()
    model.compile(O.Adam(0.01), batch_size=8, seed=99)
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, trained[name])


# -- train_step --------------------------------------------------------------------------------


def test_train_step_returns_the_batch_loss_before_the_update() -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4, dtype=np.float64)
    w = model.get_weights()
    expected = float(np.mean((X[:4] @ w["fc:weight"] + w["fc:bias"] - Y[:4]) ** 2))
    assert model.train_step(X[:4], Y[:4]) == pytest.approx(expected, rel=1e-12)
    assert model.iteration == 1
    assert not np.array_equal(model.get_weights()["fc:weight"], w["fc:weight"])


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (X[:3], Y[:3], "one batch of 4 samples, got 3"),
        (X[:4, :2], Y[:4], r"input 'in' expects samples of shape \(3\)"),
        (np.full((4, 3), np.nan), Y[:4], "NaN"),
        (X[:4], Y[:4, :1], "labels of shape"),
        (X[:4], np.full((4, 2), np.inf), "finite"),
        ([X[:4], X[:4]], Y[:4], "1 input"),
    ],
)
def test_train_step_refuses_bad_batches(x: Any, y: Any, match: str) -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4)
    before = model.get_weights()
    with pytest.raises(DataError, match=match):
        model.train_step(x, y)
    assert model.iteration == 0
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


def test_diverging_loss_is_reported() -> None:
    model = linear_model(optimizer=O.SGD(1e6), batch_size=4)
    with pytest.raises(DataError, match="lower the learning rate"):
        for _ in range(20):
            model.train_step(X[:4], Y[:4] * 1e3)


def test_integer_class_ids_equal_one_hot_labels() -> None:
    ids = np.array([0, 2, 1, 2])
    x = RNG.normal(size=(4, 4))
    a, b = classifier(), classifier()
    a.compile(O.SGD(0.5), batch_size=4, seed=3)
    b.compile(O.SGD(0.5), batch_size=4, seed=3)
    assert a.train_step(x, ids) == b.train_step(x, np.eye(3)[ids])
    for name, value in a.get_weights().items():
        np.testing.assert_array_equal(value, b.get_weights()[name])
    with pytest.raises(DataError, match=r"class ids must be in \[0, 2\]"):
        a.train_step(x, np.array([0, 1, 2, 3]))


# -- fit / predict / evaluate ------------------------------------------------------------------


def test_fit_learns_a_linear_map() -> None:
    model = linear_model(optimizer=O.Adam(0.05), batch_size=4, seed=1)
    history = model.fit(X, Y, epochs=60)
    assert len(history.loss) == 60 and history.accuracy == []
    assert history.loss[-1] < 1e-3 < history.loss[0]
    np.testing.assert_allclose(model.get_weights()["fc:weight"], TRUE_W, atol=0.05)
    assert model.evaluate(X, Y)["loss"] < 1e-3


def test_fit_validates_and_records_validation_metrics() -> None:
    model = linear_model(optimizer=O.SGD(0.05), batch_size=4)
    history = model.fit(X, Y, epochs=3, validation_split=0.25)
    assert len(history.val_loss) == 3
    history = model.fit(X, Y, epochs=2, validation_data=(X[:5], Y[:5]))
    assert len(history.val_loss) == 2
    with pytest.raises(ConfigError, match="epochs"):
        model.fit(X, Y, epochs=0)
    with pytest.raises(ConfigError, match="validation_split"):
        model.fit(X, Y, validation_split=1.0)
    with pytest.raises(DataError, match="fewer than one batch"):
        model.fit(X[:3], Y[:3])
    with pytest.raises(DataError, match="labels"):
        model.fit(X)


def test_predict_any_number_of_samples_matches_the_formula() -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4, dtype=np.float64)
    w = model.get_weights()
    for n in (1, 4, 7, 24):
        np.testing.assert_allclose(model.predict(X[:n]), X[:n] @ w["fc:weight"] + w["fc:bias"],
                                   rtol=1e-12)


@pytest.mark.parametrize(("loss", "activation"), [("cross_entropy", "softmax"),
                                                   ("cross_entropy", "none")])
def test_predict_returns_softmax_probabilities_with_cross_entropy(loss: str, activation: str) -> None:
    model = classifier(loss, activation)
    model.compile(O.SGD(0.1), batch_size=4)
    p = model.predict(RNG.normal(size=(6, 4)))
    assert p.shape == (6, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(p > 0)


def test_predict_returns_sigmoid_probabilities_with_sigmoid_cross_entropy() -> None:
    model = classifier("cross_entropy_sigmoid", "sigmoid")
    model.compile(O.SGD(0.1), batch_size=4)
    p = model.predict(RNG.normal(size=(5, 4)))
    assert np.all((p > 0) & (p < 1))
    assert not np.allclose(p.sum(axis=1), 1.0)


def test_evaluate_loss_and_accuracy() -> None:
    model = classifier()
    model.compile(O.SGD(0.1), batch_size=4, dtype=np.float64)
    x = RNG.normal(size=(10, 4))
    ids = RNG.integers(0, 3, size=10)
    p = model.predict(x)
    metrics = model.evaluate(x, ids)
    assert metrics["loss"] == pytest.approx(float(-np.mean(np.log(p[np.arange(10), ids]))), rel=1e-10)
    assert metrics["accuracy"] == pytest.approx(float(np.mean(p.argmax(axis=1) == ids)))


# -- weights -----------------------------------------------------------------------------------


def test_get_weights_returns_copies_and_set_weights_writes_through() -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4, dtype=np.float64)
    weights = model.get_weights()
    assert sorted(weights) == ["fc:bias", "fc:weight"]
    weights["fc:weight"][...] = 0
    assert np.any(model.get_weights()["fc:weight"] != 0)
    model.set_weights({"fc:weight": TRUE_W, "fc:bias": np.zeros(2)})
    np.testing.assert_allclose(model.predict(X[:4]), X[:4] @ TRUE_W)
    # the training program sees the new values too
    assert model.train_step(X[:4], X[:4] @ TRUE_W) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"fc:kernel": np.zeros((3, 2))}, "unknown weight name"),
        ({"fc:weight": np.zeros((2, 3))}, r"has shape \(3, 2\), got \(2, 3\)"),
        ({"fc:bias": np.array([0.0, np.nan])}, "NaN"),
    ],
)
def test_set_weights_checks_everything_before_writing(weights: dict[str, Any], match: str) -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4)
    before = model.get_weights()
    with pytest.raises(ConfigError, match=match):
        model.set_weights({"fc:weight": np.ones((3, 2)), **weights})
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


# -- seeding -------------------------------------------------------------------------------------


def _run(seed: int) -> tuple[dict[str, np.ndarray], list[float]]:
    model = classifier(dropout=True)
    model.compile(O.Adam(0.01), batch_size=4, seed=seed)
    x = np.random.default_rng(0).normal(size=(20, 4))
    ids = np.random.default_rng(1).integers(0, 3, size=20)
    history = model.fit(x, ids, epochs=3, validation_split=0.2)
    return model.get_weights(), history.loss + history.val_loss


def test_same_seed_gives_the_same_weights_and_training_run() -> None:
    (wa, la), (wb, lb) = _run(7), _run(7)
    assert la == lb
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name])
    wc, lc = _run(8)
    assert lc != la
    assert not np.array_equal(wc["hidden:weight"], wa["hidden:weight"])


def test_summary_lists_layers_shapes_and_parameters() -> None:
    model = linear_model(optimizer=O.SGD(0.1), batch_size=4)
    text = model.summary()
    assert "fc" in text and "(2)" in text and "total parameters: 8" in text
