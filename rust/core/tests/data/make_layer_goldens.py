"""Writes layer_goldens.txt: float32 inputs, weights and the numpy spec's outputs and
gradients for single layers, for the Rust kernels' conformance test
(tests/kernels/conformance.rs).

Run from the repository root: ``.venv/bin/python rust/core/tests/data/make_layer_goldens.py``.
Each layer runs through its contract (setup, forward, calc_gradient, calc_derivative) on
arrays made here, in float32, training mode; ``dy`` is a fixed random tensor.
Format: ``case NAME [key=value ...]`` then one line per tensor:
``NAME d0,d1,... HEX HEX ...`` (float32 bit patterns; int32 for ``argmax``).
"""

from pathlib import Path
from typing import Any

import numpy as np

from edgetrain.layers.activation import Activation
from edgetrain.layers.base import Layer, LayerContext
from edgetrain.layers.conv2d import Conv2D
from edgetrain.layers.fully_connected import FullyConnected
from edgetrain.layers.normalization import BatchNormalization, LayerNormalization
from edgetrain.layers.pooling import Pooling2D
from edgetrain.losses import MeanSquaredError, SigmoidCrossEntropy, SoftmaxCrossEntropy

F32 = np.float32


def tensor_line(name: str, array: np.ndarray) -> str:
    dims = ",".join(str(d) for d in array.shape) or "1"
    flat = np.ascontiguousarray(array).reshape(-1)
    bits = flat.view(np.uint32) if flat.dtype == F32 else flat.astype(np.int32).view(np.uint32)
    return f"{name} {dims} " + " ".join(f"{b:08x}" for b in bits)


def run_layer(layer: Layer, x: np.ndarray, rng: np.random.Generator, label: Any = None) -> dict[str, np.ndarray]:
    """Forward, gradient and derivative of ``layer`` on ``x``; every array it touched."""
    setup = layer.setup([x.shape])
    weights = {}
    for spec in setup.weights:
        values = rng.normal(0.0, 0.5, size=spec.shape)
        if "variance" in spec.name:
            values = np.abs(values) + 0.5
        weights[spec.name] = values.astype(F32)
    initial = {f"{k}_initial": v.copy() for k, v in weights.items()}
    ctx = LayerContext(
        inputs=[x],
        outputs=[np.zeros(s, F32) for s in setup.output_shapes],
        weights=weights,
        gradients={s.name: np.zeros(s.shape, F32) for s in setup.weights if s.trainable},
        scratch={s.name: np.zeros(s.shape, np.dtype(s.dtype) if s.dtype else F32) for s in setup.scratch},
        training=True,
        rng=np.random.default_rng(0),
        label=label,
    )
    layer.forward(ctx)
    dy = rng.normal(0.0, 1.0, size=ctx.outputs[0].shape).astype(F32)
    ctx.grad_outputs = [dy]
    ctx.grad_inputs = [np.zeros(x.shape, F32)]
    layer.calc_gradient(ctx)
    if layer.has_derivative:
        layer.calc_derivative(ctx)
    out = {"x": x, **initial, "y": ctx.outputs[0], "dy": dy, "dx": ctx.grad_inputs[0]}
    out.update({k: v for k, v in weights.items() if k.startswith("moving")})
    out.update({f"d_{k}": v for k, v in ctx.gradients.items()})
    out.update({k: v for k, v in ctx.scratch.items() if k in ("argmax", "loss")})
    if label is not None:
        out["label"] = label
    return out


def main() -> None:
    rng = np.random.default_rng(2026)

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.normal(0.0, scale, size=shape)).astype(F32)

    one_hot = np.eye(5, dtype=F32)[[1, 4, 0]]
    cases: list[tuple[str, Layer, np.ndarray, Any]] = [
        ("conv2d kernel=3,2 stride=2,1 padding=1,2,0,1 dilation=1,2 filters=4",
         Conv2D(filters=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2)),
         normal(2, 3, 5, 6), None),
        ("conv2d kernel=3,3 stride=1,1 padding=1,1,1,1 dilation=1,1 filters=2",
         Conv2D(filters=2, kernel_size=3, padding="same"), normal(3, 2, 4, 4), None),
        ("pool max pool=3,3 stride=2,2 padding=1,1,1,1",
         Pooling2D("max", pool_size=3, stride=2, padding=1), normal(2, 3, 5, 6), None),
        ("pool average pool=2,3 stride=1,2 padding=1,0,1,1",
         Pooling2D("average", pool_size=(2, 3), stride=(1, 2), padding=(1, 0, 1, 1)), normal(2, 2, 4, 5), None),
        ("pool global_average", Pooling2D("global_average"), normal(2, 3, 3, 4), None),
        ("pool global_max", Pooling2D("global_max"),
         np.round(normal(2, 3, 3, 4)).astype(F32), None),  # rounded: tied maxima occur
        ("batch_norm axis=1 epsilon=0.001 momentum=0.99", BatchNormalization(), normal(4, 3, 2, 3, scale=2.0), None),
        ("layer_norm axes=1,3 epsilon=0.00001", LayerNormalization(axis=[1, 3]), normal(2, 3, 2, 4), None),
        ("fc units=4", FullyConnected(unit=4), normal(3, 5), None),
        ("loss cross_entropy", SoftmaxCrossEntropy(), normal(3, 5, scale=2.0), one_hot),
        ("loss mse", MeanSquaredError(), normal(3, 5), normal(3, 5)),
        ("loss cross_entropy_sigmoid", SigmoidCrossEntropy(), normal(3, 5, scale=3.0),
         rng.uniform(0.0, 1.0, size=(3, 5)).astype(F32)),
    ]
    for kind in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu", "tanh_gelu", "swish"):
        cases.append((f"activation {kind}", Activation(kind), normal(3, 7, scale=3.0), None))

    lines = [f"# made by {Path(__file__).name}; see its docstring for the format"]
    for name, layer, x, label in cases:
        lines.append(f"case {name}")
        for key, array in run_layer(layer, x, rng, label).items():
            lines.append(tensor_line(key, array))
    Path(__file__).with_name("layer_goldens.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
