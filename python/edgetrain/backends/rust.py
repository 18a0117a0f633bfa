"""The executor of ``backend="rust"``: the lowered program run by ``_core.CoreExecutor``.

It keeps the reference executor's interface (``train_step``, ``forward``, ``loss``,
``store[name]``, ``update_count``), so the model, ``fit``, checkpoints and weight I/O
work unchanged. ``store[name]`` is a numpy array that *is* the tensor's bytes in the
core's arena, so weights are read and written without copies; external tensors (the
weights an inference program borrows) are the arrays given, bound by pointer and kept
alive by the core executor. Every ``_core`` error is raised as edgetrain's own
``ShapeError`` / ``ConfigError``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, DataError, EdgetrainError, ShapeError, SwapError
from ..executor import Executor
from ..generator_state import decode_splitmix, encode_splitmix
from ..optimizers import Optimizer
from ..planning.plan import MemoryPlan
from ..planning.swap import SwapSchedule
from ..program import Program, Step
from ..swapping.store import SwapTraffic
from .lowering import program_json

Array = NDArray[Any]
T = TypeVar("T")


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def translate(error: Exception) -> EdgetrainError:
    """A ``_core`` exception as the spec's error class with the same message."""
    from .. import _core

    if isinstance(error, _core.CoreShapeError):
        return ShapeError(str(error))
    if isinstance(error, _core.CoreDataError):
        return DataError(str(error))
    if isinstance(error, _core.CoreSwapError):
        return SwapError(str(error))
    return ConfigError(str(error))


def _core_call(work: Callable[[], T]) -> T:
    from .. import _core

    try:
        return work()
    except _core.CoreError as error:
        raise translate(error) from error


class RustStore:
    """Tensor name to numpy view into the core's arena (or the external array given)."""

    def __init__(self, arrays: dict[str, Array], plan: MemoryPlan) -> None:
        self.arrays = arrays
        self.plan = plan

    def __getitem__(self, name: str) -> Array:
        return self.arrays[name]


class RustExecutor(Executor):
    """Runs ``program`` laid out by ``plan`` in the Rust core, ``threads`` threads wide
    (default: every core this process may use); ``shared`` gives the arrays of the
    plan's external tensors. With ``schedule`` (a training program) the core runs the
    swap schedule over its swap file in ``swap_dir`` (``spec/swapping.md``): swapped
    tensors' arrays are their slots in the file, where swapped weights are between
    iterations."""

    def __init__(
        self,
        program: Program,
        plan: MemoryPlan,
        optimizer: Optimizer | None,
        *,
        threads: int | None = None,
        seed: int = 0,
        shared: Mapping[str, Array] | None = None,
        schedule: SwapSchedule | None = None,
        swap_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from .. import _core

        count = default_threads() if threads is None else threads
        if isinstance(count, bool) or int(count) != count or count <= 0:
            raise ConfigError(f"threads must be a positive integer, got {threads!r}", key="threads")
        description = program_json(program, plan, optimizer, schedule)
        folder = None if swap_dir is None else os.fspath(swap_dir)
        self.core = _core_call(lambda: _core.CoreExecutor(description, int(count), seed, folder))
        self.schedule = schedule
        self.traffic = SwapTraffic()
        if schedule is not None:  # the swap file goes at interpreter exit too
            weakref.finalize(self, self.core.close_swap)
        arrays: dict[str, Array] = {}
        shared = shared or {}
        for name in program.tensors:
            if plan.tensors[name].offset is None:
                given = shared.get(name)
                if given is None:
                    raise ConfigError(f"tensor '{name}' is external to the plan but no array was given")
                self.core.bind_external(name, given)
                arrays[name] = given
            else:
                arrays[name] = self.core.tensor(name)
        self._arrays = arrays
        super().__init__(program, RustStore(arrays, plan), optimizer)

    @property
    def threads(self) -> int:
        return int(self.core.threads)

    def dropout_state(self) -> dict[str, Any]:
        return encode_splitmix(self.core.dropout_state)

    def check_dropout_state(self, state: Mapping[str, Any]) -> None:
        decode_splitmix(state)

    def restore_dropout_state(self, state: Mapping[str, Any]) -> None:
        self.core.dropout_state = decode_splitmix(state)

    def train_step(self, inputs: Sequence[Array], label: Array, lr: float) -> float:
        """One iteration in the core, the GIL released; the loss plus the L2 penalty."""
        if not self.program.training:
            raise ConfigError("train_step on an inference program")
        if self.schedule is not None:  # the input and label move to order 0's blocks
            _core_call(self.core.begin_iteration)
            for name in [*self.program.inputs, *([self.program.label] if self.program.label else [])]:
                self._arrays[name] = self.core.tensor(name)
        self.load_batch(inputs, label)
        self.update_count += 1
        try:
            return _core_call(lambda: self.core.train_step(float(lr), self.update_count))
        finally:
            self._update_traffic()

    def _update_traffic(self) -> None:
        """Copies the core's counters into ``traffic`` in place (callers may hold it);
        ``_core`` gives them in the order of ``SwapTraffic``'s fields."""
        counts = self.core.swap_traffic()
        if counts is not None:
            for field, value in zip(fields(SwapTraffic), counts, strict=True):
                setattr(self.traffic, field.name, value)

    @property
    def swap_path(self) -> str | None:
        """The swap file (None without swapping)."""
        path = self.core.swap_path
        return None if path is None else str(path)

    def close_swap(self) -> None:
        """Write resident weights back and delete the swap file; training is refused
        afterwards, the arrays stay readable until this executor goes."""
        self.core.close_swap()

    def forward(self, inputs: Sequence[Array], label: Array | None = None) -> Array:
        """Forward only, in inference mode; returns the output tensor (not a copy)."""
        self.load_batch(inputs, label)
        _core_call(lambda: self.core.forward(training=False, label=label is not None))
        return self.store[self.program.output]

    def run_order(self, order: int, *, training: bool, label: bool, lr: float = 0.0) -> None:
        """Entry ``order`` of the execution order alone, with the current update count
        (the conformance tests' step-by-step comparison)."""
        _core_call(
            lambda: self.core.run_step(
                order, training=training, label=label, lr=float(lr), update=self.update_count
            )
        )

    def run_step(self, step: Step, *, training: bool, label: bool, lr: float) -> None:
        self.run_order(self.program.steps.index(step), training=training, label=label, lr=lr)

    def regularization_loss(self) -> float:
        return _core_call(self.core.regularization_loss)

    def arena(self) -> NDArray[np.uint8]:
        """The core's whole arena as bytes (no copy)."""
        return self.core.arena()
