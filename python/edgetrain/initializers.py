"""Seedable weight initializers with NNTrainer's names.

Fan-in and fan-out follow the usual convention for the weight layouts edgetrain uses:
a fully-connected weight ``(in, out)`` and a convolution weight ``(out, in, kh, kw)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError
from .tensors import Shape


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of the given layout."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


@dataclass(frozen=True)
class Distribution:
    """What an initializer draws for one weight: ``uniform(-scale, scale)``,
    ``normal(0, scale)`` or the constant ``scale``."""

    kind: Literal["uniform", "normal", "constant"]
    scale: float

    def draw(self, count: int, rng: np.random.Generator) -> NDArray[np.float64]:
        if self.kind == "uniform":
            return rng.uniform(-self.scale, self.scale, size=count)
        if self.kind == "normal":
            return rng.normal(0.0, self.scale, size=count)
        return np.full(count, self.scale)


#: An initializer: the distribution of a weight of a given shape (its fans set the scale).
Initializer = Callable[[Shape], Distribution]


def _fan_sum(shape: Shape) -> int:
    fan_in, fan_out = fans(shape)
    return fan_in + fan_out


INITIALIZERS: dict[str, Initializer] = {
    "xavier_uniform": lambda shape: Distribution("uniform", math.sqrt(6.0 / _fan_sum(shape))),
    "xavier_normal": lambda shape: Distribution("normal", math.sqrt(2.0 / _fan_sum(shape))),
    "he_uniform": lambda shape: Distribution("uniform", math.sqrt(6.0 / fans(shape)[0])),
    "he_normal": lambda shape: Distribution("normal", math.sqrt(2.0 / fans(shape)[0])),
    "lecun_uniform": lambda shape: Distribution("uniform", math.sqrt(3.0 / fans(shape)[0])),
    "lecun_normal": lambda shape: Distribution("normal", math.sqrt(1.0 / fans(shape)[0])),
    "zeros": lambda shape: Distribution("constant", 0.0),
    "ones": lambda shape: Distribution("constant", 1.0),
}


def check_initializer(name: str, what: str) -> str:
    """Normalise an initializer name, refusing unknown ones with the list of known ones."""
    key = name.strip().lower()
    if key not in INITIALIZERS:
        known = ", ".join(sorted(INITIALIZERS))
        raise ConfigError(f"{what}: unknown initializer {name!r} (known: {known})", key=what)
    return key


def initialize(name: str, shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    """Values for a new weight, drawn in float64 so every float type gets the same numbers."""
    distribution = INITIALIZERS[check_initializer(name, "initializer")](shape)
    return distribution.draw(math.prod(shape), rng).reshape(shape)


#: Elements :func:`initialize_into` draws at a time (512 KiB of float64).
FILL_BLOCK = 1 << 16


def initialize_into(
    name: str,
    out: NDArray[np.floating],
    rng: np.random.Generator,
    *,
    after_block: Callable[[], None] | None = None,
) -> None:
    """Writes :func:`initialize`'s values for ``out.shape`` into ``out`` (in its own
    dtype), ``FILL_BLOCK`` elements at a time: a weight is initialised where it lives
    (the arena) without a float64 copy of its size. The generator draws element by
    element, so the blocks continue one stream and give exactly one whole draw's values.
    ``after_block`` is called after each block (the swap file releases its pages there)."""
    distribution = INITIALIZERS[check_initializer(name, "initializer")](out.shape)
    if not out.flags.c_contiguous:
        raise ValueError(f"initialize_into needs a contiguous array, got strides {out.strides}")
    flat = out.reshape(-1)
    for start in range(0, flat.size, FILL_BLOCK):
        count = min(FILL_BLOCK, flat.size - start)
        flat[start : start + count] = distribution.draw(count, rng)
        if after_block is not None:
            after_block()
