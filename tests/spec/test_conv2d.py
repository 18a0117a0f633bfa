"""Conv2D: backward against finite differences, padding rules, shapes, errors, config."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgetrain.errors import ConfigError, ShapeError
from edgetrain.layers.base import StepKind
from edgetrain.layers.conv1d import Conv1D
from edgetrain.layers import conv2d as conv2d_module
from edgetrain.layers.conv2d import Conv2D
from gradcheck import check_layer_gradients, make_context


def direct_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
                pads: tuple[int, int, int, int], dilation: tuple[int, int]) -> np.ndarray:
    """A deliberately naive convolution (loops over output pixels) as the oracle."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    f, _, kh, kw = w.shape
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    oh = (xp.shape[2] - eh) // stride[0] + 1
    ow = (xp.shape[3] - ew) // stride[1] + 1
    y = np.zeros((x.shape[0], f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r, c = i * stride[0], j * stride[1]
            patch = xp[:, :, r : r + eh : dilation[0], c : c + ew : dilation[1]]
            y[:, :, i, j] = np.einsum("nckl,fckl->nf", patch, w)
    if b is not None:
        y += b[None, :, None, None]
    return y


CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 5, 5), {"filters": 2, "kernel_size": 3}),
    ((2, 2, 6, 5), {"filters": 3, "kernel_size": (3, 2), "stride": 2, "padding": 1}),
    ((1, 3, 4, 4), {"filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"}),
    ((2, 2, 7, 7), {"filters": 2, "kernel_size": 3, "stride": 2, "padding": "valid"}),
    ((2, 2, 5, 6), {"filters": 2, "kernel_size": 2, "padding": "0,1,1,0"}),
    ((1, 2, 9, 9), {"filters": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}),
    ((2, 3, 6, 7), {"filters": 4, "kernel_size": 1, "stride": (2, 3)}),
    ((2, 2, 5, 5), {"filters": 3, "kernel_size": 2, "stride": 3, "bias": False}),
    ((3, 1, 4, 4), {"filters": 1, "kernel_size": "2,2", "stride": "1", "padding": "1,1"}),
]


@pytest.mark.parametrize(("shape", "props"), CASES)
def test_conv2d_backward_matches_finite_differences(shape: tuple[int, ...], props: dict[str, Any]) -> None:
    check_layer_gradients(Conv2D(name="conv", **props), [shape])


@pytest.mark.parametrize(("shape", "props"), CASES)
def test_conv2d_forward_matches_direct_convolution(shape: tuple[int, ...], props: dict[str, Any]) -> None:
    layer = Conv2D(name="conv", **props)
    x = np.random.default_rng(1).normal(size=shape)
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    window = layer.window(shape[2], shape[3])
    expected = direct_conv(x, ctx.weights["weight"], ctx.weights.get("bias"), layer.stride,
                           window.pads, layer.dilation)
    np.testing.assert_allclose(ctx.outputs[0], expected, rtol=1e-12, atol=1e-12)


