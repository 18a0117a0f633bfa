from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.errors import ConfigError, ShapeError
from edgetrain.layers.base import Layer, Operand, StepKind
from gradcheck import check_layer_gradients, make_context


def backward(layer: Layer, ctx: object) -> None:
    layer.calc_gradient(ctx)  # type: ignore[arg-type]
    layer.calc_derivative(ctx)  # type: ignore[arg-type]


# -- batch normalization ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((6, 5), None),  # per feature
        ((3, 4, 2, 3), None),  # per channel
        ((2, 1, 3, 4), None),  # one channel: per width, as NNTrainer
        ((3, 2, 5), None),  # rank 3: last axis
        ((2, 3, 4, 2), 2),
        ((2, 3, 4, 2), -1),
        ((1, 3, 2, 2), 1),  # batch of one: statistics over H and W only
    ],
)
@pytest.mark.parametrize("momentum", [0.99, 0.0])
def test_batch_normalization_training_backward_matches_finite_differences(
    shape: tuple[int, ...], axis: int | None, momentum: float
) -> None:
    layer = L.BatchNormalization(axis=axis, momentum=momentum, name="bn")
    check_layer_gradients(layer, [shape])


def test_batch_normalization_default_axis_follows_nntrainer() -> None:
    bn = L.BatchNormalization(name="bn")
    assert bn.channel_axis((2, 4, 2, 3)) == 1
    assert bn.channel_axis((2, 1, 1, 10)) == 3
    assert bn.channel_axis((2, 10)) == 1
    assert bn.channel_axis((2, 7, 10)) == 2
    setup = bn.setup([(2, 4, 2, 3)])
    assert [(w.name, w.shape, w.trainable) for w in setup.weights] == [
        ("moving_mean", (4,), False),
        ("moving_variance", (4,), False),
        ("gamma", (4,), True),
        ("beta", (4,), True),
    ]
    scratch = {s.name: (s.shape, s.used_in) for s in setup.scratch}
    assert scratch["normalized"][0] == (2, 4, 2, 3)
    assert scratch["inv_std"] == ((4,), frozenset({StepKind.FORWARD, StepKind.CALC_DERIVATIVE}))
    assert bn.gradient_reads == frozenset() and bn.derivative_reads == {Operand.WEIGHTS}


def test_batch_normalization_training_updates_moving_statistics() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 3.0, size=(5, 3, 4, 2))
    bn = L.BatchNormalization(momentum=0.9, epsilon=1e-3, name="bn")
    ctx = make_context(bn, [x])
    old_mean = ctx.weights["moving_mean"].copy()
    old_var = ctx.weights["moving_variance"].copy()
    bn.forward(ctx)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))  # biased, as NNTrainer and Keras
    np.testing.assert_allclose(ctx.weights["moving_mean"], 0.9 * old_mean + 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(
        ctx.weights["moving_variance"], 0.9 * old_var + 0.1 * var, rtol=1e-12
    )
    gamma, beta = ctx.weights["gamma"], ctx.weights["beta"]
    expected = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3)
    expected = expected * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(ctx.outputs[0], expected, rtol=1e-10, atol=1e-12)


def test_batch_normalization_inference_uses_moving_statistics() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 6))
    bn = L.BatchNormalization(name="bn")
    ctx = make_context(bn, [x], training=False)
    w = {k: v.copy() for k, v in ctx.weights.items()}
    ctx.scratch = {}  # inference needs no scratch: a program without backward may omit it
    bn.forward(ctx)
    std = np.sqrt(w["moving_variance"] + 1e-3)
    expected = (x - w["moving_mean"]) / std * w["gamma"] + w["beta"]
    np.testing.assert_allclose(ctx.outputs[0], expected, rtol=1e-12)
    for name, value in w.items():
        np.testing.assert_array_equal(
            ctx.weights[name], value, err_msg=f"{name} changed in inference"
        )
    # each sample alone gives the same output: no batch statistics
    single = make_context(bn, [x[:1]], weights={k: v.copy() for k, v in w.items()}, training=False)
    bn.forward(single)
    np.testing.assert_allclose(single.outputs[0], ctx.outputs[0][:1], rtol=1e-12)


