"""Loss layers: the last node of a training graph, reading the model output and the label.

A loss layer's output is what ``predict`` returns (softmax probabilities for
``cross_entropy``, sigmoid probabilities for ``cross_entropy_sigmoid``, the raw output for
``mse``); its ``loss`` scratch holds the batch loss after ``forward`` when a label is given.
The label tensor always has the loss input's shape: integer class ids are one-hot encoded
before they reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from .errors import ConfigError
from .layers.base import Layer, LayerContext, LayerSetup, Operand, ScratchSpec, StepKind
from .tensors import Shape


class LossLayer(Layer):
    """Base of loss layers. ``fuses_activation``: an activation of that kind right before
    the loss is folded into it (NNTrainer's ``loss = cross`` after a softmax layer)."""

    fuses_activation: ClassVar[str | None] = None
    #: NNTrainer's ``cross``: becomes the sigmoid form after a sigmoid activation
    follows_activation: bool = False

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        loss = ScratchSpec("loss", (1,), frozenset({StepKind.FORWARD}))
        return LayerSetup(output_shapes=[tuple(input_shapes[0])], scratch=[loss])


class MeanSquaredError(LossLayer):
    """``mean((y - t)^2)`` over all elements; the output is ``y`` itself."""

    type_name = "mse"
    derivative_reads = frozenset({Operand.OUTPUTS})
    output_is_view = True

    def forward(self, ctx: LayerContext) -> None:
        y = ctx.inputs[0]
        if ctx.outputs[0] is not y:
            np.copyto(ctx.outputs[0], y)
        if ctx.label is not None:
            diff = y - ctx.label
            ctx.scratch["loss"][0] = np.mean(diff * diff)

    def calc_derivative(self, ctx: LayerContext) -> None:
        assert ctx.label is not None
        y = ctx.outputs[0]
        ctx.grad_inputs[0][...] = (y - ctx.label) * (y.dtype.type(2.0) / y.size)


class SoftmaxCrossEntropy(LossLayer):
    """Softmax over the last axis, then cross entropy summed over classes and averaged over
    the batch; the derivative with respect to the logits is ``(p * sum(t) - t) / batch``
    (``sum`` over the classes), which is ``(p - t) / batch`` for labels that sum to 1."""

    type_name = "cross_entropy"
    derivative_reads = frozenset({Operand.OUTPUTS})
    fuses_activation = "softmax"

    def forward(self, ctx: LayerContext) -> None:
        x = ctx.inputs[0]
        shifted = x - np.max(x, axis=-1, keepdims=True)
        log_norm = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        log_p = shifted - log_norm
        if ctx.label is not None:
            ctx.scratch["loss"][0] = -np.sum(ctx.label * log_p) / x.shape[0]
        np.exp(log_p, out=ctx.outputs[0])

    def calc_derivative(self, ctx: LayerContext) -> None:
        assert ctx.label is not None
        p = ctx.outputs[0]
        t = ctx.label
        ctx.grad_inputs[0][...] = (p * np.sum(t, axis=-1, keepdims=True) - t) / p.dtype.type(
            p.shape[0]
        )


class SigmoidCrossEntropy(LossLayer):
    """Element-wise sigmoid and binary cross entropy, averaged over all elements (as
    NNTrainer's ``cross_sigmoid``); the derivative is ``(sigmoid(x) - t) / size``."""

    type_name = "cross_entropy_sigmoid"
    derivative_reads = frozenset({Operand.OUTPUTS})
    fuses_activation = "sigmoid"

    def forward(self, ctx: LayerContext) -> None:
        x = ctx.inputs[0]
        if ctx.label is not None:
            # log(1 + exp(-|x|)) + max(x, 0) - x * t: stable for any x
            terms = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0) - x * ctx.label
            ctx.scratch["loss"][0] = np.mean(terms)
        with np.errstate(over="ignore"):  # exp overflow gives inf, and 1 / inf is the right 0
            ctx.outputs[0][...] = 1.0 / (1.0 + np.exp(-x))

    def calc_derivative(self, ctx: LayerContext) -> None:
        assert ctx.label is not None
        p = ctx.outputs[0]
        ctx.grad_inputs[0][...] = (p - ctx.label) / p.dtype.type(p.size)


LOSSES: dict[str, type[LossLayer]] = {
    "mse": MeanSquaredError,
    "cross_entropy": SoftmaxCrossEntropy,
    "cross": SoftmaxCrossEntropy,
    "cross_softmax": SoftmaxCrossEntropy,
    "cross_entropy_softmax": SoftmaxCrossEntropy,
    "cross_entropy_sigmoid": SigmoidCrossEntropy,
    "cross_sigmoid": SigmoidCrossEntropy,
}


def make_loss(name: str) -> LossLayer:
    """A loss layer from its name (edgetrain's or NNTrainer's spelling). ``cross`` is
    softmax cross entropy unless the graph finds a sigmoid before it (NNTrainer picks the
    cross entropy by the activation it follows)."""
    key = name.strip().lower()
    if key not in LOSSES:
        known = ", ".join(sorted(LOSSES))
        raise ConfigError(f"unknown loss {name!r} (known: {known})", key="loss")
    loss = LOSSES[key]()
    loss.follows_activation = key == "cross"
    return loss
