"""edgetrain's execution orders against NNTrainer's goldens (``tests/data/nntrainer/exeorder``,
made by NNTrainer's ``test/input_gen/genModelExeOrder.cpp``).

The models are a 3-layer FC network with MSE, trained whole (``fc3_mse``) or with fc1,
fc2 or fc3 frozen (``_nt1`` .. ``_nt3``). edgetrain's orders are translated by the
documented mapping (``edgetrain.planning.nntrainer``); where NNTrainer differs by design,
``nntrainer_usage`` applies the difference as a named, documented rule (``spec/planning.md``,
"NNTrainer mapping"), and every golden tensor edgetrain does not create is listed here
with its reason. Everything else must match exactly, down to the file's text.
"""

from __future__ import annotations

import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.layers.base import StepKind
from edgetrain.optimizers import SGD
from edgetrain.planning.nntrainer import (
    format_exegolden,
    nntrainer_order_map,
    nntrainer_step_orders,
    nntrainer_tensor,
    nntrainer_usage,
)
from edgetrain.program import Program
from goldens import DATA, read_exeorder_golden

RENAMES = {"loss": "mse"}
FROZEN = {"fc3_mse": None, "fc3_mse_nt1": "fc1", "fc3_mse_nt2": "fc2", "fc3_mse_nt3": "fc3"}

#: golden tensors edgetrain never creates, and why (by design)
ABSENT = {
    # NNTrainer's test build computes the first layer's derivative (into the data);
    # nothing reads it, so edgetrain schedules no such step.
    "fc3_mse": {"in:out0:grad"},
    # fc1 is frozen and nothing before it trains: no derivative flows below fc2, so
    # edgetrain computes none of fc2's derivative nor fc1's (NNTrainer keeps the
    # realised activation trainable and still computes them).
    "fc3_mse_nt1": {"in:out0:grad", "fc1:out0:grad", "fc1/activation_realized:out0:grad"},
    "fc3_mse_nt2": {"in:out0:grad"},
    "fc3_mse_nt3": {"in:out0:grad"},
}


def compiled(golden: str) -> Program:
    frozen = FROZEN[golden]
    layers: list[L.Layer] = [L.Input(shape=(1, 1, 3), name="in")]
    for name, unit, act in (("fc1", 10, "relu"), ("fc2", 10, "relu"), ("fc3", 2, "sigmoid")):
        layers.append(
            L.FullyConnected(unit=unit, activation=act, name=name, trainable=name != frozen)
        )
    model = Model(layers, loss="mse")
    model.compile(SGD(0.1), batch_size=1)
    return model.program


@pytest.mark.parametrize("golden", sorted(FROZEN))
def test_orders_match_nntrainer_golden(golden: str) -> None:
    raw = read_exeorder_golden(golden)
    # NNTrainer lists the loss output's derivative but never uses it; edgetrain has none
    assert [name for name, orders in raw.items() if not orders] == ["mse:out0:grad"]
    expected = {name: set(orders) for name, orders in raw.items() if orders}
    got = nntrainer_usage(compiled(golden), RENAMES)
    assert set(expected) - set(got) == ABSENT[golden]
    assert set(got) <= set(expected), (
        f"edgetrain tensors NNTrainer lacks: {set(got) - set(expected)}"
    )
    mismatches = {n: (sorted(got[n]), sorted(expected[n])) for n in got if got[n] != expected[n]}
    assert not mismatches, mismatches


def test_order_mapping_of_the_full_model() -> None:
    program = compiled("fc3_mse")
    steps = [(s.kind.value, s.node) for s in program.steps]
    mapped = nntrainer_order_map(program)
    assert mapped == sorted(mapped) and len(set(mapped)) == len(mapped)
    assert list(zip(steps, mapped))[8:] == [
        (("calc_derivative", "loss"), 9),
        (("calc_derivative", "fc3/activation"), 12),
        (("calc_gradient", "fc3"), 14),
        (("calc_derivative", "fc3"), 15),
        (("apply_gradient", "fc3"), 16),
        (("calc_derivative", "fc2/activation"), 18),
        (("calc_gradient", "fc2"), 20),
        (("calc_derivative", "fc2"), 21),
        (("apply_gradient", "fc2"), 22),
        (("calc_derivative", "fc1/activation"), 24),
        (("calc_gradient", "fc1"), 26),
        (("apply_gradient", "fc1"), 28),
    ]
    assert mapped[:7] == list(range(7))


def test_frozen_layer_takes_one_nntrainer_order() -> None:
    table = nntrainer_step_orders(compiled("fc3_mse_nt2"))
    fc2 = {
        table[(k, "fc2")]
        for k in (StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE, StepKind.APPLY_GRADIENT)
    }
    assert fc2 == {20}
    assert table[(StepKind.CALC_GRADIENT, "fc1/activation")] == 21


def test_tensor_names_map_to_nntrainer() -> None:
    assert nntrainer_tensor("fc1:output") == "fc1:out0"
    assert nntrainer_tensor("fc1:output1:grad") == "fc1:out1:grad"
    assert nntrainer_tensor("fc1/activation:output:grad") == "fc1/activation_realized:out0:grad"
    assert nntrainer_tensor("fc1:weight:grad") == "fc1:weight:grad"
    assert nntrainer_tensor("loss:output", RENAMES) == "mse:out0"


@pytest.mark.parametrize("golden", sorted(FROZEN))
def test_exegolden_text_is_reproduced(golden: str) -> None:
    program = compiled(golden)
    text = format_exegolden(program, nntrainer_usage(program, RENAMES), RENAMES)
    path = DATA / "exeorder" / f"{golden}.exegolden"
    absent = ABSENT[golden] | {"mse:out0:grad"}
    expected = [line for line in path.read_text().splitlines() if line.split(",")[0] not in absent]
    assert text.splitlines() == expected
