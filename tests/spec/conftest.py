"""The spec tests exercise the numpy reference executor: a compile that leaves the
backend to edgetrain (``backend="auto"``, the default) runs it here, so exactness tests
(planned = unplanned bit for bit, NaN poisoning, NNTrainer goldens) test the spec
itself. What ``auto`` chooses is tested in ``tests/conformance/test_backend_choice.py``;
commands run in a subprocess choose for themselves."""

from __future__ import annotations

import pytest

from edgetrain import model as model_module
from edgetrain.optimizers import Optimizer
from edgetrain.program import Program


def _reference(requested: str, program: Program, optimizer: Optimizer | None, *, debug_poison: bool) -> str:
    return "python" if requested == "auto" else requested


@pytest.fixture(autouse=True)
def reference_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "resolve_backend", _reference)
