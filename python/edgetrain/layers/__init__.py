"""Layers of the executable spec. ``LAYER_TYPES`` maps model-file type names to classes."""

from __future__ import annotations

from .base import Layer, LayerContext, LayerSetup, Operand, ScratchSpec, StepKind, WeightSpec
from .fully_connected import FullyConnected
from .input import Input
from .multiout import Multiout
from .activation import Activation

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (
        Input,
        Activation,
        FullyConnected,
        Multiout,
    )
}

__all__ = [
    "LAYER_TYPES",
    "Activation",
    "FullyConnected",
    "Input",
    "Layer",
    "LayerContext",
    "LayerSetup",
    "Multiout",
    "Operand",
    "ScratchSpec",
    "StepKind",
    "WeightSpec",
]
