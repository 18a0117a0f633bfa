"""Model.from_onnx: PyTorch-style ONNX models become edgetrain models computing the same
outputs as onnx.reference.ReferenceEvaluator, and they fine-tune.

Tolerance: rtol = atol = 1e-5 in float32. Both sides compute in float32 from the same
float32 weights; they differ only in summation order (im2col GEMM against direct loops)
and in exp/tanh rounding, which move results by a few float32 ulps (measured ~4e-7 on
outputs of order 1). 1e-5 leaves room for that and still fails on any wrong layout,
padding or missed bias, which change outputs by 1e-2 or more.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnx_models as M
from edgetrain import Model, ModelFileError
from edgetrain import layers as L
from edgetrain.optimizers import SGD

RTOL = ATOL = 1e-5


def _check_against_reference(path: Path, shape: tuple[int, ...], n: int = 5, seed: int = 0) -> Model:
    model = Model.from_onnx(path)
    x = np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)
    expected = M.reference_outputs(path, {"input": x})
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)
    return model


CASES: list[tuple[Callable[[Path], Path], tuple[int, ...]]] = [
    (M.mlp, (8,)),
    (M.mlp_matmul, (3, 8)),
    (M.lenet, (1, 16, 16)),
    (M.resnet_block, (3, 8, 8)),
    (M.concat_branches, (4, 9, 9)),
    (M.conv1d_net, (4, 32)),
]


@pytest.mark.parametrize(("build", "shape"), CASES, ids=[c[0].__name__ for c in CASES])
def test_outputs_match_the_reference_evaluator(tmp_path: Path, build: Callable[[Path], Path], shape: tuple[int, ...]) -> None:
    _check_against_reference(build(tmp_path / "m.onnx"), shape)


def test_layer_types_names_and_layouts_of_an_mlp(tmp_path: Path) -> None:
    path = M.mlp(tmp_path / "m.onnx")
    model = Model.from_onnx(path)
    assert [(layer.name, layer.type_name) for layer in model.layers] == [
        ("input", "input"), ("fc1", "fully_connected"), ("relu_Relu", "activation"), ("fc2", "fully_connected"),
    ]
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    weights = model.get_weights()
    np.testing.assert_array_equal(weights["fc1:weight"], stored["fc1.weight"].T)  # (out, in) -> (in, out)
    np.testing.assert_array_equal(weights["fc1:bias"], stored["fc1.bias"])
    assert model.loss_name is None


def test_the_flatten_shape_chain_folds_into_one_flatten(tmp_path: Path) -> None:
    model = Model.from_onnx(M.lenet(tmp_path / "m.onnx"))
    kinds = [layer.type_name for layer in model.layers]
    assert kinds.count("flatten") == 1 and "reshape" not in kinds
    assert len(model.layers) == 14  # no layer for Shape, Gather, Unsqueeze, Concat, Constant


def test_a_fixed_batch_size_is_dropped(tmp_path: Path) -> None:
    """torch.onnx.export without dynamic_axes fixes the batch (here 1); any batch runs."""
    path = M.lenet(tmp_path / "m.onnx", batch=1)
    model = Model.from_onnx(path)
    assert model.layers[0].shape == (1, 16, 16)  # type: ignore[attr-defined]
    x = np.random.default_rng(1).normal(size=(3, 1, 16, 16)).astype(np.float32)
    expected = np.concatenate([M.reference_outputs(path, {"input": x[i : i + 1]}) for i in range(3)])
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)


def test_batch_norm_maps_statistics_epsilon_and_momentum(tmp_path: Path) -> None:
    path = M.resnet_block(tmp_path / "m.onnx")
    model = Model.from_onnx(path)
    bn = next(layer for layer in model.layers if layer.name == "bn0")
    assert isinstance(bn, L.BatchNormalization)
    assert (bn.epsilon, bn.momentum) == (pytest.approx(1e-5), pytest.approx(0.9))
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    weights = model.get_weights()
    for ours, theirs in [("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                         ("moving_variance", "running_var")]:
        np.testing.assert_array_equal(weights[f"bn0:{ours}"], stored[f"bn0.{theirs}"])
    conv = next(layer for layer in model.layers if layer.name == "stem")
    assert isinstance(conv, L.Conv2D)
    assert (conv.stride, conv.dilation, conv.padding, conv.bias) == ((2, 2), (2, 2), (2, 2, 2, 2), False)
    np.testing.assert_array_equal(weights["stem:weight"], stored["stem.weight"])


def test_asymmetric_pads_become_top_bottom_left_right(tmp_path: Path) -> None:
    model = Model.from_onnx(M.concat_branches(tmp_path / "m.onnx"))
    layers = {layer.name: layer for layer in model.layers}
    conv, pool = layers["branch2"], layers["pool_AveragePool"]
    assert isinstance(conv, L.Conv2D) and isinstance(pool, L.Pooling2D)
    assert conv.padding == (1, 1, 2, 0)  # ONNX pads [top=1, left=2, bottom=1, right=0]
    assert pool.padding == (0, 1, 0, 1)
    dropout = layers["dropout_Dropout"]
    assert isinstance(dropout, L.Dropout) and dropout.dropout_rate == pytest.approx(0.3)


def test_matmul_add_becomes_one_fully_connected_layer_with_bias(tmp_path: Path) -> None:
    model = Model.from_onnx(M.mlp_matmul(tmp_path / "m.onnx"))
    dense = [layer for layer in model.layers if isinstance(layer, L.FullyConnected)]
    assert len(dense) == 2 and all(layer.bias for layer in dense)
    assert "addition" not in [layer.type_name for layer in model.layers]


def test_fine_tuning_an_imported_model_lowers_its_loss(tmp_path: Path) -> None:
    model = Model.from_onnx(M.lenet(tmp_path / "m.onnx"), loss="cross_entropy")
    assert model.layers[-1].type_name == "activation"  # the Softmax, folded into the loss
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 1, 16, 16)).astype(np.float32)
    before = model.predict(x)
    np.testing.assert_allclose(before, M.reference_outputs(tmp_path / "m.onnx", {"input": x}), rtol=RTOL, atol=ATOL)
    imported = model.get_weights()
    model.compile(SGD(0.1), batch_size=8)
    for name, value in model.get_weights().items():  # recompiling for training keeps them
        np.testing.assert_array_equal(value, imported[name])
    labels = rng.integers(0, 10, size=8)
    losses = [model.train_step(x, labels) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_fine_tuning_with_a_regression_loss(tmp_path: Path) -> None:
    model = Model.from_onnx(M.resnet_block(tmp_path / "m.onnx"), loss="mse")
    model.compile(SGD(0.05), batch_size=4)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(4, 3, 8, 8)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    losses = [model.train_step(x, y) for _ in range(10)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("build", "shape"), CASES, ids=[c[0].__name__ for c in CASES])
def test_an_imported_model_saves_as_ini_and_bin(tmp_path: Path, build: Callable[[Path], Path], shape: tuple[int, ...]) -> None:
    """What runs on the device: the model file and NNTrainer's weights."""
    model = Model.from_onnx(build(tmp_path / "m.onnx"), loss="mse")
    model.to_ini(tmp_path / "m.ini")
    model.save(tmp_path / "m.bin")
    again = Model.from_ini(tmp_path / "m.ini")
    again.compile(None, batch_size=1)
    again.load(tmp_path / "m.bin")
    x = np.random.default_rng(4).normal(size=(3, *shape)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


# -- what is refused ------------------------------------------------------------------------------


def _single_node(path: Path, op: str, shape: list[int | str], out_rank: int, *inputs: np.ndarray,
                 name: str = "/layer/Op", **attrs: object) -> Path:
    b = M.Builder()
    names = ["input"] + [b.const(f"c{i}", v) for i, v in enumerate(inputs)]
    out = b.node(op, names, name, **attrs)
    return b.save(path, {"input": shape}, out, out_rank)


def test_an_unsupported_op_is_refused_with_its_name_and_node(tmp_path: Path) -> None:
    path = _single_node(tmp_path / "m.onnx", "Erf", [M.BATCH, 4], 2, name="/gelu/Erf")
    with pytest.raises(ModelFileError, match=r"m.onnx: node '/gelu/Erf' \(Erf\): op Erf is not supported"):
        Model.from_onnx(path)


W = np.ones((4, 2, 3, 3), np.float32)


@pytest.mark.parametrize(
    ("op", "shape", "inputs", "attrs", "message"),
    [
        ("Conv", [1, 4, 6, 6], [W], {"group": 2, "kernel_shape": [3, 3]}, r"\(Conv\): group=2 is not supported"),
        ("MaxPool", [1, 2, 7, 7], [], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
         r"\(MaxPool\): ceil_mode=1 is not supported"),
        ("AveragePool", [1, 2, 6, 6], [], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
         r"count_include_pad=1 with padding"),
        ("MaxPool", [1, 2, 6, 6], [], {"kernel_shape": [2, 2], "dilations": [2, 2]}, r"dilations=\[2, 2\]"),
        ("Softmax", [1, 3, 4, 4], [], {"axis": 1}, r"softmax over axis 1 of \(batch, 3, 4, 4\)"),
        ("LeakyRelu", [1, 4], [], {"alpha": 0.2}, r"alpha=0.2"),
        ("Mul", [1, 4], [np.ones(4, np.float32)], {}, r"multiplies by a constant"),
        ("Add", [1, 4], [np.ones(4, np.float32)], {}, r"adds a constant to a value that is not"),
        ("Flatten", [1, 2, 3], [], {"axis": 2}, r"only axis 1"),
        ("Reshape", [1, 2, 3], [np.array([3, 2], np.int64)], {}, r"the batch dimension must stay first"),
        ("Conv", [1, 2, 6, 6, 6], [np.ones((3, 2, 3, 3, 3), np.float32)], {}, r"only 1-D and 2-D are imported"),
    ],
)
def test_unsupported_attributes_are_refused_naming_the_node(
    tmp_path: Path, op: str, shape: list[int | str], inputs: list[np.ndarray], attrs: dict[str, object], message: str
) -> None:
    out_rank = 2 if op in ("Flatten", "Reshape", "LeakyRelu", "Mul", "Add") else len(shape)
    path = _single_node(tmp_path / "m.onnx", op, shape, out_rank, *inputs, **attrs)
    with pytest.raises(ModelFileError, match=r"node '/layer/Op' .*" + message):
        Model.from_onnx(path)


def test_ceil_mode_that_adds_no_window_is_accepted(tmp_path: Path) -> None:
    path = _single_node(tmp_path / "m.onnx", "MaxPool", [M.BATCH, 2, 6, 6], 4, kernel_shape=[2, 2],
                        strides=[2, 2], ceil_mode=1)
    _check_against_reference(path, (2, 6, 6))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad_becomes_explicit_padding(tmp_path: Path, auto_pad: str) -> None:
    w = np.random.default_rng(5).normal(size=(3, 2, 2, 3)).astype(np.float32)
    path = _single_node(tmp_path / "m.onnx", "Conv", [M.BATCH, 2, 7, 6], 4, w, auto_pad=auto_pad, strides=[2, 1])
    _check_against_reference(path, (2, 7, 6))


def test_the_batch_size_in_arithmetic_is_refused(tmp_path: Path) -> None:
    b = M.Builder()
    shape = b.node("Shape", ["input"], "/Shape")
    n = b.node("Gather", [shape, b.const("zero", np.array(0, np.int64))], "/Gather", axis=0)
    doubled = b.node("Mul", [n, b.const("two", np.array(2, np.int64))], "/Mul")
    target = b.node("Concat", [b.node("Unsqueeze", [doubled, b.const("axes", np.array([0]))], "/Unsqueeze"),
                               b.const("minus1", np.array([-1]))], "/Concat", axis=0)
    out = b.node("Reshape", ["input", target], "/Reshape")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, out, 2)
    with pytest.raises(ModelFileError, match=r"node '/Mul' \(Mul\): computes with the batch size"):
        Model.from_onnx(path)


