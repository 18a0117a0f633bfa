"""Seedable weight initializers with NNTrainer's names.

Fan-in and fan-out follow the usual convention for the weight layouts edgetrain uses:
a fully-connected weight ``(in, out)`` and a convolution weight ``(out, in, kh, kw)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError
from .tensors import Shape

Initializer = Callable[[Shape, np.random.Generator], NDArray[np.float64]]


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


def _xavier_uniform(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _xavier_normal(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    fan_in, fan_out = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def _he_uniform(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def _he_normal(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    fan_in, _ = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


def _lecun_uniform(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    fan_in, _ = fans(shape)
    limit = math.sqrt(3.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def _lecun_normal(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    fan_in, _ = fans(shape)
    return rng.normal(0.0, math.sqrt(1.0 / fan_in), size=shape)


def _zeros(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    return np.zeros(shape)


def _ones(shape: Shape, rng: np.random.Generator) -> NDArray[np.float64]:
    return np.ones(shape)


INITIALIZERS: dict[str, Initializer] = {
    "xavier_uniform": _xavier_uniform,
    "xavier_normal": _xavier_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "lecun_uniform": _lecun_uniform,
    "lecun_normal": _lecun_normal,
    "zeros": _zeros,
    "ones": _ones,
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
    return INITIALIZERS[check_initializer(name, "initializer")](shape, rng)
