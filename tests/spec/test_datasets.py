"""Named data, NNTrainer raw files, generator datasets, splits and the seeded loader."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetrain import DataError, Model
from edgetrain import layers as L
from edgetrain.data import CHECK_CHUNK_BYTES, DataLoader, check_dataset, split_dataset
from edgetrain.datasets import (
    GeneratorDataset,
    RawFileDataset,
    load_digits,
    load_named,
    write_raw_file,
)
from edgetrain.optimizers import SGD


def _samples(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 3)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=n)]
    return x, y


def test_digits_are_scaled_images_with_ten_classes() -> None:
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert load_named("digits")[0].shape == x.shape


def test_unknown_named_dataset_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown data set 'mnist'.*'digits'"):
        load_named("mnist")


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"edgetrain\[examples\]"):
        load_digits()


def test_raw_file_layout_is_inputs_then_labels_per_sample(tmp_path: Path) -> None:
    """Sample i starts at byte i * (C*H*W + classes) * 4: inputs, then the one-hot label,
    little-endian float32 (NNTrainer's RawFileDataProducer)."""
    x, y = _samples(5)
    path = tmp_path / "train.dat"
    write_raw_file(path, x, y)
    raw = np.fromfile(path, dtype="<f4").reshape(5, 6 + 4)
    np.testing.assert_array_equal(raw[:, :6], x.reshape(5, 6))
    np.testing.assert_array_equal(raw[:, 6:], y)
    data = RawFileDataset(path, [(2, 3)], (4,))
    assert len(data) == 5
    inputs, labels = data.take(np.array([3, 1]))
    np.testing.assert_array_equal(inputs[0], x[[3, 1]])
    np.testing.assert_array_equal(labels, y[[3, 1]])


def test_raw_file_reads_any_order_and_repeats(tmp_path: Path) -> None:
    x, y = _samples(9)
    write_raw_file(tmp_path / "nine.dat", x, y)
    data = RawFileDataset(tmp_path / "nine.dat", [(2, 3)], (4,))
    for order in ([8, 0, 4, 5, 6, 1], [2, 2, 7, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8], []):
        inputs, labels = data.take(np.array(order, dtype=np.int64))
        np.testing.assert_array_equal(inputs[0], x[order])
        np.testing.assert_array_equal(labels, y[order])


def test_raw_file_refuses_bad_indices_and_a_file_that_shrank(tmp_path: Path) -> None:
    x, y = _samples(4)
    write_raw_file(tmp_path / "four.dat", x, y)
    data = RawFileDataset(tmp_path / "four.dat", [(2, 3)], (4,))
    with pytest.raises(DataError, match=r"sample indices must be in \[0, 4\)"):
        data.take(np.array([4]))
    with pytest.raises(DataError, match=r"sample indices must be in \[0, 4\)"):
        data.take(np.array([-1]))
    os.truncate(tmp_path / "four.dat", 80)
    with pytest.raises(DataError, match="became shorter"):
        data.take(np.array([3]))


def test_raw_file_with_two_inputs(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = -np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1]]
    write_raw_file(tmp_path / "two.dat", [a, b], y)
    inputs, labels = RawFileDataset(tmp_path / "two.dat", [(4,), (2,)], (2,)).take(np.arange(3))
    np.testing.assert_array_equal(inputs[0], a)
    np.testing.assert_array_equal(inputs[1], b)
    np.testing.assert_array_equal(labels, y)


def test_raw_file_of_the_wrong_size_names_the_file_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "broken.dat"
    x, y = _samples(3)
    write_raw_file(path, x, y)
    with open(path, "ab") as f:
        f.write(b"\0\0\0\0")
    with pytest.raises(DataError, match=r"broken\.dat has 124 bytes, not a multiple of the 40-byte sample"):
        RawFileDataset(path, [(2, 3)], (4,))


def test_raw_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot read data file .*nope\.dat"):
        RawFileDataset(tmp_path / "nope.dat", [(2, 3)], (4,))
    (tmp_path / "empty.dat").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.dat is empty"):
        RawFileDataset(tmp_path / "empty.dat", [(2, 3)], (4,))


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from /proc")
def test_reading_a_raw_file_keeps_one_batch_resident_not_the_file(tmp_path: Path) -> None:
    """Every sample of a 48 MiB file is read (a data check, then an epoch of batches);
    the process's resident memory must not grow by the file's size."""
    n, features = 3072, 4096 - 10
    with open(tmp_path / "big.dat", "wb") as f:
        for start in range(0, n, 512):
            rows = np.full((512, features + 10), start, dtype="<f4")
            f.write(rows.tobytes())
    data = RawFileDataset(tmp_path / "big.dat", [(features,)], (10,))
    before = _resident_bytes()
    checked = check_dataset(data, [(features,)], ["x"], (10,), classes=False, dtype=np.float32)
    for inputs, _ in DataLoader(checked, 64, seed=0):
        assert inputs[0].shape == (64, features)
    grown = _resident_bytes() - before
    assert grown < 24 * 1024 * 1024, f"resident memory grew by {grown / 2**20:.1f} MiB"