def test_two_outputs_are_refused(tmp_path: Path) -> None:
    b = M.Builder()
    a = b.node("Relu", ["input"], "/a/Relu")
    c = b.node("Sigmoid", ["input"], "/b/Sigmoid")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, a, 2, outputs=[a, c])
    with pytest.raises(ModelFileError, match="has 2 outputs"):
        Model.from_onnx(path)


def test_symbolic_feature_sizes_and_integer_inputs_are_refused(tmp_path: Path) -> None:
    path = _single_node(tmp_path / "a.onnx", "Relu", [M.BATCH, "features"], 2)
    with pytest.raises(ModelFileError, match=r"symbolic size 'features' on axis 1"):
        Model.from_onnx(path)
    graph = helper.make_graph(
        [helper.make_node("Not", ["mask"], ["y"], name="r")], "g",
        [helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, ["N", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "b.onnx"))
    with pytest.raises(ModelFileError, match="input 'mask' is BOOL: only float inputs and integer ids"):
        Model.from_onnx(tmp_path / "b.onnx")


def test_files_that_are_not_onnx_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a protobuf at all")
    with pytest.raises(ModelFileError, match="junk.onnx: is not"):
        Model.from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(ModelFileError, match="no such ONNX file"):
        Model.from_onnx(tmp_path / "missing.onnx")


def test_layers_that_do_not_reach_the_output_are_left_out(tmp_path: Path) -> None:
    b = M.Builder()
    b.node("Sigmoid", ["input"], "/unused/Sigmoid")
    out = b.node("Relu", ["input"], "/relu/Relu")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, out, 2)
    model = Model.from_onnx(path)
    assert [layer.name for layer in model.layers] == ["input", "relu_Relu"]


