"""NNTrainer INI model files: real NNTrainer files, every error case, round trips."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetrain import Model
from edgetrain.errors import ModelFileError, SaveError
from edgetrain.graph import build_graph
from edgetrain.ini import (
    DataFiles,
    ModelDescription,
    SwapSettings,
    format_ini,
    input_layer_name,
    parse_ini,
    read_ini,
    read_model_file,
    write_ini,
)
from edgetrain.ini.keys import base_property_defaults
from edgetrain.layers import LAYER_TYPES, Layer
from edgetrain.losses import make_loss
from edgetrain.optimizers import SGD, Adam, AdamW
from edgetrain.schedules import Constant, Cosine, Exponential, Linear, Step

DATA = Path(__file__).parent.parent / "data" / "ini"
EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def shapes(desc: ModelDescription) -> dict[str, tuple[int, ...]]:
    """Output shape (batch dropped) of every graph node of a description."""
    graph = build_graph(desc.layers, 2, make_loss(desc.loss) if desc.loss else None)
    return {node.name: node.output_shapes[0][1:] for node in graph.nodes}


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def write(tmp_path: Path, text: str, name: str = "model.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MODEL = "[Model]\ntype = NeuralNetwork\nbatch_size = 4\n"
INPUT = "[in]\ntype = input\ninput_shape = 1:1:6\n"
FC = "[fc]\ntype = fully_connected\nunit = 3\n"


def error_of(tmp_path: Path, text: str) -> ModelFileError:
    path = write(tmp_path, text)
    with pytest.raises(ModelFileError) as info:
        read_ini(path)
    assert info.value.path == str(path)
    return info.value


# -- real NNTrainer files -----------------------------------------------------------------


def test_nntrainer_mnist() -> None:
    desc = read_ini(DATA / "nntrainer_mnist.ini")
    assert [layer.type_name for layer in desc.layers] == [
        "input", "conv2d", "pooling2d", "conv2d", "pooling2d", "flatten", "fully_connected",
    ]  # fmt: skip
    assert desc.loss == "cross_entropy"  # softmax on the last layer
    assert (desc.batch_size, desc.epochs) == (32, 1500)
    assert isinstance(desc.optimizer, Adam)
    assert desc.optimizer.config() == {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}
    assert isinstance(desc.schedule, Constant) and desc.schedule.learning_rate == 1e-4
    out = shapes(desc)
    assert out["conv2d_c1_layer"] == (6, 24, 24)
    assert out["pooling2d_p1"] == (6, 12, 12)
    assert out["conv2d_c2_layer"] == (12, 8, 8)
    assert out["pooling2d_p2"] == (12, 4, 4)
    assert out["outputlayer"] == (10,)
    model = Model.from_ini(DATA / "nntrainer_mnist.ini")
    model.compile(model.optimizer, 2)
    summary = model.summary()
    assert "conv2d_c1_layer/activation" in summary
    assert "total parameters: 3,898" in summary  # 156 + 1,812 + 1,930


def test_nntrainer_logistic_regression_trains() -> None:
    """``loss = cross`` after a sigmoid is sigmoid cross entropy; the old-style
    ``[Model] learning_rate`` reaches the optimizer."""
    model = Model.from_ini(DATA / "nntrainer_logistic_regression.ini")
    assert model.loss_name == "cross_entropy_sigmoid"
    assert isinstance(model.optimizer, SGD)
    assert model.optimizer.schedule.lr_at(0) == 0.001
    assert model.batch_size == 16
    assert model.description is not None and model.description.epochs == 1000
    model.compile(model.optimizer, model.batch_size)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 1, 1, 2)).astype(np.float32)
    y = (x[:, 0, 0, :1] > 0).astype(np.float32).reshape(16, 1, 1, 1)
    first = model.train_step(x, y)
    for _ in range(20):
        last = model.train_step(x, y)
    assert last < first


def test_nntrainer_deepq() -> None:
    path = DATA / "nntrainer_deepq.ini"
    desc = read_ini(path)
    assert desc.loss == "mse"
    assert isinstance(desc.optimizer, Adam)
    assert desc.optimizer.config() == {"beta1": 0.9, "beta2": 0.9999, "epsilon": 1e-8}
    assert desc.save_path == path.parent / "model_deepq.bin"
    assert desc.layers[0].activation == "tanh"  # an activation on the input layer
    out = shapes(desc)
    assert out["inputlayer/activation"] == (1, 1, 4)
    assert out["outputlayer"] == (1, 1, 2)


def test_nntrainer_loss_layer_and_dropout() -> None:
    desc = read_ini(DATA / "nntrainer_tflite_export_fc.ini")
    assert desc.loss == "mse"  # from the trailing [loss_out] section
    assert desc.optimizer is None
    assert desc.continue_train is False
    assert [layer.name for layer in desc.layers][-1] == "outputlayer"
    dropout = desc.layers[2]
    assert dropout.type_name == "dropout" and dropout.config() == {"dropout_rate": 0.3}
    assert shapes(desc)["outputlayer"] == (1, 1, 9)


def test_nntrainer_first_layer_with_input_shape_gets_an_input_layer() -> None:
    desc = read_ini(DATA / "nntrainer_simple_fc.ini")
    names = [layer.name for layer in desc.layers]
    assert names == [input_layer_name("fc0"), "fc0", "flat"] == ["fc0/input", "fc0", "flat"]
    assert desc.layers[0].config() == {"shape": (1, 1, 100)}
    assert desc.loss is None and desc.optimizer is None
    assert shapes(desc)["flat"] == (2,)


def test_nntrainer_vgg_optimizer_decay_is_exponential() -> None:
    desc = read_ini(DATA / "nntrainer_vgg_small.ini")
    schedule = desc.schedule
    assert isinstance(schedule, Exponential)
    assert schedule.config() == {"learning_rate": 0.01, "decay_rate": 0.96, "decay_steps": 10000}
    assert schedule.lr_at(10000) == pytest.approx(0.0096)
    assert shapes(desc)[desc.layers[-1].name or ""] == (100,)


def test_nntrainer_alexnet() -> None:
    desc = read_ini(DATA / "nntrainer_alexnet.ini")
    fc = next(layer for layer in desc.layers if layer.name == "fc_f1_layer")
    assert fc.activation == "relu"  # written "Relu"
    out = shapes(desc)
    assert out["conv2d_c1_layer"] == (64, 16, 16)  # stride 2, padding "same"
    assert out["flatten"] == (1024,)
    assert out["fc_f3_layer"] == (100,)


def test_nntrainer_layers_without_input_layers_chain() -> None:
    desc = read_ini(DATA / "nntrainer_model_a_conv.ini")
    out = shapes(desc)
    assert [out[n] for n in ("conv2d_c1_layer", "Cov2", "Cov3")] == [
        (3, 112, 112),
        (3, 56, 56),
        (3, 28, 28),
    ]


def test_nntrainer_product_ratings_embeddings() -> None:
    desc = read_ini(DATA / "nntrainer_product_ratings.ini")
    assert desc.layers[2].input_layers == ["split(0)"]
    assert desc.loss == "mse" and isinstance(desc.optimizer, Adam)
    out = shapes(desc)
    assert out["user_embed"] == out["product_embed"] == (1, 1, 5)
    assert out["outputlayer"] == (1,)


def test_nntrainer_unsupported_layer_names_its_line() -> None:
    path = DATA / "nntrainer_lstm.ini"
    with pytest.raises(ModelFileError, match="'lstm' is not supported") as info:
        read_ini(path)
    err = info.value
    assert (err.line, err.section, err.key) == (line_of(path, "Type = lstm"), "LSTMLayer", "type")


def test_nntrainer_input_normalization_is_refused_at_its_line() -> None:
    path = DATA / "nntrainer_custom_shortcut.ini"
    with pytest.raises(ModelFileError, match="normalization") as info:
        read_ini(path)
    err = info.value
    assert (err.line, err.section, err.key) == (
        line_of(path, "Normalization = true"),
        "inputlayer",
        "normalization",
    )


@pytest.mark.parametrize("name", ["mlp", "lenet5", "vgg16", "resnet18"])
def test_example_workloads_load(name: str) -> None:
    desc = read_ini(EXAMPLES / f"{name}.ini")
    assert desc.loss == "cross_entropy"
    assert isinstance(desc.optimizer, SGD) and desc.optimizer.momentum == 0.9
    assert shapes(desc)[desc.layers[-1].name or ""][-1] in (10, 100)


# -- the text format -------------------------------------------------------------------------


def test_comments_quotes_case_and_continuations(tmp_path: Path) -> None:
    text = """; a comment
