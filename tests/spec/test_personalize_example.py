"""``examples/personalize_digits.py``: a model trained on the digits 0-7 learns 8 and 9 from
five examples each; accuracy on all ten held-out digits rises, and the memory it reports
is the planned arenas plus what the classifiers keep."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "personalize_digits.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("personalize_digits", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["personalize_digits"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_personalization_learns_8_and_9_from_five_examples_each() -> None:
    example = _example()
    start = time.perf_counter()
    result = example.run(shots=5, seed=0, verbose=False)
    assert time.perf_counter() - start < 20
    assert result.before.new == 0.0 and result.before.base > 0.95
    assert result.before.all < 0.85
    assert set(result.after) == {"nearest centroid", "fine-tuned head"}
    for name, after in result.after.items():
        assert after.new > 0.6, name  # chance between 8 and 9 is 0.5, among ten 0.1
        assert after.base > 0.9, name  # the base classes are kept
        assert after.all > result.before.all + 0.08, name
        memory = result.memory[name]
        assert all(size > 0 for size in memory.values()), memory
        assert result.peak_allocated[name] > 0 and result.peak_rss_growth[name] >= 0
    head = result.memory["fine-tuned head"]
    assert head["head training arena (weights, gradients, Adam state, batch)"] < 1 << 20


def test_the_script_prints_before_after_and_memory() -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = run.stdout
    for text in (
        "before personalization  all ten",
        "after, nearest centroid",
        "after, fine-tuned head",
        "feature extraction arena",
        "head training arena",
        "(tracemalloc)",
        "(ru_maxrss)",
    ):
        assert text in out, text
