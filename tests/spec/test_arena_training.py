"""Training inside the plan: an arena laid out by each planner computes exactly what the
unplanned (one array per tensor) execution computes, bit for bit, on every model here;
with NaN poisoning of dead bytes, so a tensor read outside its planned lifetime would
show up as a wrong number."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.optimizers import SGD, Adam
from edgetrain.planning import ArenaStore, SharingRule, check_plan
from planning_models import BUILDERS, _convnet, _mlp


def _data(
    input_shape: tuple[int, ...], loss: str, model: Model, n: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, *input_shape)).astype(np.float32)
    out_shape = model.program.tensors[model.program.output].shape[1:]
    if loss.startswith("cross_entropy") and loss != "cross_entropy_sigmoid":
        y = rng.integers(0, out_shape[-1], size=n)
        return x, y
    return x, rng.random(size=(n, *out_shape)).astype(np.float32)


def _run(
    name: str, planner: str | None, poison: bool, dtype: type = np.float32
) -> tuple[list[float], Model, np.ndarray]:
    layers, loss, shape, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(
        optimizer(), batch_size=4, seed=11, dtype=dtype, planner=planner, debug_poison=poison
    )
    x, y = _data(shape, loss, model, 12)
    losses = [model.train_step(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8, 0)]
    history = model.fit(x, y, epochs=2, shuffle=True)
    losses += history.loss
    return losses, model, x


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("planner", ["greedy_by_size", "sorted", "naive"])
def test_planned_training_equals_unplanned_bit_for_bit(name: str, planner: str) -> None:
    want_losses, want, x = _run(name, None, False)
    got_losses, got, _ = _run(name, planner, planner == "greedy_by_size")
    assert isinstance(got._trainer().store, ArenaStore)
    assert got_losses == want_losses
    want_weights, got_weights = want.get_weights(), got.get_weights()
    assert want_weights.keys() == got_weights.keys()
    for key in want_weights:
        np.testing.assert_array_equal(got_weights[key], want_weights[key], err_msg=key)
    np.testing.assert_array_equal(got.predict(x), want.predict(x))
    np.testing.assert_array_equal(got.predict(x[:3]), want.predict(x[:3]))
    check_plan(got.program, got.plan(planner))


@pytest.mark.parametrize("name", ["mlp", "residual"])
def test_float64_training_in_the_arena_is_exact(name: str) -> None:
    want_losses, want, x = _run(name, None, False, np.float64)
    got_losses, got, _ = _run(name, "greedy_by_size", True, np.float64)
    assert got_losses == want_losses
    for key, value in want.get_weights().items():
        np.testing.assert_array_equal(got.get_weights()[key], value)
    np.testing.assert_array_equal(got.predict(x), want.predict(x))


def test_every_sharing_rule_is_exercised_by_the_models() -> None:
    rules: set[SharingRule] = set()
    for name in BUILDERS:
        layers, loss, _, optimizer = BUILDERS[name]()
        model = Model(layers, loss=loss)
        model.compile(optimizer(), batch_size=2)
        rules |= {t.shares[0] for t in model.plan().tensors.values() if t.shares}
    assert rules == set(SharingRule)


def test_weights_live_in_the_arena_and_are_shared_with_inference() -> None:
    layers, loss, shape, optimizer = _mlp()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, debug_poison=True)
    store = model._trainer().store
    assert isinstance(store, ArenaStore)
    weight = store["fc1:weight"]
    assert np.shares_memory(weight, store.arena)
    x, y = _data(shape, loss, model, 4)
    before = model.predict(x)
    model.set_weights({"fc1:weight": np.zeros_like(weight)})
    assert not np.any(store["fc1:weight"])
    after = model.predict(x)  # the inference program (batch 4 and 3) sees the new weights
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(model.predict(x[:3]), after[:3])
    model.train_step(x, y)
    np.testing.assert_array_equal(model.get_weights()["fc1:weight"], store["fc1:weight"])


def test_recompiling_keeps_weights_in_the_new_arena() -> None:
    layers, loss, shape, optimizer = _convnet()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4)
    x, y = _data(shape, loss, model, 8)
    model.train_step(x[:4], y[:4])
    weights = model.get_weights()
    model.compile(optimizer(), batch_size=2, planner="sorted")
    for key, value in model.get_weights().items():
        np.testing.assert_array_equal(value, weights[key])
    store = model._trainer().store
    assert isinstance(store, ArenaStore) and store.plan.planner == "sorted"
    assert np.shares_memory(
        store["conv1:filter" if "conv1:filter" in store.arrays else "conv1:weight"], store.arena
    )


def test_unplanned_compile_uses_one_array_per_tensor() -> None:
    layers, loss, _, optimizer = _mlp()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, planner=None)
    assert not isinstance(model._trainer().store, ArenaStore)
    assert model.plan().planner == "greedy_by_size"


def test_poison_exposes_a_wrong_lifetime() -> None:
    """Shorten one activation's planned life by hand: with poisoning, training reads NaN."""
    from dataclasses import replace

    layers, loss, shape, optimizer = _mlp()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, debug_poison=True)
    program = model.program
    plan = model.plan()
    victim = plan.buffers["x:output"]  # read by fc1's calc-gradient late in the backward pass
    broken = replace(
        plan, buffers={**plan.buffers, victim.name: replace(victim, last=victim.first + 1)}
    )
    store = ArenaStore(program.tensors, broken, poison=True)
    for name, value in model.get_weights().items():
        np.copyto(store[name], value)
    trainer = model._trainer()
    trainer.store = store
    x, y = _data(shape, loss, model, 4)
    trainer.train_step([x], y, 0.1)
    assert np.isnan(store["fc1:weight"]).any()


