"""Both backends, one table (``cases.py``): every step of the Rust core against the numpy
spec, then whole training runs, predictions and errors.

Step by step: the two executors run the same program laid out by the same plan, so
their arenas have the same layout. Before each step the spec's arena is copied over the
core's, both run the step, and every tensor the step writes is compared within its op's
tolerance. Each op is thus checked on identical inputs, and a difference is the op's
own, not an earlier one carried along.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cases import APPLY_TOLERANCE, CASES, TOLERANCE, Case
from numpy.typing import NDArray

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.backends.rust import RustExecutor
from edgetrain.errors import ConfigError, DataError, ShapeError
from edgetrain.layers.base import StepKind
from edgetrain.optimizers import SGD
from edgetrain.tensors import TensorKind

pytest.importorskip("edgetrain._core")

BACKENDS = ("python", "rust")


def _data(model: Model, n: int, seed: int, ids: int | None = None) -> tuple[NDArray[Any], NDArray[Any]]:
    rng = np.random.default_rng(seed)
    shape = model.graph.input_nodes()[0].output_shapes[0][1:]
    if ids is None:
        x = rng.normal(size=(n, *shape)).astype(np.float32)
    else:
        x = rng.integers(0, ids, size=(n, *shape)).astype(np.float32)
    out = model._output_shape()
    if model._classifies():
        y = rng.integers(0, out[-1], size=n)
    else:
        y = rng.normal(size=(n, *out)).astype(np.float32)
    return x, y


def _compiled(case: Case, backend: str) -> Model:
    model = case.build()
    model.compile(case.optimizer(), case.batch, seed=3, backend=backend, threads=1, recompute=case.recompute)
    return model


def _relative_error(got: NDArray[Any], want: NDArray[Any], floor: float = 0.0) -> float:
    """max |got - want| / max(max |want|, floor)."""
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, floor)
    return float(np.max(np.abs(got.astype(np.float64) - want))) / max(scale, 1e-30) if want.size else 0.0


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.steps))
def test_every_step_conforms(name: str) -> None:
    case = CASES[name]
    spec, core = _compiled(case, "python"), _compiled(case, "rust")
    reference, rust = spec._train, core._train
    assert reference is not None and isinstance(rust, RustExecutor)
    plan = rust.store.plan
    py_arena = reference.store.arena  # type: ignore[attr-defined]
    rs_arena = rust.arena()
    assert py_arena.nbytes == rs_arena.nbytes == plan.arena_bytes
    program = spec.program
    assert case.recompute == any(s.kind.value == "recompute" for s in program.steps)
    for iteration in range(2):
        x, y = _data(spec, case.batch, seed=iteration, ids=case.ids)
        labels = spec._labels(y)
        reference.load_batch([x], labels)
        reference.update_count += 1
        rust.update_count = reference.update_count
        np.testing.assert_allclose(
            rust.regularization_loss(), reference.regularization_loss(), rtol=1e-5, atol=1e-7
        )
        for order, step in enumerate(program.steps):
            rs_arena[...] = py_arena
            layer = program.node(step.node).layer
            if _draws_mask(layer, step):
                before = rust.store[program.bindings[step.node].inputs[0]].copy()
            reference.run_step(step, training=True, label=True, lr=0.05)
            rust.run_order(order, training=True, label=True, lr=0.05)
            if _draws_mask(layer, step):
                _check_dropout(layer, before, rust.store, step.node, f"{name}: step {order}")
                continue
            tolerance = APPLY_TOLERANCE if step.kind is StepKind.APPLY_GRADIENT else TOLERANCE[layer.type_name]
            _compare_step(name, order, step, layer, plan, reference.store, rust.store, tolerance)


def _compare_step(name, order, step, layer, plan, spec_store, core_store, tolerance) -> None:  # type: ignore[no-untyped-def]
    # a reduction that cancels (a bias gradient before batch norm) is judged against the
    # magnitude of what it summed, not of its near-zero result
    operands = [
        float(np.max(np.abs(spec_store[t.name])))
        for t in plan.tensors.values()
        if order in t.reads and spec_store[t.name].dtype.kind == "f" and spec_store[t.name].size
    ]
    floor = max(operands, default=0.0)
    for tensor in plan.tensors.values():
        if order not in tensor.writes or not _observable(tensor, order, plan):
            continue
        want, got = spec_store[tensor.name], core_store[tensor.name]
        where = f"{name}: step {order} {step.kind.value} of '{step.node}' wrote '{tensor.name}'"
        if want.dtype.kind != "f":
            np.testing.assert_array_equal(got, want, err_msg=where)
            continue
        error = _relative_error(got, want, floor)
        assert error <= tolerance, f"{where}: relative error {error:.3g} > {tolerance:g}\n{got}\n{want}"


def _observable(tensor: Any, order: int, plan: Any) -> bool:
    """Whether a value written at ``order`` matters: read by a later step, or kept
    across iterations (weights, optimizer state). Scratch used only inside the step
    (the core's 1x1 convolution needs no im2col) and a gradient the optimizer consumed
    (SGD's coupled decay is folded into it by the spec, not by the core) do not."""
    if tensor.kind in (TensorKind.WEIGHT, TensorKind.OPTIMIZER_STATE):
        return True
    return any(r > order for r in tensor.reads)


def _draws_mask(layer: L.Layer, step: Any) -> bool:
    return isinstance(layer, L.Dropout) and layer.dropout_rate > 0 and step.kind is StepKind.FORWARD


def _check_dropout(layer: L.Dropout, x: NDArray[Any], store: Any, node: str, where: str) -> None:
    """The core's masks come from its own generator (``spec/core-program.md``): check
    ``y = x * mask / (1 - rate)`` with its mask, and that it drops about ``rate``."""
    y, mask = store[f"{node}:output"], store[f"{node}:scratch:mask"]
    assert set(np.unique(mask)) <= {0, 1}, where
    expected = x * mask * np.float32(1.0 / (1.0 - layer.dropout_rate))
    np.testing.assert_allclose(y, expected, rtol=1e-6, err_msg=where)
    kept = float(np.mean(mask))
    assert 0.2 < kept < 0.95, f"{where}: kept fraction {kept}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_conforms(name: str) -> None:
    """Several whole steps (fit's path), then the weights, the losses and predictions at
    another batch size (an inference program borrowing the trained weights)."""
    case = CASES[name]
    models = {b: _compiled(case, b) for b in BACKENDS}
    has_dropout = any(isinstance(layer, L.Dropout) and layer.dropout_rate > 0 for layer in models["python"].layers)
    losses: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for iteration in range(3):
        x, y = _data(models["python"], case.batch, seed=10 + iteration, ids=case.ids)
        for backend, model in models.items():
            losses[backend].append(model.train_step(x, y))
    if has_dropout:  # different masks: only check the run is sane
        assert all(np.isfinite(losses["rust"]))
        return
    np.testing.assert_allclose(losses["rust"], losses["python"], rtol=case.trained_tolerance)
    spec_weights, core_weights = (models[b].get_weights() for b in BACKENDS)
    assert spec_weights.keys() == core_weights.keys()
    # a bias trained on a gradient that cancels (before batch norm) holds rounding noise:
    # weights are judged against the largest weight of the model
    floor = max(float(np.max(np.abs(w))) for w in spec_weights.values())
    for key, want in spec_weights.items():
        if key in case.noise_weights:
            assert np.all(np.isfinite(core_weights[key]))
            continue
        error = _relative_error(core_weights[key], want, floor)
        assert error <= case.trained_tolerance, f"{name}: weight {key} relative error {error:.3g}"
    x, _ = _data(models["python"], case.batch + 2, seed=99, ids=case.ids)
    predicted = {b: m.predict(x) for b, m in models.items()}
    assert _relative_error(predicted["rust"], predicted["python"]) <= case.trained_tolerance


def test_weights_are_one_copy_shared_by_training_and_prediction() -> None:
    model = CASES["activation_relu"].build()
    model.compile(SGD(0.1), 3, backend="rust", threads=2)
    x, _ = _data(model, 5, seed=0)
    before = model.predict(x)
    weights = model.get_weights()
    weights["fc2:weight"][...] = 0.0
    model.set_weights(weights)
    assert np.all(model.predict(x) == 0.0)
    trainer = model._train
    assert isinstance(trainer, RustExecutor) and trainer.threads == 2
    assert np.shares_memory(model._weights["fc2:weight"], trainer.arena())
    assert not np.all(before == 0.0)


def test_unsupported_settings_are_refused_by_name() -> None:
    for kwargs, needle in (
        ({"dtype": np.float64}, "float32"),
        ({"threads": 0}, "threads"),
        ({"backend": "cuda"}, "backend must be one of"),
        ({"swap": True, "planner": None}, "swapping needs a planner"),
        ({"debug_poison": True}, "debug_poison"),
    ):
        settings: dict[str, Any] = {"backend": "rust", **kwargs}
        with pytest.raises(ConfigError, match=needle):
            CASES["activation_relu"].build().compile(SGD(0.1), 2, **settings)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_raises_the_same_errors_on_both_backends(backend: str) -> None:
    model = CASES["conv2d_same_bias"].build()
    model.compile(SGD(0.1), 3, backend=backend)
    x, y = _data(model, 3, seed=0)
    with pytest.raises(DataError, match="expects samples of shape"):
        model.train_step(x[:, :1], y)
    with pytest.raises(DataError, match="one batch of 3"):
        model.train_step(x[:2], y[:2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ids_out_of_range_are_a_data_error_on_both_backends(backend: str) -> None:
    case = CASES["embedding"]
    model = case.build()
    model.compile(case.optimizer(), case.batch, backend=backend)
    x, y = _data(model, case.batch, seed=0, ids=case.ids)
    x[1, 2] = 5.0
    with pytest.raises(DataError, match="ids must be whole numbers in \\[0, 5\\)"):
        model.train_step(x, y)
    x[1, 2] = 0.5
    with pytest.raises(DataError, match="ids must be whole numbers"):
        model.predict(x)


def test_core_errors_become_edgetrain_errors() -> None:
    """A description the core refuses is a ConfigError; a kernel refusing its shapes a
    ShapeError naming the layer and the step."""
    model = CASES["activation_relu"].build()
    model.compile(SGD(0.1), 3, backend="rust")
    trainer = model._train
    assert isinstance(trainer, RustExecutor)
    from edgetrain.backends.lowering import lower_program

    description = lower_program(trainer.program, trainer.store.plan, model.optimizer)
    from edgetrain import _core
    from edgetrain.backends.rust import translate

    broken = dict(description, format="something-else")
    import json

    with pytest.raises(_core.CoreConfigError) as refused:
        _core.CoreExecutor(json.dumps(broken), 1)
    assert isinstance(translate(refused.value), ConfigError)
    tensors = [dict(t) for t in description["tensors"]]
    weight = next(t for t in tensors if t["name"] == "fc1:weight")
    weight["shape"] = [weight["shape"][0] - 1, weight["shape"][1]]
    core = _core.CoreExecutor(json.dumps(dict(description, tensors=tensors)), 1)
    with pytest.raises(_core.CoreShapeError, match="layer 'fc1' \\(fully_connected\\) forward") as wrong:
        core.forward(training=True, label=False)
    assert isinstance(translate(wrong.value), ShapeError)
