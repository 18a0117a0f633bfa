"""Checkpoints: an interrupted and resumed ``fit`` ends with exactly the weights of an
uninterrupted one; damaged files, other models and other settings are refused; the
directory keeps the newest two; the payload is a plain safetensors file."""

from __future__ import annotations

import os
import signal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy

from edgetrain import CheckpointError, ConfigError, Model, SaveError
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain import schedules as S
from edgetrain.checkpoint import (
    HEADER,
    KEEP,
    Checkpoint,
    CheckpointWarning,
    checkpoint_files,
    read_checkpoint,
    write_checkpoint,
)
from edgetrain.model import EpochProgress, History
from edgetrain.generator_state import encode_rng
from edgetrain.training import OptimizerState, TrainingInterrupted

RNG = np.random.default_rng(7)
X = RNG.normal(size=(70, 6))
Y = RNG.integers(0, 3, size=70)
EPOCHS = 3


def mlp(
    optimizer: O.Optimizer,
    *,
    units: int = 12,
    activation: str = "relu",
    batch_size: int = 8,
    **compile_args: Any,
) -> Model:
    """Dropout, batch normalization (moving statistics are weights) and two dense layers."""
    model = Model(
        [
            L.Input(shape=(6,), name="in"),
            L.FullyConnected(unit=units, name="hidden", activation=activation),
            L.BatchNormalization(name="norm"),
            L.Dropout(name="drop", dropout_rate=0.25),
            L.FullyConnected(unit=3, name="out", activation="softmax"),
        ],
        loss="cross_entropy",
    )
    model.compile(optimizer, batch_size=batch_size, seed=5, **compile_args)
    return model


OPTIMIZERS: dict[str, Callable[[], O.Optimizer]] = {
    "adam+cosine": lambda: O.Adam(S.Cosine(0.02, decay_steps=7, min_learning_rate=0.001)),
    "sgd-momentum+step": lambda: O.SGD(S.Step([5, 12], [0.1, 0.05, 0.01]), momentum=0.9),
    "adamw+exponential": lambda: O.AdamW(S.Exponential(0.01, 0.5, 10), weight_decay=0.05),
}


def maker(optimizer: str, **compile_args: Any) -> Callable[[], Model]:
    """A function making the same compiled model each time it is called."""
    return lambda: mlp(OPTIMIZERS[optimizer](), **compile_args)


FIT: dict[str, Any] = {"epochs": EPOCHS, "validation_split": 0.2}


class Crash(Exception):
    """Stands for the process dying: no checkpoint is written when it is raised."""


def crash_at(epoch: int, batch: int, error: BaseException) -> Callable[[EpochProgress], None]:
    def progress(p: EpochProgress) -> None:
        if (p.epoch, p.batch) == (epoch, batch):
            raise error

    return progress


def assert_same_weights(a: Model, b: Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert list(wa) == list(wb)
    for name in wa:
        assert np.array_equal(wa[name], wb[name]), name


def assert_same_optimizer_state(a: Model, b: Model) -> None:
    sa, sb = a.optimizer_state(), b.optimizer_state()
    assert sa.update_count == sb.update_count
    assert list(sa.tensors) == list(sb.tensors)
    for name in sa.tensors:
        assert np.array_equal(sa.tensors[name], sb.tensors[name]), name


def uninterrupted(make: Callable[[], Model], **fit: Any) -> tuple[Model, History]:
    model = make()
    return model, model.fit(X, Y, **{**FIT, **fit})


# -- exact resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(
    ("epoch", "batch", "every"),
    [(1, 2, 4), (0, 5, 3), (2, 0, 1), (1, 6, 5)],  # (1, 6): the epoch's last batch
)
def test_crash_and_resume_ends_with_the_same_weights(
    tmp_path: Path, optimizer: str, epoch: int, batch: int, every: int
) -> None:
    make = maker(optimizer)
    reference, expected = uninterrupted(make)

    crashed = make()
    with pytest.raises(Crash):
        crashed.fit(
            X,
            Y,
            **FIT,
            checkpoint=tmp_path,
            checkpoint_every=every,
            progress=crash_at(epoch, batch, Crash()),
        )
    assert checkpoint_files(tmp_path), "a checkpoint was written before the crash"

    newest = checkpoint_files(tmp_path)[-1]
    resumed = make()
    history = resumed.fit(X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=every, resume=True)
    assert history.resumed_from == newest
    assert_same_weights(reference, resumed)
    assert_same_optimizer_state(reference, resumed)
    assert resumed.iteration == reference.iteration
    assert history.loss == expected.loss
    assert history.accuracy == expected.accuracy
    assert history.val_loss == expected.val_loss
    assert history.val_accuracy == expected.val_accuracy


