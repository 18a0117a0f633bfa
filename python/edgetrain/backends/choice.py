"""Which executor a compile gets when the caller leaves it to edgetrain (``"auto"``)."""

from __future__ import annotations

import importlib.util

from ..optimizers import Optimizer
from ..program import Program
from .lowering import lowering_refusal


def core_available() -> bool:
    """Whether the compiled core (``edgetrain._core``) is built into this install."""
    return importlib.util.find_spec("edgetrain._core") is not None


def resolve_backend(requested: str, program: Program, optimizer: Optimizer | None, *, debug_poison: bool) -> str:
    """``requested`` unless it is ``"auto"``; then the rust core, the fast path, wherever
    it runs ``program`` as the spec does, and the numpy reference where it cannot: no core
    built (a source install without Rust), float64, ``debug_poison`` (a NaN-poisoned
    arena is the reference executor's tool), or a layer or optimizer the core lacks."""
    if requested != "auto":
        return requested
    if debug_poison or not core_available() or lowering_refusal(program, optimizer) is not None:
        return "python"
    return "rust"
