"""Executors other than the numpy reference: the program lowered for the Rust core
(``lowering``) and the executor that runs it (``rust``). The spec modules never import
these; ``Model.compile(backend=...)`` picks one."""

from __future__ import annotations

from .lowering import BACKENDS, lower_program, lowering_refusal

__all__ = ["BACKENDS", "lower_program", "lowering_refusal"]
