"""What a person watching training sees: a progress bar per epoch and the memory used.

Peak memory is the process's resident high-water mark (``getrusage`` ``ru_maxrss``), the
number an on-device budget is about; it counts everything the process ever touched,
Python and numpy included, so the growth during training is reported beside it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

from tqdm import tqdm

from .model import EpochProgress

MIB = 1024 * 1024


class ProgressBar:
    """A tqdm bar per epoch showing the running loss, accuracy and samples per second;
    pass it as ``Model.fit(progress=...)``."""

    def __init__(self, *, file: TextIO | None = None, disable: bool = False) -> None:
        self.file = file if file is not None else sys.stderr
        self.disable = disable
        self._bar: tqdm[Any] | None = None

    def __call__(self, step: EpochProgress) -> None:
        if step.batch == 0:
            self.close()
            self._bar = tqdm(
                total=step.batches,
                desc=f"epoch {step.epoch + 1}/{step.epochs}",
                unit="batch",
                file=self.file,
                disable=self.disable,
                dynamic_ncols=True,
                leave=True,
            )
        if self._bar is None:
            return
        postfix = {"loss": f"{step.loss:.4f}"}
        if step.accuracy is not None:
            postfix["acc"] = f"{step.accuracy:.1%}"
        postfix["samples/s"] = f"{step.samples_per_second:,.0f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)
        if step.batch + 1 == step.batches:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def peak_memory_bytes() -> int | None:
    """The process's peak resident memory so far, or None where ``resource`` is missing
    (Windows). Linux reports KiB, macOS bytes."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@dataclass
class MemoryWatch:
    """The peak memory before a piece of work, to report how much the work added."""

    before: int | None

    @classmethod
    def start(cls) -> MemoryWatch:
        return cls(peak_memory_bytes())

    def report(self) -> str:
        after = peak_memory_bytes()
        if after is None or self.before is None:
            return "peak memory: not measurable on this platform"
        growth = max(after - self.before, 0)
        return f"peak memory: {after / MIB:.1f} MiB (+{growth / MIB:.1f} MiB during training)"
