"""The training loop of ``Model.fit``, with checkpoints and exact resume.

Everything a run's next step depends on is either in the model (weights, optimizer state
and its update count, the schedule's position ``model.iteration``, the dropout generator
of the training executor) or in :class:`RunPosition` (epoch, batch, the data loader's
generator at the start of the epoch, the epoch's running metrics). A checkpoint saves all
of it, so a run interrupted at any step boundary and resumed from its checkpoint computes
exactly the same numbers as one that never stopped. ``spec/checkpoint.md`` says what is
saved, when, and what is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .checkpoint import (
    check_checkpoint_directory,
    checkpoint_files,
    newest_valid,
    save_checkpoint,
)
from .data import DataLoader, Dataset
from .errors import CheckpointError, ConfigError, StateError
from .executor import Executor
from .generator_state import decode_rng, encode_rng
from .program import Program
from .tensors import format_shape

if TYPE_CHECKING:
    from .model import EpochCallback, History, Model, ProgressCallback

Array = NDArray[Any]
STATE_FORMAT = "edgetrain-checkpoint"
STATE_VERSION = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``fit``; the state after the last complete step was saved to
    ``checkpoint`` first, so ``fit(..., resume=True)`` continues from there."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        super().__init__(f"training interrupted; checkpoint saved to {checkpoint}")


# -- optimizer state -----------------------------------------------------------------------------


@dataclass
class OptimizerState:
    """The optimizer's per-weight tensors by ``"<layer>:<weight>:<state>"`` (SGD's
    ``momentum``, Adam's ``m`` and ``v``), in model order, and ``update_count``: the
    updates already applied (the next update is Adam's bias-correction step
    ``update_count + 1``)."""

    tensors: dict[str, Array]
    update_count: int


def optimizer_state_names(program: Program) -> list[str]:
    """The optimizer state tensors of a training program, in model order."""
    return [
        name
        for binding in program.bindings.values()
        for states in binding.optimizer_state.values()
        for name in states.values()
    ]


def read_optimizer_state(trainer: Executor) -> OptimizerState:
    """Copies of the trainer's optimizer state (wherever the arena keeps it)."""
    names = optimizer_state_names(trainer.program)
    return OptimizerState({n: trainer.store[n].copy() for n in names}, trainer.update_count)


def check_optimizer_state(trainer: Executor, state: OptimizerState) -> None:
    """Refuse (``ConfigError``) optimizer state that does not fit the trainer: names,
    shapes, non-finite values, a bad update count."""
    names = optimizer_state_names(trainer.program)
    missing = [n for n in names if n not in state.tensors]
    unknown = [n for n in state.tensors if n not in names]
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + (
            [f"not in this model's optimizer {unknown}"] if unknown else []
        )
        raise ConfigError(f"optimizer state names do not match: {'; '.join(parts)}")
    for name in names:
        have, given = trainer.store[name].shape, np.shape(state.tensors[name])
        if have != given:
            raise ConfigError(
                f"optimizer state '{name}' has shape {format_shape(have)}, got {format_shape(given)}"
            )
        if not np.all(np.isfinite(state.tensors[name])):
            raise ConfigError(f"optimizer state '{name}' contains NaN or infinite values")
    count = state.update_count
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ConfigError(f"update_count must be a non-negative integer, got {count!r}")


def write_optimizer_state(trainer: Executor, state: OptimizerState) -> None:
    """Overwrite the trainer's optimizer state; everything is checked
    (:func:`check_optimizer_state`) before anything changes."""
    check_optimizer_state(trainer, state)
    for name in optimizer_state_names(trainer.program):
        np.copyto(trainer.store[name], state.tensors[name], casting="unsafe")
    trainer.update_count = int(state.update_count)


# -- what a checkpoint must match ---------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def model_identity(model: Model) -> dict[str, Any]:
    """The model a checkpoint belongs to: a SHA-256 of its graph (every node's name,
    type, configuration, inputs and per-sample output shapes), loss and dtype, and its
    weights' names and shapes (compared one by one, for a precise error)."""
    graph = model.graph
    description = {
        "nodes": [
            {
                "name": node.name,
                "type": node.layer.type_name,
                "config": _jsonable(node.layer.config()),
                "inputs": [[port.node, port.index] for port in node.inputs],
                "outputs": [list(shape[1:]) for shape in node.output_shapes],
            }
            for node in graph.nodes
        ],
        "loss": model.loss_name,
        "dtype": str(model.dtype),
    }
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return {
        "hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "dtype": str(model.dtype),
        "weights": [[name, list(value.shape)] for name, value in model._weights.items()],
    }