# -- exporter variants ---------------------------------------------------------------------------


def test_an_opset_11_export_imports(tmp_path: Path) -> None:
    """Older exporters: Unsqueeze axes as an attribute, Softmax over axis 1 of a matrix."""
    path = M.lenet(tmp_path / "m.onnx", opset=11)
    assert onnx.load(str(path)).opset_import[0].version == 11
    _check_against_reference(path, (1, 16, 16))


def test_gemm_without_transpose_and_with_alpha_beta(tmp_path: Path) -> None:
    b = M.Builder(6)
    w = b.weight("dense.weight", (5, 3))  # (in, out): transB = 0
    c = b.weight("dense.bias", (1, 3))
    out = b.node("Gemm", ["input", w, c], "/dense/Gemm", alpha=0.5, beta=2.0)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 5]}, out, 2)
    _check_against_reference(path, (5,))


@pytest.mark.parametrize("target", [[-1, 24], [0, -1], [0, 4, 6], [2, -1]], ids=str)
def test_reshape_targets_that_keep_the_batch(tmp_path: Path, target: list[int]) -> None:
    """``[-1, 24]`` (``x.view(-1, 24)``), 0 copying the batch, and the fixed batch 2."""
    b = M.Builder()
    out = b.node("Reshape", ["input", b.const("shape", np.array(target, np.int64))], "/Reshape")
    out = b.node("Relu", [out], "/Relu")
    path = b.save(tmp_path / "m.onnx", {"input": [2, 2, 3, 4]}, out, len(target))
    model = Model.from_onnx(path)
    x = np.random.default_rng(0).normal(size=(2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), M.reference_outputs(path, {"input": x}), rtol=RTOL, atol=ATOL)


