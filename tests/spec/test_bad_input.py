"""Bad input gets one clear error before any training starts, never a numpy traceback.

Each case checks the error class, that the message says what is wrong, and that the model
was not touched (no iteration ran, weights unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgetrain import ConfigError, DataError, Model, SaveError, ShapeError
from edgetrain import layers as L
from edgetrain.datasets import GeneratorDataset, RawFileDataset, write_raw_file
from edgetrain.optimizers import SGD
from edgetrain.weights_io import check_save_path


def _classifier() -> Model:
    model = Model(
        [L.Input(shape=(4,), name="x"), L.FullyConnected(unit=3, activation="softmax", name="fc")],
        "cross",
    )
    model.compile(SGD(0.1), batch_size=2)
    return model


def _good() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])


def _refused(model: Model, error: type[Exception], match: str, train: Callable[[], object]) -> None:
    before = model.get_weights()
    with pytest.raises(error, match=match) as info:
        train()
    assert model.iteration == 0
    for name, value in before.items():
        np.testing.assert_array_equal(model.get_weights()[name], value)
    assert "numpy" not in type(info.value).__module__


def test_labels_of_the_wrong_size() -> None:
    model, (x, _) = _classifier(), _good()
    onehot_of_four = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]
    _refused(model, DataError, r"labels of shape \(6, 4\) do not fit the model output \(3\)",
             lambda: model.fit(x, onehot_of_four))


def test_label_count_differs_from_sample_count() -> None:
    model, (x, y) = _classifier(), _good()
    _refused(model, DataError, "different numbers of samples: \\[6\\] inputs, 5 labels",
             lambda: model.fit(x, y[:5]))


@pytest.mark.parametrize("bad", [3, -1])
def test_class_ids_out_of_range(bad: int) -> None:
    model, (x, y) = _classifier(), _good()
    y = y.copy()
    y[2] = bad
    _refused(model, DataError, r"class ids must be in \[0, 2\]", lambda: model.fit(x, y))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_inputs(value: float) -> None:
    model, (x, y) = _classifier(), _good()
    x = x.copy()
    x[4, 1] = value
    _refused(model, DataError, r"input 'x' contains 1 NaN or infinite", lambda: model.fit(x, y))


def test_nan_labels() -> None:
    model = Model([L.Input(shape=(4,), name="x"), L.FullyConnected(unit=3, name="fc")], "mse")
    model.compile(SGD(0.1), batch_size=2)
    x, _ = _good()
    y = np.zeros((6, 3), np.float32)
    y[0, 0] = np.nan
    _refused(model, DataError, "labels must be finite", lambda: model.fit(x, y))


def test_nan_in_a_lazy_dataset_is_found_before_training(tmp_path: Path) -> None:
    model, (x, y) = _classifier(), _good()
    x = x.copy()
    x[5, 0] = np.nan
    write_raw_file(tmp_path / "nan.dat", x, np.eye(3, dtype=np.float32)[y])
    data = RawFileDataset(tmp_path / "nan.dat", [(4,)], (3,))
    _refused(model, DataError, r"sample 5: input 'x' contains 1 NaN", lambda: model.fit(data))


def test_empty_data(tmp_path: Path) -> None:
    model = _classifier()
    _refused(model, DataError, "empty", lambda: model.fit(np.zeros((0, 4), np.float32), np.zeros(0, int)))
    _refused(model, DataError, "empty", lambda: model.fit(GeneratorDataset(lambda i: (np.zeros(4), 0), 0)))
    (tmp_path / "empty.dat").write_bytes(b"")
    _refused(model, DataError, r"empty\.dat is empty",
             lambda: model.fit(RawFileDataset(tmp_path / "empty.dat", [(4,)], (3,))))


def test_fewer_samples_than_one_batch() -> None:
    model, (x, y) = _classifier(), _good()
    _refused(model, DataError, "fewer than one batch of 2", lambda: model.fit(x[:1], y[:1]))


def test_inputs_of_the_wrong_shape_or_type() -> None:
    model, (x, y) = _classifier(), _good()
    _refused(model, DataError, r"input 'x' expects samples of shape \(4\), got samples of shape \(2, 2\)",
             lambda: model.fit(x.reshape(6, 2, 2), y))
    _refused(model, DataError, "must be numeric", lambda: model.fit(np.full((6, 4), "a"), y))


def test_generator_giving_wrong_shapes_is_found_before_training() -> None:
    model = _classifier()
    data = GeneratorDataset(lambda i: (np.zeros(5, np.float32), 0), 4)
    _refused(model, DataError, r"sample 0: input 'x' expects samples of shape \(4\), got samples of shape \(5\)",
             lambda: model.fit(data))


def test_raw_file_not_matching_the_model(tmp_path: Path) -> None:
    _, y = _good()
    write_raw_file(tmp_path / "five.dat", np.zeros((6, 5), np.float32), np.eye(3, dtype=np.float32)[y])
    with pytest.raises(DataError, match=r"five\.dat has 192 bytes, not a multiple of the 28-byte sample "
                                          r"\(input \(4\) \+ label \(3\) float32 values\)"):
        RawFileDataset(tmp_path / "five.dat", [(4,)], (3,))


def test_unwritable_save_path(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SaveError, match=r"cannot save weights to .*a_file/w\.bin"):
        check_save_path(tmp_path / "a_file" / "w.bin")


def test_bad_training_settings() -> None:
    model, (x, y) = _classifier(), _good()
    _refused(model, ConfigError, "epochs must be positive", lambda: model.fit(x, y, epochs=0))
    _refused(model, ConfigError, r"validation_split must be in \[0, 1\)",
             lambda: model.fit(x, y, validation_split=1.5))


def test_layer_shape_mismatch_names_both_layers_and_shapes() -> None:
    model = Model(
        [
            L.Input(shape=(3,), name="left"),
            L.Input(shape=(4,), name="right"),
            L.Addition(input_layers="left,right", name="sum"),
        ]
    )
    with pytest.raises(ShapeError) as info:
        model.compile(batch_size=2)
    message = str(info.value)
    for part in ("'sum'", "'left' gives (2, 3)", "'right' gives (2, 4)"):
        assert part in message


def test_fully_connected_into_conv_names_both_layers() -> None:
    conv2d = pytest.importorskip("edgetrain.layers.conv2d")
    model = Model(
        [L.Input(shape=(3,), name="x"), L.FullyConnected(unit=5, name="fc"),
         conv2d.Conv2D(filters=2, kernel_size=3, name="conv")]
    )
    with pytest.raises(ShapeError, match=r"conv2d layer 'conv': .*rank 4.*'fc' gives \(2, 5\)"):
        model.compile(batch_size=2)


def test_inputs_with_different_sample_counts_are_refused() -> None:
    from edgetrain.data import check_inputs

    with pytest.raises(DataError, match=r"different numbers of samples: \{'a': 3, 'b': 2\}"):
        check_inputs([np.zeros((3, 2)), np.zeros((2, 2))], [(2,), (2,)], ["a", "b"])
