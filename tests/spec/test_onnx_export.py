"""export_onnx and `edgetrain export`: every exportable layer type, checked against
onnx.reference.ReferenceEvaluator, and the round trip through Model.from_onnx.

Tolerance against the reference: rtol = atol = 1e-5 in float32, for the reason given in
test_onnx_import.py (same float32 weights, different summation order: a few ulps). The
round trip export -> from_onnx rebuilds the same layers with the same float32 weights, so
its outputs are compared exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from edgetrain import ConfigError, Model, StateError, cli
from edgetrain import layers as L
from edgetrain.interchange import export_onnx
from edgetrain.optimizers import SGD

RTOL = ATOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]
DIGITS_INI = ROOT / "examples" / "digits_cnn.ini"


def _randomized(model: Model, batch_size: int = 4, seed: int = 0) -> Model:
    """Compiled, with every weight random (batch-norm variances positive), so that a
    wrong layout or a dropped statistic shows in the outputs."""
    model.compile(None, batch_size=batch_size, seed=seed)
    rng = np.random.default_rng(seed)
    weights = {}
    for name, value in model.get_weights().items():
        if name.endswith("moving_variance"):
            weights[name] = rng.uniform(0.5, 2.0, value.shape)
        else:
            weights[name] = rng.normal(size=value.shape) * (0.5 if value.ndim > 1 else 0.2)
    model.set_weights(weights)
    return model


def dense_model() -> Model:
    return Model(
        [
            L.Input(shape=(6,), name="features"),
            L.FullyConnected(unit=8, activation="relu", name="fc1"),
            L.Dropout(dropout_rate=0.25, name="drop"),
            L.FullyConnected(unit=8, activation="tanh", name="fc2"),
            L.FullyConnected(unit=8, activation="leaky_relu", name="fc3"),
            L.BatchNormalization(name="bn", activation="sigmoid"),
            L.FullyConnected(unit=5, bias=False, name="fc4"),
            L.Activation("softmax", name="probabilities"),
        ],
        None,
    )


def sequence_model() -> Model:
    """Dense layers on (N, 4, 6): MatMul + Add, and a layer normalization over the last axis."""
    return Model(
        [
            L.Input(shape=(4, 6), name="tokens"),
            L.FullyConnected(unit=5, name="proj"),
            L.LayerNormalization(name="norm", epsilon=1e-5),
            L.FullyConnected(unit=3, activation="relu", name="out"),
        ],
        "mse",
    )


def cnn_model() -> Model:
    """Convolutions (same, strided, dilated, explicit asymmetric padding), batch norm, every
    pooling, a residual Addition (fan-out), Concat, Reshape, Flatten, cross entropy."""
    return Model(
        [
            L.Input(shape=(3, 9, 9), name="image"),
            L.Conv2D(filters=4, kernel_size=3, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1", activation="relu"),
            L.Conv2D(filters=4, kernel_size=3, padding=1, name="conv2", input_layers="bn1"),
            L.Addition(name="residual", input_layers="conv2, bn1"),
            L.Pooling2D("max", pool_size=3, stride=2, padding=(1, 0, 1, 0), name="maxpool"),
            L.Conv2D(filters=2, kernel_size=2, stride=2, dilation=2, padding=(0, 1, 1, 1), name="strided"),
            L.Pooling2D("average", pool_size=2, padding=1, name="avgpool", input_layers="maxpool"),
            L.Pooling2D("global_average", name="gap", input_layers="maxpool"),
            L.Pooling2D("global_max", name="gmp", input_layers="maxpool"),
            L.Concat(axis=1, name="joined", input_layers="gap, gmp"),
            L.Flatten(name="flat1", input_layers="joined"),
            L.Flatten(name="flat2", input_layers="strided"),
            L.Flatten(name="flat3", input_layers="avgpool"),
            L.Concat(axis=1, name="features", input_layers="flat1, flat2, flat3"),
            L.Reshape(target_shape=(2, -1), name="pairs"),
            L.FullyConnected(unit=3, name="pairwise"),
            L.Flatten(name="flat4"),
            L.FullyConnected(unit=4, name="head"),
        ],
        "cross_entropy",
    )


def conv1d_model() -> Model:
    return Model(
        [
            L.Input(shape=(2, 1, 12), name="signal"),
            L.Conv1D(filters=3, kernel_size=3, padding="causal", name="causal"),
            L.Conv1D(filters=2, kernel_size=2, stride=2, name="down", activation="sigmoid"),
            L.Flatten(name="flat"),
            L.FullyConnected(unit=2, name="head"),
        ],
        "cross_entropy_sigmoid",
    )


MODELS: list[Callable[[], Model]] = [dense_model, sequence_model, cnn_model, conv1d_model]


def _inputs(model: Model, n: int, seed: int = 1) -> np.ndarray:
    shape = model.graph.input_nodes()[0].output_shapes[0][1:]
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("build", MODELS, ids=[m.__name__ for m in MODELS])
def test_exported_model_matches_predict_under_the_reference(tmp_path: Path, build: Callable[[], Model]) -> None:
    model = _randomized(build())
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17 and proto.ir_version == 8
    x = _inputs(model, 7)
    feeds = {proto.graph.input[0].name: x}
    expected = np.asarray(ReferenceEvaluator(proto).run(None, feeds)[0])
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("build", MODELS, ids=[m.__name__ for m in MODELS])
def test_round_trip_through_from_onnx_gives_the_same_outputs(tmp_path: Path, build: Callable[[], Model]) -> None:
    model = _randomized(build())
    export_onnx(model, tmp_path / "m.onnx")
    again = Model.from_onnx(tmp_path / "m.onnx", loss=model.loss_name)
    again.compile(None, batch_size=model.batch_size)
    x = _inputs(model, 9)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    ours = model.get_weights()
    theirs = again.get_weights()
    assert theirs.keys() == ours.keys()  # layer names survive the trip
    for name, value in theirs.items():
        np.testing.assert_array_equal(value, ours[name])


def test_names_layouts_and_the_output(tmp_path: Path) -> None:
    model = _randomized(cnn_model())
    export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [i.name for i in graph.input] == ["image"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert [o.name for o in graph.output] == ["output"]
    assert graph.node[-1].op_type == "Softmax"  # predict gives probabilities under cross entropy
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    weights = model.get_weights()
    np.testing.assert_array_equal(stored["head:weight"], weights["head:weight"].T)  # Gemm B is (out, in)
    np.testing.assert_array_equal(stored["conv1:weight"], weights["conv1:weight"])
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    pads = next(a for a in convs["strided"].attribute if a.name == "pads")
    assert list(pads.ints) == [0, 1, 1, 1]  # edgetrain (top 0, bottom 1, left 1, right 1)


def test_float64_models_export_as_float32(tmp_path: Path) -> None:
    model = dense_model()
    model.compile(None, batch_size=2, dtype=np.float64)
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT}


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([L.Input(shape=(4,), name="x"), L.FullyConnected(unit=3, activation="gelu", name="fc")],
         r"layer 'fc/activation' \(activation\) cannot be exported to ONNX: Gelu needs op set 20"),
        ([L.Input(shape=(4, 6), name="x"), L.BatchNormalization(name="bn")],
         r"layer 'bn' \(batch_normalization\) .*normalises axis 2"),
        ([L.Input(shape=(2, 3, 4), name="x"), L.LayerNormalization(axis=[1, 3], name="ln")],
         r"layer 'ln' .*normalises axes \[1, 3\]"),
    ],
)
def test_layers_without_an_onnx_mapping_are_refused_and_nothing_is_written(
    tmp_path: Path, layers: list[L.Layer], message: str
) -> None:
    model = Model(layers)
    model.compile(None, batch_size=1)
    with pytest.raises(ConfigError, match=message):
        export_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_an_uncompiled_model_and_a_bad_opset_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="compile"):
        export_onnx(dense_model(), tmp_path / "m.onnx")
    model = _randomized(dense_model())
    with pytest.raises(ConfigError, match="opset must be between 13"):
        export_onnx(model, tmp_path / "m.onnx", opset=11)


def test_an_exported_model_that_was_fine_tuned_keeps_its_trained_weights(tmp_path: Path) -> None:
    model = dense_model()
    model.loss_name = "cross_entropy"
    model.compile(SGD(0.1), batch_size=4)
    rng = np.random.default_rng(3)
    model.fit(rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 5, 16), epochs=2)
    export_onnx(model, tmp_path / "m.onnx")
    x = _inputs(model, 5)
    expected = ReferenceEvaluator(str(tmp_path / "m.onnx")).run(None, {"features": x})[0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)


# -- the command line ---------------------------------------------------------------------------


def test_cli_export_writes_onnx_checked_against_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Model.from_ini(DIGITS_INI)
    _randomized(model, batch_size=32)
    model.save(tmp_path / "w.bin")
    code = cli.main(["export", str(DIGITS_INI), str(tmp_path / "w.bin"), "--onnx", str(tmp_path / "d.onnx"),
                     "--weights-to", str(tmp_path / "w.safetensors")])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert re.search(r"wrote .*d\.onnx \(ONNX op set 17, input 'image', output 'output'\)", out)
    x = np.random.default_rng(4).normal(size=(6, 1, 8, 8)).astype(np.float32)
    expected = ReferenceEvaluator(str(tmp_path / "d.onnx")).run(None, {"image": x})[0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)
    again = Model.from_ini(DIGITS_INI)
    again.compile(None, batch_size=32)
    again.load(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_cli_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["export", str(DIGITS_INI), str(tmp_path / "missing.bin"), "--onnx", str(tmp_path / "d.onnx")])
    _, err = capsys.readouterr()
    assert code == 2 and re.fullmatch(r"edgetrain: error: .*missing\.bin: no such weights file\n", err)
    code = cli.main(["export", str(DIGITS_INI), str(tmp_path / "missing.bin")])
    _, err = capsys.readouterr()
    assert code == 2 and "nothing to export" in err


def test_a_model_with_two_inputs_exports_both(tmp_path: Path) -> None:
    model = Model(
        [
            L.Input(shape=(3,), name="left"),
            L.Input(shape=(2,), name="right"),
            L.FullyConnected(unit=4, name="a", input_layers="left"),
            L.FullyConnected(unit=4, name="b", input_layers="right"),
            L.Addition(name="sum", input_layers="a, b"),
            L.Concat(name="both", input_layers="sum, a, b"),
            L.FullyConnected(unit=2, name="head", activation="sigmoid"),
        ],
    )
    _randomized(model)
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["left", "right"]
    rng = np.random.default_rng(5)
    xl, xr = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    expected = ReferenceEvaluator(proto).run(None, {"left": xl, "right": xr})[0]
    np.testing.assert_allclose(model.predict([xl, xr]), expected, rtol=RTOL, atol=ATOL)
    again = Model.from_onnx(tmp_path / "m.onnx")
    again.compile(None, batch_size=model.batch_size)
    np.testing.assert_array_equal(again.predict([xl, xr]), model.predict([xl, xr]))


def test_embedding_and_split_export_and_round_trip(tmp_path: Path) -> None:
    """Embedding: the float ids cast to int64, then Gather of the table; Split: equal
    parts with the sizes as an input. Both come back as the same layers."""
    model = Model(
        [
            L.Input(shape=(6,), name="tokens"),
            L.Embedding(in_dim=9, out_dim=4, name="embed"),
            L.Split(axis=1, split_number=3, name="thirds"),
            L.FullyConnected(unit=2, name="first", input_layers="thirds(0)"),
            L.FullyConnected(unit=2, name="last", input_layers="thirds(2)"),
            L.Addition(name="both", input_layers="first, last"),
            L.Flatten(name="flat"),
            L.FullyConnected(unit=3, name="head"),
        ],
        "cross_entropy",
    )
    _randomized(model)
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [n.op_type for n in proto.graph.node][:3] == ["Cast", "Gather", "Split"]
    ids = np.random.default_rng(6).integers(0, 9, size=(5, 6)).astype(np.float32)
    expected = ReferenceEvaluator(proto).run(None, {"tokens": ids})[0]
    np.testing.assert_allclose(model.predict(ids), expected, rtol=RTOL, atol=ATOL)
    again = Model.from_onnx(tmp_path / "m.onnx", loss="cross_entropy")
    assert {layer.name: layer.type_name for layer in again.layers}.items() >= {("embed", "embedding"), ("thirds", "split")}
    again.compile(None, batch_size=model.batch_size)
    np.testing.assert_array_equal(again.predict(ids), model.predict(ids))


@pytest.mark.parametrize("kind", ["swish", "gelu", "tanh_gelu"])
def test_swish_and_gelu_export_and_come_back(tmp_path: Path, kind: str) -> None:
    """swish as Sigmoid + Mul (any op set, as PyTorch writes SiLU); gelu and tanh_gelu as
    Gelu, which needs op set 20."""
    model = Model([L.Input(shape=(5,), name="x"), L.FullyConnected(unit=4, name="fc", activation=kind),
                   L.FullyConnected(unit=2, name="out")])
    _randomized(model)
    opset = 17 if kind == "swish" else 20
    export_onnx(model, tmp_path / "m.onnx", opset=opset)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    x = _inputs(model, 6)
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)
    again = Model.from_onnx(tmp_path / "m.onnx")
    assert [layer.type_name for layer in again.layers] == ["input", "fully_connected", "activation", "fully_connected"]
    assert again.layers[2].kind == kind  # type: ignore[attr-defined]
    again.compile(None, batch_size=model.batch_size)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_a_layer_named_output_that_is_not_last_keeps_the_graph_valid(tmp_path: Path) -> None:
    model = Model([L.Input(shape=(3,), name="x"), L.FullyConnected(unit=4, name="output"),
                   L.Activation("softmax", name="probabilities")])
    _randomized(model)
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    x = _inputs(model, 3)
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)


def test_every_layer_type_has_an_onnx_mapping() -> None:
    """A new layer type must get an exporter (or a stated refusal) here."""
    from edgetrain.interchange.onnx_export import EXPORTERS
    from edgetrain.layers import LAYER_TYPES

    missing = [name for name, cls in LAYER_TYPES.items() if not any(issubclass(cls, k) for k in EXPORTERS)]
    assert missing == []