def _fresh_rng(seed: int) -> dict[str, Any]:
    return encode_rng(np.random.default_rng(seed).bit_generator.state)


TAMPERINGS: dict[str, Callable[[Checkpoint], None]] = {
    "optimizer state": lambda c: c.tensors.update(
        {n: np.zeros_like(v) for n, v in c.tensors.items() if n.endswith(":m")}
    ),
    "update count": lambda c: c.state["progress"].update(update_count=1),
    "schedule position": lambda c: c.state["progress"].update(iteration=0),
    "dropout generator": lambda c: c.state["rng"].update(dropout=_fresh_rng(99)),
    "loader generator": lambda c: c.state["rng"].update(loader_epoch_start=_fresh_rng(98)),
    "batch index": lambda c: c.state["progress"].update(batch=c.state["progress"]["batch"] - 1),
}


@pytest.mark.parametrize("part", TAMPERINGS)
def test_every_part_of_the_state_matters(tmp_path: Path, part: str) -> None:
    """The comparisons above can fail: resuming from a checkpoint with any one part of
    the state replaced ends with other weights."""
    make = maker("adam+cosine")
    reference, _ = uninterrupted(make)
    with pytest.raises(Crash):
        make().fit(
            X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=4, progress=crash_at(1, 2, Crash())
        )
    newest = checkpoint_files(tmp_path)[-1]
    saved = read_checkpoint(newest)
    saved.tensors = {n: v.copy() for n, v in saved.tensors.items()}
    TAMPERINGS[part](saved)
    write_checkpoint(newest, saved.tensors, saved.state)
    resumed = make()
    resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert not np.array_equal(
        resumed.get_weights()["out:weight"], reference.get_weights()["out:weight"]
    )


@pytest.mark.parametrize(
    "compile_args",
    [
        {"planner": None},
        {"debug_poison": True},
        {"swap": True},
        {"swap": True, "debug_poison": True},
    ],
    ids=["heap", "poisoned-arena", "swapped", "swapped-poisoned"],
)
def test_resume_with_heap_store_poisoned_arena_or_swapping(
    tmp_path: Path, compile_args: dict[str, Any]
) -> None:
    make = maker("adam+cosine", **compile_args)
    reference, _ = uninterrupted(make)
    with pytest.raises(Crash):
        make().fit(
            X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=3, progress=crash_at(1, 4, Crash())
        )
    resumed = make()
    resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert_same_weights(reference, resumed)
    assert_same_optimizer_state(reference, resumed)


def test_resume_with_a_frozen_backbone(tmp_path: Path) -> None:
    """Fine-tuning a head over a frozen layer (fewer optimizer tensors) resumes exactly."""

    def make() -> Model:
        model = mlp(OPTIMIZERS["adam+cosine"]())
        model.freeze(up_to="hidden")
        return model

    reference, _ = uninterrupted(make)
    with pytest.raises(Crash):
        make().fit(
            X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=4, progress=crash_at(1, 3, Crash())
        )
    resumed = make()
    resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert not any(name.startswith("hidden:") for name in resumed.optimizer_state().tensors)
    assert_same_weights(reference, resumed)
    assert_same_optimizer_state(reference, resumed)


def test_without_shuffling_and_with_validation_data(tmp_path: Path) -> None:
    fit = {"epochs": EPOCHS, "shuffle": False, "validation_data": (X[:20], Y[:20])}
    make = maker("sgd-momentum+step")
    reference = make()
    expected = reference.fit(X, Y, **fit)
    with pytest.raises(Crash):
        make().fit(
            X, Y, **fit, checkpoint=tmp_path, checkpoint_every=2, progress=crash_at(2, 1, Crash())
        )
    resumed = make()
    history = resumed.fit(X, Y, **fit, checkpoint=tmp_path, resume=True)
    assert_same_weights(reference, resumed)
    assert history.val_loss == expected.val_loss


def test_training_further_after_a_finished_run(tmp_path: Path) -> None:
    """A finished run's last checkpoint is its end; resuming with more epochs trains on
    exactly as one longer run would."""
    make = maker("adam+cosine")
    reference, expected = uninterrupted(make, epochs=EPOCHS + 2)
    first = make()
    first.fit(X, Y, **FIT, checkpoint=tmp_path)
    longer = make()
    history = longer.fit(X, Y, **{**FIT, "epochs": EPOCHS + 2}, checkpoint=tmp_path, resume=True)
    assert_same_weights(reference, longer)
    assert history.loss == expected.loss


