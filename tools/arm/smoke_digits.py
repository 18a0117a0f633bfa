"""Trains the digits example a few steps and prints what the ARM smoke test compares.

Run by ``tools/arm/smoke.sh`` with the x86-64 development install and inside the emulated
arm64 Debian with the aarch64 wheel installed, once per backend: ``python`` (the numpy
spec) and ``rust`` (the compiled core's kernels, through the wheel's extension). Each run
prints one JSON object: the machine, where ``edgetrain._core`` was loaded from and its
version, a hash of the initial weights (same seed, so they must be identical bit for bit)
and the loss of every step over fixed batches (no shuffling, so every run sees the same
data in the same order).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

import edgetrain
from edgetrain import _core
from edgetrain.datasets import load_digits
from edgetrain.optimizers import Adam
from edgetrain.schedules import Exponential


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, required=True, help="examples/train_digits.py")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--backend", choices=("python", "rust"), default="python")
    options = parser.parse_args()

    # The example's own network: import build_model() from the file itself.
    sys.path.insert(0, str(options.example.parent))
    from train_digits import build_model  # type: ignore[import-not-found]

    x, y = load_digits()
    model = build_model()
    batch = 32
    model.compile(
        Adam(learning_rate=Exponential(0.01, 0.5, 150)),
        batch_size=batch,
        seed=0,
        backend=options.backend,
    )
    digest = hashlib.sha256()
    for name, value in sorted(model.get_weights().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    losses = []
    for step in range(options.steps):
        rows = slice(step * batch, (step + 1) * batch)
        losses.append(model.train_step(x[rows], y[rows]))
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "backend": options.backend,
                "python": platform.python_version(),
                "numpy": np.__version__,
                "core": _core.__file__,
                "core_version": _core.version(),
                "package_version": edgetrain.__version__,
                "initial_weights_sha256": digest.hexdigest(),
                "losses": losses,
            }
        )
    )


if __name__ == "__main__":
    main()
