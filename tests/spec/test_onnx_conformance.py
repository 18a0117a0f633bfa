"""Model.from_onnx on models PyTorch itself exported: the ``pytorch-converted`` and
``pytorch-operator`` cases of the onnx package's backend test data (each a model.onnx
written by torch.onnx.export with the input and the output PyTorch computed), and the
Caffe2-converted "light" ImageNet architectures.

Every case either imports and reproduces PyTorch's output (rtol = atol = 1e-5 in
float32: the stored outputs come from PyTorch's float32 kernels, which sum in another
order; the largest difference seen is 4e-7) or is refused with a ModelFileError naming
the node or input -- never another exception and never a wrong answer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx_models as M
from edgetrain import Model, ModelFileError

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
CASES = sorted(p for kind in ("pytorch-converted", "pytorch-operator") for p in (DATA / kind).glob("test_*"))

#: the cases whose ops all map onto edgetrain layers
IMPORTED = {
    "test_AvgPool2d", "test_AvgPool2d_stride", "test_BatchNorm1d_3d_input_eval", "test_BatchNorm2d_eval",
    "test_BatchNorm2d_momentum_eval", "test_BatchNorm3d_eval", "test_BatchNorm3d_momentum_eval", "test_Conv2d",
    "test_Conv2d_dilated", "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv2d_strided", "test_LeakyReLU",
    "test_Linear", "test_Linear_no_bias", "test_MaxPool2d", "test_ReLU", "test_Sigmoid", "test_Softmax", "test_Tanh",
    "test_softmax_functional_dim3", "test_softmax_lastdim", "test_operator_concat2", "test_operator_conv",
    "test_operator_flatten", "test_Conv1d", "test_Conv1d_dilated", "test_Conv1d_pad1", "test_Conv1d_pad1size1",
    "test_Conv1d_pad2", "test_Conv1d_pad2size1", "test_Conv1d_stride", "test_MaxPool1d", "test_MaxPool1d_stride",
    "test_operator_maxpool", "test_Embedding", "test_Embedding_sparse",
}

pytestmark = pytest.mark.skipif(not CASES, reason="this onnx installation has no backend test data")


def _tensor(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_pytorch_exported_models_import_exactly_or_are_refused(case: Path) -> None:
    if case.name not in IMPORTED:
        with pytest.raises(ModelFileError, match=r"model\.onnx: (node '.*' \(\w+\)|input|its inputs|has \d outputs)"):
            Model.from_onnx(case / "model.onnx")
        return
    model = Model.from_onnx(case / "model.onnx")
    data = case / "test_data_set_0"
    inputs = [_tensor(p) for p in sorted(data.glob("input_*.pb"))]
    expected = _tensor(data / "output_0.pb")
    np.testing.assert_allclose(model.predict(inputs), expected, rtol=1e-5, atol=1e-5)


def test_most_of_the_pytorch_layer_cases_that_edgetrain_has_are_imported() -> None:
    assert len(CASES) == 117 and IMPORTED <= {p.name for p in CASES}


def test_a_caffe2_resnet50_imports_with_every_layer() -> None:
    """ResNet-50 (opset 9, weights as ConstantOfShape nodes, weights also listed as graph
    inputs, residual Sum nodes): 53 convolutions, 53 batch norms, 16 residual sums."""
    model = Model.from_onnx(DATA / "light" / "light_resnet50.onnx")
    kinds = Counter(layer.type_name for layer in model.layers)
    assert kinds["conv2d"] == 53 and kinds["batch_normalization"] == 53 and kinds["addition"] == 16
    assert model.graph.input_nodes()[0].output_shapes[0][1:] == (3, 224, 224)
    assert model.program.tensors[model.program.output].shape == (1, 1000)


def test_softmax_of_old_opsets_covers_every_axis_from_its_axis_on(tmp_path: Path) -> None:
    """Opset < 13 Softmax(axis=1) on (N, 2, 3, 4) normalises all 24 values of a sample
    (onnx.reference applies the opset-13 meaning, so the check here is numpy's)."""
    b = M.Builder()
    out = b.node("Softmax", ["input"], "/Softmax", axis=1)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 2, 3, 4]}, out, 4, opset=11)
    model = Model.from_onnx(path)
    x = np.random.default_rng(0).normal(size=(3, 2, 3, 4)).astype(np.float32)
    e = np.exp(x.reshape(3, -1) - x.reshape(3, -1).max(axis=1, keepdims=True))
    expected = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6, atol=1e-7)


def test_softmax_over_channels_of_a_1x1_map(tmp_path: Path) -> None:
    b = M.Builder()
    out = b.node("Softmax", ["input"], "/Softmax", axis=1)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 5, 1, 1]}, out, 4)
    x = np.random.default_rng(1).normal(size=(2, 5, 1, 1)).astype(np.float32)
    np.testing.assert_allclose(Model.from_onnx(path).predict(x), M.reference_outputs(path, {"input": x}),
                               rtol=1e-5, atol=1e-5)