def test_conv_then_bias_add_and_weights_from_constant_nodes(tmp_path: Path) -> None:
    """TensorFlow-style exports: a bias-less Conv followed by Add of a (1, C, 1, 1)
    constant; weights given by Constant nodes rather than initializers."""
    b = M.Builder(7)
    w = b.constant_node("/kernel", b.rng.normal(size=(3, 2, 3, 3)).astype(np.float32))
    h = b.node("Conv", ["input", w], "/conv/Conv", pads=[1, 1, 1, 1])
    h = b.node("Add", [h, b.constant_node("/bias", b.rng.normal(size=(1, 3, 1, 1)).astype(np.float32))], "/conv/Add")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 2, 5, 5]}, h, 4)
    model = _check_against_reference(path, (2, 5, 5))
    assert [layer.type_name for layer in model.layers] == ["input", "conv2d"]


def test_a_bias_add_on_a_value_read_twice_is_refused(tmp_path: Path) -> None:
    b = M.Builder()
    h = b.node("MatMul", ["input", b.weight("w", (4, 3))], "/fc/MatMul")
    biased = b.node("Add", [h, b.weight("bias", (3,))], "/fc/Add")
    out = b.node("Add", [biased, h], "/skip/Add")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, out, 2)
    with pytest.raises(ModelFileError, match=r"node '/fc/Add' \(Add\): adds a constant"):
        Model.from_onnx(path)


