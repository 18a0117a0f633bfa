"""Checkpoints on ``backend="rust"`` (``spec/checkpoint.md``): a run that crashes and
resumes ends with exactly the weights of one that never stopped, the core's dropout
generator included; a checkpoint of the other backend is refused, naming both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.checkpoint import checkpoint_files, read_checkpoint
from edgetrain.errors import CheckpointError
from edgetrain.model import EpochProgress

pytest.importorskip("edgetrain._core")

RNG = np.random.default_rng(21)
X = RNG.normal(size=(60, 6)).astype(np.float32)
Y = RNG.integers(0, 3, size=60)
FIT: dict[str, Any] = {"epochs": 3, "validation_split": 0.2}


class Crash(Exception):
    """Stands for the process dying: no checkpoint is written when it is raised."""


def _make(backend: str = "rust", **compile_args: Any) -> Callable[[], Model]:
    def make() -> Model:
        model = Model(
            [
                L.Input(shape=(6,), name="in"),
                L.FullyConnected(unit=12, name="hidden", activation="relu"),
                L.BatchNormalization(name="norm"),
                L.Dropout(name="drop", dropout_rate=0.3),
                L.FullyConnected(unit=3, name="out", activation="softmax"),
            ],
            loss="cross_entropy",
        )
        model.compile(O.Adam(0.02), batch_size=8, seed=5, backend=backend, threads=1, **compile_args)
        return model

    return make


def _crash_at(epoch: int, batch: int) -> Callable[[EpochProgress], None]:
    def progress(p: EpochProgress) -> None:
        if (p.epoch, p.batch) == (epoch, batch):
            raise Crash

    return progress


def _crash_then_resume(make: Callable[[], Model], directory: Path, epoch: int, batch: int) -> Model:
    with pytest.raises(Crash):
        make().fit(X, Y, **FIT, checkpoint=directory, checkpoint_every=2, progress=_crash_at(epoch, batch))
    resumed = make()
    resumed.fit(X, Y, **FIT, checkpoint=directory, resume=True)
    return resumed


def _weights_equal(a: Model, b: Model) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return list(wa) == list(wb) and all(np.array_equal(wa[n], wb[n]) for n in wa)


@pytest.mark.parametrize("compile_args", [{}, {"memory_budget": "60%"}], ids=["arena", "swapped"])
@pytest.mark.parametrize(("epoch", "batch"), [(0, 3), (1, 5)])
def test_crash_and_resume_on_the_core_ends_with_the_same_weights(
    tmp_path: Path, compile_args: dict[str, Any], epoch: int, batch: int
) -> None:
    make = _make(swap_dir=tmp_path, **compile_args) if compile_args else _make()
    reference = make()
    reference.fit(X, Y, **FIT)
    resumed = _crash_then_resume(make, tmp_path / "ckpt", epoch, batch)
    assert _weights_equal(reference, resumed)
    assert resumed.iteration == reference.iteration


def test_the_saved_dropout_generator_is_the_cores_and_resume_restores_it(tmp_path: Path) -> None:
    make = _make()
    reference = make()
    reference.fit(X, Y, **FIT)
    with pytest.raises(Crash):
        make().fit(X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=2, progress=_crash_at(1, 1))
    newest = checkpoint_files(tmp_path)[-1]
    saved = read_checkpoint(newest).state["rng"]["dropout"]
    assert saved["bit_generator"] == "SplitMix64"
    resumed = make()
    resumed._trainer().restore_dropout_state({"bit_generator": "SplitMix64", "state": str(int(saved["state"]) ^ 1)})
    resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)  # restores the saved state
    assert _weights_equal(reference, resumed)


@pytest.mark.parametrize(("saved_on", "resumed_on"), [("python", "rust"), ("rust", "python")])
def test_a_checkpoint_of_the_other_backend_is_refused_naming_both(
    tmp_path: Path, saved_on: str, resumed_on: str
) -> None:
    with pytest.raises(Crash):
        _make(saved_on)().fit(X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=2, progress=_crash_at(0, 3))
    resumed = _make(resumed_on)()
    before = resumed.get_weights()
    with pytest.raises(CheckpointError, match=f"the {saved_on} backend's.*the {resumed_on} backend's"):
        resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    after = resumed.get_weights()
    assert all(np.array_equal(before[n], after[n]) for n in before)
