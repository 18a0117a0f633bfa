"""Swapping on ``backend="rust"`` (``spec/swapping.md``, ``spec/core-program.md``): the
core carries out the schedule the spec computed (the golden schedules of the example
models, echoed back by the core), training with swap gives bit for bit the weights of
the rust backend without swap and the python swap runtime's within the conformance
tolerance, the traffic is the schedule's, and a swap file that cannot be made fails at
compile time with a ``SwapError``, the weights unchanged and no file left."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetrain import Model
from edgetrain.backends.lowering import lower_swap
from edgetrain.backends.rust import RustExecutor
from edgetrain.errors import StateError, SwapError
from edgetrain.graph import build_graph
from edgetrain.ini import read_ini
from edgetrain.losses import make_loss
from edgetrain.planning import plan_memory
from edgetrain.planning.budget import choose_swap
from edgetrain.planning.swap import SwapSchedule, plan_swap
from edgetrain.program import Program, build_program
from planning_models import BUILDERS
from swap_faults import fails_cleanly

pytest.importorskip("edgetrain._core")

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = json.loads((ROOT / "tests" / "data" / "plans" / "swap_cases.json").read_text())["cases"]
#: models without dropout (the backends' dropout masks differ by design)
MODELS = ("mlp", "classifier", "frozen_middle", "frozen_first", "residual")
BATCH = 4


def _data(model: Model, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, *shape)).astype(np.float32)
    out = model._output_shape()
    y = rng.integers(0, out[-1], size=BATCH) if model._classifies() else rng.normal(size=(BATCH, *out))
    return x, y


def _train(name: str, backend: str, tmp: Path, **swap: Any) -> tuple[Model, list[float]]:
    layers, loss, shape, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=BATCH, seed=3, backend=backend, threads=1, swap_dir=tmp, **swap)
    losses = [model.train_step(*_data(model, shape, i)) for i in range(3)]
    return model, losses


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("settings", [{"swap": True, "lookahead": 0}, {"swap": True, "lookahead": 2}, {"memory_budget": "70%"}])
def test_rust_swap_trains_as_without_swap_and_as_the_python_runtime(
    name: str, settings: dict[str, Any], tmp_path: Path
) -> None:
    plain, plain_losses = _train(name, "rust", tmp_path)
    rust, rust_losses = _train(name, "rust", tmp_path, **settings)
    spec, spec_losses = _train(name, "python", tmp_path, **settings)
    schedule = rust.swap_schedule
    if schedule is None:  # the budget fits without swapping
        assert spec.swap_schedule is None
        return
    assert isinstance(rust._train, RustExecutor)
    assert spec.swap_schedule is not None and spec.swap_schedule.to_json() == schedule.to_json()
    assert rust_losses == plain_losses
    want, got, ref = plain.get_weights(), rust.get_weights(), spec.get_weights()
    scale = max(float(np.abs(v).max()) for v in ref.values())
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert float(np.abs(got[key] - ref[key]).max()) <= 1e-4 * scale, key
    np.testing.assert_allclose(rust_losses, spec_losses, rtol=1e-4)
    traffic, spec_traffic = rust.swap_traffic, spec.swap_traffic
    assert traffic is not None and spec_traffic is not None
    assert (traffic.iterations, traffic.last_written, traffic.last_read) == (3, schedule.bytes_written, schedule.bytes_read)
    assert (traffic.total_written, traffic.total_read) == (spec_traffic.total_written, spec_traffic.total_read)
    reads = sum(s.read_in for segs in schedule.segments.values() for s in segs)
    # read-ins run on the core's transfer thread: a wait is counted only when one is late
    assert 0 <= traffic.waits <= 3 * reads and traffic.wait_seconds >= 0.0
    writes = sum(s.exit.value == "write" for segs in schedule.segments.values() for s in segs)
    assert 0 <= traffic.write_waits <= 3 * writes
    assert traffic.read_wait_seconds + traffic.write_wait_seconds <= traffic.wait_seconds + 1e-9
    path = rust._train.swap_path
    assert path is not None and Path(path).parent == tmp_path and Path(path).exists()
    rust.close()
    assert not Path(path).exists()
    assert all(np.array_equal(rust.get_weights()[k], got[k]) for k in got)  # kept in memory
    x, y = _data(rust, BUILDERS[name]()[2], 9)
    with pytest.raises(StateError, match="compile"):
        rust.train_step(x, y)
    with pytest.raises(SwapError, match="compile again"):  # the core refuses by itself too
        rust._train.train_step([x], np.zeros(rust._train.store[rust.program.label or ""].shape, np.float32), 0.1)


def _training_program(stem: str) -> Program:
    desc = read_ini(ROOT / "examples" / f"{stem}.ini")
    assert desc.optimizer is not None and desc.loss is not None
    graph = build_graph(desc.layers, desc.batch_size, make_loss(desc.loss))
    return build_program(graph, training=True, optimizer_state=desc.optimizer.state_names())


def _golden_schedule(case: dict[str, Any], program: Program) -> SwapSchedule:
    plan = plan_memory(program)
    if case["budget"] is None:
        return plan_swap(program, None, lookahead=case["lookahead"], plan=plan)
    chosen = choose_swap(program, case["budget"], plan=plan)
    assert chosen is not None
    return chosen


def _as_golden(swap: dict[str, Any], schedule: SwapSchedule) -> dict[str, Any]:
    """The fields of a golden case, rebuilt from the schedule the core was given."""
    return {
        "swap_file_bytes": swap["file_bytes"],
        "lookahead": swap["lookahead"],
        "swapped": [b["name"] for b in swap["buffers"]],
        "slots": {b["name"]: b["slot"] for b in swap["buffers"]},
        "segments": {
            b["name"]: [
                {k: s[k] for k in ("start", "end", "read_in", "first_use", "exit", "held", "offset")}
                | {"bytes": b["size"]}
                for s in b["segments"]
            ]
            for b in swap["buffers"]
        },
        "bytes_read": sum(b["nbytes"] for b in swap["buffers"] for s in b["segments"] if s["read_in"]),
        "bytes_written": sum(
            b["nbytes"] for b in swap["buffers"] for s in b["segments"] if s["exit"] == "write"
        ),
    }


def _golden_fields(case: dict[str, Any]) -> dict[str, Any]:
    return {
        "swap_file_bytes": case["swap_file_bytes"],
        "lookahead": case["lookahead"],
        "swapped": case["swapped"],
        "slots": {name: slot["offset"] for name, slot in case["slots"].items()},
        "segments": {
            name: [
                {k: s[k] for k in ("start", "end", "read_in", "exit", "held", "offset", "bytes")}
                | {"first_use": s["uses"][0]}
                for s in segs
            ]
            for name, segs in case["segments"].items()
        },
        "bytes_read": case["bytes_read"],
        "bytes_written": case["bytes_written"],
    }


@pytest.mark.parametrize("case", GOLDENS, ids=[c["name"] for c in GOLDENS])
def test_the_lowered_schedule_is_the_golden_one(case: dict[str, Any]) -> None:
    program = _training_program(case["model"])
    schedule = _golden_schedule(case, program)
    index = {name: i for i, name in enumerate(program.tensors)}
    assert _as_golden(lower_swap(schedule, index), schedule) == _golden_fields(case)
    assert schedule.resident_bytes == case["resident_bytes"]


@pytest.mark.parametrize("stem", ["mlp", "lenet5"])
def test_the_core_runs_the_golden_schedule(stem: str, tmp_path: Path) -> None:
    """The schedule the core parsed and carries out, echoed back, is the golden one, and
    a training step over it is the rust backend's without swap, bit for bit."""
    model = Model.from_ini(ROOT / "examples" / f"{stem}.ini")
    desc = model.description
    assert desc is not None and desc.optimizer is not None
    plain = Model.from_ini(ROOT / "examples" / f"{stem}.ini")
    plain.compile(desc.optimizer, desc.batch_size, backend="rust", threads=1, seed=1)
    model.compile(desc.optimizer, desc.batch_size, backend="rust", threads=1, seed=1, swap=True, swap_dir=tmp_path)
    assert isinstance(model._train, RustExecutor)
    echoed = model._train.core.swap_schedule()
    assert echoed is not None
    schedule = model.swap_schedule
    assert schedule is not None
    case = next(c for c in GOLDENS if c["name"] == f"{stem}_all_L0")
    assert _as_golden(json.loads(echoed), schedule) == _golden_fields(case)
    assert model._train.core.arena_bytes == case["resident_bytes"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(desc.batch_size, *model._input_shapes()[0][0])).astype(np.float32)
    y = rng.integers(0, model._output_shape()[-1], size=desc.batch_size)
    assert model.train_step(x, y) == plain.train_step(x, y)
    want, got = plain.get_weights(), model.get_weights()
    assert all(np.array_equal(want[k], got[k]) for k in want)
    model.close()