def test_two_inputs_sum_of_three_and_initializers_listed_as_inputs(tmp_path: Path) -> None:
    """Old torch.onnx (keep_initializers_as_inputs=True) lists weights as graph inputs."""
    b = M.Builder(8)
    left = b.gemm("left", "a", 3, 4)
    right = b.gemm("right", "b", 2, 4)
    joined = b.node("Concat", [left, right], "/Concat", axis=-1)
    total = b.node("Sum", [left, right, b.node("Tanh", [right], "/Tanh")], "/Sum")
    out = b.node("Concat", [joined, total], "/Concat_1", axis=1)
    graph = onnx.helper.make_graph(
        b.nodes, "two", [
            helper.make_tensor_value_info("left", TensorProto.FLOAT, [M.BATCH, 3]),
            helper.make_tensor_value_info("right", TensorProto.FLOAT, [M.BATCH, 2]),
            *[helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.initializers],
        ],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [M.BATCH, 12])], b.initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "m.onnx"))
    model = Model.from_onnx(tmp_path / "m.onnx")
    assert [n.name for n in model.graph.input_nodes()] == ["left", "right"]
    rng = np.random.default_rng(9)
    xl, xr = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    expected = M.reference_outputs(tmp_path / "m.onnx", {"left": xl, "right": xr})
    np.testing.assert_allclose(model.predict([xl, xr]), expected, rtol=RTOL, atol=ATOL)


def test_dynamo_style_patterns(tmp_path: Path) -> None:
    """torch.onnx.export(dynamo=True) may leave a Transpose of the weight before MatMul,
    Cast nodes to float, and a MaxPool Indices output nobody reads."""
    b = M.Builder(10)
    x = b.node("Cast", ["input"], "/Cast", to=TensorProto.FLOAT)
    h = b.conv(x, "conv", 2, 3, 3, pads=(1, 1, 1, 1))
    scale, bias, mean, var = (b.const(f"bn.{n}", v) for n, v in [
        ("weight", np.full(3, 1.5, np.float32)), ("bias", np.full(3, 0.1, np.float32)),
        ("running_mean", np.full(3, 0.2, np.float32)), ("running_var", np.full(3, 2.0, np.float32))])
    h = b.node("BatchNormalization", [h, scale, bias, mean, var], "/bn/BatchNormalization")
    h = b.node("MaxPool", [h], "/pool/MaxPool", outputs=2, kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Flatten", [h], "/Flatten")
    t = b.node("Transpose", [b.weight("fc.weight", (4, 12))], "/fc/Transpose", perm=[1, 0])
    h = b.node("MatMul", [h, t], "/fc/MatMul")
    out = b.node("Add", [h, b.weight("fc.bias", (4,))], "/fc/Add")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 2, 4, 4]}, out, 2)
    model = _check_against_reference(path, (2, 4, 4))
    assert [layer.name for layer in model.layers] == ["input", "conv", "bn", "pool_MaxPool", "Flatten", "fc"]