[MODEL]   # a section comment
TYPE = neuralNetwork
Batch_Size = 4 ; inline comment
Save_Path = "dir/with#hash.bin"   # quoted values keep # and ;
Loss = MSE

[Input]
Type = INPUT
Input_Shape = 1:\\
   1:6

[FC]
type = Fully_Connected
input_layers = INPUT
UNIT = 3
activation = ReLU
"""
    desc = read_ini(write(tmp_path, text))
    assert desc.batch_size == 4
    assert desc.save_path == tmp_path / "dir/with#hash.bin"
    assert desc.loss == "mse"
    assert [layer.name for layer in desc.layers] == ["Input", "FC"]
    assert desc.layers[1].input_layers == ["Input"]  # names resolve case-insensitively
    assert desc.layers[1].activation == "relu"
    assert desc.layers[0].config() == {"shape": (1, 1, 6)}


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.ini"
    path.write_bytes(b"\xef\xbb\xbf" + (MODEL + INPUT).replace("\n", "\r\n").encode())
    assert read_ini(path).batch_size == 4


def test_parse_keeps_line_numbers() -> None:
    sections = parse_ini("\n[a]\nx = 1\n\n[b]\ny = 2 # c\n", "mem.ini")
    assert [(s.name, s.line) for s in sections] == [("a", 2), ("b", 5)]
    entry = sections[1].entries["y"]
    assert (entry.value, entry.line) == ("2", 6)


def test_cross_after_an_activation_layer(tmp_path: Path) -> None:
    for kind, loss in (("softmax", "cross_entropy"), ("sigmoid", "cross_entropy_sigmoid")):
        text = (
            "[Model]\nloss = cross\n"
            + INPUT
            + FC
            + f"[act]\ntype = activation\nactivation = {kind}\n"
        )
        desc = read_ini(write(tmp_path, text))
        assert desc.loss == loss
        assert "loss = cross\n" in format_ini(desc)


def test_four_number_input_shape_drops_the_batch(tmp_path: Path) -> None:
    desc = read_ini(write(tmp_path, MODEL + "[in]\ntype = input\ninput_shape = 8:1:2:3\n"))
    assert desc.layers[0].config() == {"shape": (1, 2, 3)}


def test_type_aliases_and_ports(tmp_path: Path) -> None:
    text = (
        MODEL
        + INPUT
        + """
