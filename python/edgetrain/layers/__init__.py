"""Layers of the executable spec. ``LAYER_TYPES`` maps model-file type names to classes."""

from __future__ import annotations

from .base import Layer, LayerContext, LayerSetup, Operand, ScratchSpec, StepKind, WeightSpec
from .fully_connected import FullyConnected
from .input import Input
from .multiout import Multiout
from .activation import Activation
from .conv1d import Conv1D
from .conv2d import Conv2D
from .embedding import Embedding
from .pooling import Pooling2D
from .reshape import Flatten, Reshape

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (
        Input,
        Activation,
        FullyConnected,
        Multiout,
        Conv1D,
        Conv2D,
        Pooling2D,
        Flatten,
        Reshape,
        Embedding,
    )
}

__all__ = [
    "LAYER_TYPES",
    "Activation",
    "Conv1D",
    "Conv2D",
    "Embedding",
    "Flatten",
    "Pooling2D",
    "Reshape",
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
