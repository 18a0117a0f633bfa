"""edgetrain: on-device training that plans every byte of the iteration ahead of time.

This package is the executable spec (numpy); ``edgetrain._core`` is the compiled core.
"""

from __future__ import annotations

from . import layers, optimizers, schedules
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    EdgetrainError,
    ModelFileError,
    SaveError,
    ShapeError,
    StateError,
    SwapError,
)
from .model import History, Model
from .training import TrainingInterrupted

__version__ = "0.1.0"


def core_version() -> str | None:
    """The compiled core's version, or None when the extension is not built."""
    try:
        from . import _core
    except ImportError:
        return None
    return _core.version()


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EdgetrainError",
    "History",
    "Model",
    "ModelFileError",
    "SaveError",
    "ShapeError",
    "StateError",
    "SwapError",
    "TrainingInterrupted",
    "core_version",
    "layers",
    "optimizers",
    "schedules",
]
