"""Run the Python code blocks of a Markdown document, so tutorials cannot rot.

Every fenced block whose info string is exactly ``python`` runs, in document order, in
one shared namespace (a later block uses what an earlier one defined), with the working
directory set to a scratch directory so files the tutorial writes land there. A block
meant to be read but not run (PyTorch code, an illustration) is fenced as
``python no-run``; other languages (``bash``, ``ini``, ``text``) never run.

A failing block raises with the document's own line numbers: each block is compiled
padded with blank lines so that its first line keeps its line number in the file.

Usage in a test::

    from doctest_blocks import run_markdown

    def test_tutorial_runs(tmp_path):
        run_markdown(DOCS / "tutorials" / "interchange.md", tmp_path)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: its info string, its text and the line (1-based) of its first line."""

    info: str
    code: str
    line: int

    @property
    def runs(self) -> bool:
        return self.info.strip() == "python"


def code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced code block of a Markdown text, in order (CommonMark fences: three or
    more backticks or tildes, closed by a fence of the same kind at least as long)."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, info, indent = match["fence"], match["info"].strip(), len(match["indent"])
        start = index + 1
        index = start
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence[0] * len(fence)) and set(closing) == {fence[0]}:
                break
            index += 1
        else:
            raise ValueError(f"line {start}: code block opened with {fence} is never closed")
        body = [_dedent(line, indent) for line in lines[start:index]]
        blocks.append(CodeBlock(info, "\n".join(body) + "\n", start + 1))
        index += 1
    return blocks


def _dedent(line: str, indent: int) -> str:
    """A line of a fenced block opened ``indent`` spaces in (a fence inside a list item)
    without up to that many leading spaces, as CommonMark reads it."""
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(stripped, indent) :]


def python_blocks(path: Path) -> list[CodeBlock]:
    """The blocks of ``path`` that run (info string ``python``)."""
    return [block for block in code_blocks(path.read_text(encoding="utf-8")) if block.runs]


def run_markdown(path: Path, workdir: Path) -> dict[str, Any]:
    """Run every ``python`` block of ``path`` in ``workdir``; returns the namespace the
    blocks shared, so a test can check what the tutorial computed."""
    blocks = python_blocks(path)
    if not blocks:
        raise ValueError(f"{path} has no python code blocks to run")
    namespace: dict[str, Any] = {"__name__": "__tutorial__"}
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        for block in blocks:
            padded = "\n" * (block.line - 1) + block.code
            exec(compile(padded, str(path), "exec"), namespace)  # noqa: S102 - the document's own code
    finally:
        os.chdir(previous)
    return namespace
