"""Counts the NEON vector instructions in each of edgetrain-core's kernel functions.

Reads ``aarch64-linux-gnu-objdump -d -C`` output of an aarch64 binary holding the kernels
(the release test binary: with thin LTO, loops vectorise only at link time) and prints,
per function of the ``kernels`` / ``optim`` / ``gemm`` modules, how many instructions
work on whole vector registers (``v0.4s``, ``v1.2d``, ``q2``: four f32 or two f64 lanes at once) and which
arithmetic ones appear. A kernel whose loop did not vectorise shows only scalar
``s``/``d`` register arithmetic. This is how docs/arm.md's findings were read::

    source tools/arm/env.sh
    cargo test --release -p edgetrain-core --target $ARM_TARGET --test kernels --no-run
    aarch64-linux-gnu-objdump -d -C --no-show-raw-insn target/aarch64/aarch64-unknown-linux-gnu/release/deps/kernels-<hash> \
        | python3 tools/arm/neon_report.py
"""

from __future__ import annotations

import re
import sys
from collections import Counter

FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
INSTRUCTION = re.compile(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*)$")
VECTOR_OPERAND = re.compile(r"\bv\d+\.(?:4s|2d|2s|16b|8b|8h|4h)\b|\bq\d+\b")
MODULES = ("edgetrain_core::kernels::", "edgetrain_core::optim::", "edgetrain_core::gemm::")


def main() -> None:
    counts: dict[str, Counter[str]] = {}
    current: str | None = None
    for line in sys.stdin:
        head = FUNCTION.match(line)
        if head:
            name = head.group(1)
            current = name if any(m in name for m in MODULES) else None
            if current is not None:
                counts.setdefault(current, Counter())
            continue
        body = INSTRUCTION.match(line)
        if current is None or body is None:
            continue
        mnemonic, operands = body.groups()
        counts[current]["instructions"] += 1
        if VECTOR_OPERAND.search(operands):
            counts[current]["vector"] += 1
            if mnemonic.startswith("f"):
                lanes = re.search(r"\.(4s|2d|2s)", operands)
                counts[current][f"{mnemonic}.{lanes.group(1) if lanes else 'q'}"] += 1
    for name, c in sorted(counts.items()):
        arithmetic = ", ".join(
            f"{k} x{v}" for k, v in sorted(c.items()) if k not in ("instructions", "vector")
        )
        print(f"{c['vector']:5d}/{c['instructions']:<5d} {name}  {arithmetic}")


if __name__ == "__main__":
    main()
