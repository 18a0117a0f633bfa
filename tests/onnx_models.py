"""ONNX models built the way PyTorch's exporter writes them, for the interchange tests.

PyTorch is not a test dependency, so each model is written with ``onnx.helper``: Gemm
with ``transB=1`` and ``(out, in)`` weights named ``<module>.weight``, the
Shape/Gather/Unsqueeze/Concat/Reshape chain of ``x.view(x.size(0), -1)``, Conv with
explicit pads/strides/dilations, BatchNormalization in inference form, pools with
``kernel_shape``/``strides``/``pads``, node names like ``/fc1/Gemm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OPSET = 17
BATCH = "batch_size"


class Builder:
    """Collects nodes and initializers with seeded weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def weight(self, name: str, shape: Sequence[int], scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        std = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        value = (self.rng.normal(size=shape) * std).astype(np.float32)
        return self.const(name, value)

    def const(self, name: str, value: Any) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, outputs: int = 1, **attrs: Any) -> str:
        out = [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), out, name=name, **attrs))
        return out[0]

    def constant_node(self, name: str, value: Any) -> str:
        out = f"{name}_output_0"
        tensor = numpy_helper.from_array(np.asarray(value), f"{name}_value")
        self.nodes.append(helper.make_node("Constant", [], [out], name=name, value=tensor))
        return out

    def flatten_chain(self, x: str, prefix: str = "", opset: int = OPSET) -> str:
        """``x.view(x.size(0), -1)`` as torch.onnx exports it (``Unsqueeze`` takes its
        axes as an input from opset 13, as an attribute before)."""
        shape = self.node("Shape", [x], f"{prefix}/Shape")
        index = self.constant_node(f"{prefix}/Constant", np.array(0, dtype=np.int64))
        batch = self.node("Gather", [shape, index], f"{prefix}/Gather", axis=0)
        if opset >= 13:
            axes = self.constant_node(f"{prefix}/Constant_1", np.array([0], dtype=np.int64))
            batch1 = self.node("Unsqueeze", [batch, axes], f"{prefix}/Unsqueeze")
        else:
            batch1 = self.node("Unsqueeze", [batch], f"{prefix}/Unsqueeze", axes=[0])
        minus1 = self.constant_node(f"{prefix}/Constant_2", np.array([-1], dtype=np.int64))
        target = self.node("Concat", [batch1, minus1], f"{prefix}/Concat", axis=0)
        return self.node("Reshape", [x, target], f"{prefix}/Reshape")

    def gemm(self, x: str, module: str, inputs: int, outputs: int) -> str:
        w = self.weight(f"{module}.weight", (outputs, inputs))
        b = self.weight(f"{module}.bias", (outputs,), 0.1)
        return self.node("Gemm", [x, w, b], f"/{module}/Gemm", alpha=1.0, beta=1.0, transB=1)

    def conv(
        self, x: str, module: str, cin: int, cout: int, k: int, *, pads: Sequence[int] = (0, 0, 0, 0),
        strides: Sequence[int] = (1, 1), dilations: Sequence[int] = (1, 1), bias: bool = True,
    ) -> str:
        w = self.weight(f"{module}.weight", (cout, cin, k, k))
        inputs = [x, w] + ([self.weight(f"{module}.bias", (cout,), 0.1)] if bias else [])
        return self.node(
            "Conv", inputs, f"/{module}/Conv", dilations=list(dilations), group=1,
            kernel_shape=[k, k], pads=list(pads), strides=list(strides),
        )

    def batch_norm(self, x: str, module: str, channels: int) -> str:
        scale = self.const(f"{module}.weight", self.rng.uniform(0.5, 1.5, channels).astype(np.float32))
        bias = self.const(f"{module}.bias", self.rng.normal(size=channels).astype(np.float32) * 0.1)
        mean = self.const(f"{module}.running_mean", self.rng.normal(size=channels).astype(np.float32) * 0.1)
        var = self.const(f"{module}.running_var", self.rng.uniform(0.5, 2.0, channels).astype(np.float32))
        return self.node(
            "BatchNormalization", [x, scale, bias, mean, var], f"/{module}/BatchNormalization",
            epsilon=1e-5, momentum=0.9,
        )

    def save(self, path: Path, inputs: dict[str, Sequence[int | str]], output: str, rank: int,
             opset: int = OPSET, outputs: Sequence[str] | None = None, out_type: int = TensorProto.FLOAT) -> Path:
        graph = helper.make_graph(
            self.nodes,
            "main_graph",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
            [helper.make_tensor_value_info(o, out_type, [None] * rank) for o in (outputs or [output])],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.save(model, str(path))
        return path


def mlp(path: Path, *, softmax: bool = False) -> Path:
    """``Linear(8, 16) -> ReLU -> Linear(16, 4) [-> Softmax]`` with a symbolic batch."""
    b = Builder(1)
    h = b.node("Relu", [b.gemm("input", "fc1", 8, 16)], "/relu/Relu")
    out = b.gemm(h, "fc2", 16, 4)
    if softmax:
        out = b.node("Softmax", [out], "/softmax/Softmax", axis=-1)
    return b.save(path, {"input": [BATCH, 8]}, out, 2)


def mlp_matmul(path: Path) -> Path:
    """Linear layers on a (N, 3, 8) input: MatMul with the transposed weight, then
    ``Add(bias, x)`` (the order torch emits), tanh and sigmoid."""
    b = Builder(2)
    w1 = b.weight("onnx::MatMul_21", (8, 6))
    h = b.node("MatMul", ["input", w1], "/fc1/MatMul")
    h = b.node("Add", [b.weight("fc1.bias", (6,), 0.1), h], "/fc1/Add")
    h = b.node("Tanh", [h], "/act/Tanh")
    w2 = b.weight("onnx::MatMul_22", (6, 2))
    h = b.node("MatMul", [h, w2], "/fc2/MatMul")
    h = b.node("Add", [h, b.weight("fc2.bias", (2,), 0.1)], "/fc2/Add")
    out = b.node("Sigmoid", [h], "/act2/Sigmoid")
    return b.save(path, {"input": [BATCH, 3, 8]}, out, 3)


def lenet(path: Path, *, batch: int | str = BATCH, softmax: bool = True, opset: int = OPSET) -> Path:
    """LeNet-5 style on 1x16x16: conv-relu-maxpool twice, the flatten shape chain, three
    Linear layers."""
    b = Builder(3)
    h = b.conv("input", "conv1", 1, 6, 5, pads=(2, 2, 2, 2))
    h = b.node("Relu", [h], "/relu1/Relu")
    h = b.node("MaxPool", [h], "/pool1/MaxPool", ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
    h = b.conv(h, "conv2", 6, 16, 5)
    h = b.node("Relu", [h], "/relu2/Relu")
    h = b.node("MaxPool", [h], "/pool2/MaxPool", ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
    h = b.flatten_chain(h, opset=opset)
    h = b.node("Relu", [b.gemm(h, "fc1", 64, 32)], "/relu3/Relu")
    h = b.node("Relu", [b.gemm(h, "fc2", 32, 16)], "/relu4/Relu")
    out = b.gemm(h, "fc3", 16, 10)
    if softmax:
        out = b.node("Softmax", [out], "/softmax/Softmax", axis=1)
    return b.save(path, {"input": [batch, 1, 16, 16]}, out, 2, opset=opset)


def resnet_block(path: Path) -> Path:
    """A strided, dilated stem conv with BN, one residual block (conv-BN-ReLU-conv-BN,
    Add with the skip, ReLU), global average pooling, Flatten and a Linear head."""
    b = Builder(4)
    h = b.conv("input", "stem", 3, 8, 3, pads=(2, 2, 2, 2), strides=(2, 2), dilations=(2, 2), bias=False)
    h = b.node("Relu", [b.batch_norm(h, "bn0", 8)], "/relu0/Relu")
    r = b.conv(h, "block.conv1", 8, 8, 3, pads=(1, 1, 1, 1), bias=False)
    r = b.node("Relu", [b.batch_norm(r, "block.bn1", 8)], "/block/relu/Relu")
    r = b.conv(r, "block.conv2", 8, 8, 3, pads=(1, 1, 1, 1), bias=False)
    r = b.batch_norm(r, "block.bn2", 8)
    h = b.node("Relu", [b.node("Add", [r, h], "/block/Add")], "/block/relu_1/Relu")
    h = b.node("GlobalAveragePool", [h], "/pool/GlobalAveragePool")
    h = b.node("Flatten", [h], "/Flatten", axis=1)
    out = b.gemm(h, "fc", 8, 5)
    return b.save(path, {"input": [BATCH, 3, 8, 8]}, out, 2)


def concat_branches(path: Path) -> Path:
    """Inception-style branches joined by Concat: a 1x1 conv, a 3x3 conv with asymmetric
    pads, a padded max pool then 1x1 conv; average pooling with uneven pads
    (count_include_pad=0), Flatten, Dropout, Identity, Linear."""
    b = Builder(5)
    a = b.node("Relu", [b.conv("input", "branch1", 4, 3, 1)], "/branch1/Relu")
    c = b.conv("input", "branch2", 4, 2, 3, pads=(1, 2, 1, 0))
    p = b.node("MaxPool", ["input"], "/branch3/MaxPool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    p = b.conv(p, "branch3.conv", 4, 2, 1)
    h = b.node("Concat", [a, c, p], "/Concat", axis=1)
    h = b.node("AveragePool", [h], "/pool/AveragePool", kernel_shape=[2, 2], pads=[0, 0, 1, 1], strides=[2, 2],
               count_include_pad=0, ceil_mode=0)
    h = b.node("Flatten", [h], "/Flatten", axis=1)
    ratio = b.const("ratio", np.array(0.3, dtype=np.float32))
    h = b.node("Dropout", [h, ratio], "/dropout/Dropout")
    h = b.node("Identity", [h], "/Identity")
    out = b.gemm(h, "head", 7 * 5 * 5, 3)
    return b.save(path, {"input": [BATCH, 4, 9, 9]}, out, 2)


def conv1d_net(path: Path) -> Path:
    """A keyword-spotting style 1-D network on (N, 4, 32): Conv1d-BatchNorm1d-ReLU-MaxPool1d,
    a strided dilated Conv1d, AdaptiveAvgPool1d(1) as GlobalAveragePool, Flatten, Linear."""
    b = Builder(12)
    w1 = b.weight("conv1.weight", (8, 4, 5))
    h = b.node("Conv", ["input", w1, b.weight("conv1.bias", (8,), 0.1)], "/conv1/Conv", kernel_shape=[5],
               pads=[2, 2], strides=[1], dilations=[1], group=1)
    h = b.node("Relu", [b.batch_norm(h, "bn1", 8)], "/relu1/Relu")
    h = b.node("MaxPool", [h], "/pool1/MaxPool", kernel_shape=[2], strides=[2], pads=[0, 0])
    w2 = b.weight("conv2.weight", (6, 8, 3))
    h = b.node("Conv", [h, w2], "/conv2/Conv", kernel_shape=[3], pads=[2, 1], strides=[2], dilations=[2])
    h = b.node("Relu", [h], "/relu2/Relu")
    h = b.node("GlobalAveragePool", [h], "/pool2/GlobalAveragePool")
    h = b.node("Flatten", [h], "/Flatten", axis=1)
    out = b.gemm(h, "fc", 6, 3)
    return b.save(path, {"input": [BATCH, 4, 32]}, out, 2)


def digits_cnn(path: Path) -> Path:
    """A small CNN for 1x8x8 digits: conv-relu-maxpool, the flatten chain, Linear(64, 10)
    and Softmax -- what a server would send for on-device fine-tuning."""
    b = Builder(14)
    h = b.node("Relu", [b.conv("input", "conv", 1, 4, 3, pads=(1, 1, 1, 1))], "/relu/Relu")
    h = b.node("MaxPool", [h], "/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    h = b.gemm(b.flatten_chain(h), "fc", 64, 10)
    out = b.node("Softmax", [h], "/softmax/Softmax", axis=1)
    return b.save(path, {"input": [BATCH, 1, 8, 8]}, out, 2)


def reference_outputs(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """What ``onnx.reference.ReferenceEvaluator`` computes for the model's output."""
    result = ReferenceEvaluator(str(path)).run(None, feeds)[0]
    return np.asarray(result)