def test_taken_rows_are_copies_not_views_of_the_file(tmp_path: Path) -> None:
    x, y = _samples(4)
    write_raw_file(tmp_path / "small.dat", x, y)
    inputs, labels = RawFileDataset(tmp_path / "small.dat", [(2, 3)], (4,)).take(np.array([0, 2]))
    assert inputs[0].flags.writeable and labels.flags.writeable
    inputs[0][...] = 7
    np.testing.assert_array_equal(RawFileDataset(tmp_path / "small.dat", [(2, 3)], (4,)).take(np.array([0]))[0][0], x[:1])


def test_generator_dataset_stacks_samples_on_demand() -> None:
    calls: list[int] = []

    def sample(i: int) -> tuple[np.ndarray, int]:
        calls.append(i)
        return np.full((2, 3), i, dtype=np.float32), i % 4

    data = GeneratorDataset(sample, 10)
    inputs, labels = data.take(np.array([7, 2]))
    assert calls == [7, 2]
    assert inputs[0].shape == (2, 2, 3) and inputs[0][0, 0, 0] == 7
    np.testing.assert_array_equal(labels, [3, 2])
    with pytest.raises(DataError, match="outside the data set of 10"):
        data.take(np.array([10]))


def test_generator_of_ragged_samples_is_refused() -> None:
    data = GeneratorDataset(lambda i: (np.zeros(i + 1), 0), 3)
    with pytest.raises(DataError, match="different shapes"):
        data.take(np.arange(3))


def _model() -> Model:
    model = Model([L.Input(shape=(6,), name="x"), L.FullyConnected(unit=4, name="fc")], "mse")
    model.compile(SGD(0.01), batch_size=4)
    return model


def test_check_dataset_turns_class_ids_into_one_hot_labels() -> None:
    data = GeneratorDataset(lambda i: (np.zeros((2, 3), np.float32), i % 4), 6)
    checked = check_dataset(data, [(2, 3)], ["x"], (4,), classes=True, dtype=np.float32)
    _, labels = checked.take(np.arange(6))
    np.testing.assert_array_equal(labels, np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]])


@pytest.mark.parametrize("chunk", [None, 1000, 1])
def test_check_dataset_names_the_first_bad_sample(chunk: int | None) -> None:
    def sample(i: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((2, 3), np.float32)
        if i in (5000, 5100):
            x[0, 0] = np.nan
        return x, np.zeros(4, np.float32)

    with pytest.raises(DataError, match=r"^sample 5000: input 'x' contains 1 NaN"):
        check_dataset(
            GeneratorDataset(sample, 6000), [(2, 3)], ["x"], (4,), classes=False, dtype=np.float32, chunk=chunk
        )


def test_check_dataset_reads_bounded_chunks() -> None:
    sizes: list[int] = []

    def sample(i: int) -> tuple[np.ndarray, int]:
        return np.zeros((64, 64), np.float32), 0

    class Counting(GeneratorDataset):
        def take(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
            sizes.append(len(indices))
            return super().take(indices)

    check_dataset(Counting(sample, 2500), [(64, 64)], ["x"], (4,), classes=True, dtype=np.float32)
    per_sample = (64 * 64 + 4) * 4
    chunk = CHECK_CHUNK_BYTES // per_sample
    assert sizes == [chunk] * (2500 // chunk) + [2500 % chunk]


def test_fit_on_a_raw_file_matches_fit_on_the_same_arrays(tmp_path: Path) -> None:
    x, y = _samples(16, seed=2)
    x = x.reshape(16, 6)
    write_raw_file(tmp_path / "train.dat", x, y)
    by_file, by_array = _model(), _model()
    h_file = by_file.fit(RawFileDataset.for_model(tmp_path / "train.dat", by_file), epochs=2)
    h_array = by_array.fit(x, y, epochs=2)
    np.testing.assert_allclose(h_file.loss, h_array.loss, rtol=1e-6)
    for name, value in by_file.get_weights().items():
        np.testing.assert_allclose(value, by_array.get_weights()[name], rtol=1e-6)


def test_split_holds_out_a_seeded_fraction() -> None:
    data = GeneratorDataset(lambda i: (np.full(1, i, np.float32), 0), 100)
    train, valid = split_dataset(data, 0.2, seed=1)
    assert (len(train), len(valid)) == (80, 20)
    seen_train = train.take(np.arange(80))[0][0].ravel()
    seen_valid = valid.take(np.arange(20))[0][0].ravel()
    assert sorted(np.concatenate([seen_train, seen_valid]).tolist()) == list(range(100))
    again = split_dataset(data, 0.2, seed=1)[1].take(np.arange(20))[0][0].ravel()
    np.testing.assert_array_equal(again, seen_valid)
    with pytest.raises(DataError, match="leaves 0 for training"):
        split_dataset(GeneratorDataset(lambda i: (np.zeros(1), 0), 1), 0.9, seed=0)


def test_loader_is_seeded_shuffled_and_drops_the_last_partial_batch() -> None:
    data = GeneratorDataset(lambda i: (np.full(1, i, np.float32), 0), 10)
    first = [b[0][0].ravel().tolist() for b in DataLoader(data, 4, seed=3)]
    again = [b[0][0].ravel().tolist() for b in DataLoader(data, 4, seed=3)]
    assert first == again and len(first) == 2
    assert first != [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len({value for batch in first for value in batch}) == 8
