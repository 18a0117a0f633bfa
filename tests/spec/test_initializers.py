"""Weight initializers: fans per layout, uniform bounds, normal spread, seeding."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from edgetrain import ConfigError, Model
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.initializers import FILL_BLOCK, INITIALIZERS, fans, initialize, initialize_into


def test_fans_per_layout() -> None:
    assert fans((7,)) == (7, 7)  # a bias: NNTrainer takes its width for both
    assert fans((30, 20)) == (30, 20)  # fully connected (in, out)
    assert fans((8, 3, 5, 5)) == (3 * 25, 8 * 25)  # conv2d (out, in, kh, kw)
    assert fans((8, 3, 5)) == (15, 40)  # conv1d (out, in, k)


UNIFORM_LIMITS = {
    "xavier_uniform": lambda fi, fo: math.sqrt(6.0 / (fi + fo)),
    "he_uniform": lambda fi, fo: math.sqrt(6.0 / fi),
    "lecun_uniform": lambda fi, fo: math.sqrt(3.0 / fi),
}
NORMAL_STDS = {
    "xavier_normal": lambda fi, fo: math.sqrt(2.0 / (fi + fo)),
    "he_normal": lambda fi, fo: math.sqrt(2.0 / fi),
    "lecun_normal": lambda fi, fo: math.sqrt(1.0 / fi),
}
SHAPES = [(300, 200), (64, 16, 3, 3)]


@pytest.mark.parametrize("name", sorted(UNIFORM_LIMITS))
@pytest.mark.parametrize("shape", SHAPES)
def test_uniform_initializers_fill_their_bounds(name: str, shape: tuple[int, ...]) -> None:
    values = initialize(name, shape, np.random.default_rng(0))
    limit = UNIFORM_LIMITS[name](*fans(shape))
    assert values.shape == shape
    assert np.abs(values).max() <= limit
    assert np.abs(values).max() > 0.99 * limit  # many samples reach close to the bound
    assert abs(values.mean()) < 0.02 * limit
    assert values.std() == pytest.approx(limit / math.sqrt(3.0), rel=0.03)


@pytest.mark.parametrize("name", sorted(NORMAL_STDS))
@pytest.mark.parametrize("shape", SHAPES)
def test_normal_initializers_have_their_std(name: str, shape: tuple[int, ...]) -> None:
    values = initialize(name, shape, np.random.default_rng(1))
    std = NORMAL_STDS[name](*fans(shape))
    assert values.std() == pytest.approx(std, rel=0.03)
    assert abs(values.mean()) < 0.02 * std


def test_constant_initializers() -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(initialize("zeros", (3, 2), rng), np.zeros((3, 2)))
    np.testing.assert_array_equal(initialize("ones", (4,), rng), np.ones(4))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_same_seed_gives_same_values(name: str) -> None:
    a = initialize(name, (5, 4), np.random.default_rng(42))
    b = initialize(name, (5, 4), np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    if name not in ("zeros", "ones"):
        c = initialize(name, (5, 4), np.random.default_rng(43))
        assert not np.array_equal(a, c)


def test_names_are_case_insensitive_and_unknown_ones_are_listed() -> None:
    rng = np.random.default_rng(0)
    assert initialize(" He_Normal ", (2, 2), rng).shape == (2, 2)
    with pytest.raises(ConfigError, match="xavier_uniform") as err:
        L.FullyConnected(unit=2, weight_initializer="glorot")
    assert err.value.key == "weight_initializer"


def _mlp() -> Model:
    return Model(
        [
            L.Input(shape=(4,), name="in"),
            L.FullyConnected(unit=8, name="fc1", weight_initializer="he_normal"),
            L.FullyConnected(unit=3, name="fc2", bias_initializer="ones"),
        ],
        loss="mse",
    )


def test_model_weights_follow_the_seed_and_the_initializer() -> None:
    a, b, c = _mlp(), _mlp(), _mlp()
    a.compile(O.SGD(0.1), batch_size=2, seed=7)
    b.compile(O.SGD(0.1), batch_size=2, seed=7)
    c.compile(O.SGD(0.1), batch_size=2, seed=8)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name])
    assert not np.array_equal(wa["fc1:weight"], wc["fc1:weight"])
    np.testing.assert_array_equal(wa["fc1:bias"], np.zeros(8))
    np.testing.assert_array_equal(wa["fc2:bias"], np.ones(3))
    assert wa["fc1:weight"].dtype == np.float32


def test_float64_model_draws_the_same_numbers() -> None:
    a, b = _mlp(), _mlp()
    a.compile(O.SGD(0.1), batch_size=2, seed=7)
    b.compile(O.SGD(0.1), batch_size=2, seed=7, dtype=np.float64)
    wa, wb = a.get_weights(), b.get_weights()
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name].astype(np.float32))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_in_place_fill_gives_the_whole_draw_across_blocks(name: str) -> None:
    shape = (3, FILL_BLOCK // 3 + 5, 2)  # spans three blocks, the last one partial
    whole = initialize(name, shape, np.random.default_rng(11))
    out = np.empty(shape, np.float32)
    initialize_into(name, out, np.random.default_rng(11))
    np.testing.assert_array_equal(out, whole.astype(np.float32))


def test_in_place_fill_refuses_a_strided_view() -> None:
    out = np.zeros((8, 8), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        initialize_into("he_normal", out, np.random.default_rng(0))


@pytest.mark.parametrize("backend", ["python", "rust"])
def test_compile_initialises_weights_in_the_arena_without_a_copy(backend: str) -> None:
    """numpy's allocations are traced: compiling a model with 16 MiB of weights may
    allocate the (python) arena and small things, never a second copy of the weights."""
    if backend == "rust":
        pytest.importorskip("edgetrain._core")
    model = Model([L.Input(shape=(2048,)), L.FullyConnected(unit=2048), L.FullyConnected(unit=4)], loss="mse")
    weight_bytes = (2048 * 2048 + 2048 + 2048 * 4 + 4) * 4
    tracemalloc.start()
    try:
        model.compile(O.SGD(0.1), batch_size=2, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arena = model.plan().arena_bytes if backend == "python" else 0
    assert peak < arena + weight_bytes // 4
    assert np.abs(model.get_weights()["fully_connected1:weight"]).max() > 0
    model.close()
