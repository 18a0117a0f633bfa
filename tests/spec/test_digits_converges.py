"""The digits demo learns: >= 95% accuracy on held-out digits, through the Python API
(``examples/train_digits.py``) and through ``edgetrain train examples/digits_cnn.ini``."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_digits", ROOT / "examples" / "train_digits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_api_example_reaches_95_percent_on_held_out_digits() -> None:
    example = _example()
    start = time.perf_counter()
    accuracy = example.train(epochs=10, seed=0, verbose=False)
    assert accuracy >= 0.95
    assert time.perf_counter() - start < 20


def test_held_out_split_is_disjoint_and_seeded() -> None:
    example = _example()
    x_train, _, x_test, y_test = example.held_out_split(seed=0)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 359
    train_rows = {row.tobytes() for row in x_train}
    assert not any(row.tobytes() in train_rows for row in x_test)  # the 1797 images are distinct
    np.testing.assert_array_equal(example.held_out_split(seed=0)[3], y_test)