def test_batch_normalization_converges_to_population_statistics() -> None:
    rng = np.random.default_rng(7)
    bn = L.BatchNormalization(momentum=0.9, name="bn")
    x = rng.normal(size=(64, 3))
    ctx = make_context(bn, [x])
    ctx.weights["moving_mean"][...] = 0
    ctx.weights["moving_variance"][...] = 1
    for _ in range(200):
        ctx.inputs[0][...] = rng.normal([1.0, -2.0, 0.5], [2.0, 0.5, 1.0], size=(64, 3))
        bn.forward(ctx)
    np.testing.assert_allclose(ctx.weights["moving_mean"], [1.0, -2.0, 0.5], atol=0.15)
    np.testing.assert_allclose(ctx.weights["moving_variance"], [4.0, 0.25, 1.0], rtol=0.15)


# -- layer normalization -----------------------------------------------------------------

AXIS_SETS = [combo for r in (1, 2, 3) for combo in itertools.combinations((1, 2, 3), r)]


@pytest.mark.parametrize("axes", AXIS_SETS, ids=lambda a: "_".join(map(str, a)))
def test_layer_normalization_backward_matches_finite_differences_on_every_axis_set(
    axes: tuple[int, ...],
) -> None:
    layer = L.LayerNormalization(axis=list(axes), name="ln")
    check_layer_gradients(layer, [(2, 4, 2, 3)])


@pytest.mark.parametrize(
    ("shape", "axis"), [((5, 7), None), ((2, 3, 6), None), ((2, 3, 6), "-2, -1"), ((3, 4), 1)]
)
def test_layer_normalization_backward_on_other_ranks(shape: tuple[int, ...], axis: object) -> None:
    check_layer_gradients(L.LayerNormalization(axis=axis, name="ln"), [shape])  # type: ignore[arg-type]


def test_layer_normalization_forward_and_parameter_layout() -> None:
    ln = L.LayerNormalization(axis="3, 1", epsilon=1e-5, name="ln")
    setup = ln.setup([(2, 4, 2, 3)])
    assert [(w.name, w.shape) for w in setup.weights] == [("gamma", (4, 3)), ("beta", (4, 3))]
    assert {s.name: s.shape for s in setup.scratch} == {
        "normalized": (2, 4, 2, 3),
        "inv_std": (2, 1, 2, 1),
    }
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 4, 2, 3))
    ctx = make_context(ln, [x])
    ln.forward(ctx)
    mean = x.mean(axis=(1, 3), keepdims=True)
    var = x.var(axis=(1, 3), keepdims=True)
    gamma = ctx.weights["gamma"][None, :, None, :]
    beta = ctx.weights["beta"][None, :, None, :]
    np.testing.assert_allclose(
        ctx.outputs[0], (x - mean) / np.sqrt(var + 1e-5) * gamma + beta, rtol=1e-10
    )
    # inference computes the same without any scratch (only the backward needs it)
    infer = make_context(ln, [x], weights=ctx.weights, training=False)
    infer.scratch = {}
    ln.forward(infer)
    np.testing.assert_allclose(infer.outputs[0], ctx.outputs[0], rtol=1e-12)


# -- both: aliasing, float32, properties -------------------------------------------------

NORMS = [
    pytest.param(lambda: L.BatchNormalization(name="bn"), (3, 4, 2, 3), id="bn"),
    pytest.param(lambda: L.LayerNormalization(axis=[2, 3], name="ln"), (3, 4, 2, 3), id="ln"),
]


