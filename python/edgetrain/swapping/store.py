"""The swapping tensor store: a resident arena plus a swap file, driven by a schedule.

The executor runs over a :class:`SwapStore` exactly as over an ``ArenaStore``; the store
is also the executor's ``IterationObserver``, and carries out the schedule's transfers
at their orders: before order ``k`` runs it reads in (or gives arena bytes to) every
segment starting at ``k``; after order ``k`` it writes out, drops or frees every segment
ending at ``k``. Transfers are synchronous copies through the mapping (the Rust core
does them on a background thread, ahead of the executor; ``spec/swapping.md``).

A tensor's array is wherever its bytes are now: a view into the arena while its buffer
is resident, a view into the mapped swap file while it is out. So a swapped weight
between iterations *is* its slot in the file: ``Model.get_weights``/``set_weights`` and
inference programs read and write it there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..planning.arena import POISON_BYTE, aligned_bytes
from ..planning.lifetimes import Lifespan
from ..planning.swap import Exit, Segment, SwapSchedule
from ..tensors import TensorSpec
from .file import SwapFile

Array = NDArray[Any]


@dataclass
class SwapTraffic:
    """Bytes copied to and from the swap file: in the last complete iteration, and in
    total since the store was made. The rust backend's transfers run beside the steps;
    ``waits``/``write_waits`` count the read-ins/write-outs not done when the executor
    needed them, ``wait_seconds`` the time it spent blocked on transfers in all (late
    read-ins, late write-outs, the drain at the end of each iteration), of which
    ``read_wait_seconds``/``write_wait_seconds`` on late read-ins/write-outs;
    ``transfer_seconds`` is the time the transfer thread spent copying since the executor
    was made (the python runtime's synchronous copies are not timed)."""

    iterations: int = 0
    last_written: int = 0
    last_read: int = 0
    total_written: int = 0
    total_read: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    read_wait_seconds: float = 0.0
    write_waits: int = 0
    write_wait_seconds: float = 0.0
    transfer_seconds: float = 0.0


class SwapStore:
    """Tensors of a training program laid out by ``schedule``: unswapped buffers at fixed
    arena offsets, swapped ones moving between arena segments and their file slot."""

    def __init__(
        self,
        tensors: Mapping[str, TensorSpec],
        schedule: SwapSchedule,
        swap_file: SwapFile,
        *,
        poison: bool = False,
    ) -> None:
        plan = schedule.plan
        if swap_file.nbytes < schedule.swap_file_bytes:
            raise ValueError("the swap file is smaller than the schedule's")
        self.schedule = schedule
        self.file = swap_file
        self.poison = poison
        self.arena = aligned_bytes(schedule.resident_bytes, schedule.alignment)
        self.traffic = SwapTraffic()
        self._specs = dict(tensors)
        self._members = {b.name: b.members for b in plan.buffers.values()}
        self._nbytes = {b: max(tensors[m].nbytes for m in ms) for b, ms in self._members.items()}
        self.arrays: dict[str, Array] = {}
        for buffer, offset in schedule.resident_offsets.items():
            for name in self._members[buffer]:
                self.arrays[name] = self._view(self.arena, offset, tensors[name])
        self._out: dict[str, dict[str, Array]] = {}
        for buffer in schedule.swapped:
            slot = schedule.slots[buffer].offset
            self._out[buffer] = {
                m: self._view(swap_file.array, slot, tensors[m]) for m in self._members[buffer]
            }
            self.arrays.update(self._out[buffer])
        self._enter: dict[int, list[Segment]] = {}
        self._leave: dict[int, list[Segment]] = {}
        for segments in schedule.segments.values():
            for s in segments:
                self._enter.setdefault(s.start, []).append(s)
                self._leave.setdefault(s.end, []).append(s)
        self._dying: dict[int, list[tuple[int, int]]] = {}
        self._transient: list[tuple[int, int]] = []
        for buffer, offset in schedule.resident_offsets.items():
            b = plan.buffers[buffer]
            if b.lifespan is Lifespan.PERSISTENT:
                continue
            span = (offset, offset + b.size)
            self._transient.append(span)
            if b.lifespan is not Lifespan.ITERATION:
                self._dying.setdefault(b.last, []).append(span)
        for segments in schedule.segments.values():
            self._transient += [(seg.offset, seg.offset + seg.size) for seg in segments]
        self._resident: dict[str, Segment] = {}
        self._next_order = 0
        self._written = self._read = 0

    @staticmethod
    def _view(raw: NDArray[np.uint8], offset: int, spec: TensorSpec) -> Array:
        return raw[offset : offset + spec.nbytes].view(spec.dtype).reshape(spec.shape)

    def __getitem__(self, name: str) -> Array:
        return self.arrays[name]

    # -- the iteration -------------------------------------------------------------------

    def begin_iteration(self) -> None:
        """Before the batch is loaded: settle an interrupted iteration, then enter order 0."""
        if self._resident:
            self.settle()
        if self.poison:
            for start, stop in self._transient:
                self.arena[start:stop] = POISON_BYTE
        self._written = self._read = 0
        self._next_order = 0
        self._enter_order(0)

    def end_step(self, order: int) -> None:
        """After order ``order`` ran: its write-outs, drops and frees, then enter the next."""
        for segment in self._leave.get(order, ()):
            self._exit(segment)
        if self.poison:
            for start, stop in self._dying.get(order, ()):
                self.arena[start:stop] = POISON_BYTE
        last = len(self.schedule.plan.steps) - 1
        if order < last:
            self._enter_order(order + 1)
        else:
            self.traffic.iterations += 1
            self.traffic.last_written, self.traffic.last_read = self._written, self._read
            self._next_order = 0

    def _enter_order(self, order: int) -> None:
        self._next_order = order
        for segment in self._enter.get(order, ()):
            buffer = segment.buffer
            if segment.read_in:
                n = self._nbytes[buffer]
                slot = self.schedule.slots[buffer].offset
                self.arena[segment.offset : segment.offset + n] = self.file.array[slot : slot + n]
                self.file.release_pages(slot, slot + n)
                self._count(read=n)
            for name in self._members[buffer]:
                self.arrays[name] = self._view(self.arena, segment.offset, self._specs[name])
            self._resident[buffer] = segment

    def _exit(self, segment: Segment, *, write: bool = False) -> None:
        buffer = segment.buffer
        if write or segment.exit is Exit.WRITE:
            n = self._nbytes[buffer]
            slot = self.schedule.slots[buffer].offset
            self.file.array[slot : slot + n] = self.arena[segment.offset : segment.offset + n]
            self.file.release_pages(slot, slot + n)
            self._count(written=n)
        self.arrays.update(self._out[buffer])
        self._resident.pop(buffer, None)
        if self.poison:
            self.arena[segment.offset : segment.offset + segment.size] = POISON_BYTE

    def settle(self) -> None:
        """An iteration stopped part-way (an error in a layer, Ctrl-C): keep what
        persistent buffers hold now by writing them out, and release every segment, so
        weights read between iterations are current and the next iteration starts from
        the schedule's between-iterations state. Done by ``Model`` when a step raises,
        and by :meth:`begin_iteration` in any case."""
        for segment in list(self._resident.values()):
            persistent = self.schedule.plan.buffers[segment.buffer].lifespan is Lifespan.PERSISTENT
            self._exit(segment, write=persistent)

    def _count(self, *, written: int = 0, read: int = 0) -> None:
        self._written += written
        self._read += read
        self.traffic.total_written += written
        self.traffic.total_read += read

    # -- weights and closing -----------------------------------------------------------

    def release_file_pages(self) -> None:
        """Drop the whole swap file from the resident set (after weights are copied in:
        the copy touched their pages)."""
        self.file.release_pages(0, self.file.nbytes)

    def persistent_arrays(self) -> dict[str, Array]:
        """Where every persistent tensor lives between iterations (its file slot when
        swapped); valid until :meth:`close`."""
        if self._resident:
            self.settle()
        plan = self.schedule.plan
        return {
            name: self.arrays[name]
            for name, t in plan.tensors.items()
            if t.lifespan is Lifespan.PERSISTENT
        }

    def close(self) -> None:
        """Drop every view and delete the swap file."""
        self.arrays = {}
        self._out = {}
        self._resident = {}
        self.file.close()
