"""``edgetrain plan``: the text report, ``--json``, ``--inference``, ``--batch-size``,
``--chart`` and its errors, checked against ``plan_memory`` of the same program."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgetrain import Model, cli
from edgetrain.planning import PLANNERS, MemoryPlan, plan_memory
from edgetrain.planning.report import format_bytes, layer_training, plan_json, render_plan

ROOT = Path(__file__).resolve().parents[2]
LENET = ROOT / "examples" / "lenet5.ini"

MLP_INI = """
[Model]
type = NeuralNetwork
loss = cross
batch_size = 8

[Optimizer]
type = sgd
learning_rate = 0.1
momentum = 0.9

[x]
type = input
input_shape = 1:1:12

[hidden]
type = fully_connected
unit = 16
activation = relu
{frozen}
[out]
type = fully_connected
unit = 4
activation = softmax
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _mlp(tmp_path: Path, *, frozen: bool = False, optimizer: bool = True) -> Path:
    text = MLP_INI.format(frozen="trainable = false\n" if frozen else "")
    if not optimizer:
        text = re.sub(r"\[Optimizer\][^\[]*", "", text)
    path = tmp_path / ("frozen.ini" if frozen else "mlp.ini")
    path.write_text(text)
    return path


def _expected(path: Path, *, batch_size: int | None = None, training: bool = True) -> Model:
    model = Model.from_ini(path)
    assert model.description is not None
    optimizer = model.description.optimizer if training else None
    model.compile(optimizer, batch_size=batch_size or model.description.batch_size)
    return model


def _json(capsys: pytest.CaptureFixture[str], *argv: object) -> dict[str, object]:
    code, out, err = _run(capsys, "plan", *argv, "--json", "-")
    assert (code, err) == (0, "")
    data: dict[str, object] = json.loads(out)
    return data


# -- the text report ----------------------------------------------------------------------


def test_report_figures_match_plan_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "plan", LENET)
    assert (code, err) == (0, "")
    program = _expected(LENET).program
    for name in PLANNERS:
        plan = plan_memory(program, name)
        line = next(row for row in out.splitlines() if row.startswith(f"arena, {name} "))
        assert f"{plan.arena_bytes:,}" in line
        assert format_bytes(plan.arena_bytes) in line
        assert f"{plan.arena_bytes / plan.lower_bound_bytes:.3f}" in line
    plan = plan_memory(program)
    bound = next(row for row in out.splitlines() if row.startswith("lower bound "))
    assert f"{plan.lower_bound_bytes:,}" in bound and f"order {plan.peak_order}" in bound
    naive = next(row for row in out.splitlines() if row.startswith("naive total "))
    assert f"{plan.naive_bytes:,}" in naive
    assert "<- this plan" in next(
        r for r in out.splitlines() if r.startswith("arena, greedy_by_size")
    )


def test_report_lists_every_order_with_born_and_freed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "plan", LENET, "--planner", "sorted")
    assert code == 0
    plan = _expected(LENET).plan("sorted")
    assert plan.planner == "sorted"
    orders = [line for line in out.splitlines() if re.match(r"\s*\d+  [a-z_]+ ", line)]
    assert len(orders) == len(plan.steps)
    for line, step in zip(orders, plan.steps):
        assert line.split()[:3] == [str(step.order), step.kind, step.node]
        assert format_bytes(plan.live_bytes[step.order]) in line
    assert "<- peak" in orders[plan.peak_order]
    blocks = re.split(r"\n(?=\s*\d+  [a-z_]+ )", out.split("order  step", 1)[1])[1:]
    for block, step in zip(blocks, plan.steps):
        born = re.findall(r"born:(.*?)(?:\n\s+freed:|$)", block, re.DOTALL)
        freed = re.findall(r"freed:(.*)$", block, re.DOTALL)
        for name in step.freed:
            assert freed and name in freed[0]
        for name in step.born:
            if plan.tensors[name].lifespan.value != "persistent":
                assert born and name in born[0]


def test_report_splits_bytes_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "plan", LENET, "--brief")
    plan = _expected(LENET).plan()
    kinds = {
        "weights": "weight",
        "gradients": "gradient",
        "activations": "activation",
        "derivatives": "derivative",
        "optimizer state": "optimizer_state",
        "scratch": "scratch",
    }
    for label, kind in kinds.items():
        row = next(r for r in out.splitlines() if r.startswith(f"  {label} "))
        assert row.split()[-4:] == [
            *format_bytes(plan.bytes_by_kind[kind]).split(),
            *format_bytes(plan.peak_bytes_by_kind[kind]).split(),
        ]
    assert "order  step" not in out  # --brief


def test_frozen_layers_are_named_and_shrink_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = _json(capsys, _mlp(tmp_path))
    frozen = _json(capsys, _mlp(tmp_path, frozen=True))
    assert trained["trained_layers"] == ["hidden", "out"] and trained["frozen_layers"] == []
    assert frozen["trained_layers"] == ["out"] and frozen["frozen_layers"] == ["hidden"]
    assert frozen["arena_bytes"] < trained["arena_bytes"]  # type: ignore[operator]
    assert frozen["naive_bytes"] < trained["naive_bytes"]  # type: ignore[operator]
    tensors = frozen["tensors"]
    assert isinstance(tensors, dict)
    assert "hidden:weight:grad" not in tensors and "hidden:weight:momentum" not in tensors
    _, out, _ = _run(capsys, "plan", _mlp(tmp_path, frozen=True))
    assert "layers that train: out (1)" in out
    assert "frozen layers (no gradients, no optimizer state): hidden (1)" in out


