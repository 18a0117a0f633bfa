"""Embedding: a table lookup of integer ids.

As in NNTrainer, the ids arrive in the model's float tensors (the data pipeline has one
dtype), so they are checked to be whole numbers in ``[0, in_dim)`` before use; float32
holds every integer up to 2**24 exactly. No derivative flows back to ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError, StateError
from ..initializers import check_initializer
from ..tensors import Shape, format_shape
from .base import Array, Layer, LayerContext, LayerSetup, Operand, WeightSpec, positive_int
from .window import matrix_view


class Embedding(Layer):
    """``y[..., t, :] = W[x[..., t], :]`` with ``W (in_dim, out_dim)``.

    Input ``(N, L)`` gives ``(N, L, out_dim)``; NNTrainer's ``(N, 1, 1, L)`` gives
    ``(N, 1, L, out_dim)``. The gradient is a scatter-add of the incoming derivative into
    the rows of the ids (an id used twice gets both contributions).
    """

    type_name = "embedding"
    gradient_reads = frozenset({Operand.INPUTS})
    has_derivative = False

    def __init__(
        self,
        *,
        in_dim: int | str,
        out_dim: int | str,
        weight_initializer: str = "xavier_uniform",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.in_dim = positive_int(in_dim, "in_dim")
        self.out_dim = positive_int(out_dim, "out_dim")
        self.weight_initializer = check_initializer(weight_initializer, "weight_initializer")

    def config(self) -> dict[str, Any]:
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "weight_initializer": self.weight_initializer,
        }

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = tuple(input_shapes[0])
        if len(shape) == 2:
            output: Shape = (*shape, self.out_dim)
        elif len(shape) == 4 and shape[1] == 1 and shape[2] == 1:
            output = (shape[0], 1, shape[3], self.out_dim)
        else:
            raise self.shape_error(
                f"expects ids of shape (N, L) or (N, 1, 1, L), got {format_shape(shape)}"
            )
        weight = WeightSpec("weight", (self.in_dim, self.out_dim), self.weight_initializer)
        return LayerSetup(output_shapes=[output], weights=[weight])

    def ids(self, x: Array) -> Array:
        """The ids of ``x`` as integers, refusing any that is not a whole number in range."""
        flat = x.reshape(-1)
        with np.errstate(invalid="ignore"):
            bad = ~((flat >= 0) & (flat < self.in_dim) & (np.floor(flat) == flat))
        if bad.any():
            where = int(np.argmax(bad))
            position = tuple(int(i) for i in np.unravel_index(where, x.shape))
            raise DataError(
                f"{self.type_name} layer '{self.display_name}': ids must be whole numbers in "
                f"[0, {self.in_dim}), got {flat[where]!r} at {position} "
                f"({int(bad.sum())} bad of {flat.size})"
            )
        ids: Array = flat.astype(np.intp)
        return ids

    def forward(self, ctx: LayerContext) -> None:
        table, y = ctx.weights["weight"], ctx.outputs[0]
        np.take(table, self.ids(ctx.inputs[0]), axis=0, out=matrix_view(y, (-1, self.out_dim)))

    def calc_gradient(self, ctx: LayerContext) -> None:
        grad = ctx.gradients["weight"]
        grad[...] = 0
        rows = ctx.grad_outputs[0].reshape(-1, self.out_dim)
        np.add.at(grad, self.ids(ctx.inputs[0]), rows)

    def calc_derivative(self, ctx: LayerContext) -> None:
        raise StateError(
            f"{self.type_name} layer '{self.display_name}' has no derivative: its inputs are ids"
        )
