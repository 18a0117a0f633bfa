"""Type stub of the compiled core (rust/py), checked by ``mypy.stubtest`` in ``make test``."""

import os
from pathlib import Path
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CoreConfigError",
    "CoreDataError",
    "CoreError",
    "CoreExecutor",
    "CoreShapeError",
    "CoreSwapError",
    "__version__",
    "plan_swap",
    "version",
]

__version__: str

def version() -> str:
    """The version of the compiled core, equal to the Python package's version."""

class CoreError(ValueError):
    """Base of the errors the compiled core raises (edgetrain translates them to its own)."""

class CoreShapeError(CoreError):
    """A tensor whose size or shape does not fit the op (edgetrain's ShapeError)."""

class CoreDataError(CoreError):
    """Data an op cannot take, e.g. an embedding id out of range (edgetrain's DataError)."""

class CoreSwapError(CoreError):
    """The swap file could not be made or used (edgetrain's SwapError)."""

class CoreConfigError(CoreError):
    """A program, property or argument the core refuses (edgetrain's ConfigError)."""

def plan_swap(request: str) -> str: ...
@final
class CoreExecutor:
    """A lowered program running in the arena it owns."""

    def __new__(
        cls, description: str, threads: int, seed: int = 0, swap_dir: str | os.PathLike[str] | None = None
    ) -> CoreExecutor: ...
    def bind_external(self, name: str, array: NDArray[np.float32]) -> None: ...
    def tensor(self, name: str) -> NDArray[Any]: ...
    def arena(self) -> NDArray[np.uint8]: ...
    def train_step(self, lr: float, update: int) -> float: ...
    def forward(self, training: bool = False, label: bool = False) -> None: ...
    def run_step(
        self, order: int, *, training: bool, label: bool, lr: float = 0.0, update: int = 0
    ) -> None: ...
    def begin_iteration(self) -> None: ...
    def close_swap(self) -> None: ...
    def release_swap_pages(self) -> None: ...
    def swap_schedule(self) -> str | None: ...
    @property
    def swap_path(self) -> Path | None: ...
    def swap_traffic(
        self,
    ) -> tuple[int, int, int, int, int, int, float, float, int, float, float] | None: ...
    def loss(self) -> float: ...
    def regularization_loss(self) -> float: ...
    @property
    def arena_bytes(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def dropout_state(self) -> int: ...
    @dropout_state.setter
    def dropout_state(self, state: int) -> None: ...