@pytest.mark.parametrize(("make", "shape"), NORMS)
def test_normalization_is_alias_safe(make: object, shape: tuple[int, ...]) -> None:
    """Output over the input's buffer and dx over dy's give the same numbers."""
    layer = make()  # type: ignore[operator]
    assert layer.supports_in_place and layer.derivative_in_place
    rng = np.random.default_rng(9)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    plain = make_context(layer, [x.copy()])
    weights = {k: v.copy() for k, v in plain.weights.items()}
    layer.forward(plain)
    plain.grad_outputs, plain.grad_inputs = [dy.copy()], [np.zeros(shape)]
    backward(layer, plain)

    shared = make_context(layer, [x.copy()], weights=weights)
    shared.outputs = shared.inputs  # y over x
    layer.forward(shared)
    shared.grad_outputs = [dy.copy()]
    shared.grad_inputs = shared.grad_outputs  # dx over dy
    backward(layer, shared)
    np.testing.assert_allclose(shared.outputs[0], plain.outputs[0], rtol=1e-12)
    np.testing.assert_allclose(shared.grad_inputs[0], plain.grad_inputs[0], rtol=1e-10, atol=1e-12)
    for name in plain.gradients:
        np.testing.assert_allclose(
            shared.gradients[name], plain.gradients[name], rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize(("make", "shape"), NORMS)
def test_normalization_keeps_float32(make: object, shape: tuple[int, ...]) -> None:
    layer = make()  # type: ignore[operator]
    rng = np.random.default_rng(10)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    runs = []
    for dtype in (np.float64, np.float32):
        ctx = make_context(layer, [x.astype(dtype)], dtype=dtype, seed=3)
        layer.forward(ctx)
        ctx.grad_outputs, ctx.grad_inputs = [dy.astype(dtype)], [np.zeros(shape, dtype)]
        backward(layer, ctx)
        assert all(
            a.dtype == dtype for a in (*ctx.outputs, *ctx.grad_inputs, *ctx.weights.values())
        )
        runs.append(ctx)
    for a, b in zip(
        (*runs[0].outputs, *runs[0].grad_inputs), (*runs[1].outputs, *runs[1].grad_inputs)
    ):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_properties_accept_model_file_strings_and_round_trip() -> None:
    bn = L.BatchNormalization(
        epsilon="0.01", momentum="0.9", axis="1", gamma_initializer="Zeros", name="bn"
    )
    assert (bn.epsilon, bn.momentum, bn.axis, bn.gamma_initializer) == (0.01, 0.9, 1, "zeros")
    assert L.BatchNormalization(**bn.config()).config() == bn.config()
    ln = L.LayerNormalization(axis="1, 2", epsilon="1e-3", name="ln")
    assert ln.axis == (1, 2) and ln.epsilon == 1e-3
    assert L.LayerNormalization(**ln.config()).config() == ln.config()
    assert L.LayerNormalization(axis=3).axis == (3,)
    assert L.LAYER_TYPES["batch_normalization"] is L.BatchNormalization
    assert L.LAYER_TYPES["layer_normalization"] is L.LayerNormalization


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: L.BatchNormalization(epsilon="abc"), "epsilon"),
        (lambda: L.BatchNormalization(epsilon=0), "epsilon"),
        (lambda: L.BatchNormalization(momentum=1.5), "momentum"),
        (lambda: L.BatchNormalization(momentum="nan"), "momentum"),
        (lambda: L.BatchNormalization(axis="x"), "axis"),
        (lambda: L.BatchNormalization(axis=1.5), "axis"),
        (lambda: L.BatchNormalization(beta_initializer="bogus"), "beta_initializer"),
        (lambda: L.LayerNormalization(axis="1, y"), "axis"),
        (lambda: L.LayerNormalization(axis=[]), "axis"),
        (lambda: L.LayerNormalization(epsilon=-1), "epsilon"),
        (lambda: L.LayerNormalization(epsilon="inf"), "epsilon"),
    ],
)
def test_bad_properties_name_the_key(make: object, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        make()  # type: ignore[operator]
    assert err.value.key == key


@pytest.mark.parametrize(
    "layer",
    [
        L.BatchNormalization(axis=0, name="bn"),
        L.BatchNormalization(axis=4, name="bn"),
        L.LayerNormalization(axis=[1, 4], name="ln"),
        L.LayerNormalization(axis=0, name="ln"),
    ],
)
def test_axes_outside_the_input_are_shape_errors(layer: Layer) -> None:
    with pytest.raises(ShapeError, match=r"'(bn|ln)'.*\(2, 4, 2, 3\)"):
        layer.setup([(2, 4, 2, 3)])
