"""Weights and models in other frameworks' formats: safetensors, ONNX import and export.

The ONNX modules need the ``onnx`` package (``pip install edgetrain[onnx]``); they are
imported only when one of their functions is called, so edgetrain itself runs without it.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..model import Model


def onnx_module(name: str) -> ModuleType:
    """``edgetrain.interchange.<name>``, or a :class:`ConfigError` saying how to install
    the ``onnx`` package when it is missing."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != "onnx" and not str(err.name).startswith("onnx."):
            raise
        raise ConfigError(
            "ONNX import and export need the onnx package: pip install 'edgetrain[onnx]'"
        ) from None


def export_onnx(model: Model, path: str | os.PathLike[str], **options: Any) -> None:
    """Write ``model`` as an inference ONNX model (see :mod:`.onnx_export`)."""
    onnx_module("onnx_export").export_onnx(model, path, **options)


def import_onnx(path: str | os.PathLike[str], **options: Any) -> Model:
    """An edgetrain model with the weights of an ONNX file (see :mod:`.onnx_import`)."""
    model: Model = onnx_module("onnx_import").import_onnx(path, **options)
    return model


__all__ = ["export_onnx", "import_onnx", "onnx_module"]
