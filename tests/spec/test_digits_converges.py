"""The digits demo learns: >= 95% accuracy on held-out digits, through the Python API
(``examples/train_digits.py``) and through ``edgetrain train examples/digits_cnn.ini``."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edgetrain import Model, cli
from edgetrain.data import split_dataset
from edgetrain.datasets import load_digits

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]
DIGITS_INI = ROOT / "examples" / "digits_cnn.ini"


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


def test_cli_demo_reaches_95_percent_on_held_out_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What `make demo` does (`edgetrain train examples/digits_cnn.ini --data digits
    --save ...`), checked by loading the saved weights and scoring the digits the command
    held out; the accuracy it printed must be that score."""
    weights = tmp_path / "digits.npz"
    start = time.perf_counter()
    code = cli.main(["train", str(DIGITS_INI), "--data", "digits", "--save", str(weights), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert time.perf_counter() - start < 20
    x, y = load_digits()
    held_out = split_dataset(_Indexed(len(y)), 0.2, seed=0)[1]
    indices = held_out.take(np.arange(len(held_out)))[1]
    model = Model.from_ini(DIGITS_INI)
    model.compile(batch_size=32)
    model.load(weights)
    accuracy = float(np.mean(model.predict(x[indices]).argmax(axis=1) == y[indices]))
    assert accuracy >= 0.95
    printed = float(re.search(r"validation \(359 samples\).*val_accuracy (\d+\.\d+)%", out).group(1))  # type: ignore[union-attr]
    assert abs(printed / 100 - accuracy) < 1e-3


class _Indexed:
    """A dataset whose labels are the sample indices (to see which samples a split took)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def take(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        return [np.asarray(indices)], np.asarray(indices)
