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
from .dropout import Dropout
from .merge import Addition, Concat
from .normalization import BatchNormalization, LayerNormalization
from .split import Split

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
        BatchNormalization,
        LayerNormalization,
        Dropout,
        Addition,
        Concat,
        Split,
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
    "Addition",
    "BatchNormalization",
    "Concat",
    "Dropout",
    "FullyConnected",
    "Input",
    "Layer",
    "LayerContext",
    "LayerNormalization",
    "LayerSetup",
    "Multiout",
    "Operand",
    "ScratchSpec",
    "Split",
    "StepKind",
    "WeightSpec",
]
