"""Weights and models in other frameworks' formats: safetensors, ONNX import and export.

The ONNX modules need the ``onnx`` package (``pip install edgetrain[onnx]``); they are
imported only when one of their functions is called, so edgetrain itself runs without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import Model


def import_onnx(path: str | os.PathLike[str], **options: Any) -> Model:
    """An edgetrain model with the weights of an ONNX file (see :mod:`.onnx_import`)."""
    from .onnx_import import import_onnx as run

    return run(path, **options)


__all__ = ["import_onnx"]