def test_layer_normalization_as_pytorch_exports_it(tmp_path: Path) -> None:
    b = M.Builder(11)
    scale = b.const("norm.weight", b.rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32))
    shift = b.const("norm.bias", b.rng.normal(size=(3, 4)).astype(np.float32))
    out = b.node("LayerNormalization", ["input", scale, shift], "/norm/LayerNormalization", axis=-2, epsilon=1e-5)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 2, 3, 4]}, out, 4)
    model = _check_against_reference(path, (2, 3, 4))
    norm = model.layers[1]
    assert isinstance(norm, L.LayerNormalization) and norm.axis == (2, 3)


def test_cross_entropy_on_logits_makes_predict_return_probabilities(tmp_path: Path) -> None:
    path = M.mlp(tmp_path / "m.onnx")
    model = Model.from_onnx(path, loss="cross_entropy")
    x = np.random.default_rng(12).normal(size=(3, 8)).astype(np.float32)
    logits = M.reference_outputs(path, {"input": x})
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict(x), e / e.sum(axis=1, keepdims=True), rtol=RTOL, atol=ATOL)


def test_1d_ops_run_as_1xk_windows_and_fine_tune(tmp_path: Path) -> None:
    """Conv1d/MaxPool1d run as 1 x k windows on (C, 1, L) between reshapes; a 1-D op
    directly after another reads the other's (C, 1, L) map, not a reshape of a reshape."""
    model = Model.from_onnx(M.conv1d_net(tmp_path / "m.onnx"), loss="cross_entropy")
    layers = {layer.name: layer for layer in model.layers}
    kinds = [layer.type_name for layer in model.layers]
    assert kinds[:2] == ["input", "reshape"] and kinds.count("conv2d") == 2
    assert layers["conv1.to_2d"].type_name == "reshape" and layers["conv1.to_1d"].type_name == "reshape"
    assert layers["conv2"].input_layers == ["pool1_MaxPool"]  # the pool's map itself
    conv2 = next(layer for layer in model.layers if layer.name == "conv2")
    assert isinstance(conv2, L.Conv2D)
    assert (conv2.kernel_size, conv2.stride, conv2.dilation, conv2.padding) == ((1, 3), (1, 2), (1, 2), (0, 0, 2, 1))
    model.compile(SGD(0.05), batch_size=4)
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(4, 4, 32)).astype(np.float32), rng.integers(0, 3, 4)
    losses = [model.train_step(x, y) for _ in range(10)]
    assert losses[-1] < losses[0]


def test_nan_weights_are_refused_naming_the_file_and_weight(tmp_path: Path) -> None:
    b = M.Builder()
    out = b.node("Gemm", ["input", b.const("fc.weight", np.full((2, 4), np.nan, np.float32))], "/fc/Gemm", transB=1)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, out, 2)
    with pytest.raises(ModelFileError, match=r"m\.onnx: weight 'fc:weight' contains NaN"):
        Model.from_onnx(path)


# -- the command line -----------------------------------------------------------------------------


