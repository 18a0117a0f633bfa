"""Recompute instead of keep (``spec/recompute.md``): training compiled with
``recompute=True`` computes exactly the bits of training without it, in poisoned arenas of
every planner; the recomputed activation is out of the plan between its forward and
backward uses; the arena shrinks; the checkers accept the plans and swap schedules and
refuse a broken recompute."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.layers.base import StepKind
from edgetrain.optimizers import SGD, Adam, Optimizer
from edgetrain.planning import PlanCheckError, check_plan, check_swap, plan_memory, plan_swap
from edgetrain.planning.lifetimes import forward_step_count
from edgetrain.planning.recompute import choose_recompute, pooling_without_argmax
from edgetrain.program import Program
from gradcheck import make_context
from planning_models import BUILDERS, random_models

Built = tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]


def _vgg_like() -> Built:
    """conv -> bn -> relu blocks with max pooling, as VGG-16 has them, plus a sigmoid
    after a batch norm and an overlapping, padded max pool."""
    layers: list[L.Layer] = [
        L.Input(shape=(3, 8, 8), name="x"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="c1"),
        L.BatchNormalization(name="c1_bn", activation="relu"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="c2"),
        L.BatchNormalization(name="c2_bn", activation="relu"),
        L.Pooling2D("max", pool_size=2, stride=2, name="p1"),
        L.Conv2D(filters=6, kernel_size=3, padding=1, bias=False, name="c3"),
        L.BatchNormalization(name="c3_bn", activation="sigmoid"),
        L.Pooling2D("max", pool_size=3, stride=1, padding=1, name="p2"),
        L.Conv2D(filters=6, kernel_size=3, padding=1, bias=False, name="c4"),
        L.BatchNormalization(name="c4_bn", activation="relu"),
        L.Pooling2D("max", pool_size=2, stride=2, name="p3"),
        L.Flatten(name="flat"),
        L.FullyConnected(unit=5, activation="softmax", name="out"),
    ]
    return layers, "cross_entropy", (3, 8, 8), lambda: SGD(0.05, momentum=0.9)


def _norms() -> Built:
    """A layer norm before tanh, a batch norm before leaky relu read by two layers
    through a fan-out (views: not recomputed), and a batch norm before relu whose
    output a dropout overwrites in place (its bytes stay kept: not recomputed)."""
    layers: list[L.Layer] = [
        L.Input(shape=(6,), name="x"),
        L.FullyConnected(unit=8, name="fc1"),
        L.LayerNormalization(name="ln", activation="tanh"),
        L.FullyConnected(unit=8, name="fc2"),
        L.BatchNormalization(name="bn", activation="leaky_relu"),
        L.FullyConnected(unit=8, name="left", input_layers="bn"),
        L.FullyConnected(unit=8, name="right", input_layers="bn"),
        L.Addition(name="add", input_layers="left, right"),
        L.BatchNormalization(name="bn2", activation="relu"),
        L.Dropout(dropout_rate=0.3, name="drop"),
        L.FullyConnected(unit=3, name="out"),
    ]
    return layers, "mse", (6,), lambda: Adam(0.01)


MODELS: dict[str, Callable[[], Built]] = {"vgg_like": _vgg_like, "norms": _norms, **BUILDERS}


def _data(model: Model, shape: tuple[int, ...], loss: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    out = model.program.tensors[model.program.output].shape[1:]
    if loss == "cross_entropy":
        return x, rng.integers(0, out[-1], size=n)
    return x, rng.random(size=(n, *out)).astype(np.float32)


def _train(build: Callable[[], Built], **options: Any) -> tuple[list[float], Model, np.ndarray]:
    layers, loss, shape, optimizer = build()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, seed=7, **options)
    x, y = _data(model, shape, loss, 12)
    losses = [model.train_step(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8, 0)]
    losses += model.fit(x, y, epochs=2, shuffle=True).loss
    return losses, model, x


def _same(got: tuple[list[float], Model, np.ndarray], want: tuple[list[float], Model, np.ndarray]) -> None:
    assert got[0] == want[0]
    got_w, want_w = got[1].get_weights(), want[1].get_weights()
    assert got_w.keys() == want_w.keys()
    for key, value in want_w.items():
        np.testing.assert_array_equal(got_w[key], value, err_msg=key)
    np.testing.assert_array_equal(got[1].predict(got[2]), want[1].predict(want[2]))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("planner", ["greedy_by_size", "sorted", "naive", None])
def test_recompute_trains_bit_for_bit_as_without(name: str, planner: str | None) -> None:
    want = _train(MODELS[name], planner=None)
    got = _train(MODELS[name], planner=planner, debug_poison=planner is not None, recompute=True)
    _same(got, want)
    if planner is not None:
        check_plan(got[1].program, got[1].plan(planner))


def test_float64_recompute_is_exact() -> None:
    want = _train(_vgg_like, planner=None, dtype=np.float64)
    got = _train(_vgg_like, debug_poison=True, recompute=True, dtype=np.float64)
    _same(got, want)


@st.composite
def norm_chains(draw: st.DrawFn) -> Built:
    """Chains of dense -> batch/layer norm -> activation blocks, any layer frozen, some
    followed by a dropout, some read again by a side branch concatenated at the end."""
    width = draw(st.integers(2, 5))
    layers: list[L.Layer] = [L.Input(shape=(width,), name="x")]
    previous, sides = "x", []
    for i in range(draw(st.integers(1, 4))):
        layers.append(
            L.FullyConnected(unit=width, name=f"fc{i}", input_layers=previous, trainable=draw(st.booleans()))
        )
        norm = L.BatchNormalization if draw(st.booleans()) else L.LayerNormalization
        act = draw(st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu"]))
        layers.append(norm(name=f"n{i}", activation=act, trainable=draw(st.booleans())))
        previous = f"n{i}"
        after = draw(st.sampled_from(["none", "none", "dropout", "side"]))
        if after == "dropout":
            layers.append(L.Dropout(dropout_rate=0.25, name=f"d{i}"))
            previous = f"d{i}"
        elif after == "side":
            layers.append(L.FullyConnected(unit=2, name=f"side{i}", input_layers=previous))
            sides.append(f"side{i}")
    if sides:
        layers.append(L.Concat(axis=1, name="cat", input_layers=[previous, *sides]))
        previous = "cat"
    layers.append(L.FullyConnected(unit=3, name="head", input_layers=previous))
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    return layers, loss, (width,), (lambda: Adam(0.01)) if draw(st.booleans()) else (lambda: SGD(0.1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(norm_chains(), random_models()))
def test_random_models_train_bit_for_bit_with_recompute(built: Built) -> None:
    want = _train(lambda: built, planner=None)
    layers, loss, shape, optimizer = built
    fresh = [type(layer)(**_rebuild_args(layer)) for layer in layers]
    got = _train(lambda: (fresh, loss, shape, optimizer), debug_poison=True, recompute=True)
    _same(got, want)
    check_plan(got[1].program, got[1].plan())


def test_norm_chains_exercise_recompute() -> None:
    """The strategy above does reach recompute steps (with and without dropouts)."""
    found = []

    @settings(max_examples=20, deadline=None, database=None, derandomize=True)
    @given(norm_chains())
    def collect(built: Built) -> None:
        layers, loss, _, optimizer = built
        model = Model(layers, loss=loss)
        model.compile(optimizer(), batch_size=2, recompute=True)
        found.append(len(model.program.recompute))

    collect()
    assert sum(n > 0 for n in found) >= 5


def _rebuild_args(layer: L.Layer) -> dict[str, Any]:
    args: dict[str, Any] = dict(layer.config())
    args.update(name=layer.name, input_layers=layer.input_layers, trainable=layer.trainable)
    if layer.activation:
        args["activation"] = layer.activation
    return args


def _compiled(build: Callable[[], Built], recompute: bool) -> Model:
    layers, loss, _, optimizer = build()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, recompute=recompute)
    return model


def test_which_activations_and_pools_are_recomputed() -> None:
    program = _compiled(_vgg_like, True).program
    assert sorted(program.recompute) == [f"c{i}_bn/activation" for i in (1, 2, 3, 4)]
    # p3's output is read in the backward pass through flatten's view: its buffer is kept
    assert not [n for n in program.tensors if n.endswith(":argmax")]
    # a max pool right after a convolution: the input would be kept only for it
    layers: list[L.Layer] = [
        L.Input(shape=(1, 4, 4), name="x"),
        L.Conv2D(filters=2, kernel_size=3, padding=1, name="c"),
        L.Pooling2D("max", pool_size=2, stride=2, name="p"),
        L.Flatten(name="flat"),
        L.FullyConnected(unit=2, name="out"),
    ]
    model = Model(layers, loss="mse")
    model.compile(SGD(0.1), batch_size=2, recompute=True)
    assert "p:scratch:argmax" in model.program.tensors
    norms = _compiled(_norms, True).program
    assert sorted(norms.recompute) == ["ln/activation"]
    assert choose_recompute(_compiled(_norms, False).program) == ["ln/activation"]


def test_recomputed_tensor_is_out_of_the_plan_between_forward_and_backward() -> None:
    model = _compiled(_vgg_like, True)
    program, plan = model.program, model.plan()
    forward_end = forward_step_count(program)
    for node, r in program.recompute.items():
        kept = plan.buffers[plan.tensors[r.tensor].buffer]
        assert kept.last < forward_end, node  # the forward bytes die in the forward pass
        again = plan.tensors[r.recomputed]
        at = program.steps.index(next(s for s in program.steps if s.kind is StepKind.RECOMPUTE and s.node == node))
        assert again.first == at and again.writes == (at,)
        assert program.steps[at + 1].kind in (StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE)
        assert at + 1 in again.reads  # the very next step is the first reader
        # nothing holds the activation's value from the end of its forward use to at
        assert not any(
            plan.tensors[m].first <= at - 1 and plan.tensors[m].last >= forward_end
            for m in kept.members
        )


def test_the_arena_and_the_bound_shrink() -> None:
    without = _compiled(_vgg_like, False).plan()
    with_ = _compiled(_vgg_like, True).plan()
    assert with_.lower_bound_bytes < without.lower_bound_bytes
    for planner in ("greedy_by_size", "sorted"):
        assert with_.planners[planner] < without.planners[planner]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_bound_never_grows(name: str) -> None:
    """(The small models here peak where nothing is recomputed, at the dense layers.)"""
    without = _compiled(MODELS[name], False).plan()
    assert _compiled(MODELS[name], True).plan().lower_bound_bytes <= without.lower_bound_bytes


def test_without_recompute_nothing_changes_and_pooling_keeps_its_argmax() -> None:
    layers, loss, _, optimizer = _vgg_like()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, recompute=True)
    model.compile(optimizer(), batch_size=4)  # the same layer objects, recompiled
    program = model.program
    assert not program.recompute
    assert all(s.kind is not StepKind.RECOMPUTE for s in program.steps)
    assert "p1:scratch:argmax" in program.tensors
    assert pooling_without_argmax(program) == ["p3", "p2", "p1"]  # backward order


def test_inference_is_not_recomputed() -> None:
    layers, loss, shape, _ = _vgg_like()
    model = Model(layers, loss=loss)
    model.compile(None, batch_size=2, recompute=True)
    assert not model.program.recompute
    assert model.predict(np.zeros((2, *shape), np.float32)).shape == (2, 5)


@pytest.mark.parametrize("planner", ["greedy_by_size", "sorted", "naive"])
def test_checker_validates_plans_with_recompute(planner: str) -> None:
    for name in MODELS:
        program = _compiled(MODELS[name], True).program
        check_plan(program, plan_memory(program, planner))


def _broken(program: Program, how: str) -> Program:
    node, r = next(iter(program.recompute.items()))
    steps = list(program.steps)
    at = next(k for k, s in enumerate(steps) if s.kind is StepKind.RECOMPUTE and s.node == node)
    if how == "late":  # after its first reader
        step = steps.pop(at)
        steps.insert(at + 1, step)
        return replace(program, steps=steps)
    if how == "reads":
        return replace(program, recompute={**program.recompute, node: replace(r, reads=r.reads[:1])})
    # "stale": the normalization's weights updated before the recompute
    source = next(k for k, s in enumerate(steps) if s.kind is StepKind.APPLY_GRADIENT and s.node == r.source)
    step = steps.pop(source)
    steps.insert(at, step)
    return replace(program, steps=steps)


@pytest.mark.parametrize("how", ["late", "reads", "stale"])
def test_checker_refuses_a_broken_recompute(how: str) -> None:
    program = _broken(_compiled(_vgg_like, True).program, how)
    with pytest.raises(PlanCheckError, match="recompute of"):
        check_plan(program, plan_memory(program))


def test_a_late_recompute_reads_poison() -> None:
    """Run against a plan whose recompute step comes after its first reader: the reader
    sees the poisoned (or another tensor's) bytes and training differs."""
    model = _compiled(_vgg_like, True)
    program = _broken(model.program, "late")
    from edgetrain.executor import Executor
    from edgetrain.planning import ArenaStore

    store = ArenaStore(program.tensors, plan_memory(program, "naive"), poison=True)
    executor = Executor(program, store, SGD(0.05))
    for name, value in model.get_weights().items():
        np.copyto(store[name], value)
    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        executor.train_step([x], np.eye(5, dtype=np.float32)[[0, 1, 2, 3]], 0.05)
    assert np.isnan(store["c2:weight"]).all()  # c2's gradient read c1's relu output


@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_swap_schedules_with_recompute_check(lookahead: int) -> None:
    for name in ("vgg_like", "convnet", "residual"):
        program = _compiled(MODELS[name], True).program
        check_swap(program, plan_swap(program, None, lookahead=lookahead))


def test_swapped_training_with_recompute_is_exact(tmp_path: Any) -> None:
    want = _train(_vgg_like, planner=None)
    got = _train(_vgg_like, recompute=True, swap=True, lookahead=1, swap_dir=tmp_path, debug_poison=True)
    _same(got, want)
    got[1].close()


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("stride", [1, 2])
def test_max_pooling_without_argmax_routes_exactly_as_with_it(padding: int, stride: int) -> None:
    """Inputs drawn from a few values (many ties, signed zeros, -inf): the derivative
    found again from input and output is the one the kept argmax gives, bit for bit."""
    rng = np.random.default_rng(padding * 2 + stride)
    values = np.array([-np.inf, -1.0, -0.0, 0.0, 0.5, 1.0], np.float32)
    x = rng.choice(values, size=(2, 3, 7, 6))
    results = []
    for keep in (True, False):
        layer = L.Pooling2D("max", pool_size=3, stride=stride, padding=padding, name="p")
        layer.keep_argmax = keep
        ctx = make_context(layer, [x.copy()], dtype=np.float32)
        layer.forward(ctx)
        ctx.grad_outputs = [rng.normal(size=ctx.outputs[0].shape).astype(np.float32)] if keep else [results[0][2]]
        ctx.grad_inputs = [np.full(x.shape, np.nan, np.float32)]
        layer.calc_derivative(ctx)
        results.append((ctx.outputs[0].copy(), ctx.grad_inputs[0].copy(), ctx.grad_outputs[0]))
        assert ("argmax" in ctx.scratch) is keep
    np.testing.assert_array_equal(results[1][0], results[0][0])
    assert results[1][1].tobytes() == results[0][1].tobytes()


# -- the command line and the model file ----------------------------------------------------

CONV_INI = """
[Model]
type = NeuralNetwork
loss = cross
batch_size = 16
epochs = 1
{recompute}
[Optimizer]
type = sgd
learning_rate = 0.05
momentum = 0.9

[x]
type = input
input_shape = 1:8:8

[conv]
type = conv2d
filters = 4
kernel_size = 3
padding = 1
disable_bias = true

[conv_bn]
type = batch_normalization
activation = relu

[conv2]
type = conv2d
filters = 4
kernel_size = 3
padding = 1

[conv2_bn]
type = batch_normalization
activation = relu

[pool]
type = pooling2d
pooling = max
pool_size = 2
stride = 2

[flat]
type = flatten

[out]
type = fully_connected
unit = 10
activation = softmax
"""


def _conv_ini(tmp_path: Any, recompute: bool) -> Any:
    path = tmp_path / ("recompute.ini" if recompute else "plain.ini")
    path.write_text(CONV_INI.format(recompute="recompute = true\n" if recompute else ""))
    return path


def test_plan_recompute_shows_what_changed_and_the_saving(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgetrain import cli

    plain = _conv_ini(tmp_path, False)
    assert cli.main(["plan", str(plain), "--brief", "--recompute", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "recomputed in the backward pass instead of kept: conv_bn/activation, conv2_bn/activation (2)" in out
    assert "max pooling without argmax scratch: pool (1)" in out
    assert re.search(r"arena .* with recompute, .* without \(recompute saves .*, \d+%; lower bound", out)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["recompute"]["recomputed"] == ["conv_bn/activation", "conv2_bn/activation"]
    assert data["recompute"]["arena_bytes_without"] > data["arena_bytes"]
    assert [s["kind"] for s in data["steps"]].count("recompute") == 2
    # without the flag: no recompute; the model file's key does the same as the flag
    assert cli.main(["plan", str(plain), "--brief"]) == 0
    assert "recompute" not in capsys.readouterr().out
    assert cli.main(["plan", str(_conv_ini(tmp_path, True)), "--brief"]) == 0
    assert "max pooling without argmax scratch: pool (1)" in capsys.readouterr().out


def test_train_recompute_saves_the_same_weights(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from edgetrain import cli

    ini = _conv_ini(tmp_path, False)
    common = ["train", str(ini), "--data", "digits", "--quiet", "--seed", "2", "--validation-split", "0"]
    assert cli.main([*common, "--save", str(tmp_path / "a.bin")]) == 0
    assert cli.main([*common, "--recompute", "--save", str(tmp_path / "b.bin")]) == 0
    capsys.readouterr()
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_model_file_recompute_key_round_trips(tmp_path: Any) -> None:
    from edgetrain.ini import read_ini, write_ini

    desc = read_ini(_conv_ini(tmp_path, True))
    assert desc.recompute
    write_ini(desc, tmp_path / "again.ini")
    assert "recompute = true" in (tmp_path / "again.ini").read_text()
    assert not read_ini(_conv_ini(tmp_path, False)).recompute


def test_freezing_recompiles_with_recompute() -> None:
    layers, loss, shape, optimizer = _vgg_like()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, recompute=True)
    model.freeze(up_to="c2_bn")
    assert model.recompute
    assert sorted(model.program.recompute) == ["c3_bn/activation", "c4_bn/activation"]
    x = np.random.default_rng(1).normal(size=(4, *shape)).astype(np.float32)
    assert np.isfinite(model.train_step(x, np.array([0, 1, 2, 3])))


def test_the_rust_backend_runs_recompute_like_the_spec() -> None:
    """The core runs recompute steps (``spec/core-program.md``), max pooling without its
    argmax included: the same losses as the numpy executor, within its tolerance."""
    core = pytest.importorskip("edgetrain._core")
    if not hasattr(core, "CoreExecutor"):
        pytest.skip("the core extension is older than the rust backend")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, size=4)
    losses = {}
    for backend in ("python", "rust"):
        layers, loss, _, optimizer = _vgg_like()
        model = Model(layers, loss=loss)
        model.compile(optimizer(), batch_size=4, recompute=True, backend=backend, threads=1)
        assert model.program.recompute
        losses[backend] = [model.train_step(x, y) for _ in range(3)]
    np.testing.assert_allclose(losses["rust"], losses["python"], rtol=1e-4)