def test_resuming_a_finished_run_trains_nothing(tmp_path: Path) -> None:
    make = maker("adam+cosine")
    done = make()
    expected = done.fit(X, Y, **FIT, checkpoint=tmp_path)
    again = make()
    calls: list[int] = []
    history = again.fit(
        X, Y, **FIT, checkpoint=tmp_path, resume=True, on_epoch=lambda e, m: calls.append(e)
    )
    assert calls == []
    assert history.loss == expected.loss
    assert again.iteration == done.iteration
    assert_same_weights(done, again)


def test_resume_without_checkpoints_starts_fresh(tmp_path: Path) -> None:
    make = maker("adam+cosine")
    reference, _ = uninterrupted(make)
    model = make()
    history = model.fit(X, Y, **FIT, checkpoint=tmp_path / "new", resume=True)
    assert history.resumed_from is None
    assert_same_weights(reference, model)
    assert checkpoint_files(tmp_path / "new")


# -- Ctrl-C -------------------------------------------------------------------------------------------


def test_keyboard_interrupt_saves_then_raises(tmp_path: Path) -> None:
    make = maker("sgd-momentum+step")
    reference, _ = uninterrupted(make)
    stopped = make()
    with pytest.raises(TrainingInterrupted) as caught:
        stopped.fit(X, Y, **FIT, checkpoint=tmp_path, progress=crash_at(1, 3, KeyboardInterrupt()))
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.checkpoint == tmp_path / f"checkpoint-{stopped.iteration:09d}.ckpt"
    assert caught.value.checkpoint.is_file()
    # as in a notebook: the same model object continues (new objects: the other tests)
    stopped.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert_same_weights(reference, stopped)


def test_sigint_finishes_the_step_then_saves(tmp_path: Path) -> None:
    """A real SIGINT arriving mid-run is deferred to the end of the step in progress."""
    make = maker("adam+cosine")
    reference, _ = uninterrupted(make)
    before = signal.getsignal(signal.SIGINT)
    stopped = make()

    def progress(p: EpochProgress) -> None:
        if (p.epoch, p.batch) == (1, 1):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as caught:
        stopped.fit(X, Y, **FIT, checkpoint=tmp_path, progress=progress)
    assert signal.getsignal(signal.SIGINT) is before
    state = read_checkpoint(caught.value.checkpoint).state
    assert (state["progress"]["epoch"], state["progress"]["batch"]) == (1, 2)
    resumed = make()
    resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert_same_weights(reference, resumed)


def test_interrupt_without_checkpoint_directory_is_a_plain_keyboard_interrupt() -> None:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    with pytest.raises(KeyboardInterrupt) as caught:
        model.fit(X, Y, **FIT, progress=crash_at(0, 1, KeyboardInterrupt()))
    assert not isinstance(caught.value, TrainingInterrupted)


# -- the directory -------------------------------------------------------------------------------------


def test_keeps_the_newest_two(tmp_path: Path) -> None:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    model.fit(X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=2)
    names = [p.name for p in checkpoint_files(tmp_path)]
    assert len(names) == KEEP
    assert names[-1] == f"checkpoint-{model.iteration:09d}.ckpt"
    assert sorted(os.listdir(tmp_path)) == names  # no temporary files left