[m]
type = multiout
outputs = 2
[sum]
type = addition
input_layers = M(0), m (1)
[out]
type = fc
unit = 2
"""
    )
    desc = read_ini(write(tmp_path, text))
    assert desc.layers[2].input_layers == ["m(0)", "m(1)"]
    assert desc.layers[3].type_name == "fully_connected"


def test_swap_settings_and_their_newer_names(tmp_path: Path) -> None:
    text = (
        "[Model]\nmemory_swap = true\nmemory_swap_path = /tmp/swap\nmemory_swap_lookahead = 2\n"
        + INPUT
    )
    desc = read_ini(write(tmp_path, text))
    assert desc.swap == SwapSettings(True, "/tmp/swap", 2)
    desc = read_ini(write(tmp_path, "[Model]\nfsu = true\nfsu_lookahead = 1\n" + INPUT))
    assert desc.swap == SwapSettings(True, None, 1)  # no path: the system temp dir
    desc = read_ini(write(tmp_path, "[Model]\nmemory_swap_path = .\n" + INPUT))
    assert desc.swap == SwapSettings(False, ".", 0)  # set, even to NNTrainer's default
    err = error_of(tmp_path, "[Model]\nfsu = true\nmemory_swap = false\n" + INPUT)
    assert err.key == "fsu"


def test_data_sections(tmp_path: Path) -> None:
    old = "[DataSet]\nBufferSize = 100\nTrainData = train.dat\nValidData = /abs/valid.dat\nLabelData = l.dat\n"
    desc = read_ini(write(tmp_path, MODEL + old + INPUT))
    assert desc.data == DataFiles(tmp_path / "train.dat", Path("/abs/valid.dat"), None, 100)
    new = "[train_set]\ntype = file\npath = t.dat\n[test_set]\nType = FILE\npath = x.dat\nbuffer_size = 8\n"
    desc = read_ini(write(tmp_path, MODEL + new + INPUT))
    assert desc.data == DataFiles(tmp_path / "t.dat", None, tmp_path / "x.dat", 8)


def test_schedules(tmp_path: Path) -> None:
    base = MODEL + "[Optimizer]\ntype = sgd\n" + INPUT
    cases: list[tuple[str, Any]] = [
        ("type = constant\nlearning_rate = 0.5", Constant(0.5)),
        (
            "type = exponential\nlearning_rate = 0.1\ndecay_rate = 0.5\ndecay_steps = 10",
            Exponential(0.1, 0.5, 10),
        ),
        (
            "type = step\nlearning_rate = 0.1, 0.01, 0.001\niteration = 10, 20",
            Step([10, 20], [0.1, 0.01, 0.001]),
        ),
        (
            "type = cosine\nmax_learning_rate = 0.1\nmin_learning_rate = 0\ndecay_steps = 5",
            Cosine(0.1, 5, 0.0),
        ),
        (
            "type = linear\nmax_learning_rate = 0.1\nmin_learning_rate = 0.01\ndecay_steps = 5",
            Linear(0.1, 5, 0.01),
        ),
    ]
    for body, expected in cases:
        desc = read_ini(write(tmp_path, base + "[LearningRateScheduler]\n" + body + "\n"))
        assert type(desc.schedule) is type(expected)
        assert desc.schedule is not None and desc.schedule.config() == expected.config()


def test_optimizer_defaults_are_nntrainers(tmp_path: Path) -> None:
    def optimizer(body: str) -> Any:
        desc = read_ini(write(tmp_path, MODEL + "[Optimizer]\n" + body + "\n" + INPUT))
        return desc.optimizer

    sgd = optimizer("type = sgd")
    assert isinstance(sgd, SGD) and sgd.schedule.lr_at(0) == 1e-4 and sgd.momentum == 0
    adam = optimizer("type = adam\ntorch_ref = true")
    assert isinstance(adam, Adam) and adam.schedule.lr_at(0) == 1e-3 and adam.epsilon == 1e-7
    adamw = optimizer("type = AdamW\nweight_decay = 0.1")
    assert isinstance(adamw, AdamW) and adamw.epsilon == 1e-8 and adamw.weight_decay == 0.1
    assert isinstance(optimizer("learning_rate = 0.1"), Adam)  # NNTrainer's default type
    desc = read_ini(write(tmp_path, MODEL + "[Optimizer]\ntype = adam\ntorch_ref = true\n" + INPUT))
    assert desc.torch_ref is True


def test_old_style_optimizer_in_model_section(tmp_path: Path) -> None:
    text = (
        "[Model]\nOptimizer = adam\nLearning_rate = 0.01\nDecay_rate = 0.5\nDecay_steps = 2\nbeta2 = 0.99\n"
        + INPUT
    )
    desc = read_ini(write(tmp_path, text))
    assert isinstance(desc.optimizer, Adam) and desc.optimizer.beta2 == 0.99
    assert isinstance(desc.schedule, Exponential) and desc.schedule.lr_at(2) == pytest.approx(0.005)


def test_inert_keys_are_accepted_at_neutral_values(tmp_path: Path) -> None:
    text = (
        MODEL
        + "[in]\ntype = input\ninput_shape = 1:1:6\nnormalization = false\n"
        + FC
        + "distribute = false\n"
    )
    assert len(read_ini(write(tmp_path, text)).layers) == 2


def test_input_shape_on_a_later_layer_makes_another_input(tmp_path: Path) -> None:
    text = MODEL + INPUT + "[other]\ntype = fully_connected\nunit = 2\ninput_shape = 1:1:3\n"
    desc = read_ini(write(tmp_path, text))
    assert [layer.name for layer in desc.layers] == ["in", "other/input", "other"]


def test_connected_input_shape_is_checked(tmp_path: Path) -> None:
    ok = MODEL + INPUT + FC + "input_layers = in\ninput_shape = 1:1:6\n"
    assert len(read_ini(write(tmp_path, ok)).layers) == 2
    err = error_of(tmp_path, MODEL + INPUT + FC + "input_layers = in\ninput_shape = 1:1:5\n")
    assert (err.section, err.key, err.line) == ("fc", "input_shape", 11)
    assert "receives 1:1:6" in str(err)


# -- errors: each names the file, line, section and key ------------------------------------


ERRORS: list[tuple[str, str, int | None, str | None, str | None, str]] = [
    # (case, text, line, section, key, message fragment)
    ("unknown layer type", MODEL + INPUT + "[x]\ntype = nonsense\n", 8, "x", "type", "unknown layer type"),
    ("unknown layer key", MODEL + INPUT + FC + "colour = red\n", 10, "fc", "colour", "unknown key 'colour'"),
    ("bad value", MODEL + INPUT + "[fc]\ntype = fully_connected\nunit = -3\n", 9, "fc", "unit", "unit must be"),
    ("bad aliased value", MODEL + INPUT + FC + "disable_bias = maybe\n", 10, "fc", "disable_bias", "true or false"),
    ("bad bool", MODEL + INPUT + FC + "trainable = yes please\n", 10, "fc", "trainable", "true or false"),
    ("bad shape", MODEL + "[in]\ntype = input\ninput_shape = 1:x:3\n", 6, "in", "input_shape", "input_shape"),
    ("bad activation", MODEL + INPUT + FC + "activation = wiggle\n", 10, "fc", "activation", "unknown activation"),
    ("missing key", MODEL + INPUT + "[fc]\ntype = fully_connected\n", 7, "fc", None, "needs 'unit'"),
    ("missing input shape", MODEL + "[in]\ntype = input\n", 4, "in", None, "needs 'input_shape'"),
    ("missing type", MODEL + INPUT + "[fc]\nunit = 3\n", 7, "fc", None, "needs a 'type'"),
    ("backbone", MODEL + INPUT + "[b]\nbackbone = other.ini\n", 8, "b", "backbone", "backbone"),
    ("missing input layer", MODEL + INPUT + FC + "input_layers = nowhere\n", 10, "fc", "input_layers", "'nowhere'"),
    ("duplicate section", MODEL + INPUT + FC + "[FC]\ntype = flatten\n", 10, "FC", None, "first at line 7"),
    ("duplicate key", MODEL + INPUT + FC + "Unit = 4\n", 10, "fc", "unit", "first at line 9"),
    ("syntax", MODEL + INPUT + "just some words\n", 7, None, None, "expected 'key = value'"),
    ("empty layer name", MODEL + "[]\ntype = input\ninput_shape = 3\n", 4, "", None, "non-empty"),
    ("malformed header", MODEL + "[in\ntype = input\n", 4, None, None, "malformed section header"),
    ("key before sections", "type = input\n" + MODEL, 1, None, "type", "before any [section]"),
    ("empty value", MODEL + INPUT + FC + "activation =\n", 10, "fc", "activation", "empty"),
    ("text after quotes", MODEL + 'save_path = "a" b\n' + INPUT, 4, "Model", "save_path", "after the quoted"),
    ("name key", MODEL + INPUT + FC + "name = other\n", 10, "fc", "name", "section name is the layer name"),
    ("inert key", MODEL + INPUT + FC + "flatten = true\n", 10, "fc", "flatten", "not supported"),
    ("no layers", MODEL, None, None, None, "no layer sections"),
    ("empty file", "# nothing\n", None, None, None, "no sections"),
    ("unknown model key", MODEL + "speed = fast\n" + INPUT, 4, "Model", "speed", "unknown key 'speed'"),
    ("bad batch size", "[Model]\nbatch_size = 0\n" + INPUT, 2, "Model", "batch_size", "integer >= 1"),
    ("model type", "[Model]\ntype = KNN\n" + INPUT, 2, "Model", "type", "NeuralNetwork"),
    ("tensor format", "[Model]\ntensor_format = NHWC\n" + INPUT, 2, "Model", "tensor_format", "NCHW"),
    ("unknown loss", "[Model]\nloss = hinge\n" + INPUT, 2, "Model", "loss", "unknown loss"),
    ("cross without softmax", "[Model]\nloss = cross\n" + INPUT + FC, 2, "Model", "loss", "softmax or sigmoid"),
    ("loss twice", "[Model]\nloss = mse\n" + INPUT + FC + "[l]\ntype = mse\n", 10, "l", "type", "given twice"),
    ("loss not last", MODEL + INPUT + "[l]\ntype = mse\n" + FC, 9, "fc", None, "must be the last"),
    ("cross loss section", MODEL + INPUT + FC + "[l]\ntype = cross\n", 11, "l", "type", "ambiguous"),
    ("loss section input", MODEL + INPUT + FC + "[l]\ntype = mse\ninput_layers = in\n", 12, "l", "input_layers", "last layer"),
    ("loss as input", MODEL + INPUT + FC + "[l]\ntype = mse\n[x]\ntype = flatten\ninput_layers = l\n", 12, "x", None, "must be the last"),
    ("unknown optimizer", MODEL + "[Optimizer]\ntype = rmsprop\n" + INPUT, 5, "Optimizer", "type", "unknown optimizer"),
    ("optimizer key", MODEL + "[Optimizer]\ntype = adam\nmomentum = 0.9\n" + INPUT, 6, "Optimizer", "momentum", "unknown key"),
    ("bad optimizer value", MODEL + "[Optimizer]\ntype = adam\nbeta1 = 1.5\n" + INPUT, 6, "Optimizer", "beta1", "beta1"),
    ("half decay", MODEL + "[Optimizer]\ntype = sgd\ndecay_rate = 0.5\n" + INPUT, 6, "Optimizer", "decay_rate", "decay_steps"),
    ("optimizer twice", "[Model]\noptimizer = sgd\n[Optimizer]\ntype = sgd\n" + INPUT, 2, "Model", "optimizer", "twice"),
    ("lr without optimizer", "[Model]\nlearning_rate = 0.1\n" + INPUT, 2, "Model", "learning_rate", "no optimizer"),
    ("scheduler without optimizer", MODEL + "[LearningRateScheduler]\ntype = constant\nlearning_rate = 1\n" + INPUT,
     4, "LearningRateScheduler", None, "needs an [Optimizer]"),
    ("two schedules", MODEL + "[Optimizer]\ntype = sgd\ndecay_rate = 0.5\ndecay_steps = 2\n"
     "[LearningRateScheduler]\ntype = constant\nlearning_rate = 1\n" + INPUT, 6, "Optimizer", "decay_rate", "two learning-rate"),
    ("scheduler type", MODEL + "[Optimizer]\n[LearningRateScheduler]\nlearning_rate = 1\n" + INPUT,
     5, "LearningRateScheduler", None, "needs a 'type'"),
    ("scheduler key", MODEL + "[Optimizer]\n[LearningRateScheduler]\ntype = step\nlearning_rate = 1, 2\n" + INPUT,
     6, "LearningRateScheduler", "type", "needs 'iteration'"),
    ("step lengths", MODEL + "[Optimizer]\n[LearningRateScheduler]\ntype = step\nlearning_rate = 1, 2\niteration = 1, 2\n"
     + INPUT, 5, "LearningRateScheduler", None, "one more learning rate"),
    ("data type", MODEL + "[train_set]\ntype = dir\npath = x\n" + INPUT, 5, "train_set", "type", "type = file"),
    ("data path", MODEL + "[valid_set]\ntype = file\n" + INPUT, 4, "valid_set", None, "needs a 'path'"),
    ("data twice", MODEL + "[DataSet]\nTrainData = a\n[train_set]\ntype = file\npath = b\n" + INPUT,
     8, "train_set", "path", "given twice"),
    ("dataset without train", MODEL + "[DataSet]\nValidData = a\n" + INPUT, 4, "DataSet", None, "TrainData"),
    ("shape error", MODEL + INPUT + FC + "[conv]\ntype = conv2d\nfilters = 2\nkernel_size = 3\n", 10, "conv", None, "does not build"),
]  # fmt: skip


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_name_file_line_section_and_key(
    tmp_path: Path, case: tuple[str, str, int | None, str | None, str | None, str]
) -> None:
    _, text, line, section, key, fragment = case
    err = error_of(tmp_path, text)
    assert fragment in str(err)
    assert (err.line, err.section, err.key) == (line, section, key)
    location = f"{tmp_path / 'model.ini'}" + (f":{line}" if line is not None else "")
    assert str(err).startswith(location)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="cannot read"):
        read_ini(tmp_path / "missing.ini")
    with pytest.raises(ModelFileError, match="cannot read"):
        read_ini(tmp_path)
    binary = tmp_path / "binary.ini"
    binary.write_bytes(b"[Model]\n\xff\xfe\x00\x01")
    with pytest.raises(ModelFileError, match="not a text file"):
        read_ini(binary)


# -- writing and round trips ------------------------------------------------------------------


def _two_inputs(layer: Layer) -> list[Layer]:
    a = LAYER_TYPES["input"](name="a", shape=(2, 4, 4))
    b = LAYER_TYPES["input"](name="b", shape=(2, 4, 4))
    layer.input_layers = ["a", "b"]
    return [a, b, layer]


def _after(shape: tuple[int, ...], *layers: Layer) -> list[Layer]:
    return [LAYER_TYPES["input"](name="src", shape=shape), *layers]


#: for each layer type, a small model that uses it with non-default properties
ROUND_TRIP_MODELS: dict[str, Callable[[type[Layer]], list[Layer]]] = {
    "input": lambda cls: [cls(name="only", shape=(3, 5), activation="sigmoid")],
    "activation": lambda cls: _after((4,), cls(kind="tanh", name="act")),
    "fully_connected": lambda cls: _after(
        (1, 1, 6),
        cls(
            name="fc",
            unit=5,
            bias=False,
            weight_initializer="he_normal",
            trainable=False,
            activation="relu",
            weight_regularizer="l2norm",
            weight_regularizer_constant=0.5,
            weight_decay=0.01,
            bias_decay=0.02,
        ),
    ),
    "multiout": lambda cls: _after(
        (4,),
        cls(name="m", outputs=2),
        LAYER_TYPES["addition"](name="s", input_layers=["m(0)", "m(1)"]),
    ),
    "conv2d": lambda cls: _after(
        (3, 8, 8),
        cls(name="c", filters=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), bias=False),
    ),
    "split": lambda cls: _after(
        (1, 1, 4),
        cls(name="s", axis=3, split_number=2),
        LAYER_TYPES["concat"](name="c", input_layers=["s(0)", "s(1)"], axis=3),
    ),
    "conv1d": lambda cls: _after(
        (2, 1, 10), cls(name="c", filters=3, kernel_size=3, padding="same")
    ),
    "pooling2d": lambda cls: _after(
        (3, 8, 8), cls(name="p", pooling="max", pool_size=3, stride=2, padding=1)
    ),
    "flatten": lambda cls: _after((3, 4, 4), cls(name="f")),
    "reshape": lambda cls: _after((3, 4, 4), cls(name="r", target_shape=(4, 12))),
    "embedding": lambda cls: _after(
        (1, 1, 5), cls(name="e", in_dim=10, out_dim=4, weight_initializer="zeros")
    ),
    "dropout": lambda cls: _after((4,), cls(name="d", dropout_rate=0.25)),
    "batch_normalization": lambda cls: _after(
        (3, 4, 4), cls(name="bn", epsilon=1e-5, momentum=0.9, gamma_initializer="zeros", axis=1)
    ),
    "layer_normalization": lambda cls: _after((3, 4, 4), cls(name="ln", epsilon=1e-6, axis=[2, 3])),
    "addition": lambda cls: _two_inputs(cls(name="add")),
    "concat": lambda cls: _two_inputs(cls(name="cat", axis=3)),
}


def _layer_state(layer: Layer) -> dict[str, Any]:
    state = {
        "class": type(layer),
        "name": layer.name,
        "input_layers": layer.input_layers,
        "trainable": layer.trainable,
        "activation": layer.activation,
        "config": layer.config(),
    }
    state.update({key: getattr(layer, key, None) for key in base_property_defaults()})
    return state


def _round_trip(tmp_path: Path, model: Model) -> Model:
    path = tmp_path / "saved.ini"
    model.to_ini(path)
    again = Model.from_ini(path)
    assert [_layer_state(a) for a in model.layers] == [_layer_state(b) for b in again.layers]
    return again


@pytest.mark.parametrize("type_name", sorted(LAYER_TYPES))
def test_round_trip_every_layer_type(tmp_path: Path, type_name: str) -> None:
    cls = LAYER_TYPES[type_name]
    make = ROUND_TRIP_MODELS.get(type_name)
    if make is None:  # a layer registered after this table was written
        params = inspect.signature(cls.__init__).parameters.values()
        required = [p.name for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY]
        assert not required, f"add a round-trip model for '{type_name}' (it needs {required})"
        layers = _after((2, 4, 4), cls(name="x"))
    else:
        layers = make(cls)
    assert any(type(layer) is cls for layer in layers)
    _round_trip(tmp_path, Model(layers))


def test_round_trip_model_settings(tmp_path: Path) -> None:
    layers = _after(
        (1, 1, 6), LAYER_TYPES["fully_connected"](name="fc", unit=3, activation="sigmoid")
    )
    model = Model(layers, "cross_entropy_sigmoid")
    model.optimizer = AdamW(
        Step([5, 10], [0.1, 0.01, 0.001]), beta1=0.8, epsilon=1e-6, weight_decay=0.05
    )
    model.batch_size = 7
    again = _round_trip(tmp_path, model)
    assert again.loss_name == "cross_entropy_sigmoid"
    assert "loss = cross" in (tmp_path / "saved.ini").read_text()  # NNTrainer's spelling
    assert isinstance(again.optimizer, AdamW)
    assert again.optimizer.config() == model.optimizer.config()
    assert again.optimizer.schedule.config() == model.optimizer.schedule.config()
    assert again.batch_size == 7


def test_round_trip_description_extras(tmp_path: Path) -> None:
    layers = _after((4,), LAYER_TYPES["fully_connected"](name="fc", unit=3))
    desc = ModelDescription(
        layers, "cross_entropy", Adam(Cosine(0.1, 5, 0.01), beta2=0.9), batch_size=3, epochs=9,
        data=DataFiles(tmp_path / "t.dat", tmp_path / "v.dat", None, 64),
        swap=SwapSettings(True, "/tmp/s", 3), save_path=tmp_path / "w.bin", continue_train=True,
        memory_optimization=False, torch_ref=True, recompute=True,
    )  # fmt: skip
    write_ini(desc, tmp_path / "d.ini")
    text = (tmp_path / "d.ini").read_text()
    assert "type = cross_softmax" in text  # no softmax at the end: an explicit loss section
    again = read_ini(tmp_path / "d.ini")
    assert again.loss == "cross_entropy"
    for field in ("batch_size", "epochs", "data", "swap", "save_path", "continue_train",
                  "memory_optimization", "torch_ref", "recompute"):  # fmt: skip
        assert getattr(again, field) == getattr(desc, field), field
    assert isinstance(again.optimizer, Adam) and again.optimizer.beta2 == 0.9
    assert again.schedule is not None and again.schedule.config() == Cosine(0.1, 5, 0.01).config()


REAL_FILES = [
    *(DATA / f"nntrainer_{name}.ini" for name in (
        "mnist", "deepq", "tflite_export_fc", "simple_fc", "vgg_small", "alexnet",
        "logistic_regression", "model_a_conv", "product_ratings",
    )),
    *(EXAMPLES / f"{name}.ini" for name in ("mlp", "lenet5", "vgg16", "resnet18")),
]  # fmt: skip


@pytest.mark.parametrize("path", REAL_FILES, ids=[p.stem for p in REAL_FILES])
def test_round_trip_real_files(tmp_path: Path, path: Path) -> None:
    first = read_ini(path)
    model = Model.from_ini(path)
    again = _round_trip(tmp_path, model)
    assert again.loss_name == first.loss
    assert again.description is not None
    assert (again.description.batch_size, again.description.epochs) == (
        first.batch_size,
        first.epochs,
    )
    assert again.description.save_path == first.save_path
    if first.optimizer is not None:
        assert again.optimizer is not None
        assert again.optimizer.config() == first.optimizer.config()
        assert again.optimizer.schedule.config() == first.optimizer.schedule.config()


def test_unnamed_layers_get_graph_names(tmp_path: Path) -> None:
    model = Model([LAYER_TYPES["input"](shape=(4,)), LAYER_TYPES["fully_connected"](unit=2)], "mse")
    model.to_ini(tmp_path / "m.ini")
    assert [layer.name for layer in Model.from_ini(tmp_path / "m.ini").layers] == [
        "input0",
        "fully_connected1",
    ]


def test_write_is_atomic(tmp_path: Path) -> None:
    model = Model(_after((4,), LAYER_TYPES["fully_connected"](name="fc", unit=3)), "mse")
    target = tmp_path / "m.ini"
    target.write_text("old content")
    model.to_ini(target)
    assert target.read_text().startswith("# NNTrainer INI model file")
    assert sorted(os.listdir(tmp_path)) == ["m.ini"]  # no temporary file left behind
    with pytest.raises(SaveError, match="cannot save the model file to .*missing"):
        model.to_ini(tmp_path / "missing" / "m.ini")
    with pytest.raises(SaveError, match="directory"):
        model.to_ini(tmp_path)


def test_values_that_need_quotes(tmp_path: Path) -> None:
    layers = _after((4,), LAYER_TYPES["fully_connected"](name="fc", unit=3))
    desc = ModelDescription(layers, save_path=tmp_path / "a;b#c.bin")
    text = format_ini(desc)
    assert f'save_path = "{tmp_path / "a;b#c.bin"}"' in text
    write_ini(desc, tmp_path / "q.ini")
    assert read_ini(tmp_path / "q.ini").save_path == tmp_path / "a;b#c.bin"


def test_read_model_file_gives_training_settings() -> None:
    loaded = read_model_file(DATA / "nntrainer_vgg_small.ini")
    assert loaded.model.description is loaded.description
    assert (loaded.batch_size, loaded.epochs) == (128, 3000)
    assert loaded.save_path == DATA / "model.bin"
    assert loaded.train_data is None and loaded.valid_data is None and loaded.test_data is None
    assert loaded.optimizer is loaded.model.optimizer


# -- backbones ----------------------------------------------------------------------------------


def test_nntrainer_backbone_file(tmp_path: Path) -> None:
    """NNTrainer's own backbone test model, with the file it includes under its name."""
    (tmp_path / "simple_fc.ini").write_text((DATA / "nntrainer_simple_fc.ini").read_text())
    main = write(tmp_path, (DATA / "nntrainer_simple_fc_backbone.ini").read_text(), "bb.ini")
    desc = read_ini(main)
    assert [layer.name for layer in desc.layers] == ["fc0/input", "fc0", "flat"]
    assert shapes(desc)["flat"] == (2,)