def test_format_bytes_uses_binary_units() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(999) == "999 B"
    assert format_bytes(1000) == "0.98 KiB"
    assert format_bytes(1013 * 1024) == "0.99 MiB"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(100 * 1024) == "100 KiB"
    assert format_bytes(3 * 2**20 + 2**19) == "3.50 MiB"
    assert format_bytes(2**31) == "2.00 GiB"


# -- --json --------------------------------------------------------------------------------


def test_json_has_the_plan_and_its_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "plan.json"
    code, out, _ = _run(capsys, "plan", LENET, "--json", out_file, "--brief")
    assert code == 0 and "lower bound" in out
    data = json.loads(out_file.read_text())
    model = _expected(LENET)
    plan = plan_memory(model.program)
    assert data["lower_bound_bytes"] == plan.lower_bound_bytes
    assert data["naive_bytes"] == plan.naive_bytes
    assert data["planners"] == {
        name: plan_memory(model.program, name).arena_bytes for name in PLANNERS
    }
    assert data["arena_bytes"] == plan.arena_bytes == data["planners"]["greedy_by_size"]
    assert (data["model"], data["batch_size"], data["training"]) == (str(LENET), 32, True)
    assert len(data["steps"]) == len(plan.steps)
    assert data["steps"][0].keys() >= {"order", "kind", "node", "born", "freed"}
    assert data["tensors"].keys() == plan.tensors.keys()
    for name, tensor in plan.tensors.items():
        entry = data["tensors"][name]
        assert (entry["offset"], entry["bytes"], entry["first"], entry["last"]) == (
            tensor.offset,
            tensor.nbytes,
            tensor.first,
            tensor.last,
        )
    assert data == json.loads(json.dumps(plan_json(model.plan(), **_context(LENET, 32, True))))


def _context(path: Path, batch: int, training: bool) -> dict[str, object]:
    return {"model": str(path), "batch_size": batch, "training": training}


def test_cli_and_model_plan_are_one_code_path(capsys: pytest.CaptureFixture[str]) -> None:
    model = _expected(LENET)
    plan: MemoryPlan = model.plan()
    _, out, _ = _run(capsys, "plan", LENET)
    title = "memory plan of lenet5.ini: training, batch size 32, float32"
    assert out.strip() == render_plan(plan, title=title)
    assert layer_training(plan).trained == ("conv1", "conv2", "fc1", "fc2", "fc3")


# -- --inference and --batch-size ---------------------------------------------------------------


def test_inference_plans_forward_steps_only(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, LENET, "--inference")
    steps = data["steps"]
    assert isinstance(steps, list) and steps
    assert {s["kind"] for s in steps} == {"forward"}
    assert data["training"] is False and data["trained_layers"] == []
    kinds = {t["kind"] for t in data["tensors"].values()}  # type: ignore[union-attr]
    assert not kinds & {"gradient", "derivative", "optimizer_state"}
    training = _json(capsys, LENET)
    assert data["lower_bound_bytes"] < training["lower_bound_bytes"]  # type: ignore[operator]
    _, out, _ = _run(capsys, "plan", LENET, "--inference")
    assert "inference: forward steps only" in out
    assert "calc_gradient" not in out and "apply_gradient" not in out


def test_inference_needs_no_optimizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _mlp(tmp_path, optimizer=False)
    code, _, err = _run(capsys, "plan", path)
    assert code == 2 and err.count("\n") == 1 and "optimizer" in err
    code, out, _ = _run(capsys, "plan", path, "--inference")
    assert code == 0 and "inference" in out


def test_batch_size_scales_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    small = _json(capsys, LENET, "--batch-size", 4)
    large = _json(capsys, LENET, "--batch-size", 8)
    assert (small["batch_size"], large["batch_size"]) == (4, 8)
    s_tensors, l_tensors = small["tensors"], large["tensors"]
    assert isinstance(s_tensors, dict) and isinstance(l_tensors, dict)
    assert s_tensors["conv1:output"]["shape"][0] == 4
    assert l_tensors["conv1:output"]["bytes"] == 2 * s_tensors["conv1:output"]["bytes"]
    assert l_tensors["conv1:weight"]["bytes"] == s_tensors["conv1:weight"]["bytes"]
    for key in ("naive_bytes", "lower_bound_bytes", "arena_bytes"):
        assert small[key] < large[key]  # type: ignore[operator]
    _, out, _ = _run(capsys, "plan", LENET, "--batch-size", 4, "--brief")
    assert "batch size 4" in out
    assert format_bytes(small["lower_bound_bytes"]) in out  # type: ignore[arg-type]


# -- --chart -------------------------------------------------------------------------------


def test_chart_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "plan.png"
    code, _, err = _run(capsys, "plan", LENET, "--chart", chart, "--brief")
    assert (code, err) == (0, "")
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.ini"], "missing.ini"),
        (
            [LENET, "--planner", "best"],
            "unknown planner 'best' (known: naive, sorted, greedy_by_size)",
        ),
        (
            [LENET, "--json", "/nonexistent-dir/plan.json"],
            "cannot write /nonexistent-dir/plan.json",
        ),
        ([LENET, "--chart", "/nonexistent-dir/plan.png"], "cannot write the chart"),
        ([LENET, "--chart", "plan.unknown"], "cannot write the chart"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    argv: list[object], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "plan", *argv)
    assert code == 2 and out == ""
    assert err.startswith("edgetrain: error: ") and err.count("\n") == 1
    assert message in err


def test_bad_model_file_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.ini"
    path.write_text(MLP_INI.format(frozen="unit = many\n"))
    code, _, err = _run(capsys, "plan", path)
    assert code == 2 and err.count("\n") == 1 and "bad.ini" in err and "unit" in err


def test_bad_batch_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plan", str(LENET), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "positive integer" in capsys.readouterr().err
