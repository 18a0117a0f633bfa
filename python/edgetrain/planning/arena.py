"""The arena tensor store: one aligned byte buffer, every tensor a view at its offset.

This is how a plan is *executed*: the reference executor runs over an
:class:`ArenaStore` exactly as over a ``HeapStore``, so planned training can be
compared bit for bit with unplanned training. With ``poison=True`` the store fills
with NaN bytes (0xFF: NaN in float32 and float64, -1 in integers) every buffer whose
lifetime has ended after each order, and every non-persistent buffer when an
iteration begins, so a tensor read outside its planned lifetime shows up as a wrong
number instead of silently reading a neighbour's stale bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..tensors import TensorSpec
from .lifetimes import Lifespan
from .plan import MemoryPlan

Array = NDArray[Any]

POISON_BYTE = 0xFF


def aligned_bytes(nbytes: int, alignment: int) -> NDArray[np.uint8]:
    """A zeroed uint8 array of ``nbytes`` whose first byte sits at a multiple of
    ``alignment`` in memory."""
    raw = np.zeros(nbytes + alignment, dtype=np.uint8)
    shift = (-raw.ctypes.data) % alignment
    return raw[shift : shift + nbytes]


class ArenaStore:
    """Tensors of a program as views into one arena laid out by ``plan``; ``shared``
    arrays (weights borrowed from another program) are used as given and must be the
    plan's external tensors."""

    def __init__(
        self,
        tensors: Mapping[str, TensorSpec],
        plan: MemoryPlan,
        shared: Mapping[str, Array] | None = None,
        *,
        poison: bool = False,
    ) -> None:
        shared = shared or {}
        self.plan = plan
        self.poison = poison
        self.arena = aligned_bytes(plan.arena_bytes, plan.alignment)
        self.arrays: dict[str, Array] = {}
        for name, spec in tensors.items():
            offset = plan.tensors[name].offset
            if offset is None:
                given = shared.get(name)
                if given is None:
                    raise KeyError(
                        f"tensor '{name}' is external to the plan but no array was given"
                    )
                self.arrays[name] = given
                continue
            raw = self.arena[offset : offset + spec.nbytes]
            self.arrays[name] = raw.view(spec.dtype).reshape(spec.shape)
        self._dying: dict[int, list[tuple[int, int]]] = {}
        self._transient: list[tuple[int, int]] = []
        for buffer in plan.buffers.values():
            span = (buffer.offset, buffer.offset + buffer.size)
            if buffer.lifespan is Lifespan.PERSISTENT:
                continue
            self._transient.append(span)
            if buffer.lifespan is not Lifespan.ITERATION:
                self._dying.setdefault(buffer.last, []).append(span)

    def __getitem__(self, name: str) -> Array:
        return self.arrays[name]

    def begin_iteration(self) -> None:
        """Before a batch is loaded: poison every buffer that does not persist."""
        if self.poison:
            for start, stop in self._transient:
                self.arena[start:stop] = POISON_BYTE

    def end_step(self, order: int) -> None:
        """After order ``order`` ran: poison the buffers whose lifetime ended there."""
        if self.poison:
            for start, stop in self._dying.get(order, ()):
                self.arena[start:stop] = POISON_BYTE
