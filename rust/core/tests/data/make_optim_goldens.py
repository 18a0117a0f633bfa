"""Writes optim_goldens.txt: weights after a few steps of the numpy spec's optimizers, as
float32 bit patterns, for the Rust core's bit-identity test (tests/kernels/optim.rs).

Run from the repository root: ``.venv/bin/python rust/core/tests/data/make_optim_goldens.py``.
Inputs are exact in float32 and recomputed by the test from the same formulas:
``weight[i] = float32((i - 4) / 3)``, ``grad at step s [i] = float32(((7 i + 3 s) % 11 - 5) / 8)``.
"""

from pathlib import Path

import numpy as np

from edgetrain.optimizers import SGD, Adam, AdamW

SIZE, STEPS = 8, 4
#: (name, optimizer, learning rate, the weight's own decay)
CASES = [
    ("sgd lr=0.1 momentum=0", SGD(0.1), 0.1, 0.0),
    ("sgd lr=0.05 momentum=0.9", SGD(0.05, momentum=0.9), 0.05, 0.0),
    ("sgd lr=0.05 momentum=0.9 decay=0.2", SGD(0.05, momentum=0.9), 0.05, 0.2),
    ("adam lr=0.01", Adam(0.01), 0.01, 0.0),
    ("adam lr=0.3 beta1=0.8 beta2=0.99 eps=1e-3", Adam(0.3, beta1=0.8, beta2=0.99, epsilon=1e-3), 0.3, 0.0),
    ("adam lr=0.01 decay=0.05", Adam(0.01), 0.01, 0.05),
    ("adamw lr=0.01 weight_decay=0.1", AdamW(0.01, weight_decay=0.1), 0.01, 0.0),
    ("adamw lr=0.01 weight_decay=0.1 decay=0.05", AdamW(0.01, weight_decay=0.1), 0.01, 0.05),
]


def main() -> None:
    lines = [f"# made by {Path(__file__).name}; one case: a name line, then the weight bits"]
    for name, optimizer, lr, decay in CASES:
        weight = np.array([(i - 4) / 3 for i in range(SIZE)], dtype=np.float32)
        state = {key: np.zeros_like(weight) for key in optimizer.state_names()}
        for step in range(1, STEPS + 1):
            grad = np.array([((7 * i + 3 * step) % 11 - 5) / 8 for i in range(SIZE)], dtype=np.float32)
            optimizer.apply(weight, grad, state, lr, step, decay)
        lines.append(name)
        lines.append(" ".join(f"{bits:08x}" for bits in weight.view(np.uint32)))
    Path(__file__).with_name("optim_goldens.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