def test_conv2d_float32_stays_float32() -> None:
    layer = Conv2D(filters=2, kernel_size=3, padding="same", name="conv")
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 5)).astype(np.float32)
    ctx = make_context(layer, [x], dtype=np.float32)
    layer.forward(ctx)
    expected = direct_conv(x.astype(np.float64), ctx.weights["weight"].astype(np.float64),
                           ctx.weights["bias"].astype(np.float64), (1, 1), (1, 1, 1, 1), (1, 1))
    assert ctx.outputs[0].dtype == np.float32
    np.testing.assert_allclose(ctx.outputs[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("padding", "size", "stride", "pads"),
    [
        ("same", 4, 2, (0, 1, 0, 1)),  # total 1: the extra cell goes bottom / right
        ("same", 4, 1, (1, 1, 1, 1)),
        ("same", 5, 2, (1, 1, 1, 1)),
        ("valid", 7, 2, (0, 0, 0, 0)),
        (2, 4, 1, (2, 2, 2, 2)),
        ((1, 2), 4, 1, (1, 1, 2, 2)),
        ("0,1,0,1", 4, 2, (0, 1, 0, 1)),
        ("3", 4, 1, (3, 3, 3, 3)),
    ],
)
def test_conv2d_padding_rules(padding: Any, size: int, stride: int, pads: tuple[int, ...]) -> None:
    layer = Conv2D(filters=1, kernel_size=3, stride=stride, padding=padding)
    assert layer.window(size, size).pads == pads


def test_conv2d_same_keeps_ceil_of_size_over_stride() -> None:
    for size in range(3, 10):
        for stride in (1, 2, 3):
            for dilation in (1, 2):
                layer = Conv2D(filters=1, kernel_size=3, stride=stride, dilation=dilation,
                               padding="same")
                out = layer.setup([(1, 1, size, size + 1)]).output_shapes[0]
                assert out[2:] == (-(-size // stride), -(-(size + 1) // stride))


def test_conv2d_declares_weights_and_short_lived_scratch() -> None:
    layer = Conv2D(filters=256, kernel_size=(3, 2), stride=2, padding=1, name="conv")
    setup = layer.setup([(8, 3, 9, 10)])
    assert setup.output_shapes == [(8, 256, 5, 6)]
    assert [(w.name, w.shape) for w in setup.weights] == [("weight", (256, 3, 3, 2)), ("bias", (256,))]
    # a 5x6 map: 128 columns need 5 samples (the weight matrix, 256 x 18, is large enough)
    assert layer.samples_per_gemm((8, 3, 9, 10)) == 5
    lifetimes = {s.name: (s.shape, s.used_in) for s in setup.scratch}
    assert lifetimes == {
        "im2col": ((18, 150), frozenset({StepKind.FORWARD})),
        "im2col_gradient": ((18, 150), frozenset({StepKind.CALC_GRADIENT})),
        "col2im": ((18, 150), frozenset({StepKind.CALC_DERIVATIVE})),
        "stage": ((256, 150), frozenset({StepKind.FORWARD})),
        "stage_gradient": ((256, 150), frozenset({StepKind.CALC_GRADIENT})),
        "stage_derivative": ((256, 150), frozenset({StepKind.CALC_DERIVATIVE})),
    }


def test_conv2d_with_a_small_weight_matrix_keeps_one_sample_per_gemm() -> None:
    layer = Conv2D(filters=4, kernel_size=(3, 2), stride=2, padding=1, name="conv")
    setup = layer.setup([(8, 3, 9, 10)])  # 4 x 18 weights: below BLOCKED_WEIGHTS
    assert layer.samples_per_gemm((8, 3, 9, 10)) == 1
    assert {s.name: s.shape for s in setup.scratch} == {
        "im2col": (18, 30), "im2col_gradient": (18, 30), "col2im": (18, 30)
    }


def test_conv2d_one_sample_per_gemm_on_large_maps_needs_no_stage() -> None:
    layer = Conv2D(filters=256, kernel_size=3, padding=1, name="conv")
    setup = layer.setup([(8, 3, 16, 16)])  # 256 output cells: one sample fills the GEMM
    assert layer.samples_per_gemm((8, 3, 16, 16)) == 1
    assert {s.name: s.shape for s in setup.scratch} == {
        "im2col": (27, 256), "im2col_gradient": (27, 256), "col2im": (27, 256)
    }


@pytest.mark.parametrize(
    ("batch", "out_map", "samples"),
    [(32, 1024, 1), (32, 128, 1), (32, 127, 2), (32, 64, 2), (32, 16, 8), (32, 4, 32),
     (5, 1, 5), (1, 4, 1)],
)
def test_samples_per_gemm_is_the_smallest_block_reaching_the_column_target(
    batch: int, out_map: int, samples: int
) -> None:
    assert conv2d_module.GEMM_COLUMNS == 128
    assert conv2d_module.samples_per_gemm(batch, out_map, 512 * 4608) == samples
    assert conv2d_module.samples_per_gemm(batch, out_map, 4095) == 1


def test_sample_blocks_cover_the_batch_with_a_short_last_block() -> None:
    assert conv2d_module.sample_blocks(7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert conv2d_module.sample_blocks(4, 4) == [(0, 4)]
    assert conv2d_module.sample_blocks(3, 1) == [(0, 1), (1, 1), (2, 1)]


# Column targets giving 1, 2 and 3 samples per GEMM on a 4x4 output map; a batch of 5
# leaves a short last block for 2 and 3.
BLOCK_TARGETS = [(16, 1), (32, 2), (48, 3)]
BLOCK_CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((5, 2, 4, 4), {"filters": 3, "kernel_size": 3, "padding": "same"}),
    ((5, 3, 9, 8), {"filters": 2, "kernel_size": (3, 2), "stride": 2, "padding": 1, "dilation": (1, 2)}),
    ((5, 2, 4, 4), {"filters": 3, "kernel_size": 1, "bias": False}),
]


@pytest.mark.parametrize(("target", "samples"), BLOCK_TARGETS)
@pytest.mark.parametrize(("shape", "props"), BLOCK_CASES)
def test_conv2d_blocks_of_samples_match_finite_differences_and_the_oracle(
    monkeypatch: pytest.MonkeyPatch, target: int, samples: int,
    shape: tuple[int, ...], props: dict[str, Any],
) -> None:
    monkeypatch.setattr(conv2d_module, "GEMM_COLUMNS", target)
    monkeypatch.setattr(conv2d_module, "BLOCKED_WEIGHTS", 1)
    layer = Conv2D(name="conv", **props)
    assert layer.samples_per_gemm(shape) == samples
    check_layer_gradients(layer, [shape])
    x = np.random.default_rng(2).normal(size=shape)
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    window = layer.window(shape[2], shape[3])
    expected = direct_conv(x, ctx.weights["weight"], ctx.weights.get("bias"), layer.stride,
                           window.pads, layer.dilation)
    np.testing.assert_allclose(ctx.outputs[0], expected, rtol=1e-12, atol=1e-12)


def test_conv2d_results_do_not_depend_on_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (5, 3, 6, 6)
    x = np.random.default_rng(3).normal(size=shape)
    dy = np.random.default_rng(4).normal(size=(5, 4, 6, 6))
    results = []
    for target in (1, 72, 108, 180):  # 1, 2, 3 and 5 samples of 36 cells
        monkeypatch.setattr(conv2d_module, "GEMM_COLUMNS", target)
        monkeypatch.setattr(conv2d_module, "BLOCKED_WEIGHTS", 1)
        layer = Conv2D(filters=4, kernel_size=3, padding=1, name="conv")
        ctx = make_context(layer, [x])
        for name, value in ctx.weights.items():
            value[...] = np.random.default_rng(len(name)).normal(size=value.shape)
        layer.forward(ctx)
        ctx.grad_outputs = [dy]
        ctx.grad_inputs = [np.zeros_like(x)]
        layer.calc_gradient(ctx)
        layer.calc_derivative(ctx)
        results.append([ctx.outputs[0].copy(), ctx.grad_inputs[0].copy(),
                        *(g.copy() for g in ctx.gradients.values())])
    for other in results[1:]:
        for got, want in zip(other, results[0], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv2d_overwrites_stale_output_and_gradients() -> None:
    layer = Conv2D(filters=2, kernel_size=2, name="conv")
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 4))
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    first = ctx.outputs[0].copy()
    ctx.grad_outputs = [np.ones_like(first)]
    ctx.grad_inputs = [np.full_like(x, 7.0)]
    layer.calc_gradient(ctx)
    grads = {k: v.copy() for k, v in ctx.gradients.items()}
    layer.calc_derivative(ctx)
    derivative = ctx.grad_inputs[0].copy()
    ctx.outputs[0][...] = 99.0
    for g in ctx.gradients.values():
        g[...] = 5.0
    ctx.grad_inputs[0][...] = -3.0
    layer.forward(ctx)
    layer.calc_gradient(ctx)
    layer.calc_derivative(ctx)
    np.testing.assert_array_equal(ctx.outputs[0], first)
    for k, g in grads.items():
        np.testing.assert_array_equal(ctx.gradients[k], g)
    np.testing.assert_array_equal(ctx.grad_inputs[0], derivative)


def test_conv2d_config_round_trips() -> None:
    layer = Conv2D(filters="3", kernel_size="3,2", stride="2", padding="0,1,0,1",
                   dilation="1,2", bias="false", name="conv")
    assert layer.config()["padding"] == (0, 1, 0, 1)
    assert layer.config()["bias"] is False
    again = Conv2D(name="conv", **layer.config())
    assert again.config() == layer.config()
    assert Conv2D(filters=1, kernel_size=1, padding="1,2").config()["padding"] == (1, 2)
    assert Conv2D(filters=1, kernel_size=1, padding="SAME").config()["padding"] == "same"


@pytest.mark.parametrize(
    ("props", "key"),
    [
        ({"filters": 0, "kernel_size": 3}, "filters"),
        ({"filters": 2, "kernel_size": "3,x"}, "kernel_size"),
        ({"filters": 2, "kernel_size": 3, "stride": 0}, "stride"),
        ({"filters": 2, "kernel_size": 3, "padding": "full"}, "padding"),
        ({"filters": 2, "kernel_size": 3, "padding": "1,2,3"}, "padding"),
        ({"filters": 2, "kernel_size": 3, "padding": -1}, "padding"),
        ({"filters": 2, "kernel_size": 3, "dilation": "0"}, "dilation"),
        ({"filters": 2, "kernel_size": 3, "bias": "maybe"}, "bias"),
    ],
)
def test_conv2d_rejects_bad_properties(props: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Conv2D(**props)
    assert info.value.key == key


def test_conv2d_shape_errors_name_layer_and_shape() -> None:
    layer = Conv2D(filters=2, kernel_size=5, name="c1")
    with pytest.raises(ShapeError, match=r"conv2d layer 'c1'.*\(1, 3, 4, 4\)"):
        layer.setup([(1, 3, 4, 4)])
    with pytest.raises(ShapeError, match=r"conv2d layer 'c1'.*\(2, 16\)"):
        layer.setup([(2, 16)])


@pytest.mark.parametrize(
    "props",
    [
        {"filters": 2, "kernel_size": 3},
        {"filters": 3, "kernel_size": 2, "padding": "causal", "dilation": 2},
        {"filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"filters": 2, "kernel_size": "3", "stride": "2", "padding": "2,0", "bias": "false"},
    ],
)
def test_conv1d_backward_matches_finite_differences(props: dict[str, Any]) -> None:
    check_layer_gradients(Conv1D(name="conv1d", **props), [(2, 3, 1, 9)])


@pytest.mark.parametrize("target", [9, 18, 27])  # 1, 2, 3 samples of 9 cells; batch 5
def test_conv1d_blocks_of_samples_match_finite_differences(
    monkeypatch: pytest.MonkeyPatch, target: int
) -> None:
    monkeypatch.setattr(conv2d_module, "GEMM_COLUMNS", target)
    monkeypatch.setattr(conv2d_module, "BLOCKED_WEIGHTS", 1)
    layer = Conv1D(name="conv1d", filters=2, kernel_size=3, padding="causal", dilation=2)
    assert layer.samples_per_gemm((5, 3, 1, 9)) == target // 9
    check_layer_gradients(layer, [(5, 3, 1, 9)])


def test_conv1d_causal_output_sees_only_the_past() -> None:
    layer = Conv1D(filters=1, kernel_size=3, dilation=2, padding="causal", name="c")
    assert layer.window(1, 10).pads == (0, 0, 4, 0)
    x = np.zeros((1, 1, 1, 10))
    ctx = make_context(layer, [x])
    x[0, 0, 0, 6] = 1.0  # an impulse at t = 6 reaches outputs 6, 8 only
    layer.forward(ctx)
    response = ctx.outputs[0][0, 0, 0] - ctx.weights["bias"][0]
    assert np.flatnonzero(np.abs(response) > 1e-12).tolist() == [6, 8]


def test_conv1d_shapes_config_and_errors() -> None:
    layer = Conv1D(filters=4, kernel_size=3, stride=2, padding="same", name="c")
    setup = layer.setup([(2, 3, 1, 9)])
    assert setup.output_shapes == [(2, 4, 1, 5)]
    assert [w.shape for w in setup.weights] == [(4, 3, 1, 3), (4,)]
    assert layer.config()["kernel_size"] == 3 and layer.config()["padding"] == "same"
    assert Conv1D(**layer.config()).config() == layer.config()
    assert Conv1D(filters=1, kernel_size=2, padding="1,2").config()["padding"] == (1, 2)
    assert Conv1D(filters=1, kernel_size=2, padding=1).config()["padding"] == 1
    with pytest.raises(ShapeError, match=r"conv1d layer 'c'.*height 1.*\(2, 3, 2, 9\)"):
        layer.setup([(2, 3, 2, 9)])
    with pytest.raises(ConfigError) as info:
        Conv1D(filters=1, kernel_size=2, padding="0,1,0,1")
    assert info.value.key == "padding"
    with pytest.raises(ConfigError) as info:
        Conv1D(filters=1, kernel_size="2,2")
    assert info.value.key == "kernel_size"


def test_the_conformance_cases_cover_a_short_last_block() -> None:
    """tests/conformance/cases.py runs these through both backends; they must block."""
    conv = Conv2D(filters=64, kernel_size=3, padding=1, name="c")
    assert conv.samples_per_gemm((5, 8, 6, 6)) == 4
    conv1d = Conv1D(filters=64, kernel_size=3, padding="same", name="c")
    assert conv1d.samples_per_gemm((5, 24, 1, 40)) == 4
