"""Train a small CNN on scikit-learn's handwritten digits with edgetrain's Python API.

The same network as ``examples/digits_cnn.ini`` (``make demo`` trains that one through the
command line). Run ``python examples/train_digits.py``; it needs scikit-learn
(``pip install 'edgetrain[examples]'``). ``tests/spec/test_digits_converges.py`` runs it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.datasets import load_digits
from edgetrain.optimizers import Adam
from edgetrain.schedules import Exponential


def build_model() -> Model:
    """Conv (3x3, 16 filters) + batch norm + ReLU + 2x2 max pool + flatten + dense softmax."""
    return Model(
        [
            L.Input(shape=(1, 8, 8), name="image"),
            L.Conv2D(filters=16, kernel_size=3, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1", activation="relu"),
            L.Pooling2D("max", pool_size=2, stride=2, name="pool1"),
            L.Flatten(name="flatten"),
            L.FullyConnected(unit=10, activation="softmax", name="classes"),
        ],
        loss="cross",
    )


def held_out_split(seed: int, fraction: float = 0.2) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): a seeded ``fraction`` of the digits held out."""
    x, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def train(epochs: int = 10, seed: int = 0, verbose: bool = True) -> float:
    """Train on 80% of the digits and return the accuracy on the 20% held out."""
    x_train, y_train, x_test, y_test = held_out_split(seed)
    model = build_model()
    # the learning rate halves every 150 iterations (smoothly), as in digits_cnn.ini
    model.compile(Adam(learning_rate=Exponential(0.01, 0.5, 150)), batch_size=32, seed=seed)
    if verbose:
        print(model.summary())
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        epochs=epochs,
        on_epoch=(lambda e, m: print(f"epoch {e + 1}: loss {m['loss']:.4f}")) if verbose else None,
    )
    probabilities = model.predict(x_test)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y_test))
    if verbose:
        print(f"held-out accuracy {accuracy:.2%} after {time.perf_counter() - start:.1f} s")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    train(options.epochs, options.seed)