def test_a_fresh_run_refuses_a_directory_with_checkpoints(tmp_path: Path) -> None:
    mlp(OPTIMIZERS["adam+cosine"]()).fit(X, Y, epochs=1, checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match="earlier run.*resume=True") as caught:
        mlp(OPTIMIZERS["adam+cosine"]()).fit(X, Y, epochs=1, checkpoint=tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_settings_without_a_directory_are_refused() -> None:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    with pytest.raises(ConfigError, match="checkpoint=<directory>"):
        model.fit(X, Y, resume=True)
    with pytest.raises(ConfigError, match="checkpoint_every must be a positive integer"):
        model.fit(X, Y, checkpoint="x", checkpoint_every=0)


def test_a_failed_save_keeps_the_previous_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    model.fit(X, Y, epochs=2, checkpoint=tmp_path)
    before = {p.name: p.read_bytes() for p in checkpoint_files(tmp_path)}

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(SaveError, match="cannot save checkpoint to .*checkpoint-.*No space left"):
        model.fit(X, Y, epochs=3, checkpoint=tmp_path, resume=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in checkpoint_files(tmp_path)} == before
    assert sorted(os.listdir(tmp_path)) == sorted(before)


def test_an_unusable_directory_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    model = mlp(OPTIMIZERS["adam+cosine"]())
    with pytest.raises(SaveError, match="cannot create the checkpoint directory .*file/run"):
        model.fit(X, Y, **FIT, checkpoint=tmp_path / "file" / "run")
    assert model.iteration == 0


# -- damaged files ---------------------------------------------------------------------------------------


def two_checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    with pytest.raises(Crash):
        model.fit(
            X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=3, progress=crash_at(1, 5, Crash())
        )
    older, newer = checkpoint_files(tmp_path)
    return older, newer


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: flip_byte(p, p.stat().st_size - 3), "corrupt: the SHA-256"),  # a tensor value
        (lambda p: flip_byte(p, HEADER.size + 20), "corrupt: the SHA-256"),  # the JSON header
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[:30]), "not an edgetrain checkpoint"),
        (lambda p: p.write_bytes(b""), "not an edgetrain checkpoint"),
        (
            lambda p: p.write_bytes(b"EDGECKPT" + struct.pack("<I", 9) + p.read_bytes()[12:]),
            "version 9",
        ),
    ],
)
def test_damaged_checkpoint_is_refused_naming_the_file(
    tmp_path: Path, damage: Callable[[Path], None], match: str
) -> None:
    _, newer = two_checkpoints(tmp_path)
    damage(newer)
    with pytest.raises(CheckpointError, match=match) as caught:
        read_checkpoint(newer)
    assert str(newer) in str(caught.value)


def test_resume_falls_back_to_the_previous_good_checkpoint(tmp_path: Path) -> None:
    make = maker("adam+cosine")
    reference, _ = uninterrupted(make)
    older, newer = two_checkpoints(tmp_path)
    flip_byte(newer, newer.stat().st_size // 2)
    resumed = make()
    with pytest.warns(
        CheckpointWarning, match=f"{newer.name}.*corrupt.*resuming from the older {older.name}"
    ):
        history = resumed.fit(X, Y, **FIT, checkpoint=tmp_path, checkpoint_every=3, resume=True)
    assert history.resumed_from == older
    assert (tmp_path / f"{newer.name}.corrupt").is_file()
    assert_same_weights(reference, resumed)


def test_resume_removes_the_temporary_file_of_a_killed_save(tmp_path: Path) -> None:
    """A process killed mid-save leaves ``.checkpoint-<n>.ckpt.<hex>.tmp`` (never renamed):
    resuming ignores it, uses the newest complete file and deletes the leftover."""
    make = maker("adam+cosine")
    reference, _ = uninterrupted(make)
    _, newer = two_checkpoints(tmp_path)
    leftover = tmp_path / ".checkpoint-000000999.ckpt.0badf00d.tmp"
    leftover.write_bytes(newer.read_bytes()[:1000])
    resumed = make()
    history = resumed.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert history.resumed_from == newer
    assert not leftover.exists()
    assert_same_weights(reference, resumed)


def test_resume_refuses_when_every_checkpoint_is_damaged(tmp_path: Path) -> None:
    older, newer = two_checkpoints(tmp_path)
    for path in (older, newer):
        flip_byte(path, 100)
    with pytest.raises(CheckpointError, match="no usable checkpoint") as caught:
        mlp(OPTIMIZERS["adam+cosine"]()).fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    assert older.name in str(caught.value) and newer.name in str(caught.value)


# -- identity and settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (
            lambda: mlp(OPTIMIZERS["adam+cosine"](), units=10),
            r"hidden:weight' has shape \(6, 12\) in the checkpoint, \(6, 10\)",
        ),
        (lambda: mlp(OPTIMIZERS["adam+cosine"](), activation="tanh"), "configuration differs"),
        (
            lambda: mlp(OPTIMIZERS["adam+cosine"](), dtype=np.float64),
            "dtype float32 in the checkpoint",
        ),
        (lambda: mlp(OPTIMIZERS["sgd-momentum+step"]()), "optimizer .*adam.* in the checkpoint"),
        (lambda: mlp(O.Adam(S.Cosine(0.03, decay_steps=7, min_learning_rate=0.001))), "schedule"),
        (
            lambda: mlp(OPTIMIZERS["adam+cosine"](), batch_size=4),
            "batch_size 8 in the checkpoint, 4 now",
        ),
    ],
)
def test_a_checkpoint_of_another_model_or_run_is_refused(
    tmp_path: Path, other: Callable[[], Model], match: str
) -> None:
    two_checkpoints(tmp_path)
    model = other()
    before = model.get_weights()
    with pytest.raises(CheckpointError, match=match):
        model.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)
    after = model.get_weights()
    assert all(np.array_equal(before[n], after[n]) for n in before), "nothing changed"


