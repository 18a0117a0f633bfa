"""DAG semantics (``spec/graph.md``): connection, activation realisation, fan-out, order,
the loss node and its fusion, backward steps with frozen layers, and the errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgetrain import ConfigError, Model, ShapeError
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.graph import Graph, Port, build_graph
from edgetrain.layers.base import StepKind
from edgetrain.losses import MeanSquaredError, SigmoidCrossEntropy, SoftmaxCrossEntropy, make_loss
from edgetrain.program import build_program


def names(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes]


def test_default_input_is_the_previous_layer() -> None:
    graph = build_graph(
        [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=4, name="a"),
         L.FullyConnected(unit=2, name="b")], 5,
    )
    assert names(graph) == ["in", "a", "b"]
    assert graph.node("a").inputs == [Port("in")]
    assert graph.node("b").inputs == [Port("a")]
    assert graph.node("b").output_shapes == [(5, 2)]
    assert graph.node("in").consumers == [[("a", 0)]]


def test_input_layers_string_and_output_ports() -> None:
    layers = [
        L.Input(shape=(3,), name="x"),
        L.Input(shape=(3,), name="y"),
        L.Addition(name="sum", input_layers="x, y"),
    ]
    graph = build_graph(layers, 2)
    assert graph.node("sum").inputs == [Port("x"), Port("y")]
    bad = [L.Input(shape=(3,), name="x"), L.FullyConnected(unit=2, name="fc", input_layers="x(1)")]
    with pytest.raises(ConfigError, match=r"'fc' reads output 1 of 'x', which has 1 output"):
        build_graph(bad, 2)


def test_activation_becomes_its_own_node_that_takes_over_the_consumers() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.FullyConnected(unit=4, name="fc", activation="relu", trainable=False),
        L.FullyConnected(unit=2, name="out", activation="none"),
    ]
    graph = build_graph(layers, 2, make_loss("mse"))
    assert names(graph) == ["in", "fc", "fc/activation", "out", "loss"]
    act = graph.node("fc/activation")
    assert isinstance(act.layer, L.Activation) and act.layer.kind == "relu"
    assert act.inputs == [Port("fc")]
    assert act.layer.trainable is False  # it follows its layer
    assert graph.node("out").inputs == [Port("fc/activation")]


def test_loss_attaches_to_the_activation_of_the_last_layer() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=2, name="fc", activation="tanh")]
    graph = build_graph(layers, 2, make_loss("mse"))
    assert graph.node("loss").inputs == [Port("fc/activation")]


def test_fan_out_gets_a_multiout_node() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.FullyConnected(unit=3, name="a"),
        L.FullyConnected(unit=3, name="b", input_layers=["in"]),
        L.Addition(name="sum", input_layers=["in", "a", "b"]),
    ]
    graph = build_graph(layers, 2, make_loss("mse"))
    assert names(graph) == ["in", "in/multiout", "a", "b", "sum", "loss"]
    fan = graph.node("in/multiout")
    assert isinstance(fan.layer, L.Multiout)
    assert fan.output_shapes == [(2, 3)] * 3
    assert graph.node("a").inputs == [Port("in/multiout", 0)]
    assert graph.node("b").inputs == [Port("in/multiout", 1)]
    assert graph.node("sum").inputs == [Port("in/multiout", 2), Port("a"), Port("b")]
    # every tensor now has exactly one reader
    for node in graph.nodes:
        assert all(len(c) <= 1 for c in node.consumers), node.name


def test_the_same_output_read_twice_by_one_layer_fans_out() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.Addition(name="twice", input_layers=["in", "in"])]
    graph = build_graph(layers, 2)
    assert graph.node("twice").inputs == [Port("in/multiout", 0), Port("in/multiout", 1)]


def test_order_is_topological_with_listing_order_breaking_ties() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.Addition(name="join", input_layers=["right", "left"]),  # listed before its inputs
        L.FullyConnected(unit=3, name="right", input_layers=["in"]),
        L.FullyConnected(unit=3, name="left", input_layers=["in"]),
        L.FullyConnected(unit=1, name="head", input_layers=["join"]),
    ]
    graph = build_graph(layers, 2, make_loss("mse"))
    assert names(graph) == ["in", "in/multiout", "right", "left", "join", "head", "loss"]


def test_cross_entropy_fuses_a_trailing_softmax() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=4, name="fc", activation="softmax")]
    graph = build_graph(layers, 2, make_loss("cross_entropy"))
    assert names(graph) == ["in", "fc", "loss"]
    assert isinstance(graph.node("loss").layer, SoftmaxCrossEntropy)
    assert graph.node("loss").inputs == [Port("fc")]
    explicit = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=4, name="fc"),
                L.Activation("softmax", name="sm")]
    assert names(build_graph(explicit, 2, make_loss("cross"))) == ["in", "fc", "loss"]


def test_sigmoid_cross_entropy_fuses_a_trailing_sigmoid_and_cross_follows_it() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=4, name="fc", activation="sigmoid")]
    graph = build_graph(layers, 2, make_loss("cross_entropy_sigmoid"))
    assert names(graph) == ["in", "fc", "loss"]
    # NNTrainer's "cross" picks the sigmoid form after a sigmoid
    graph = build_graph(layers, 2, make_loss("cross"))
    assert names(graph) == ["in", "fc", "loss"]
    assert isinstance(graph.node("loss").layer, SigmoidCrossEntropy)
    # ... but the explicit softmax form never changes
    graph = build_graph(layers, 2, make_loss("cross_entropy"))
    assert names(graph) == ["in", "fc", "fc/activation", "loss"]


def test_no_fusion_when_the_activation_is_read_elsewhere_or_the_loss_is_mse() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=4, name="fc", activation="softmax")]
    graph = build_graph(layers, 2, make_loss("mse"))
    assert names(graph) == ["in", "fc", "fc/activation", "loss"]
    assert isinstance(graph.node("loss").layer, MeanSquaredError)
    shared = [
        L.Input(shape=(3,), name="in"),
        L.FullyConnected(unit=4, name="fc"),
        L.Activation("softmax", name="sm"),
        L.Addition(name="sum", input_layers=["sm", "sm"]),
        L.Activation("softmax", name="sm2", input_layers=["sm"]),
    ]
    graph = build_graph(shared, 2, make_loss("cross_entropy"))
    assert "sm" in names(graph)  # read by others: kept
    assert "sm2" not in names(graph)  # the last one is fused


def test_a_layer_named_loss_keeps_its_name() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=2, name="loss")]
    graph = build_graph(layers, 2, make_loss("mse"))
    assert names(graph) == ["in", "loss", "_loss"]


# -- backward steps ----------------------------------------------------------------------------


def _steps(layers: list[L.Layer]) -> dict[str, list[StepKind]]:
    program = build_program(build_graph(layers, 2, make_loss("mse")), training=True)
    out: dict[str, list[StepKind]] = {}
    for step in program.steps:
        out.setdefault(step.node, []).append(step.kind)
    return out


def _three_fc(frozen: int | None) -> list[L.Layer]:
    return [
        L.Input(shape=(3,), name="in"),
        *[L.FullyConnected(unit=2, name=f"fc{i}", trainable=i != frozen) for i in (1, 2, 3)],
    ]


F, G, D, A = StepKind.FORWARD, StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE, StepKind.APPLY_GRADIENT


def test_backward_steps_per_layer() -> None:
    steps = _steps(_three_fc(None))
    assert steps == {"in": [F], "fc1": [F, G, A], "fc2": [F, G, D, A], "fc3": [F, G, D, A],
                     "loss": [F, D]}


@pytest.mark.parametrize(
    ("frozen", "expected"),
    [
        # a frozen first layer needs nothing back: no step at all
        (1, {"fc1": [F], "fc2": [F, G, A], "fc3": [F, G, D, A]}),
        # a frozen middle layer passes the derivative on but keeps its weights
        (2, {"fc1": [F, G, A], "fc2": [F, D], "fc3": [F, G, D, A]}),
        (3, {"fc1": [F, G, A], "fc2": [F, G, D, A], "fc3": [F, D]}),
    ],
)
def test_frozen_layers_get_only_the_steps_they_need(frozen: int, expected: dict[str, list[StepKind]]) -> None:
    steps = _steps(_three_fc(frozen))
    assert {k: v for k, v in steps.items() if k.startswith("fc")} == expected


def test_backward_runs_in_reverse_order_gradient_derivative_apply() -> None:
    program = build_program(build_graph(_three_fc(None), 2, make_loss("mse")), training=True)
    backward = [(s.kind, s.node) for s in program.steps if s.kind is not F]
    assert backward == [
        (D, "loss"),
        (G, "fc3"), (D, "fc3"), (A, "fc3"),
        (G, "fc2"), (D, "fc2"), (A, "fc2"),
        (G, "fc1"), (A, "fc1"),
    ]


def test_inference_program_has_forward_steps_only() -> None:
    program = build_program(build_graph(_three_fc(None), 2, make_loss("mse")), training=False)
    assert {s.kind for s in program.steps} == {F}
    assert not any(t.endswith(":grad") for t in program.tensors)


# -- whole-model gradients through the DAG -----------------------------------------------------


def _loss_gradient_check(build: Callable[[], list[L.Layer]], loss: str, x: list[np.ndarray],
                         y: np.ndarray) -> None:
    """One SGD step with lr 1 moves each trained weight by -dL/dw; compare with central
    differences of the loss over every weight element (float64)."""
    model = Model(build(), loss=loss)
    model.compile(O.SGD(1.0), batch_size=len(y), dtype=np.float64, seed=5)
    start = model.get_weights()
    numeric: dict[str, np.ndarray] = {}
    h = 1e-6
    for name, value in start.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            losses = []
            for sign in (1.0, -1.0):
                probe = value.copy()
                probe[index] += sign * h
                model.set_weights({name: probe})
                losses.append(model.evaluate(x, y)["loss"])
            grad[index] = (losses[0] - losses[1]) / (2 * h)
        model.set_weights({name: value})
        numeric[name] = grad
    model.train_step(x, y)
    after = model.get_weights()
    frozen = {f"{layer.name}:{w}" for layer in model.layers if not layer.trainable
              for w in ("weight", "bias")}
    for name in start:
        if name in frozen:
            np.testing.assert_array_equal(after[name], start[name])
        else:
            np.testing.assert_allclose(start[name] - after[name], numeric[name], rtol=1e-5,
                                       atol=1e-8, err_msg=name)


RNG = np.random.default_rng(9)


def test_fan_out_add_and_concat_gradients() -> None:
    def build() -> list[L.Layer]:
        return [
            L.Input(shape=(3,), name="in"),
            L.FullyConnected(unit=3, name="a", activation="tanh"),
            L.FullyConnected(unit=3, name="b", input_layers=["in"], activation="sigmoid"),
            L.Addition(name="sum", input_layers=["a", "b", "in"]),
            L.Concat(name="cat", input_layers=["sum", "a"]),
            L.FullyConnected(unit=2, name="head"),
        ]

    _loss_gradient_check(build, "mse", [RNG.normal(size=(4, 3))], RNG.normal(size=(4, 2)))


def test_frozen_branch_gradients() -> None:
    def build() -> list[L.Layer]:
        return [
            L.Input(shape=(3,), name="in"),
            L.FullyConnected(unit=3, name="frozen", trainable=False, activation="relu"),
            L.FullyConnected(unit=3, name="trained", input_layers=["in"]),
            L.Addition(name="sum", input_layers=["frozen", "trained"]),
            L.FullyConnected(unit=2, name="head"),
        ]

    _loss_gradient_check(build, "mse", [RNG.normal(size=(4, 3))], RNG.normal(size=(4, 2)))


@pytest.mark.parametrize(("loss", "activation"), [("cross_entropy", "softmax"),
                                                   ("cross_entropy_sigmoid", "sigmoid"),
                                                   ("cross", "sigmoid")])
@pytest.mark.parametrize("soft", [False, True])
def test_fused_loss_gradients(loss: str, activation: str, soft: bool) -> None:
    def build() -> list[L.Layer]:
        return [
            L.Input(shape=(3,), name="in"),
            L.FullyConnected(unit=4, name="fc", activation=activation),
        ]

    # soft labels need not sum to 1 (two right classes, label smoothing gone wrong)
    labels = RNG.uniform(size=(5, 4)) if soft else np.eye(4)[RNG.integers(0, 4, size=5)]
    _loss_gradient_check(build, loss, [RNG.normal(size=(5, 3))], labels)


def test_two_inputs_gradients() -> None:
    def build() -> list[L.Layer]:
        return [
            L.Input(shape=(3,), name="x1"),
            L.Input(shape=(2,), name="x2"),
            L.Concat(name="cat", input_layers=["x1", "x2"]),
            L.FullyConnected(unit=2, name="fc"),
        ]

    _loss_gradient_check(build, "mse", [RNG.normal(size=(3, 3)), RNG.normal(size=(3, 2))],
                         RNG.normal(size=(3, 2)))


# -- errors --------------------------------------------------------------------------------------


def test_cycle_is_refused_naming_its_layers() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.Addition(name="a", input_layers=["in", "b"]),
        L.FullyConnected(unit=3, name="b", input_layers=["a"]),
    ]
    with pytest.raises(ConfigError, match=r"cycle through layers \['a', 'b'\]"):
        build_graph(layers, 2)


def test_missing_input_layer_is_named() -> None:
    layers = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=3, name="fc", input_layers=["inn"])]
    with pytest.raises(ConfigError, match="layer 'fc' reads 'inn', which is not a layer of the model"):
        build_graph(layers, 2)


def test_duplicate_names_are_refused() -> None:
    layers = [L.Input(shape=(3,), name="x"), L.FullyConnected(unit=3, name="x")]
    with pytest.raises(ConfigError, match="two layers are named 'x'"):
        build_graph(layers, 2)


def test_generated_names_never_clash_with_given_ones() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.FullyConnected(unit=3),  # would be fully_connected1
        L.FullyConnected(unit=3, name="fully_connected1", input_layers=["in"]),
    ]
    graph = build_graph(layers, 2)
    assert "fully_connected1_" in names(graph) and "fully_connected1" in names(graph)
    reserved = [L.Input(shape=(3,), name="in"), L.FullyConnected(unit=3, name="fc", activation="relu"),
                L.FullyConnected(unit=3, name="fc/activation", input_layers=["in"])]
    with pytest.raises(ConfigError, match="'fc/activation' is reserved"):
        build_graph(reserved, 2)


def test_model_needs_layers_an_input_and_a_start() -> None:
    with pytest.raises(ConfigError, match="at least one layer"):
        build_graph([], 2)
    with pytest.raises(ConfigError, match="is first but is not an input layer"):
        build_graph([L.FullyConnected(unit=2, name="fc")], 2)
    with pytest.raises(ConfigError, match="batch_size"):
        build_graph([L.Input(shape=(3,), name="in")], 0)


def test_shape_mismatch_names_both_layers_and_shapes() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.FullyConnected(unit=4, name="wide"),
        L.FullyConnected(unit=5, name="wider", input_layers=["in"]),
        L.Addition(name="sum", input_layers=["wide", "wider"]),
    ]
    with pytest.raises(ShapeError) as err:
        build_graph(layers, 2)
    message = str(err.value)
    for part in ("addition layer 'sum'", "'wide' gives (2, 4)", "'wider' gives (2, 5)"):
        assert part in message, message


def test_shape_mismatch_through_a_fan_out_names_the_real_layer() -> None:
    layers = [
        L.Input(shape=(3,), name="in"),
        L.FullyConnected(unit=4, name="fc"),
        L.Addition(name="sum", input_layers=["in", "fc"]),
    ]
    with pytest.raises(ShapeError) as err:
        build_graph(layers, 2)
    message = str(err.value)
    assert "'in' gives (2, 3)" in message and "'fc' gives (2, 4)" in message, message
    assert "multiout" not in message