#: how many samples, evenly spaced, the data fingerprint reads
FINGERPRINT_SAMPLES = 64


def data_fingerprint(data: Dataset) -> str:
    """16 hex digits of the SHA-256 of up to ``FINGERPRINT_SAMPLES`` evenly spaced samples
    (every input array and the labels, with their shapes and dtypes): cheap for data
    of any size, and different for other data with overwhelming likelihood unless it
    differs only between the samples read."""
    n = len(data)
    indices = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_SAMPLES)).round().astype(np.int64))
    inputs, labels = data.take(indices)
    digest = hashlib.sha256()
    for array in (*inputs, labels):
        values = np.ascontiguousarray(array)
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()[:16]


def training_settings(
    model: Model, trainer: Executor, *, shuffle: bool, train: Dataset, valid: Dataset | None
) -> dict[str, Any]:
    """The settings that decide a run's numbers besides the model: resuming with any of
    them changed would not continue the same run, so it is refused."""
    optimizer = model.optimizer
    assert optimizer is not None
    schedule = optimizer.schedule
    trained = [node.name for node in model.graph.nodes if node.name in trainer.program.trained]
    penalties = {
        node: {
            weight: [penalty.l2, penalty.decay]
            for weight, penalty in trainer.program.bindings[node].penalties.items()
        }
        for node in trained
    }
    settings: dict[str, Any] = _jsonable(
        {
            "optimizer": {"type": optimizer.type_name, "config": optimizer.config()},
            "schedule": {"type": schedule.type_name, "config": schedule.config()},
            "batch_size": model.batch_size,
            "seed": model.seed,
            "shuffle": shuffle,
            "trained_layers": trained,
            "penalties": penalties,
            "training_samples": len(train),
            "training_data": data_fingerprint(train),
            "validation_samples": None if valid is None else len(valid),
            "validation_data": None if valid is None else data_fingerprint(valid),
        }
    )
    return settings