def test_other_data_is_refused(tmp_path: Path) -> None:
    two_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match="training_samples 56 in the checkpoint, 48 now"):
        mlp(OPTIMIZERS["adam+cosine"]()).fit(
            X[:60], Y[:60], **FIT, checkpoint=tmp_path, resume=True
        )


def test_other_data_of_the_same_size_is_refused(tmp_path: Path) -> None:
    two_checkpoints(tmp_path)
    changed = X + 1e-3
    with pytest.raises(CheckpointError, match=r"training_data \"[0-9a-f]{16}\" in the checkpoint"):
        mlp(OPTIMIZERS["adam+cosine"]()).fit(changed, Y, **FIT, checkpoint=tmp_path, resume=True)


def test_a_frozen_layer_is_a_different_run(tmp_path: Path) -> None:
    two_checkpoints(tmp_path)
    model = mlp(OPTIMIZERS["adam+cosine"]())
    model.freeze("hidden")
    with pytest.raises(CheckpointError, match="trained_layers"):
        model.fit(X, Y, **FIT, checkpoint=tmp_path, resume=True)


# -- the format --------------------------------------------------------------------------------------------


def test_payload_is_a_safetensors_file_with_the_state(tmp_path: Path) -> None:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    model.fit(X, Y, epochs=1, checkpoint=tmp_path)
    path = checkpoint_files(tmp_path)[-1]
    payload = path.read_bytes()[HEADER.size :]
    tensors = safetensors.numpy.load(payload)
    weights, optimizer = model.get_weights(), model.optimizer_state()
    assert set(tensors) == set(weights) | set(optimizer.tensors)
    for name, value in {**weights, **optimizer.tensors}.items():
        assert tensors[name].dtype == np.float32 and np.array_equal(tensors[name], value), name
    state = read_checkpoint(path).state
    assert state["format"] == "edgetrain-checkpoint" and state["version"] == 1
    assert state["progress"] == {
        "epoch": 1,
        "batch": 0,
        "batches_per_epoch": 8,
        "epochs": 1,
        "iteration": 8,
        "update_count": 8,
    }
    assert state["tensors"]["optimizer_state"] == list(optimizer.tensors)
    assert [name for name, _ in state["model"]["weights"]] == list(weights)
    assert state["rng"]["dropout"]["bit_generator"] == "PCG64"


def test_write_and_read_round_trip_any_float_tensors(tmp_path: Path) -> None:
    tensors: dict[str, np.ndarray[Any, Any]] = {
        "a:w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b:w:m": np.linspace(0, 1, 5),
        "scalar": np.array(2.5, dtype=np.float32),
    }
    state = {"format": "edgetrain-checkpoint", "note": "x"}
    write_checkpoint(tmp_path / "c.ckpt", tensors, state)
    back = read_checkpoint(tmp_path / "c.ckpt")
    assert back.state == state
    for name, value in tensors.items():
        assert back.tensors[name].dtype == value.dtype and np.array_equal(back.tensors[name], value)


# -- optimizer state API ------------------------------------------------------------------------------------