def test_cli_import_writes_a_model_file_that_trains_from_the_imported_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgetrain import cli

    onnx_path = M.digits_cnn(tmp_path / "digits.onnx")
    ini, weights = tmp_path / "digits.ini", tmp_path / "digits.bin"
    code = cli.main(["import", str(onnx_path), "--ini", str(ini), "--weights", str(weights),
                     "--loss", "cross_entropy", "--optimizer", "adam", "--learning-rate", "0.01", "--batch-size", "16"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert "digits.onnx: 7 layers, 690 weights" in out
    text = ini.read_text()
    assert "type = adam" in text.lower().replace("\t", " ") and "batch_size = 16" in text
    imported = Model.from_onnx(onnx_path, loss="cross_entropy")
    model = Model.from_ini(ini)
    model.compile(None, batch_size=1)
    model.load(weights)
    x = np.random.default_rng(14).normal(size=(4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), imported.predict(x))
    code = cli.main(["train", str(ini), "--data", "digits", "--load", str(weights), "--epochs", "1", "--quiet",
                     "--save", str(tmp_path / "tuned.bin")])
    out, _ = capsys.readouterr()
    assert code == 0 and "starting from the weights in" in out and (tmp_path / "tuned.bin").is_file()


def test_cli_import_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgetrain import cli

    onnx_path = M.digits_cnn(tmp_path / "digits.onnx")
    code = cli.main(["import", str(onnx_path), "--ini", str(tmp_path / "a.ini"), "--weights", str(tmp_path / "a.bin"),
                     "--optimizer", "sgd"])
    _, err = capsys.readouterr()
    assert code == 2 and err == "edgetrain: error: --optimizer needs --loss: fine-tuning needs a loss\n"
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    code = cli.main(["import", str(tmp_path / "junk.onnx"), "--ini", str(tmp_path / "a.ini"),
                     "--weights", str(tmp_path / "a.bin")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("edgetrain: error: ") and "junk.onnx: is not" in err
    assert not (tmp_path / "a.ini").exists()


def test_an_embedding_on_int64_token_ids_as_pytorch_exports_it(tmp_path: Path) -> None:
    """nn.Embedding: Gather(embedding.weight, input_ids) on an INT64 input; the ids are
    fed to edgetrain as whole numbers in its float tensors."""
    b = M.Builder(15)
    table = b.weight("embedding.weight", (10, 3), 1.0)
    h = b.node("Gather", [table, "input_ids"], "/embedding/Gather")
    h = b.node("Flatten", [h], "/Flatten", axis=1)
    out = b.gemm(h, "fc", 12, 2)
    graph = helper.make_graph(
        b.nodes, "tokens", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [M.BATCH, 4])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [M.BATCH, 2])], b.initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "m.onnx"))
    model = Model.from_onnx(tmp_path / "m.onnx", loss="mse")
    assert [layer.type_name for layer in model.layers][:2] == ["input", "embedding"]
    ids = np.random.default_rng(16).integers(0, 10, size=(5, 4))
    expected = M.reference_outputs(tmp_path / "m.onnx", {"input_ids": ids})
    np.testing.assert_allclose(model.predict(ids.astype(np.float32)), expected, rtol=RTOL, atol=ATOL)
    model.compile(SGD(0.1), batch_size=5)
    target = np.zeros((5, 2), np.float32)
    losses = [model.train_step(ids.astype(np.float32), target) for _ in range(5)]
    assert losses[-1] < losses[0]


def test_integer_ids_used_as_numbers_are_refused(tmp_path: Path) -> None:
    b = M.Builder()
    ids = b.node("Cast", ["input"], "/Cast", to=TensorProto.INT64)
    out = b.node("Flatten", [ids], "/Flatten")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4, 2]}, out, 2, out_type=TensorProto.INT64)
    with pytest.raises(ModelFileError, match=r"node '/Flatten' \(Flatten\): input 0 .* holds integer ids"):
        Model.from_onnx(path)


