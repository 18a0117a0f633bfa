"""The README's Python example runs as written."""

from __future__ import annotations

from pathlib import Path

from doctest_blocks import run_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs(tmp_path: Path) -> None:
    run_markdown(ROOT / "README.md", tmp_path)
