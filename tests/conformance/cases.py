"""The conformance table: every layer type, loss and optimizer the Rust core runs, and
the example models, each as a small model both backends train (``spec/core-program.md``).

A case is a builder of ``(layers, loss, input shape, optimizer)``; tolerances are per op
in ``TOLERANCE`` (relative to the largest magnitude of the reference tensor) with the
reason next to each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.optimizers import SGD, Adam, AdamW, Optimizer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: max |rust - python| / max |python| allowed for a tensor written by a step of this op
TOLERANCE: dict[str, float] = {
    # GEMM: faer's blocked sums vs numpy's BLAS, both f32, differ in summation order
    "fully_connected": 2e-5,
    "conv2d": 2e-5,
    "conv1d": 2e-5,
    # reductions in f64 in the core vs numpy's pairwise f32 sums
    "batch_normalization": 2e-5,
    "layer_normalization": 2e-5,
    "cross_entropy": 2e-5,
    "mse": 2e-5,
    "cross_entropy_sigmoid": 2e-5,
    # libm exp / tanh / erf vs numpy's: a few ulp
    "activation": 2e-6,
    # pure data movement or one rounding per element: identical up to an ulp
    "pooling2d": 1e-6,
    "dropout": 1e-6,
    "addition": 1e-6,
    "multiout": 1e-6,
    "concat": 0.0,
    "split": 0.0,
    "flatten": 0.0,
    "reshape": 0.0,
    "input": 0.0,
    "embedding": 0.0,  # row copies; the gradient sums in numpy's add.at order
}
#: the optimizer steps follow the spec's f32 operation order (rust/core/README.md)
APPLY_TOLERANCE = 1e-6
#: weights after several whole training steps: every op's rounding, compounded
TRAINED_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Case:
    """One model of the table; ``batch`` samples per step."""

    build: Callable[[], Model]
    optimizer: Callable[[], Optimizer]
    batch: int = 3
    #: weights whose true gradient is zero (a bias right before a normalization over the
    #: axes it is constant on): their gradient is rounding noise, which Adam scales up to
    #: full-size steps in arbitrary directions, so after training they are only checked
    #: to be finite (each step's gradient is still compared in the step-by-step test)
    noise_weights: tuple[str, ...] = ()
    #: the input holds ids in ``[0, ids)`` (an embedding's input) instead of normal data
    ids: int | None = None
    #: compiled with ``recompute=True`` (``spec/recompute.md``)
    recompute: bool = False
    #: weights and predictions after three whole steps, relative (see TRAINED_TOLERANCE)
    trained_tolerance: float = TRAINED_TOLERANCE
    #: also compared step by step (large models only train: copying their arena before
    #: every step would dominate the suite's time)
    steps: bool = True


def _model(layers: list[L.Layer], loss: str) -> Callable[[], Model]:
    return lambda: Model(layers, loss)


def _fc(activation: str, loss: str = "mse") -> Callable[[], Model]:
    return lambda: Model(
        [
            L.Input(shape=(5,), name="x"),
            L.FullyConnected(unit=6, name="fc1", activation=activation),
            L.FullyConnected(unit=3, name="fc2", bias=False),
        ],
        loss,
    )


def _image(*middle: L.Layer, shape: tuple[int, ...] = (2, 7, 7), loss: str = "cross_entropy") -> Callable[[], Model]:
    def build() -> Model:
        return Model(
            [
                L.Input(shape=shape, name="x"),
                *middle,
                L.Flatten(name="flat"),
                L.FullyConnected(unit=4, name="head", activation="softmax"),
            ],
            loss,
        )

    return build


def _ini(name: str) -> Callable[[], Model]:
    return lambda: Model.from_ini(EXAMPLES / f"{name}.ini")


def _fresh(build: Callable[[], list[L.Layer]], loss: str) -> Callable[[], Model]:
    return lambda: Model(build(), loss)


CASES: dict[str, Case] = {
    **{
        f"activation_{kind}": Case(_fc(kind), lambda: SGD(0.1))
        for kind in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu", "tanh_gelu", "swish")
    },
    "loss_cross_entropy": Case(_fc("tanh", "cross_entropy"), lambda: SGD(0.1, momentum=0.9)),
    "loss_cross_entropy_sigmoid": Case(_fc("relu", "cross_entropy_sigmoid"), lambda: Adam(0.01)),
    "optimizer_adamw_penalties": Case(
        _fresh(
            lambda: [
                L.Input(shape=(4,), name="x"),
                L.FullyConnected(
                    unit=5,
                    name="fc1",
                    activation="relu",
                    weight_regularizer="l2norm",
                    weight_regularizer_constant=0.1,
                    weight_decay=0.01,
                    bias_decay=0.02,
                ),
                L.FullyConnected(unit=2, name="fc2", weight_decay=0.05),
            ],
            "mse",
        ),
        lambda: AdamW(0.01, weight_decay=0.01),
    ),
    "optimizer_sgd_l2": Case(
        _fresh(
            lambda: [
                L.Input(shape=(4,), name="x"),
                L.FullyConnected(unit=3, name="fc", weight_regularizer="l2norm", bias_decay=0.1),
            ],
            "mse",
        ),
        lambda: SGD(0.1, momentum=0.5),
    ),
    "conv2d_same_bias": Case(_image(L.Conv2D(filters=3, kernel_size=3, padding="same", name="c")), lambda: SGD(0.05)),
    "conv2d_stride_dilation": Case(
        _image(L.Conv2D(filters=3, kernel_size=(2, 3), stride=2, dilation=(1, 2), padding=(1, 0, 2, 1), bias=False, name="c")),
        lambda: Adam(0.01),
    ),
    # weight matrices of 64 x 72: blocks of 4 samples (36 and 40 output cells per sample,
    # spec/layers/conv2d.md), so a batch of 5 leaves a last block of one sample
    "conv2d_sample_blocks": Case(
        _image(L.Conv2D(filters=64, kernel_size=3, padding=1, name="c"), shape=(8, 6, 6)),
        lambda: SGD(0.05, momentum=0.9),
        batch=5,
    ),
    "conv1d_sample_blocks": Case(
        _image(L.Conv1D(filters=64, kernel_size=3, stride=1, padding="same", bias=False, name="c"), shape=(24, 1, 40)),
        lambda: SGD(0.05),
        batch=5,
    ),
    "conv1d_causal": Case(
        _image(L.Conv1D(filters=3, kernel_size=3, padding="causal", dilation=2, name="c"), shape=(2, 1, 9)),
        lambda: SGD(0.05),
    ),
    "pool_max": Case(_image(L.Pooling2D("max", pool_size=3, stride=2, padding=1, name="p")), lambda: SGD(0.05)),
    "pool_average": Case(_image(L.Pooling2D("average", pool_size=2, stride=1, padding="same", name="p")), lambda: SGD(0.05)),
    "pool_global_max": Case(_image(L.Conv2D(filters=3, kernel_size=1, name="c"), L.Pooling2D("global_max", name="p")), lambda: SGD(0.05)),
    "pool_global_average": Case(_image(L.Conv2D(filters=3, kernel_size=1, name="c"), L.Pooling2D("global_average", name="p")), lambda: SGD(0.05)),
    "batch_norm_conv": Case(
        _image(L.Conv2D(filters=3, kernel_size=3, name="c"), L.BatchNormalization(name="bn", momentum=0.8, activation="relu")),
        lambda: SGD(0.05, momentum=0.9),
        batch=4,
    ),
    "batch_norm_features": Case(
        _fresh(lambda: [L.Input(shape=(6,), name="x"), L.BatchNormalization(name="bn", epsilon=1e-3), L.FullyConnected(unit=2, name="fc")], "mse"),
        lambda: Adam(0.01),
        batch=5,
    ),
    "layer_norm_axes": Case(
        _image(L.Conv2D(filters=3, kernel_size=3, name="c"), L.LayerNormalization(name="ln", axis=[2, 3])),
        lambda: Adam(0.01),
        noise_weights=("c:bias",),
    ),
    "dropout": Case(
        _fresh(lambda: [L.Input(shape=(8,), name="x"), L.Dropout(dropout_rate=0.4, name="d"), L.FullyConnected(unit=3, name="fc")], "mse"),
        lambda: SGD(0.1),
    ),
    "reshape_split_concat": Case(
        _fresh(
            lambda: [
                L.Input(shape=(12,), name="x"),
                L.FullyConnected(unit=12, name="fc"),
                L.Reshape(target_shape=(3, 2, 2), name="r"),
                L.Split(axis=1, split_number=3, name="s"),
                L.Concat(axis=3, name="cat", input_layers="s(2), s(0)"),
                L.Flatten(name="flat"),
                L.FullyConnected(unit=2, name="out"),
            ],
            "mse",
        ),
        lambda: SGD(0.1),
    ),
    "embedding": Case(
        _fresh(
            lambda: [
                L.Input(shape=(6,), name="ids"),
                L.Embedding(in_dim=5, out_dim=3, name="emb"),
                L.Flatten(name="flat"),
                L.FullyConnected(unit=2, name="fc"),
            ],
            "mse",
        ),
        lambda: Adam(0.01),
        ids=5,
    ),
    "frozen_layer": Case(
        _fresh(
            lambda: [
                L.Input(shape=(5,), name="x"),
                L.FullyConnected(unit=4, name="fc1", activation="relu"),
                L.FullyConnected(unit=4, name="fc2", trainable=False),
                L.FullyConnected(unit=2, name="fc3"),
            ],
            "mse",
        ),
        lambda: Adam(0.01),
    ),
    "vgg_block": Case(
        _image(
            L.Conv2D(filters=4, kernel_size=3, padding=1, name="c1", activation="relu"),
            L.Conv2D(filters=4, kernel_size=3, padding=1, name="c2", activation="relu"),
            L.Pooling2D("max", pool_size=2, stride=2, name="p"),
            shape=(3, 8, 8),
        ),
        lambda: SGD(0.05, momentum=0.9),
        batch=2,
    ),
    "resnet_block": Case(
        _fresh(
            lambda: [
                L.Input(shape=(3, 6, 6), name="x"),
                L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="stem"),
                L.BatchNormalization(name="stem_bn", activation="relu"),
                L.Conv2D(filters=4, kernel_size=3, padding=1, bias=False, name="a"),
                L.BatchNormalization(name="a_bn", activation="relu"),
                L.Conv2D(filters=4, kernel_size=3, stride=1, padding=1, bias=False, name="b"),
                L.BatchNormalization(name="b_bn"),
                L.Addition(name="sum", input_layers="b_bn, stem_bn"),
                L.Activation("relu", name="sum_relu"),
                L.Pooling2D(pooling="global_average", name="gap"),
                L.Flatten(name="flat"),
                L.FullyConnected(unit=3, activation="softmax", name="out"),
            ],
            "cross_entropy",
        ),
        lambda: SGD(0.05, momentum=0.9),
        batch=2,
    ),
    "recompute_digits_cnn": Case(_ini("digits_cnn"), lambda: SGD(0.05, momentum=0.9), batch=4, recompute=True),
    "recompute_layer_norm": Case(
        _fresh(
            lambda: [
                L.Input(shape=(6,), name="x"),
                L.FullyConnected(unit=6, name="fc1"),
                L.LayerNormalization(name="ln", activation="tanh"),
                L.FullyConnected(unit=3, name="fc2"),
            ],
            "mse",
        ),
        lambda: Adam(0.01),
        recompute=True,
    ),
    # every step of both conforms (checked while writing this table, 2 iterations); over
    # whole steps, their batch norms (13 and 21) at batch 2 amplify the per-op rounding
    # (~1e-6) to 1e-4 .. 6e-3 by the third step
    "example_vgg16": Case(
        _ini("vgg16"), lambda: SGD(0.01, momentum=0.9), batch=2, steps=False, trained_tolerance=2e-2
    ),
    "example_resnet18": Case(
        _ini("resnet18"), lambda: SGD(0.01, momentum=0.9), batch=2, steps=False, trained_tolerance=2e-2
    ),
    "example_mlp": Case(_ini("mlp"), lambda: SGD(0.01, momentum=0.9), batch=2),
    "example_lenet5": Case(_ini("lenet5"), lambda: SGD(0.01, momentum=0.9), batch=2),
    # the example file trains with Adam; here SGD, because Adam turns the zero gradient of
    # conv1's bias (batch norm follows) into full-size noise steps that then reach the
    # moving mean and the predictions (Adam itself is covered by the cases above)
    "example_digits_cnn": Case(_ini("digits_cnn"), lambda: SGD(0.05, momentum=0.9), batch=4),
}
