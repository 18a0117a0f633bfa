"""What a tensor of the training iteration is, independent of where its bytes live.

The program (see ``program.py``) lists every tensor as a :class:`TensorSpec`; the
executor asks a store for its array, and the planner (later) gives each one an offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

Shape = tuple[int, ...]


class TensorKind(enum.Enum):
    """The role of a tensor, which decides how long it must live and how charts colour it."""

    WEIGHT = "weight"
    GRADIENT = "gradient"
    ACTIVATION = "activation"
    DERIVATIVE = "derivative"
    OPTIMIZER_STATE = "optimizer_state"
    SCRATCH = "scratch"
    INPUT = "input"
    LABEL = "label"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the iteration: a unique name, its full shape (batch included) and type."""

    name: str
    shape: Shape
    dtype: np.dtype[np.generic]
    kind: TensorKind

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * self.dtype.itemsize


def format_shape(shape: Shape) -> str:
    """A shape as users see it in messages: ``(4, 3, 8, 8)``."""
    return "(" + ", ".join(str(d) for d in shape) + ")"