def test_unknown_planner_is_a_config_error() -> None:
    from edgetrain.errors import ConfigError

    layers, loss, _, optimizer = _mlp()
    with pytest.raises(ConfigError, match="unknown planner 'best'.*greedy_by_size"):
        Model(layers, loss=loss).compile(optimizer(), planner="best")


def test_zero_filled_derivative_of_a_dangling_output_in_a_poisoned_arena() -> None:
    def build() -> Model:
        layers = [
            L.Input(shape=(5,), name="x"),
            L.FullyConnected(unit=4, activation="relu", name="trunk"),
            L.FullyConnected(unit=3, name="dangling", input_layers="trunk"),  # nobody reads it
            L.FullyConnected(unit=2, name="head", input_layers="trunk"),
        ]
        return Model(layers, loss="mse")

    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    y = rng.random(size=(4, 2)).astype(np.float32)
    runs = []
    for planner, poison in ((None, False), ("greedy_by_size", True)):
        model = build()
        model.compile(SGD(0.1), batch_size=4, planner=planner, debug_poison=poison)
        assert any("dangling:output:grad" in s.zero_fill for s in model.program.steps)
        runs.append(([model.train_step(x, y) for _ in range(3)], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][key], value)
    np.testing.assert_array_equal(runs[1][1]["dangling:weight"], runs[0][1]["dangling:weight"])


def test_embedding_reshape_conv1d_model_trains_bit_exactly() -> None:
    def build() -> Model:
        layers = [
            L.Input(shape=(1, 1, 6), name="ids"),
            L.Embedding(in_dim=10, out_dim=4, name="embed"),
            L.Reshape(target_shape=(4, 1, 6), name="reshape"),
            L.Conv1D(filters=3, kernel_size=3, padding="causal", name="conv", activation="tanh"),
            L.Flatten(name="flat"),
            L.FullyConnected(unit=2, name="out"),
        ]
        return Model(layers, loss="mse")

    rng = np.random.default_rng(4)
    ids = rng.integers(0, 10, size=(8, 1, 1, 6)).astype(np.float32)
    y = rng.random(size=(8, 2)).astype(np.float32)
    runs = []
    for planner, poison in ((None, False), ("greedy_by_size", True), ("sorted", True)):
        model = build()
        model.compile(Adam(0.01), batch_size=4, planner=planner, debug_poison=poison)
        losses = [model.train_step(ids[i : i + 4], y[i : i + 4]) for i in (0, 4, 0)]
        runs.append((losses, model.get_weights(), model.predict(ids)))
    for losses, weights, out in runs[1:]:
        assert losses == runs[0][0]
        for key, value in runs[0][1].items():
            np.testing.assert_array_equal(weights[key], value)
        np.testing.assert_array_equal(out, runs[0][2])
    shares = {t.name: t.shares for t in model.plan().tensors.values() if t.shares}
    assert shares["reshape:output"] == (SharingRule.VIEW, "embed:output")


def test_a_layer_that_hides_a_read_is_caught() -> None:
    """A sigmoid whose derivative reads its output but declares no read: the planner ends
    the output's life early. With the naive planner (no reuse) and poisoning the hidden
    read sees NaN; with reuse it sees another tensor's numbers, so training differs from
    the unplanned run."""
    from edgetrain.errors import DataError

    def build(lying: bool) -> Model:
        sigmoid = L.Activation("sigmoid", name="sig")
        if lying:
            sigmoid.derivative_reads = frozenset()
        layers = [
            L.Input(shape=(4,), name="x"),
            L.FullyConnected(unit=6, name="fc1"),
            sigmoid,
            L.FullyConnected(unit=6, name="fc2"),
            L.FullyConnected(unit=2, name="out"),
        ]
        return Model(layers, loss="mse")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4)).astype(np.float32)
    y = rng.random(size=(4, 2)).astype(np.float32)

    def train(lying: bool, planner: str | None) -> list[float]:
        model = build(lying)
        model.compile(SGD(0.1), batch_size=4, planner=planner, debug_poison=planner is not None)
        return [model.train_step(x, y) for _ in range(3)]

    reference = train(False, None)
    assert train(True, None) == reference  # one array per tensor hides the lie
    assert train(False, "naive") == reference
    with pytest.raises(DataError, match="loss became nan"):
        train(True, "naive")
    assert train(False, "greedy_by_size") == reference
    try:
        assert train(True, "greedy_by_size") != reference
    except DataError:
        pass