def test_optimizer_state_round_trip() -> None:
    trained = mlp(OPTIMIZERS["adam+cosine"]())
    trained.fit(X, Y, epochs=1)
    state = trained.optimizer_state()
    assert state.update_count == trained.iteration == 8
    assert list(state.tensors) == [
        f"{layer}:{weight}:{s}"
        for layer, weight in [
            ("hidden", "weight"),
            ("hidden", "bias"),
            ("norm", "gamma"),
            ("norm", "beta"),
            ("out", "weight"),
            ("out", "bias"),
        ]
        for s in ("m", "v")
    ]
    assert np.any(state.tensors["out:weight:m"] != 0)
    other = mlp(OPTIMIZERS["adam+cosine"]())
    other.load_optimizer_state(state)
    assert_same_optimizer_state(trained, other)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.tensors.pop("out:bias:v"), r"missing \['out:bias:v'\]"),
        (lambda s: s.tensors.update({"x:w:m": np.zeros(1)}), "not in this model's optimizer"),
        (
            lambda s: s.tensors.update({"out:bias:m": np.zeros(4)}),
            r"'out:bias:m' has shape \(3\), got \(4\)",
        ),
        (lambda s: s.tensors["out:bias:m"].fill(np.nan), "NaN"),
        (lambda s: setattr(s, "update_count", -1), "update_count"),
    ],
)
def test_load_optimizer_state_checks_everything_first(
    change: Callable[[OptimizerState], Any], match: str
) -> None:
    model = mlp(OPTIMIZERS["adam+cosine"]())
    state = model.optimizer_state()
    state.tensors["out:weight:m"][...] = 1.0
    change(state)
    with pytest.raises(ConfigError, match=match):
        model.load_optimizer_state(state)
    assert not np.any(model.optimizer_state().tensors["out:weight:m"])


# -- edgetrain train ----------------------------------------------------------------------------------------

DIGITS_INI = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.ini"


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    from edgetrain.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--resume"], "--resume and --checkpoint-every need --checkpoint DIR"),
        (["--checkpoint-every", "3"], "--resume and --checkpoint-every need --checkpoint DIR"),
        (["--checkpoint", "c", "--resume", "--load", "w.npz"], "drop --load"),
    ],
)
def test_cli_refuses_inconsistent_checkpoint_flags(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "train", DIGITS_INI, "--data", "digits", "--epochs", "1", *flags)
    assert code == 2
    assert message in err


def test_cli_resume_reports_the_checkpoint_and_a_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", DIGITS_INI, "--data", "digits", "--quiet", "--checkpoint", tmp_path]
    assert cli(capsys, *argv, "--epochs", "1", "--checkpoint-every", "20")[0] == 0
    older, newer = checkpoint_files(tmp_path)
    flip_byte(newer, 200)
    code, out, err = cli(capsys, *argv, "--epochs", "2", "--resume")
    assert code == 0, err
    assert f"resuming from the newest intact of 2 checkpoint(s) in {tmp_path}" in out
    assert f"edgetrain: warning: {newer}: corrupt" in err
    assert f"resuming from the older {older.name}" in err
    assert f"resumed from {older}" in out
    assert "epoch 2/2" in out

    code, _, err = cli(capsys, *argv, "--epochs", "2")
    assert code == 2
    assert "holds checkpoints of an earlier run" in err

    code, out, err = cli(capsys, *argv[:-1], tmp_path / "new", "--epochs", "1", "--resume")
    assert code == 0, err
    assert f"no checkpoint in {tmp_path / 'new'} yet: starting from the beginning" in out


def test_tutorial_runs(tmp_path: Path) -> None:
    from doctest_blocks import run_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "tutorials"
    seen = run_markdown(docs / "checkpoints.md", tmp_path)
    assert [w.category for w in seen["caught"]] == [CheckpointWarning]
    assert seen["same"] is True
    assert seen["saved_at"] == Path("interrupted/checkpoint-000000050.ckpt")
    assert seen["history"].resumed_from == Path("crash/checkpoint-000000160.ckpt")
    assert "saved from a different model" in seen["refused"]
    assert (tmp_path / "crash" / "checkpoint-000000176.ckpt.corrupt").is_file()


def test_cli_checkpoints_lists_each_file_and_the_one_resume_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = two_checkpoints(tmp_path)
    code, out, _ = cli(capsys, "checkpoints", tmp_path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{older}  ok: iteration 9, epoch 2/3, 2/7 batches done; ")
    assert "8 weights and 12 adam state tensors" in lines[0]
    assert lines[1].startswith(f"{newer}  ok: iteration 12, epoch 2/3, 5/7 batches done")
    assert lines[2] == f"--resume continues from {newer.name}"

    flip_byte(newer, 100)
    code, out, _ = cli(capsys, "checkpoints", tmp_path)
    assert f"{newer}  UNUSABLE: corrupt: the SHA-256" in out
    assert f"--resume continues from {older.name}" in out
    assert newer.exists(), "only resuming moves damaged files aside"

    flip_byte(older, 100)
    code, out, err = cli(capsys, "checkpoints", older)
    assert code == 2
    assert "UNUSABLE" in out and "no intact checkpoint" in err
    code, _, err = cli(capsys, "checkpoints", tmp_path / "none")
    assert code == 2 and "no checkpoint files" in err
