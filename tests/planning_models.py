"""Models the planning tests share: hand-written builders covering every layer kind
and sharing rule, and a hypothesis strategy for random layer graphs."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from edgetrain import layers as L
from edgetrain.optimizers import SGD, Adam, Optimizer

Builder = Callable[[], tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]]


def _mlp() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(6,), name="x"),
        L.FullyConnected(unit=8, activation="relu", name="fc1"),
        L.FullyConnected(unit=8, activation="sigmoid", name="fc2"),
        L.FullyConnected(unit=3, activation="tanh", name="fc3"),
    ]
    return layers, "mse", (6,), lambda: SGD(0.1, momentum=0.9)


def _classifier() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(6,), name="x"),
        L.FullyConnected(unit=10, activation="gelu", name="fc1"),
        L.FullyConnected(unit=10, activation="leaky_relu", name="fc2"),
        L.FullyConnected(unit=4, activation="softmax", name="out"),
    ]
    return layers, "cross_entropy", (6,), lambda: Adam(0.01)


def _frozen_middle() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(1, 1, 5), name="x"),
        L.FullyConnected(unit=7, activation="relu", name="fc1"),
        L.FullyConnected(unit=7, activation="relu", name="fc2", trainable=False),
        L.FullyConnected(unit=2, activation="sigmoid", name="fc3"),
    ]
    return layers, "mse", (1, 1, 5), lambda: SGD(0.05)


def _frozen_first() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(5,), name="x"),
        L.FullyConnected(unit=7, activation="tanh", name="fc1", trainable=False),
        L.FullyConnected(unit=3, activation="sigmoid", name="fc2"),
    ]
    return layers, "cross_entropy_sigmoid", (5,), lambda: Adam(0.01)


def _branches() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(6,), name="x"),
        L.FullyConnected(unit=8, activation="tanh", name="trunk"),
        L.FullyConnected(unit=8, activation="relu", name="left", input_layers="trunk"),
        L.FullyConnected(unit=8, name="right", input_layers="trunk"),
        L.Addition(name="add", input_layers="left, right, trunk"),
        L.Activation("relu", name="add_relu"),
        L.Concat(axis=1, name="cat", input_layers="add_relu, trunk"),
        L.LayerNormalization(name="ln"),
        L.Dropout(dropout_rate=0.3, name="drop"),
        L.FullyConnected(unit=3, name="out"),
    ]
    return layers, "mse", (6,), lambda: Adam(0.01)


def _convnet() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(2, 8, 8), name="x"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, name="conv1"),
        L.BatchNormalization(name="bn1", momentum=0.9),
        L.Activation("relu", name="relu1"),
        L.Pooling2D(pooling="max", pool_size=2, stride=2, name="pool1"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, name="conv2", activation="relu"),
        L.Pooling2D(pooling="average", pool_size=2, stride=2, name="pool2"),
        L.Flatten(name="flat"),
        L.Dropout(dropout_rate=0.2, name="drop"),
        L.FullyConnected(unit=5, activation="softmax", name="out"),
    ]
    return layers, "cross_entropy", (2, 8, 8), lambda: SGD(0.05, momentum=0.9)


def _residual() -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    layers: list[L.Layer] = [
        L.Input(shape=(3, 6, 6), name="x"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="stem"),
        L.BatchNormalization(name="stem_bn", activation="relu"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="a"),
        L.BatchNormalization(name="a_bn", activation="relu"),
        L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="b"),
        L.BatchNormalization(name="b_bn"),
        L.Addition(name="sum", input_layers="b_bn, stem_bn"),
        L.Activation("relu", name="sum_relu"),
        L.Pooling2D(pooling="global_average", name="gap"),
        L.Flatten(name="flat"),
        L.FullyConnected(unit=3, activation="softmax", name="out"),
    ]
    return layers, "cross_entropy", (3, 6, 6), lambda: SGD(0.05, momentum=0.9)


BUILDERS: dict[str, Builder] = {
    "mlp": _mlp,
    "classifier": _classifier,
    "frozen_middle": _frozen_middle,
    "frozen_first": _frozen_first,
    "branches": _branches,
    "convnet": _convnet,
    "residual": _residual,
}


ACTIVATIONS = ["relu", "sigmoid", "tanh", "gelu", "leaky_relu", "swish", None]


@st.composite
def random_models(
    draw: st.DrawFn,
) -> tuple[list[L.Layer], str, tuple[int, ...], Callable[[], Optimizer]]:
    """A random DAG of fully-connected, activation, normalization, dropout, addition and
    concat layers: each layer
    reads one or two earlier layers (fan-out gets multiout nodes), any may be frozen,
    and layers nobody reads are kept (their derivative is zero-filled)."""
    width = draw(st.integers(2, 5))
    layers: list[L.Layer] = [L.Input(shape=(width,), name="x")]
    widths = {"x": width}
    for i in range(draw(st.integers(1, 7))):
        earlier = sorted(widths)
        source = draw(st.sampled_from(earlier))
        kind = draw(st.sampled_from(["fc", "fc", "act", "add", "cat", "norm"]))
        name = f"l{i}"
        frozen = draw(st.booleans()) and draw(st.booleans())
        if kind == "act":
            kind_name = draw(st.sampled_from([a for a in ACTIVATIONS if a]))
            layers.append(
                L.Activation(kind_name, name=name, input_layers=source, trainable=not frozen)
            )
            widths[name] = widths[source]
        elif kind == "norm":
            norm = draw(st.sampled_from(["bn", "ln", "drop"]))
            if norm == "bn":
                layers.append(
                    L.BatchNormalization(name=name, input_layers=source, trainable=not frozen)
                )
            elif norm == "ln":
                layers.append(
                    L.LayerNormalization(name=name, input_layers=source, trainable=not frozen)
                )
            else:
                layers.append(L.Dropout(dropout_rate=0.25, name=name, input_layers=source))
            widths[name] = widths[source]
        elif kind in ("add", "cat") and len(earlier) > 1:
            other = draw(st.sampled_from([e for e in earlier if e != source]))
            if kind == "add" and widths[other] == widths[source]:
                layers.append(L.Addition(name=name, input_layers=[source, other]))
                widths[name] = widths[source]
            else:
                layers.append(L.Concat(axis=1, name=name, input_layers=[source, other]))
                widths[name] = widths[source] + widths[other]
        else:
            unit = draw(st.integers(1, 6))
            act = draw(st.sampled_from(ACTIVATIONS))
            layers.append(
                L.FullyConnected(
                    unit=unit, activation=act, name=name, input_layers=source, trainable=not frozen
                )
            )
            widths[name] = unit
    last = layers[-1].name
    assert last is not None
    layers.append(L.FullyConnected(unit=3, name="head", input_layers=last))
    loss = draw(st.sampled_from(["mse", "cross_entropy", "cross_entropy_sigmoid"]))
    adam = draw(st.booleans())
    return (
        layers,
        loss,
        (width,),
        (lambda: Adam(0.01)) if adam else (lambda: SGD(0.1, momentum=0.5)),
    )
