"""Readers for NNTrainer's golden files (format in tests/data/nntrainer/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).parent / "data" / "nntrainer"
NEVER = 4294967294  # NNTrainer's mark for an execution order that never runs


def _read_tensor(raw: bytes, offset: int) -> tuple[NDArray[np.float32], int]:
    (count,) = np.frombuffer(raw, "<i4", 1, offset)
    start = offset + 4
    end = start + 4 * int(count)
    if end > len(raw):
        raise ValueError(f"truncated golden: tensor of {count} floats at byte {offset}")
    return np.frombuffer(raw, "<f4", int(count), start).copy(), end


def read_layer_golden(name: str) -> list[NDArray[np.float32]]:
    """All tensors of ``layers/<name>.nnlayergolden``, flat, in file order."""
    raw = (DATA / "layers" / f"{name}.nnlayergolden").read_bytes()
    tensors, offset = [], 0
    while offset < len(raw):
        tensor, offset = _read_tensor(raw, offset)
        tensors.append(tensor)
    return tensors


def read_model_golden(name: str) -> tuple[int, list[NDArray[np.float32]]]:
    """(iterations, every tensor after the header, flat, in file order) of
    ``models/<name>.nnmodelgolden``; the caller splits them per iteration."""
    raw = (DATA / "models" / f"{name}.nnmodelgolden").read_bytes()
    (iterations,) = np.frombuffer(raw, "<i4", 1, 0)
    tensors, offset = [], 4
    while offset < len(raw):
        tensor, offset = _read_tensor(raw, offset)
        tensors.append(tensor)
    return int(iterations), tensors


def read_exeorder_golden(name: str) -> dict[str, list[int]]:
    """Tensor name to its execution orders (``NEVER`` kept as is)."""
    orders: dict[str, list[int]] = {}
    for line in (DATA / "exeorder" / f"{name}.exegolden").read_text().splitlines():
        if line.strip():
            name_part, *numbers = [p.strip() for p in line.split(",")]
            orders[name_part] = [int(n) for n in numbers]
    return orders