def test_split_into_equal_parts_as_torch_chunk_exports_it(tmp_path: Path) -> None:
    b = M.Builder(17)
    parts = b.node("Split", ["input", b.const("sizes", np.array([2, 2, 2], np.int64))], "/Split", outputs=3, axis=1)
    second = "/Split_output_1"
    out = b.node("Add", [b.node("Relu", [parts], "/Relu"), b.node("Tanh", [second], "/Tanh")], "/Add")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 6, 5]}, out, 3)
    model = _check_against_reference(path, (6, 5))
    assert [layer.type_name for layer in model.layers].count("split") == 1
    uneven = M.Builder()
    part = uneven.node("Split", ["input", uneven.const("sizes", np.array([2, 4], np.int64))], "/Split", outputs=2, axis=1)
    path = uneven.save(tmp_path / "u.onnx", {"input": [M.BATCH, 6]}, part, 2)
    with pytest.raises(ModelFileError, match=r"\(Split\): splits axis 1 of size 6 into \[2, 4\]"):
        Model.from_onnx(path)


def test_silu_as_sigmoid_times_x_becomes_swish(tmp_path: Path) -> None:
    b = M.Builder(18)
    h = b.gemm("input", "fc", 4, 6)
    gate = b.node("Sigmoid", [h], "/act/Sigmoid")
    h = b.node("Mul", [h, gate], "/act/Mul")
    out = b.gemm(h, "head", 6, 2)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, out, 2)
    model = _check_against_reference(path, (4,))
    kinds = [(layer.type_name, getattr(layer, "kind", None)) for layer in model.layers]
    assert kinds == [("input", None), ("fully_connected", None), ("activation", "swish"), ("fully_connected", None)]


def test_a_product_of_two_different_values_is_refused(tmp_path: Path) -> None:
    b = M.Builder()
    out = b.node("Mul", [b.node("Relu", ["input"], "/Relu"), b.node("Sigmoid", ["input"], "/Sigmoid")], "/gate/Mul")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, out, 2)
    with pytest.raises(ModelFileError, match=r"node '/gate/Mul' \(Mul\): multiplies two run-time values"):
        Model.from_onnx(path)


@pytest.mark.parametrize("variant", ["slice", "shape_start_end", "squeeze_cast"])
def test_other_flatten_shape_chains_fold(tmp_path: Path, variant: str) -> None:
    """Reshape(x, Concat(<batch>, [-1])) with the batch taken by Slice(Shape(x), 0, 1),
    by Shape(x, start=0, end=1) (op set 15), or Gather then Squeeze/Cast round trips."""
    b = M.Builder()
    if variant == "slice":
        shape = b.node("Shape", ["input"], "/Shape")
        batch = b.node("Slice", [shape, b.const("starts", np.array([0])), b.const("ends", np.array([1]))], "/Slice")
    elif variant == "shape_start_end":
        batch = b.node("Shape", ["input"], "/Shape", start=0, end=1)
    else:
        shape = b.node("Cast", [b.node("Shape", ["input"], "/Shape")], "/Cast", to=TensorProto.INT64)
        first = b.node("Gather", [shape, b.const("index", np.array([0]))], "/Gather", axis=0)
        batch = b.node("Unsqueeze", [b.node("Squeeze", [first, b.const("axes0", np.array([0]))], "/Squeeze"),
                                      b.const("axes1", np.array([0]))], "/Unsqueeze")
    target = b.node("Concat", [batch, b.const("rest", np.array([-1]))], "/Concat", axis=0)
    out = b.node("Relu", [b.node("Reshape", ["input", target], "/Reshape")], "/Relu")
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 2, 3, 4]}, out, 2, opset=17 if variant != "shape_start_end" else 15)
    model = _check_against_reference(path, (2, 3, 4))
    assert [layer.type_name for layer in model.layers] == ["input", "flatten", "activation"]


def test_a_second_split_output_as_the_graph_output_is_refused(tmp_path: Path) -> None:
    b = M.Builder()
    b.node("Split", ["input", b.const("sizes", np.array([2, 2], np.int64))], "/Split", outputs=2, axis=1)
    path = b.save(tmp_path / "m.onnx", {"input": [M.BATCH, 4]}, "/Split_output_1", 2)
    with pytest.raises(ModelFileError, match=r"is output Split\(1\) of a layer with several"):
        Model.from_onnx(path)
