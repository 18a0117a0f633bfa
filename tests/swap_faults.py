"""The one contract every swap runtime keeps when its swap file cannot be made: compile
fails with a SwapError, no file is left, the weights are unchanged and the model still
trains. The spec's and the Rust core's fault tests both check it through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetrain import Model
from edgetrain.errors import EdgetrainError, SwapError
from planning_models import BUILDERS


def fails_cleanly(
    directory: Path,
    match: str,
    *,
    watch: Path | None = None,
    batch: int = 4,
    backend: str = "python",
) -> None:
    """Train a convnet one step, then ask for a swap file in ``directory`` and check the
    refusal (``watch``: the folder that must hold no swap file, by default ``directory``)."""
    layers, loss, shape, optimizer = BUILDERS["convnet"]()
    model = Model(layers, loss=loss)
    options: dict[str, Any] = {"backend": "rust", "threads": 1} if backend == "rust" else {}
    model.compile(optimizer(), batch_size=batch, seed=3, **options)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, 5, size=batch)
    model.train_step(x, y)
    before = model.get_weights()
    with pytest.raises(SwapError, match=match) as info:
        model.compile(
            optimizer(), batch_size=batch, seed=3, swap=True, swap_dir=directory, **options
        )
    assert isinstance(info.value, EdgetrainError) and isinstance(info.value, OSError)
    after = model.get_weights()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    model.train_step(x, y)  # the model it was still trains
    folder = watch if watch is not None else directory
    if folder.is_dir():
        assert not [p for p in folder.iterdir() if p.name.startswith("edgetrain-swap-")]