def _check_identity(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    have = {name: tuple(shape) for name, shape in current["weights"]}
    stored = {name: tuple(shape) for name, shape in saved["weights"]}
    problems = [f"weight '{n}' is not in this model" for n in stored if n not in have]
    problems += [
        f"this model's weight '{n}' is not in the checkpoint" for n in have if n not in stored
    ]
    problems += [
        f"weight '{n}' has shape {format_shape(stored[n])} in the checkpoint, "
        f"{format_shape(have[n])} in this model"
        for n in stored
        if n in have and stored[n] != have[n]
    ]
    if saved["dtype"] != current["dtype"]:
        problems.append(f"dtype {saved['dtype']} in the checkpoint, {current['dtype']} now")
    if not problems and saved["hash"] != current["hash"]:
        problems.append("the layers' configuration differs (model hash mismatch)")
    if problems:
        raise CheckpointError(
            f"saved from a different model: {'; '.join(problems[:5])}"
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
            path=path,
        )


def _check_settings(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    problems = [
        f"{key} {json.dumps(saved.get(key))} in the checkpoint, {json.dumps(current[key])} now"
        for key in current
        if saved.get(key) != current[key]
    ]
    if problems:
        raise CheckpointError(
            "resuming would not continue the same run: " + "; ".join(problems), path=path
        )


# -- the run ------------------------------------------------------------------------------------


@dataclass
class RunPosition:
    """Where a run is: ``batch`` batches of epoch ``epoch`` are done (``batch`` equal to
    the epoch's batch count means its training is done but not its validation);
    ``loader_rng`` is the loader's generator state when ``epoch`` began; the sums are
    the epoch's metrics so far. ``consistent`` is False while a step or an epoch's end
    is half done: an interrupt arriving then saves nothing."""

    loader_rng: dict[str, Any]
    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    consistent: bool = True


@dataclass
class Checkpointer:
    """Saves and restores a run in one checkpoint directory."""

    directory: Path
    model: Model
    trainer: Executor
    settings: dict[str, Any]
    epochs: int

    def tensors(self) -> dict[str, Array]:
        weights = self.model._weights
        state = {n: self.trainer.store[n] for n in optimizer_state_names(self.trainer.program)}
        return {**weights, **state}

    def save(self, run: RunPosition, history: History, batches: int) -> Path:
        """Write the checkpoint of the current state (the model and ``run``)."""
        tensors = self.tensors()
        state = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "model": model_identity(self.model),
            "training": self.settings,
            "progress": {
                "epoch": run.epoch,
                "batch": run.batch,
                "batches_per_epoch": batches,
                "epochs": self.epochs,
                "iteration": self.model.iteration,
                "update_count": self.trainer.update_count,
            },
            "rng": {
                "loader_epoch_start": encode_rng(run.loader_rng),
                "dropout": self.trainer.dropout_state(),
            },
            "metrics": {
                "loss_sum": run.loss_sum,
                "correct": run.correct,
                "seen": run.seen,
                "history": {
                    "loss": history.loss,
                    "accuracy": history.accuracy,
                    "val_loss": history.val_loss,
                    "val_accuracy": history.val_accuracy,
                },
            },
            "tensors": {
                "weights": list(self.model._weights),
                "optimizer_state": optimizer_state_names(self.trainer.program),
            },
        }
        return save_checkpoint(self.directory, self.model.iteration, tensors, state)

    def resume(self, history: History) -> RunPosition | None:
        """Restore the newest usable checkpoint into the model, ``history`` and the
        returned position; None when the directory holds none."""
        found = newest_valid(self.directory)
        if found is None:
            return None
        path, state, tensors = found.path, found.checkpoint.state, found.checkpoint.tensors
        try:
            _check_identity(path, state["model"], model_identity(self.model))
            _check_settings(path, state["training"], self.settings)
            names = state["tensors"]
            weights = {n: tensors[n] for n in names["weights"]}
            optimizer = OptimizerState(
                {n: tensors[n] for n in names["optimizer_state"]},
                int(state["progress"]["update_count"]),
            )
            progress, metrics, rngs = state["progress"], state["metrics"], state["rng"]
            run = RunPosition(
                loader_rng=decode_rng(rngs["loader_epoch_start"]),
                epoch=int(progress["epoch"]),
                batch=int(progress["batch"]),
                loss_sum=float(metrics["loss_sum"]),
                correct=int(metrics["correct"]),
                seen=int(metrics["seen"]),
            )
            dropout = rngs["dropout"]
            iteration = int(progress["iteration"])
            past = {
                k: [float(v) for v in metrics["history"][k]]
                for k in ("loss", "accuracy", "val_loss", "val_accuracy")
            }
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"incomplete checkpoint state ({err!r})", path=path) from None
        try:
            check_optimizer_state(self.trainer, optimizer)
            self.trainer.check_dropout_state(dropout)
            self.model.set_weights(weights)
            write_optimizer_state(self.trainer, optimizer)
        except ConfigError as err:
            raise CheckpointError(str(err), path=path) from None
        self.model.iteration = iteration
        self.trainer.restore_dropout_state(dropout)
        history.loss, history.accuracy = past["loss"], past["accuracy"]
        history.val_loss, history.val_accuracy = past["val_loss"], past["val_accuracy"]
        history.resumed_from = path
        return run