def test_the_swap_file_goes_when_the_interpreter_exits(tmp_path: Path) -> None:
    """A model never closed: its swap file is removed at exit all the same."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from planning_models import BUILDERS\n"
        "from edgetrain import Model\n"
        "layers, loss, shape, optimizer = BUILDERS['mlp']()\n"
        "model = Model(layers, loss=loss)\n"
        "model.compile(optimizer(), batch_size=4, backend='rust', swap=True, swap_dir=sys.argv[1])\n"
        "assert model._train.swap_path is not None\n"
        "print(model._train.swap_path)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), str(ROOT / "tests")], capture_output=True, text=True, check=True
    )
    assert Path(done.stdout.strip()).parent == tmp_path
    assert not list(tmp_path.iterdir())


# -- faults ---------------------------------------------------------------------------


def test_a_missing_directory(tmp_path: Path) -> None:
    fails_cleanly(tmp_path / "nowhere", r"swap directory .*nowhere does not exist", backend="rust")


def test_a_directory_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fails_cleanly(blocker / "swap", "does not exist", watch=tmp_path, backend="rust")
    fails_cleanly(blocker, "is not a directory", watch=tmp_path, backend="rust")


def test_an_unwritable_directory() -> None:
    """sysfs refuses new files even to root (the tests run as root, so permissions
    cannot be used)."""
    target = Path("/sys/kernel")
    try:
        (target / "edgetrain-probe").touch()
    except OSError:
        pass
    else:
        pytest.skip("/sys/kernel is writable here")
    fails_cleanly(target, r"cannot create the swap file \(.*\) in /sys/kernel: Permission denied", backend="rust")


def test_no_space_for_the_swap_file(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the kernel refuse the preallocation
    (EFBIG), as a full disk would: reported as not enough space."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        fails_cleanly(tmp_path, "not enough space", backend="rust")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
