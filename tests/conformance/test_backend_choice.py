"""``compile(backend="auto")``, the default: the rust core wherever it runs the model as
the spec does, the numpy reference where it cannot (``spec/core-program.md``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edgetrain import ConfigError, Model
from edgetrain import layers as L
from edgetrain.backends import choice
from edgetrain.backends.rust import RustExecutor
from edgetrain.layers.base import Layer, LayerContext, LayerSetup
from edgetrain.optimizers import SGD
from edgetrain.tensors import Shape

pytest.importorskip("edgetrain._core")

ROOT = Path(__file__).resolve().parents[2]


class Negate(Layer):
    """A user's own layer, written in Python only: the core cannot run it."""

    type_name = "negate"

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        return LayerSetup(output_shapes=[tuple(input_shapes[0])])

    def forward(self, ctx: LayerContext) -> None:
        np.negative(ctx.inputs[0], out=ctx.outputs[0])

    def calc_derivative(self, ctx: LayerContext) -> None:
        np.negative(ctx.grad_outputs[0], out=ctx.grad_inputs[0])


def _model(*middle: Layer) -> Model:
    return Model([L.Input(shape=(6,)), *middle, L.FullyConnected(unit=3)], loss="mse")


def _trained(model: Model) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    return model.train_step(x, rng.normal(size=(4, 3)).astype(np.float32))


def test_the_default_is_the_core() -> None:
    model = _model()
    model.compile(SGD(0.1), batch_size=4)
    assert model.backend == "rust"
    assert isinstance(model._trainer(), RustExecutor)
    assert np.isfinite(_trained(model))


@pytest.mark.parametrize(
    "settings",
    [{"dtype": np.float64}, {"debug_poison": True}],
    ids=["float64", "debug_poison"],
)
def test_what_the_core_cannot_do_runs_on_the_reference(settings: dict[str, object]) -> None:
    model = _model()
    model.compile(SGD(0.1), batch_size=4, **settings)  # type: ignore[arg-type]
    assert model.backend == "python"
    assert not isinstance(model._trainer(), RustExecutor)
    assert np.isfinite(_trained(model))


def test_a_python_only_layer_runs_on_the_reference_and_is_refused_by_name_on_rust() -> None:
    model = _model(Negate(name="flip"))
    model.compile(SGD(0.1), batch_size=4)
    assert model.backend == "python"
    assert np.isfinite(_trained(model))
    with pytest.raises(ConfigError, match="'flip' of type 'negate'"):
        _model(Negate(name="flip")).compile(SGD(0.1), batch_size=4, backend="rust")


def test_an_install_without_the_core_runs_on_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choice, "core_available", lambda: False)
    model = _model()
    model.compile(SGD(0.1), batch_size=4)
    assert model.backend == "python"


def test_an_explicit_choice_is_kept_or_refused_with_the_reason() -> None:
    model = _model()
    model.compile(SGD(0.1), batch_size=4, backend="python")
    assert model.backend == "python"
    with pytest.raises(ConfigError, match="float32"):
        _model().compile(SGD(0.1), batch_size=4, backend="rust", dtype=np.float64)
    with pytest.raises(ConfigError, match="backend must be one of auto, python, rust"):
        _model().compile(SGD(0.1), batch_size=4, backend="gpu")


def test_freezing_recompiles_on_the_backend_chosen() -> None:
    model = _model(L.FullyConnected(unit=5, name="hidden"))
    model.compile(SGD(0.1), batch_size=4)
    model.freeze("hidden")
    assert model.backend == "rust"
    assert np.isfinite(_trained(model))


@pytest.mark.parametrize("backend", ["auto", "python"])
def test_the_command_line_names_the_backend_it_trains_on(backend: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgetrain", "train", str(ROOT / "examples" / "digits_cnn.ini"),
         "--data", "digits", "--epochs", "1", "--quiet", "--backend", backend, "--threads", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    expected = "rust" if backend == "auto" else "python"
    assert f"{expected} backend" in done.stdout