class _DeferredInterrupt:
    """While active (main thread, Python's default SIGINT handler in place), a first
    Ctrl-C only sets ``requested``, so the step in progress completes and the loop can
    save a consistent checkpoint; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _DeferredInterrupt:  # noqa: PYI034 - Self needs Python 3.11
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def fit_loop(
    model: Model,
    train: Dataset,
    valid: Dataset | None,
    *,
    epochs: int,
    shuffle: bool,
    progress: ProgressCallback | None,
    on_epoch: EpochCallback | None,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_every: int | None,
    resume: bool,
) -> History:
    """Train ``model`` on ``train`` (checked data) for ``epochs`` epochs; see ``Model.fit``."""
    from .model import History

    trainer = model._trainer()
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int)
        or checkpoint_every <= 0
    ):
        raise ConfigError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if checkpoint is None and (resume or checkpoint_every is not None):
        raise ConfigError("resume and checkpoint_every need checkpoint=<directory>")
    loader = DataLoader(train, model.batch_size, shuffle=shuffle, seed=model.seed + 3)
    loop = _Loop(model, trainer, loader, valid, epochs, progress, on_epoch, History())
    if checkpoint is not None:
        settings = training_settings(
            model,
            trainer,
            shuffle=shuffle,
            train=train,
            valid=valid,
        )
        check_checkpoint_directory(checkpoint)
        loop.keeper = Checkpointer(Path(checkpoint), model, trainer, settings, epochs)
        loop.every = checkpoint_every
        resumed = loop.keeper.resume(loop.history) if resume else None
        if resumed is not None:
            loop.run = resumed
        elif not resume and checkpoint_files(checkpoint):
            raise CheckpointError(
                "holds checkpoints of an earlier run: pass resume=True to continue it, or "
                "use an empty directory",
                path=Path(checkpoint),
            )
    loop.train()
    return loop.history


class _Loop:
    """One call of ``fit``: epochs of steps from ``run`` on, saving checkpoints through
    ``keeper`` (when there is one) at epoch ends, every ``every`` iterations and on Ctrl-C."""

    def __init__(
        self,
        model: Model,
        trainer: Executor,
        loader: DataLoader,
        valid: Dataset | None,
        epochs: int,
        progress: ProgressCallback | None,
        on_epoch: EpochCallback | None,
        history: History,
    ) -> None:
        self.model, self.trainer, self.loader, self.valid = model, trainer, loader, valid
        self.epochs, self.progress, self.on_epoch, self.history = (
            epochs,
            progress,
            on_epoch,
            history,
        )
        self.run = RunPosition(loader_rng=dict(loader.rng.bit_generator.state))
        self.keeper: Checkpointer | None = None
        self.every: int | None = None
        self.classifies = model._classifies()
        self.interrupt = _DeferredInterrupt()

    def train(self) -> None:
        """Run to the last epoch; on Ctrl-C at a step boundary save, then raise
        :class:`TrainingInterrupted`."""
        if self.keeper is None:
            while self.run.epoch < self.epochs:
                self._epoch()
            return
        with self.interrupt:
            try:
                while self.run.epoch < self.epochs:
                    self._epoch()
            except KeyboardInterrupt as stop:
                if not self.run.consistent or isinstance(stop, TrainingInterrupted):
                    raise
                raise TrainingInterrupted(self._save()) from None

    def _save(self) -> Path:
        assert self.keeper is not None
        return self.keeper.save(self.run, self.history, len(self.loader))

    def _check_interrupt(self) -> None:
        if self.interrupt.requested:
            raise KeyboardInterrupt

    def _epoch(self) -> None:
        from .model import _count_correct

        run, trainer, batches = self.run, self.trainer, len(self.loader)
        self.loader.rng.bit_generator.state = run.loader_rng
        start, seen_before = time.perf_counter(), run.seen
        for inputs, labels in self.loader.epoch(run.batch):
            run.consistent = False
            loss = self.model._step(trainer, inputs, labels)
            run.loss_sum += loss * len(labels)
            run.seen += len(labels)
            if self.classifies:
                run.correct += _count_correct(trainer.store[trainer.program.output], labels)
            run.batch += 1
            run.consistent = True
            if self.progress is not None:
                self._report(
                    run, batches, (run.seen - seen_before) / max(time.perf_counter() - start, 1e-9)
                )
            # the last batch's state is saved by the epoch's end, after validation
            if (
                self.every is not None
                and self.model.iteration % self.every == 0
                and run.batch < batches
            ):
                self._save()
            self._check_interrupt()
        self._end_epoch()

    def _report(self, run: RunPosition, batches: int, rate: float) -> None:
        from .model import EpochProgress

        assert self.progress is not None
        accuracy = run.correct / run.seen if self.classifies else None
        self.progress(
            EpochProgress(
                run.epoch,
                self.epochs,
                run.batch - 1,
                batches,
                run.loss_sum / run.seen,
                accuracy,
                rate,
            )
        )

    def _end_epoch(self) -> None:
        """Validate, record the epoch's metrics and move to the next epoch (the loader's
        generator now stands where the next epoch's order is drawn)."""
        run = self.run
        metrics = {"loss": run.loss_sum / run.seen}
        if self.classifies:
            metrics["accuracy"] = run.correct / run.seen
        if self.valid is not None:
            for name, value in self.model._evaluate_dataset(self.valid).items():
                metrics[f"val_{name}"] = value
        run.consistent = False
        for name, value in metrics.items():
            getattr(self.history, name).append(value)
        self.run = RunPosition(
            loader_rng=dict(self.loader.rng.bit_generator.state), epoch=run.epoch + 1
        )
        if self.keeper is not None:
            self._save()
        if self.on_epoch is not None:
            self.on_epoch(self.run.epoch - 1, self.history.latest())
        self._check_interrupt()
