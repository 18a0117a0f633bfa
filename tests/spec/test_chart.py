"""The memory chart: one box per placed tensor where the plan puts it, coloured by kind,
readable units, a PNG on disk, and a clear error without matplotlib."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrain import Model, cli
from edgetrain.errors import ConfigError
from edgetrain.planning import MemoryPlan
from edgetrain.planning.chart import KIND_COLOURS, draw_plan, plan_figure
from edgetrain.planning.report import KIND_LABELS

pytest.importorskip("matplotlib")

from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

ROOT = Path(__file__).resolve().parents[2]
LENET = ROOT / "examples" / "lenet5.ini"


def _plan(*, training: bool = True, batch_size: int = 32) -> MemoryPlan:
    model = Model.from_ini(LENET)
    assert model.description is not None
    model.compile(model.description.optimizer if training else None, batch_size=batch_size)
    return model.plan()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_draw_plan_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "plan.png"
    draw_plan(_plan(), path, title="lenet5")
    width, height = _png_size(path)
    assert width >= 1200 and height >= 800
    assert path.stat().st_size > 10_000


def test_one_box_per_tensor_at_its_offset() -> None:
    plan = _plan()
    figure = plan_figure(plan)
    arena_ax = figure.axes[0]
    assert arena_ax.get_ylabel() == "byte offset in the arena (MiB)"
    boxes: list[Rectangle] = [b for c in arena_ax.containers for b in c]
    placed = [t for t in plan.tensors.values() if t.offset is not None]
    assert len(boxes) == len(placed)
    expected = {
        (
            t.first - 0.5,
            (t.offset or 0) / 2**20,
            t.last - t.first + 1,
            t.nbytes / 2**20,
            KIND_COLOURS[t.kind],
        )
        for t in placed
    }
    drawn = {
        (b.get_x(), b.get_y(), b.get_width(), b.get_height(), to_hex(b.get_facecolor()))
        for b in boxes
    }
    assert {_rounded(e) for e in drawn} == {_rounded(e) for e in expected}
    top = max(b.get_y() + b.get_height() for b in boxes)
    assert top <= plan.arena_bytes / 2**20 + 1e-9
    assert arena_ax.get_xlim() == (-0.5, len(plan.steps) - 0.5)


def _rounded(box: tuple[float, float, float, float, str]) -> tuple[object, ...]:
    return (*(round(v, 9) for v in box[:4]), box[4])


def test_legend_names_every_kind_present() -> None:
    plan = _plan()
    figure = plan_figure(plan)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    kinds = {t.kind for t in plan.tensors.values() if t.offset is not None}
    assert {KIND_LABELS[k] for k in kinds} <= set(labels)
    assert {"arena size", "lower bound"} <= set(labels)
    live = [t.get_text() for t in figure.axes[1].get_legend().get_texts()]
    assert "bytes alive" in live


def test_units_follow_the_arena_size() -> None:
    small = plan_figure(_plan(training=False, batch_size=1))
    assert small.axes[0].get_ylabel().endswith("(KiB)")
    heading = small.axes[0].get_title()
    assert "arena" in heading and "lower bound" in heading and "KiB" in heading


def _phase_labels(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].texts if t.get_position()[1] == 1.005]


def test_inference_chart_has_no_backward_shading() -> None:
    assert _phase_labels(plan_figure(_plan(training=False))) == ["forward"]
    assert _phase_labels(plan_figure(_plan())) == ["forward", "backward and updates (shaded)"]


def test_large_buffers_are_named() -> None:
    plan = _plan()
    names = {t.get_text() for t in plan_figure(plan).axes[0].texts} - set(
        _phase_labels(plan_figure(plan))
    )
    assert "conv1/activation:output (+1)" in names  # conv1:output shares its bytes in place
    assert "pool1:output" in names
    assert all(name.split(" ")[0] in plan.tensors for name in names)


def test_missing_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError, match=r"pip install edgetrain\[chart\]"):
        plan_figure(_plan())
    code = cli.main(["plan", str(LENET), "--chart", str(tmp_path / "p.png"), "--brief"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert (
        err
        == "edgetrain: error: drawing a memory chart needs matplotlib: pip install edgetrain[chart]\n"
    )
    assert not (tmp_path / "p.png").exists()


def test_matplotlib_is_imported_only_to_draw() -> None:
    """``edgetrain`` and its CLI start without matplotlib (an optional extra)."""
    code = (
        "import sys, edgetrain.cli, edgetrain.planning.chart; "
        "assert 'matplotlib' not in sys.modules, 'imported at start-up'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
