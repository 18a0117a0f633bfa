"""docs/tutorials/interchange.md runs as written (every ``python`` block, in order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from doctest_blocks import code_blocks, python_blocks, run_markdown

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "interchange.md"


def test_the_interchange_tutorial_runs(tmp_path: Path) -> None:
    namespace = run_markdown(TUTORIAL, tmp_path)
    assert namespace["before"] < 0.5 < namespace["after"]
    assert {p.name for p in tmp_path.iterdir()} >= {
        "weights.safetensors", "digits_mlp.onnx", "personal.ini", "personal.bin", "personal.onnx",
    }
    assert np.isfinite(namespace["history"].loss).all()


def test_blocks_are_found_with_their_line_numbers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# t\n\n```python\nvalue = 1\n```\n\n````python no-run\nimport torch\n````\n\n"
        "```bash\nls\n```\n\n~~~python\nvalue += 1\nassert value == 3, value\n~~~\n"
    )
    blocks = code_blocks(doc.read_text())
    assert [(b.info, b.line) for b in blocks] == [("python", 4), ("python no-run", 8), ("bash", 12), ("python", 16)]
    assert [b.line for b in python_blocks(doc)] == [4, 16]
    try:
        run_markdown(doc, tmp_path)
    except AssertionError as error:
        assert str(error) == "2"
        assert error.__traceback__ is not None
        frames = []
        tb = error.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
            tb = tb.tb_next
        assert frames[-1] == (str(doc), 17)  # the document's own line
    else:
        raise AssertionError("the failing block did not fail")


def test_a_block_inside_a_list_item_runs_without_its_indent(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("1. first\n\n   ```python\n   if True:\n       found = 1\n   ```\n")
    assert run_markdown(doc, tmp_path)["found"] == 1
