"""Parsers for layer properties given as numbers or as model-file strings.

A model-file loader passes every value as the text after ``key=``; the Python API passes
numbers. Each parser accepts both and raises :class:`ConfigError` naming the key, so the
loader can point at the line that set it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError


def float_in_range(
    value: Any,
    key: str,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Property ``key`` as a float in ``[low, high]``; ``low_open``/``high_open`` exclude
    an end (``epsilon`` must be > 0, ``momentum`` may be 0 or 1)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number in {interval}, got {value!r}", key=key) from None
    inside = (number > low if low_open else number >= low) and (
        number < high if high_open else number <= high
    )
    if math.isnan(number) or not inside or isinstance(value, bool):
        raise ConfigError(f"{key} must be a number in {interval}, got {value!r}", key=key)
    return number


def _integer(item: Any, key: str, value: Any) -> int:
    if isinstance(item, bool):
        raise ConfigError(f"{key} must be an integer or a list of integers, got {value!r}", key=key)
    try:
        number = int(item.strip()) if isinstance(item, str) else int(item)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key} must be an integer or a list of integers, got {value!r}", key=key
        ) from None
    if isinstance(item, float) and item != number:
        raise ConfigError(f"{key} must be an integer or a list of integers, got {value!r}", key=key)
    return number


def axis_value(value: Any, key: str = "axis") -> int | None:
    """One axis (``1``, ``"1"``, ``-1``), or ``None`` when not given. The range is checked
    against the input's rank in ``setup``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _integer(value, key, value)


def axis_list(value: Any, key: str = "axis") -> tuple[int, ...] | None:
    """Axes as a tuple (``2``, ``"1, 3"``, ``[1, 3]``), or ``None`` when not given."""
    if value is None:
        return None
    if isinstance(value, str):
        items: Sequence[Any] = [part for part in value.replace(" ", "").split(",") if part]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    if not items:
        raise ConfigError(f"{key} must name at least one axis, got {value!r}", key=key)
    return tuple(_integer(item, key, value) for item in items)


def resolve_axis(axis: int, rank: int) -> int | None:
    """``axis`` counted over a shape of ``rank`` (batch = 0, negatives from the end), or
    ``None`` when it is the batch axis or outside the shape."""
    resolved = axis + rank if axis < 0 else axis
    return resolved if 0 < resolved < rank else None


def parse_flag(value: Any, key: str) -> bool:
    """A boolean property given as a bool or a model-file word (true/false, 1/0, yes/no)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "1", "yes", "on"):
        return True
    if word in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}", key=key)
