"""Execution orders and per-tensor usage: the step layout of one iteration, the exact
orders each tensor is read and written at, lifespan classes, and the sharing rules'
decisions (and refusals)."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.optimizers import SGD, Adam
from edgetrain.planning import Lifespan, SharingRule, analyse_usage, plan_memory
from edgetrain.program import Program
from edgetrain.tensors import TensorKind
from planning_models import BUILDERS


def fc3(frozen: str | None = None, optimizer: object = None, train: bool = True) -> Program:
    layers: list[L.Layer] = [L.Input(shape=(3,), name="in")]
    for name, unit, act in (("fc1", 10, "relu"), ("fc2", 10, "relu"), ("fc3", 2, "sigmoid")):
        layers.append(
            L.FullyConnected(unit=unit, activation=act, name=name, trainable=name != frozen)
        )
    model = Model(layers, loss="mse")
    model.compile((optimizer or SGD(0.1)) if train else None, batch_size=2)  # type: ignore[arg-type]
    return model.program


def steps(program: Program) -> list[tuple[str, str]]:
    return [(s.kind.value, s.node) for s in program.steps]


def test_iteration_is_forward_then_backward_per_layer() -> None:
    forward = [
        "in",
        "fc1",
        "fc1/activation",
        "fc2",
        "fc2/activation",
        "fc3",
        "fc3/activation",
        "loss",
    ]
    assert steps(fc3()) == [("forward", n) for n in forward] + [
        ("calc_derivative", "loss"),
        ("calc_derivative", "fc3/activation"),
        ("calc_gradient", "fc3"),
        ("calc_derivative", "fc3"),
        ("apply_gradient", "fc3"),
        ("calc_derivative", "fc2/activation"),
        ("calc_gradient", "fc2"),
        ("calc_derivative", "fc2"),
        ("apply_gradient", "fc2"),
        ("calc_derivative", "fc1/activation"),
        ("calc_gradient", "fc1"),  # the first layer computes no derivative
        ("apply_gradient", "fc1"),
    ]


def test_frozen_layers_get_no_gradient_and_nothing_below_them_needs_a_derivative() -> None:
    backward = steps(fc3(frozen="fc1"))[8:]
    assert ("calc_gradient", "fc1") not in backward and ("apply_gradient", "fc1") not in backward
    assert [s for s in backward if s[1].startswith("fc1")] == []
    assert ("calc_derivative", "fc2") not in backward  # nothing below fc2 trains
    middle = steps(fc3(frozen="fc2"))
    assert ("calc_derivative", "fc2") in middle and ("calc_gradient", "fc2") not in middle
    program = fc3(frozen="fc2")
    assert "fc2:weight:grad" not in program.tensors and "fc1:weight:grad" in program.tensors


def test_inference_has_forward_steps_only() -> None:
    program = fc3(train=False)
    assert {s.kind.value for s in program.steps} == {"forward"}
    usage = analyse_usage(program)
    assert not [u for u in usage.values() if u.kind in (TensorKind.GRADIENT, TensorKind.DERIVATIVE)]
    assert usage["fc1:output"].lifespan is Lifespan.FORWARD


def test_exact_orders_of_every_kind_of_tensor() -> None:
    usage = analyse_usage(fc3(optimizer=Adam(0.01)))
    # orders: 0 in, 1 fc1, 2 relu, 3 fc2, 4 relu, 5 fc3, 6 sigmoid, 7 loss, 8 loss cd,
    # 9 sigmoid cd, 10 fc3 cg, 11 fc3 cd, 12 fc3 ag, 13 relu cd, 14 fc2 cg, 15 fc2 cd,
    # 16 fc2 ag, 17 relu cd, 18 fc1 cg, 19 fc1 ag
    expect = {
        "in:output": ((1, 18), (0,)),
        "label": ((7, 8), (0,)),
        "fc1:output": ((2,), (1,)),
        "fc1/activation:output": ((3, 14, 17), (2,)),
        "fc2:weight": ((3, 15, 16), (16,)),
        "fc2:weight:grad": ((16,), (14, 16)),
        "fc2:weight:m": ((16,), (16,)),
        "fc2/activation:output:grad": ((13,), (11,)),
        "fc2:output:grad": ((14, 15), (13,)),
        "loss:output": ((8,), (7,)),
        "loss:scratch:loss": ((), (7,)),
    }
    for name, (reads, writes) in expect.items():
        assert (usage[name].reads, usage[name].writes) == (reads, writes), name
    assert "fc1:output:grad" in usage and "in:output:grad" not in usage


def test_lifespan_classes_and_intervals() -> None:
    usage = analyse_usage(fc3(optimizer=Adam(0.01)))
    end = 19
    cases = {
        "fc1:weight": (Lifespan.PERSISTENT, 0, end),
        "fc1:weight:v": (Lifespan.PERSISTENT, 0, end),
        "fc1:output": (Lifespan.FORWARD, 1, 2),
        "in:output": (Lifespan.FORWARD_TO_BACKWARD, 0, 18),
        "fc2:weight:grad": (Lifespan.BACKWARD, 14, 16),
        "fc3:output:grad": (Lifespan.BACKWARD, 9, 11),
        "loss:output": (Lifespan.ITERATION, 7, end),
        "loss:scratch:loss": (Lifespan.ITERATION, 7, end),
    }
    for name, (lifespan, first, last) in cases.items():
        u = usage[name]
        assert (u.lifespan, u.first, u.last) == (lifespan, first, last), name


def test_every_tensor_of_the_program_is_listed_with_its_bytes() -> None:
    program = fc3(optimizer=Adam(0.01))
    usage = analyse_usage(program)
    assert list(usage) == list(program.tensors)
    for name, u in usage.items():
        assert u.nbytes == program.tensors[name].nbytes and u.orders, name


def test_scratch_lives_over_the_steps_that_declare_it() -> None:
    layers, loss, _, optimizer = BUILDERS["convnet"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    program = model.program
    usage = analyse_usage(program)
    order = {(s.kind.value, s.node): k for k, s in enumerate(program.steps)}
    scratch = [n for n in program.tensors if n.startswith("pool1:scratch:")]
    assert scratch
    for name in scratch:
        assert usage[name].orders == (
            order[("forward", "pool1")],
            order[("calc_derivative", "pool1")],
        )
        assert usage[name].lifespan is Lifespan.FORWARD_TO_BACKWARD


def _shares(model: Model) -> dict[str, tuple[SharingRule, str]]:
    return {t.name: t.shares for t in model.plan().tensors.values() if t.shares}


def test_relu_runs_in_place_and_its_derivative_too() -> None:
    plan = plan_memory(fc3())
    assert plan.tensors["fc1/activation:output"].shares == (SharingRule.IN_PLACE, "fc1:output")
    assert plan.tensors["fc1:output:grad"].shares == (
        SharingRule.DERIVATIVE_IN_PLACE,
        "fc1/activation:output:grad",
    )
    assert plan.tensors["loss:output"].shares == (SharingRule.VIEW, "fc3/activation:output")
    assert plan.tensors["fc1/activation:output"].offset == plan.tensors["fc1:output"].offset


def test_in_place_refused_when_the_input_is_read_later() -> None:
    # sigmoid's derivative reads its output, so the relu after it cannot overwrite it
    layers = [
        L.Input(shape=(4,), name="x"),
        L.FullyConnected(unit=4, activation="sigmoid", name="fc"),
        L.Activation("relu", name="relu"),
        L.FullyConnected(unit=2, name="out"),
    ]
    model = Model(layers, loss="mse")
    model.compile(SGD(0.1), batch_size=2)
    shares = _shares(model)
    assert "relu:output" not in shares
    assert shares["fc/activation:output"] == (SharingRule.IN_PLACE, "fc:output")


def test_activations_that_read_their_input_never_run_in_place() -> None:
    layers = [L.Input(shape=(4,), name="x"), L.FullyConnected(unit=4, activation="gelu", name="fc")]
    model = Model(layers, loss="mse")
    model.compile(SGD(0.1), batch_size=2)
    assert "fc/activation:output" not in _shares(model)
    assert _shares(model)["fc:output:grad"][0] is SharingRule.DERIVATIVE_IN_PLACE


def _residual_pair(relu_branch_first: bool) -> Model:
    a: list[L.Layer] = [
        L.FullyConnected(unit=4, name="a", input_layers="x"),
        L.Activation("relu", name="relu"),
    ]
    b: list[L.Layer] = [L.FullyConnected(unit=4, name="b", input_layers="x")]
    branches = a + b if relu_branch_first else b + a
    layers = [
        L.Input(shape=(4,), name="x"),
        *branches,
        L.Addition(name="add", input_layers="relu, b"),
        L.FullyConnected(unit=2, name="out"),
    ]
    model = Model(layers, loss="mse")
    model.compile(SGD(0.1), batch_size=2)
    return model


@pytest.mark.parametrize("relu_branch_first", [True, False])
def test_addition_hands_its_derivative_on_and_branches_do_not_overwrite_it(
    relu_branch_first: bool,
) -> None:
    model = _residual_pair(relu_branch_first)
    shares = _shares(model)
    assert shares["relu:output:grad"] == (SharingRule.DERIVATIVE_PASSTHROUGH, "add:output:grad")
    assert shares["b:output:grad"] == (SharingRule.DERIVATIVE_PASSTHROUGH, "add:output:grad")
    backward = [s.node for s in model.program.steps if s.kind.value != "forward"]
    relu_before_b = backward.index("relu") < backward.index("b")
    # the relu's derivative may overwrite the shared bytes only once b's steps have read them
    assert relu_before_b == (not relu_branch_first)  # backward runs in reverse
    if relu_before_b:
        assert "a:output:grad" not in shares
    else:
        assert shares["a:output:grad"] == (SharingRule.DERIVATIVE_IN_PLACE, "relu:output:grad")


def test_flatten_is_a_view_both_ways() -> None:
    layers, loss, _, optimizer = BUILDERS["convnet"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=2)
    shares = _shares(model)
    assert shares["flat:output"] == (SharingRule.VIEW, "pool2:output")
    assert shares["pool2:output:grad"] == (SharingRule.DERIVATIVE_IN_PLACE, "flat:output:grad")


def test_plan_json_is_self_describing() -> None:
    plan = plan_memory(fc3(optimizer=Adam(0.01)))
    data = plan.to_json()
    assert {"lower_bound_bytes", "naive_bytes", "planners", "steps", "tensors", "buffers"} <= set(
        data
    )
    assert set(data["planners"]) == {"naive", "sorted", "greedy_by_size"}
    assert data["arena_bytes"] == data["planners"]["greedy_by_size"] >= data["lower_bound_bytes"]
    step = data["steps"][0]
    assert step["kind"] == "forward" and step["node"] == "in" and "in:output" in step["born"]
    assert "fc1:output" in data["steps"][2]["freed"]
    t = data["tensors"]["fc1/activation:output"]
    assert (
        t["shares"] == {"rule": "in_place", "source": "fc1:output"}
        and t["lifespan"] == "forward_to_backward"
    )
    kinds = data["bytes_by_kind"]
    assert kinds["optimizer_state"] == 2 * kinds["weight"] > 0
    assert sum(kinds.values()) == data["planners"]["naive"]
    assert sum(data["peak_bytes_by_kind"].values()) == data["lower_bound_bytes"]
    assert max(data["live_bytes"]) == data["lower_bound_bytes"]
    import json

    json.dumps(data)


def test_results_stay_readable_after_the_iteration() -> None:
    layers, loss, shape, optimizer = BUILDERS["classifier"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, debug_poison=True)
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype(np.float32)
    loss_value = model.train_step(x, np.array([0, 1, 2, 3]))
    trainer = model._trainer()
    assert np.isfinite(trainer.store[trainer.program.output]).all()
    assert trainer.loss() == pytest.approx(loss_value)
