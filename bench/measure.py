"""What the process-per-run benchmarks share (``speed``, ``swap``): the peak-memory
measurement, the step timer, a random batch of a model file's shapes, and running one
measurement in a child process that prints its JSON row last.

**Peak-memory growth**: after the imports, the random batch and a garbage collection,
the kernel's peak-RSS mark is reset (``5`` written to ``/proc/self/clear_refs``) and the
resident set ``VmRSS`` is read as the baseline; the growth is the peak ``VmHWM`` at the
end minus that baseline: every byte the run held at once at its worst moment beyond
what the process already held. Where the mark cannot be reset (not Linux), it is
``ru_maxrss`` at the end minus ``ru_maxrss`` at the baseline.

**Step time**: the median of ``steps`` timed calls after ``warmup`` untimed ones.
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgetrain import Model
from edgetrain.errors import ConfigError

from .workloads import ROOT


def _status_bytes(key: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in bytes."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """The growth of this process's peak resident set from ``start()`` to ``growth()``;
    ``restart_peak()`` resets the peak mark (not the baseline), so a later ``growth()``
    is the worst moment after that point, still measured from the baseline."""

    def start(self) -> None:
        gc.collect()
        self.reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            pass
        rss = _status_bytes("VmRSS") if self.reset else None
        self.reset = rss is not None
        self.baseline = rss if rss is not None else _maxrss_bytes()
        self.method = "VmHWM - VmRSS (peak mark reset)" if self.reset else "ru_maxrss difference"

    def restart_peak(self) -> bool:
        """Reset the peak mark to the current resident set; False where it cannot be."""
        if not self.reset:
            return False
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def growth(self) -> int:
        peak = _status_bytes("VmHWM") if self.reset else None
        return (peak if peak is not None else _maxrss_bytes()) - self.baseline


def time_steps(step: Callable[[], object], warmup: int, steps: int) -> float:
    """The median seconds of ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_batch(model: Model, batch: int) -> tuple[NDArray[np.float32], NDArray[np.int64], int]:
    """Random inputs of the model file's input shape and class labels (no allocation of
    the model: only the graph's shapes), and the number of classes."""
    from edgetrain.graph import build_graph

    graph = build_graph(model.layers, batch)
    shape = graph.input_nodes()[0].output_shapes[0][1:]
    classes = graph.nodes[-1].output_shapes[0][-1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=batch)
    return x, y, classes


def run_worker(module: str, arguments: Sequence[str], timeout: float, what: str) -> dict[str, Any]:
    """Runs ``python -m <module> <arguments>`` from the repository root and returns the
    JSON object on its last output line; a ``ConfigError`` naming ``what`` when it fails
    or takes over ``timeout`` seconds."""
    command = [sys.executable, "-m", module, *arguments]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise ConfigError(f"{what} took over {timeout:g} s") from err
    if done.returncode != 0 or not done.stdout.strip():
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{what} failed: {detail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
