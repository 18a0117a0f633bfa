"""The Model API on ``backend="rust"``: fit, checkpoints and exact resume, freezing,
evaluate, save/load: the paths the step-level conformance tests do not walk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgetrain import Model
from edgetrain.backends.rust import RustExecutor
from edgetrain.datasets import load_digits

pytest.importorskip("edgetrain._core")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.ini"


def _digits_model(backend: str) -> Model:
    model = Model.from_ini(EXAMPLE)
    assert model.description is not None
    model.compile(model.description.optimizer, 32, backend=backend, threads=1)
    return model


def test_fit_matches_the_spec_epoch_by_epoch() -> None:
    x, y = load_digits()
    history = {
        b: _digits_model(b).fit(x[:320], y[:320], epochs=2, shuffle=False) for b in ("python", "rust")
    }
    np.testing.assert_allclose(history["rust"].loss, history["python"].loss, rtol=1e-4)
    assert history["rust"].accuracy == history["python"].accuracy


def test_resume_from_a_checkpoint_is_exact(tmp_path: Path) -> None:
    x, y = load_digits()
    x, y = x[:192], y[:192]
    straight = _digits_model("rust")
    straight.fit(x, y, epochs=2, shuffle=False)
    first = _digits_model("rust")
    first.fit(x, y, epochs=1, shuffle=False, checkpoint=tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    resumed = _digits_model("rust")
    resumed.fit(x, y, epochs=2, shuffle=False, checkpoint=tmp_path / "b", resume=True)
    want, got = straight.get_weights(), resumed.get_weights()
    assert all(np.array_equal(want[k], got[k]) for k in want)


def test_freeze_recompiles_on_the_rust_backend_keeping_weights(tmp_path: Path) -> None:
    x, y = load_digits()
    model = _digits_model("rust")
    model.train_step(x[:32], y[:32])
    before = model.get_weights()
    model.freeze("conv1")
    assert isinstance(model._train, RustExecutor) and model.backend == "rust"
    model.train_step(x[32:64], y[32:64])
    after = model.get_weights()
    assert np.array_equal(after["conv1:weight"], before["conv1:weight"])
    assert not np.array_equal(after["classes:weight"], before["classes:weight"])
    model.save(tmp_path / "w.safetensors")
    other = _digits_model("python")
    other.load(tmp_path / "w.safetensors")
    np.testing.assert_allclose(other.predict(x[:50]), model.predict(x[:50]), rtol=1e-5, atol=1e-6)
    spec, core = other.evaluate(x[:100], y[:100]), model.evaluate(x[:100], y[:100])
    assert spec["accuracy"] == core["accuracy"]
    assert spec["loss"] == pytest.approx(core["loss"], rel=1e-5)


def test_thread_counts_agree() -> None:
    """The GEMMs split across the pool; the result must not depend on how many threads."""
    x, y = load_digits()
    weights = []
    for threads in (1, 2):
        model = Model.from_ini(EXAMPLE)
        assert model.description is not None
        model.compile(model.description.optimizer, 32, backend="rust", threads=threads)
        assert isinstance(model._train, RustExecutor) and model._train.threads == threads
        for start in range(0, 96, 32):
            model.train_step(x[start : start + 32], y[start : start + 32])
        weights.append(model.get_weights())
    for key, want in weights[0].items():
        np.testing.assert_allclose(weights[1][key], want, rtol=1e-5, atol=1e-7, err_msg=key)
