"""Embedding: lookup, scatter-add gradient, id checks, shapes, config."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.errors import ConfigError, DataError, ShapeError
from gradcheck import check_layer_gradients, make_context


def ids(shape: tuple[int, ...], in_dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, in_dim, size=shape).astype(np.float64)


@pytest.mark.parametrize(("shape", "out"), [((3, 5), (3, 5, 4)), ((2, 1, 1, 6), (2, 1, 6, 4))])
def test_embedding_looks_up_rows(shape: tuple[int, ...], out: tuple[int, ...]) -> None:
    layer = L.Embedding(in_dim=7, out_dim=4, name="emb")
    assert layer.setup([shape]).output_shapes == [out]
    x = ids(shape, 7)
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    table = ctx.weights["weight"]
    np.testing.assert_array_equal(ctx.outputs[0].reshape(-1, 4), table[x.reshape(-1).astype(int)])


@pytest.mark.parametrize("shape", [(3, 5), (2, 1, 1, 9), (4, 30)])
def test_embedding_gradient_matches_finite_differences(shape: tuple[int, ...]) -> None:
    # (4, 30) over 5 ids repeats ids, so the scatter must add, not assign
    check_layer_gradients(L.Embedding(in_dim=5, out_dim=3, name="emb"), [shape], inputs=[ids(shape, 5)])


def test_embedding_gradient_adds_repeated_ids_and_zeroes_unused_rows() -> None:
    layer = L.Embedding(in_dim=4, out_dim=2, name="emb")
    x = np.array([[1.0, 1.0, 3.0]])
    ctx = make_context(layer, [x])
    ctx.gradients["weight"][...] = 9.0
    ctx.grad_outputs = [np.array([[[1.0, 2.0], [10.0, 20.0], [5.0, 6.0]]])]
    layer.calc_gradient(ctx)
    np.testing.assert_array_equal(ctx.gradients["weight"], [[0, 0], [11, 22], [0, 0], [5, 6]])


def test_embedding_float32_ids() -> None:
    layer = L.Embedding(in_dim=10, out_dim=3)
    x = np.array([[0, 9, 4]], dtype=np.float32)
    ctx = make_context(layer, [x], dtype=np.float32)
    layer.forward(ctx)
    assert ctx.outputs[0].dtype == np.float32
    np.testing.assert_array_equal(ctx.outputs[0][0], ctx.weights["weight"][[0, 9, 4]])


@pytest.mark.parametrize("bad", [7.0, -1.0, 2.5, np.nan, np.inf])
def test_embedding_rejects_bad_ids(bad: float) -> None:
    layer = L.Embedding(in_dim=7, out_dim=2, name="emb")
    x = np.array([[1.0, 2.0], [3.0, bad]])
    ctx = make_context(layer, [np.zeros((2, 2))])
    ctx.inputs = [x]
    with pytest.raises(DataError, match=r"embedding layer 'emb'.*\[0, 7\).*\(1, 1\)"):
        layer.forward(ctx)


def test_embedding_declares_no_derivative_and_reads_its_input() -> None:
    assert L.Embedding.has_derivative is False
    assert L.Embedding.gradient_reads == frozenset({L.Operand.INPUTS})
    setup = L.Embedding(in_dim=6, out_dim=2).setup([(2, 3)])
    assert [(w.name, w.shape) for w in setup.weights] == [("weight", (6, 2))]


def test_embedding_config_and_errors() -> None:
    layer = L.Embedding(in_dim="100", out_dim="8", name="emb")
    assert layer.config() == {"in_dim": 100, "out_dim": 8, "weight_initializer": "xavier_uniform"}
    assert L.Embedding(**layer.config()).config() == layer.config()
    with pytest.raises(ConfigError) as info:
        L.Embedding(in_dim=0, out_dim=3)
    assert info.value.key == "in_dim"
    with pytest.raises(ShapeError, match=r"embedding layer 'emb'.*\(2, 3, 4\)"):
        layer.setup([(2, 3, 4)])
    with pytest.raises(ShapeError, match=r"\(2, 2, 1, 4\)"):
        layer.setup([(2, 2, 1, 4)])


def test_embedding_matches_nntrainer_golden() -> None:
    """``embedding_w32a32_single_batch`` (NNTrainer's ``record_single_embedding_fp32``, a
    Keras Embedding(10, 10) on ids ``(1, 1, 1, 10)`` with incoming derivative 2): the table,
    the ids, the output, the dense weight gradient, the table again, the ids again."""
    from goldens import read_layer_golden

    table, x, y, grad, _, _ = read_layer_golden("embedding_w32a32_single_batch")
    layer = L.Embedding(in_dim="10", out_dim="10", name="emb")
    ctx = make_context(layer, [x.reshape(1, 1, 1, 10)], {"weight": table.reshape(10, 10)},
                       dtype=np.float32)
    layer.forward(ctx)
    np.testing.assert_array_equal(ctx.outputs[0].reshape(-1), y)
    ctx.grad_outputs = [np.full((1, 1, 10, 10), 2.0, np.float32)]
    layer.calc_gradient(ctx)
    np.testing.assert_array_equal(ctx.gradients["weight"].reshape(-1), grad)
