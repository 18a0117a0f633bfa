"""One error vocabulary for the spec and the core, so conformance can compare errors too.

Every error edgetrain raises on purpose derives from :class:`EdgetrainError`; a user can
catch that one class. Each subclass also derives from the builtin it refines
(``ValueError``, ``OSError``) so generic handlers keep working. The compiled core's
exceptions (``_core.CoreShapeError``, ``CoreDataError``, ``CoreConfigError``) reach users
as :class:`ShapeError`, :class:`DataError` and :class:`ConfigError`
(``backends/rust.py``; this module never imports the core).
"""

from __future__ import annotations

from pathlib import Path


class EdgetrainError(Exception):
    """Base of every error edgetrain raises on purpose."""


class ShapeError(EdgetrainError, ValueError):
    """Tensor shapes that do not fit together (names both layers and both shapes)."""


class ConfigError(EdgetrainError, ValueError):
    """A layer, optimizer or model property that is unknown or out of range.

    ``key`` names the property (its model-file key) when one is to blame, so that the
    model-file reader can point at the line that set it.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class ModelFileError(ConfigError):
    """A model file that cannot be read: names the file, line, section and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path,
        line: int | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.section = section
        where = self.path
        if line is not None:
            where += f":{line}"
        if section is not None:
            where += f" [{section}]"
        if key is not None:
            where += f" key '{key}'"
        super().__init__(f"{where}: {message}", key=key)


class DataError(EdgetrainError, ValueError):
    """Training data that cannot be used: wrong sizes, labels out of range, NaN, empty."""


class StateError(EdgetrainError, RuntimeError):
    """A call made in the wrong state, e.g. training a model that was never compiled."""


class SaveError(EdgetrainError, OSError):
    """Weights or checkpoints that could not be written; the previous file is kept."""


class CheckpointError(EdgetrainError, ValueError):
    """A checkpoint that cannot be used (corrupt, truncated, from another model or other
    training settings); names the file."""

    def __init__(self, message: str, *, path: str | Path) -> None:
        self.path = str(path)
        #: what is wrong, without the file name
        self.reason = message
        super().__init__(f"{self.path}: {message}")


class SwapError(EdgetrainError, OSError):
    """The swap file cannot be created, sized or mapped (missing or unwritable directory,
    not enough space); raised before training starts, with the model unchanged."""
