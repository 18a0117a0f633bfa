"""Batch and layer normalization (``spec/layers/normalization.md``).

Both keep what their backward needs — the normalised input ``x_hat`` and the inverse
standard deviation — in scratch tensors, so neither backward reads the input. That lets
the output be written over the input's buffer and the outgoing derivative over the
incoming one, which is where normalization layers save memory in a planned iteration.
Since ``x_hat`` is kept, the training output ``x_hat * gamma + beta`` can be written again
in the backward pass (``recompute_output``, the same code as the forward pass, so the
same bits): the recompute step of ``spec/recompute.md`` relies on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..initializers import check_initializer
from ..tensors import Shape, format_shape
from .base import Array, Layer, LayerContext, LayerSetup, Operand, ScratchSpec, StepKind, WeightSpec
from .properties import axis_list, axis_value, float_in_range, resolve_axis

_ALL_STEPS = frozenset({StepKind.FORWARD, StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE})
_FORWARD_AND_DERIVATIVE = frozenset({StepKind.FORWARD, StepKind.CALC_DERIVATIVE})


def _keep_only(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with every axis not in ``axes`` set to 1 (a broadcastable view)."""
    return tuple(d if i in axes else 1 for i, d in enumerate(shape))


class BatchNormalization(Layer):
    """Normalises each channel (NCHW input) or feature (``(N, F)`` input) over the batch.

    Training: batch mean and biased variance over every axis but ``axis``; the moving
    statistics follow ``moving = momentum * moving + (1 - momentum) * batch``.
    Inference: the moving statistics. ``axis`` (batch = 0) defaults as NNTrainer's
    does: 1 for a rank-4 input with more than one channel, else the last axis.
    Weights in NNTrainer's order: ``moving_mean``, ``moving_variance`` (not trained),
    ``gamma``, ``beta``, each of shape ``(C,)``.
    """

    type_name = "batch_normalization"
    derivative_reads = frozenset({Operand.WEIGHTS})
    supports_in_place = True
    derivative_in_place = True
    #: what ``recompute_output`` reads: these scratch tensors and weights
    recompute_scratch = ("normalized",)
    recompute_weights = ("gamma", "beta")

    def __init__(
        self,
        *,
        epsilon: float | str = 1e-3,
        momentum: float | str = 0.99,
        axis: int | str | None = None,
        moving_mean_initializer: str = "zeros",
        moving_variance_initializer: str = "ones",
        gamma_initializer: str = "ones",
        beta_initializer: str = "zeros",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.epsilon = float_in_range(
            epsilon, "epsilon", low=0.0, high=float("inf"), low_open=True, high_open=True
        )
        self.momentum = float_in_range(momentum, "momentum", low=0.0, high=1.0)
        self.axis = axis_value(axis)
        self.moving_mean_initializer = check_initializer(
            moving_mean_initializer, "moving_mean_initializer"
        )
        self.moving_variance_initializer = check_initializer(
            moving_variance_initializer, "moving_variance_initializer"
        )
        self.gamma_initializer = check_initializer(gamma_initializer, "gamma_initializer")
        self.beta_initializer = check_initializer(beta_initializer, "beta_initializer")

    def config(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "momentum": self.momentum,
            "axis": self.axis,
            "moving_mean_initializer": self.moving_mean_initializer,
            "moving_variance_initializer": self.moving_variance_initializer,
            "gamma_initializer": self.gamma_initializer,
            "beta_initializer": self.beta_initializer,
        }

    def channel_axis(self, shape: Shape) -> int:
        """The axis whose entries get their own statistics, for an input of ``shape``."""
        if self.axis is None:
            return 1 if len(shape) == 4 and shape[1] > 1 else len(shape) - 1
        resolved = resolve_axis(self.axis, len(shape))
        if resolved is None:
            raise self.shape_error(
                f"axis {self.axis} is not a non-batch axis of the input {format_shape(shape)}"
            )
        return resolved

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = tuple(input_shapes[0])
        if len(shape) < 2:
            raise self.shape_error(f"needs a batch and a feature axis, got {format_shape(shape)}")
        channels = (shape[self.channel_axis(shape)],)
        return LayerSetup(
            output_shapes=[shape],
            weights=[
                WeightSpec("moving_mean", channels, self.moving_mean_initializer, trainable=False),
                WeightSpec(
                    "moving_variance", channels, self.moving_variance_initializer, trainable=False
                ),
                WeightSpec("gamma", channels, self.gamma_initializer),
                WeightSpec("beta", channels, self.beta_initializer),
            ],
            scratch=[
                ScratchSpec("normalized", shape, _ALL_STEPS),
                ScratchSpec("inv_std", channels, _FORWARD_AND_DERIVATIVE),
            ],
        )

    def _geometry(self, shape: Shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(axes reduced over, the broadcast shape of a per-channel vector)."""
        axis = self.channel_axis(shape)
        reduce = tuple(i for i in range(len(shape)) if i != axis)
        return reduce, _keep_only(shape, (axis,))

    def forward(self, ctx: LayerContext) -> None:
        x, y = ctx.inputs[0], ctx.outputs[0]
        reduce, channel = self._geometry(x.shape)
        w = ctx.weights
        gamma, beta = w["gamma"].reshape(channel), w["beta"].reshape(channel)
        if not ctx.training:
            std = np.sqrt(w["moving_variance"] + x.dtype.type(self.epsilon))
            scale = gamma / std.reshape(channel)
            np.subtract(x, w["moving_mean"].reshape(channel), out=y)
            y *= scale
            y += beta
            return
        x_hat, inv_std = ctx.scratch["normalized"], ctx.scratch["inv_std"]
        mean = np.mean(x, axis=reduce)
        np.subtract(x, mean.reshape(channel), out=x_hat)
        variance = np.mean(np.square(x_hat), axis=reduce)
        self._update_moving(w["moving_mean"], mean)
        self._update_moving(w["moving_variance"], variance)
        np.add(variance, x.dtype.type(self.epsilon), out=inv_std)
        np.sqrt(inv_std, out=inv_std)
        np.reciprocal(inv_std, out=inv_std)
        x_hat *= inv_std.reshape(channel)
        self._scale_and_shift(x_hat, w, y)

    def _scale_and_shift(self, x_hat: Array, weights: dict[str, Array], y: Array) -> None:
        """``y = x_hat * gamma + beta`` per channel (``y`` may be ``x_hat``'s input's bytes)."""
        _, channel = self._geometry(x_hat.shape)
        np.multiply(x_hat, weights["gamma"].reshape(channel), out=y)
        y += weights["beta"].reshape(channel)

    def recompute_output(self, ctx: LayerContext) -> None:
        """Write the training output again into ``ctx.outputs[0]`` from the kept
        ``normalized`` scratch, ``gamma`` and ``beta``: the forward pass's own code, so
        the bits are the forward output's while those three are unchanged."""
        self._scale_and_shift(ctx.scratch["normalized"], ctx.weights, ctx.outputs[0])

    def _update_moving(self, moving: Array, batch: Array) -> None:
        moving *= moving.dtype.type(self.momentum)
        moving += batch.astype(moving.dtype, copy=False) * moving.dtype.type(1.0 - self.momentum)

    def calc_gradient(self, ctx: LayerContext) -> None:
        dy, x_hat = ctx.grad_outputs[0], ctx.scratch["normalized"]
        reduce, _ = self._geometry(dy.shape)
        np.sum(dy, axis=reduce, out=ctx.gradients["beta"])
        np.sum(dy * x_hat, axis=reduce, out=ctx.gradients["gamma"])

    def calc_derivative(self, ctx: LayerContext) -> None:
        """``dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat))``; both
        means are taken before ``dx`` is written, so ``dx`` may be ``dy``'s buffer."""
        dy, dx = ctx.grad_outputs[0], ctx.grad_inputs[0]
        x_hat, inv_std = ctx.scratch["normalized"], ctx.scratch["inv_std"]
        reduce, channel = self._geometry(dy.shape)
        mean_dy = np.mean(dy, axis=reduce).reshape(channel)
        mean_dy_x_hat = np.mean(dy * x_hat, axis=reduce).reshape(channel)
        scale = (ctx.weights["gamma"] * inv_std).reshape(channel)
        np.subtract(dy, mean_dy, out=dx)
        dx -= x_hat * mean_dy_x_hat
        dx *= scale


class LayerNormalization(Layer):
    """Normalises each sample over the axes in ``axis`` (batch = 0; NCHW for a rank-4
    input; default: the last axis), then scales by ``gamma`` and shifts by ``beta``,
    whose shape is the sizes of those axes in increasing order (NNTrainer's layout:
    axes ``1, 3`` of an ``(N, C, H, W)`` input give ``(C, W)``).
    """

    type_name = "layer_normalization"
    derivative_reads = frozenset({Operand.WEIGHTS})
    supports_in_place = True
    derivative_in_place = True
    #: what ``recompute_output`` reads: these scratch tensors and weights
    recompute_scratch = ("normalized",)
    recompute_weights = ("gamma", "beta")

    def __init__(
        self,
        *,
        epsilon: float | str = 1e-5,
        axis: int | str | Sequence[int] | None = None,
        gamma_initializer: str = "ones",
        beta_initializer: str = "zeros",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.epsilon = float_in_range(
            epsilon, "epsilon", low=0.0, high=float("inf"), low_open=True, high_open=True
        )
        self.axis = axis_list(axis)
        self.gamma_initializer = check_initializer(gamma_initializer, "gamma_initializer")
        self.beta_initializer = check_initializer(beta_initializer, "beta_initializer")

    def config(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "axis": list(self.axis) if self.axis is not None else None,
            "gamma_initializer": self.gamma_initializer,
            "beta_initializer": self.beta_initializer,
        }

    def normalized_axes(self, shape: Shape) -> tuple[int, ...]:
        """The axes (sorted, distinct) each sample is normalised over."""
        if self.axis is None:
            return (len(shape) - 1,)
        axes = set()
        for axis in self.axis:
            resolved = resolve_axis(axis, len(shape))
            if resolved is None:
                raise self.shape_error(
                    f"axis {axis} is not a non-batch axis of the input {format_shape(shape)}"
                )
            axes.add(resolved)
        return tuple(sorted(axes))

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = tuple(input_shapes[0])
        if len(shape) < 2:
            raise self.shape_error(f"needs a batch and a feature axis, got {format_shape(shape)}")
        axes = self.normalized_axes(shape)
        params = tuple(shape[a] for a in axes)
        per_sample = tuple(1 if i in axes else d for i, d in enumerate(shape))
        return LayerSetup(
            output_shapes=[shape],
            weights=[
                WeightSpec("gamma", params, self.gamma_initializer),
                WeightSpec("beta", params, self.beta_initializer),
            ],
            scratch=[
                ScratchSpec("normalized", shape, _ALL_STEPS),
                ScratchSpec("inv_std", per_sample, _FORWARD_AND_DERIVATIVE),
            ],
        )

    def forward(self, ctx: LayerContext) -> None:
        """In inference no scratch is touched (only the backward needs it): the output
        buffer is the working space and the per-sample ``inv_std`` a small temporary."""
        x, y = ctx.inputs[0], ctx.outputs[0]
        axes = self.normalized_axes(x.shape)
        mean = np.mean(x, axis=axes, keepdims=True)
        x_hat = ctx.scratch["normalized"] if ctx.training else y
        np.subtract(x, mean, out=x_hat)
        inv_std = ctx.scratch["inv_std"] if ctx.training else np.empty_like(mean)
        np.mean(np.square(x_hat), axis=axes, keepdims=True, out=inv_std)
        inv_std += x.dtype.type(self.epsilon)
        np.sqrt(inv_std, out=inv_std)
        np.reciprocal(inv_std, out=inv_std)
        x_hat *= inv_std
        self._scale_and_shift(x_hat, ctx.weights, y)

    def _scale_and_shift(self, x_hat: Array, weights: dict[str, Array], y: Array) -> None:
        """``y = x_hat * gamma + beta`` over the normalised axes (``y`` may be ``x_hat``)."""
        param = _keep_only(x_hat.shape, self.normalized_axes(x_hat.shape))
        np.multiply(x_hat, weights["gamma"].reshape(param), out=y)
        y += weights["beta"].reshape(param)

    def recompute_output(self, ctx: LayerContext) -> None:
        """Write the training output again from the kept ``normalized`` scratch, ``gamma``
        and ``beta`` (the forward pass's own code, so the same bits)."""
        self._scale_and_shift(ctx.scratch["normalized"], ctx.weights, ctx.outputs[0])

    def calc_gradient(self, ctx: LayerContext) -> None:
        dy, x_hat = ctx.grad_outputs[0], ctx.scratch["normalized"]
        axes = self.normalized_axes(dy.shape)
        remain = tuple(i for i in range(dy.ndim) if i not in axes)
        np.sum(dy, axis=remain, out=ctx.gradients["beta"])
        np.sum(dy * x_hat, axis=remain, out=ctx.gradients["gamma"])

    def calc_derivative(self, ctx: LayerContext) -> None:
        """With ``g = dy * gamma``: ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))``
        (means over the normalised axes), both means taken before ``dx`` is written."""
        dy, dx = ctx.grad_outputs[0], ctx.grad_inputs[0]
        x_hat, inv_std = ctx.scratch["normalized"], ctx.scratch["inv_std"]
        axes = self.normalized_axes(dy.shape)
        gamma = ctx.weights["gamma"].reshape(_keep_only(dy.shape, axes))
        g = dy * gamma
        mean_g = np.mean(g, axis=axes, keepdims=True)
        mean_g_x_hat = np.mean(g * x_hat, axis=axes, keepdims=True)
        np.multiply(dy, gamma, out=dx)
        dx -= mean_g
        dx -= x_hat * mean_g_x_hat
        dx *= inv_std