BACKBONE = "[Model]\nbatch_size = 3\n[Optimizer]\ntype = sgd\n" + INPUT + FC  # ignored parts


def test_backbone_trainable_and_nesting(tmp_path: Path) -> None:
    write(tmp_path, BACKBONE, "inner.ini")
    write(tmp_path, "[block]\nbackbone = inner.ini\n[flat]\ntype = flatten\n", "middle.ini")
    text = (
        MODEL
        + "[b]\nbackbone = middle.ini\ntrainable = false\n[out]\ntype = fully_connected\nunit = 2\n"
    )
    desc = read_ini(write(tmp_path, text))
    assert [layer.name for layer in desc.layers] == ["in", "fc", "flat", "out"]
    assert [layer.trainable for layer in desc.layers] == [False, False, False, True]
    assert desc.batch_size == 4 and desc.optimizer is None  # the backbone's [Model] is ignored


def test_backbone_errors(tmp_path: Path) -> None:
    def fails(text: str) -> ModelFileError:
        with pytest.raises(ModelFileError) as info:
            read_ini(write(tmp_path, text))
        return info.value

    main = str(tmp_path / "model.ini")
    err = fails(MODEL + "[b]\nbackbone = missing.ini\n")
    assert (err.path, err.line, err.key) == (main, 5, "backbone") and "cannot use" in str(err)
    err = fails(MODEL + "[b]\nbackbone = net.tflite\n")
    assert (err.line, err.key) == (5, "backbone") and "only .ini" in str(err)
    err = fails(MODEL + "[b]\nbackbone = model.ini\n")
    assert "includes itself" in str(err)
    write(tmp_path, "[a]\nbackbone = model.ini\n", "loop.ini")
    err = fails(MODEL + "[b]\nbackbone = loop.ini\n")
    assert (err.path, "includes itself") == (str(tmp_path / "loop.ini"), "includes itself")
    write(tmp_path, INPUT + "oops\n", "broken.ini")
    err = fails(MODEL + "[b]\nbackbone = broken.ini\n")
    assert (err.path, err.line) == (str(tmp_path / "broken.ini"), 4)
    write(tmp_path, INPUT + FC, "inner.ini")
    err = fails(MODEL + "[b]\nbackbone = inner.ini\n" + FC)
    assert (err.path, err.line, err.section) == (main, 6, "fc") and "defined twice" in str(err)
    err = fails(MODEL + "[b]\nbackbone = inner.ini\ninput_shape = 1:1:7\n")
    assert (err.line, err.key) == (6, "input_shape")
    err = fails(MODEL + "[b]\nbackbone = inner.ini\ntype = flatten\n")
    assert (err.line, err.key) == (5, "backbone")
    write(tmp_path, INPUT + FC + "[l]\ntype = mse\n", "lossy.ini")
    err = fails(MODEL + "[b]\nbackbone = lossy.ini\n")
    assert (err.path, err.section) == (str(tmp_path / "lossy.ini"), "l")
    err = fails(MODEL + "[b]\nbackbone = inner.ini\nunit = 3\n")
    assert (err.line, err.key) == (6, "unit")
