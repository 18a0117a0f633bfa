"""Training data: checks made before any training starts, datasets and a seeded loader.

A dataset is anything with ``len()`` and ``take(indices) -> (inputs, labels)``, so data
that does not fit in memory (a generator, NNTrainer's raw float file) is read one batch
at a time. Labels reach the model as float arrays of the output's shape; integer class
ids are one-hot encoded here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .errors import DataError
from .tensors import Shape, format_shape

Array = NDArray[Any]


class Dataset(Protocol):
    """Random access to samples by index: ``take`` returns one array per model input
    (the sample axis first) and the labels."""

    def __len__(self) -> int: ...

    def take(self, indices: Array) -> tuple[list[Array], Array]: ...


class ArrayDataset:
    """In-memory arrays, checked once when made."""

    def __init__(self, inputs: Sequence[Array], labels: Array) -> None:
        self.inputs = list(inputs)
        self.labels = labels
        sizes = {len(a) for a in self.inputs} | {len(labels)}
        if len(sizes) != 1:
            raise DataError(
                f"inputs and labels have different numbers of samples: "
                f"{[len(a) for a in self.inputs]} inputs, {len(labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: Array) -> tuple[list[Array], Array]:
        return [a[indices] for a in self.inputs], self.labels[indices]


def as_input_list(x: Array | Sequence[Array]) -> list[Array]:
    """One array per model input: a bare array for single-input models, else a list."""
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(a, np.ndarray) for a in x):
        return list(x)
    return [np.asarray(x)]


def check_inputs(inputs: Sequence[Array], shapes: Sequence[Shape], names: Sequence[str]) -> None:
    """Refuse inputs of the wrong count, shape, type or with NaN/inf, before training."""
    if len(inputs) != len(shapes):
        raise DataError(f"the model has {len(shapes)} input(s) {list(names)}, got {len(inputs)} arrays")
    counts = {name: len(data) for data, name in zip(inputs, names)}
    if len(set(counts.values())) > 1:
        raise DataError(f"the inputs have different numbers of samples: {counts}")
    for data, shape, name in zip(inputs, shapes, names):
        if len(data) == 0:
            raise DataError(f"input '{name}' is empty: no samples to train on")
        if tuple(data.shape[1:]) != tuple(shape):
            raise DataError(
                f"input '{name}' expects samples of shape {format_shape(shape)}, "
                f"got samples of shape {format_shape(data.shape[1:])}"
            )
        if not np.issubdtype(data.dtype, np.number):
            raise DataError(f"input '{name}' must be numeric, got dtype {data.dtype}")
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            bad = int(np.count_nonzero(~np.isfinite(data)))
            raise DataError(f"input '{name}' contains {bad} NaN or infinite value(s)")


def prepare_labels(labels: Array, output_shape: Shape, *, classes: bool, dtype: Any) -> Array:
    """Labels as floats of the output's per-sample shape.

    For classification losses (``classes=True``) integer arrays of shape ``(n,)`` are class
    ids and are one-hot encoded over the output's last axis; ids out of range are refused.
    """
    labels = np.asarray(labels)
    if labels.ndim == 0 or len(labels) == 0:
        raise DataError("labels are empty: no samples to train on")
    n_classes = output_shape[-1]
    if classes and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= n_classes:
            raise DataError(
                f"class ids must be in [0, {n_classes - 1}] for an output of {n_classes} "
                f"classes, got ids from {low} to {high}"
            )
        flat_out = int(np.prod(output_shape))
        if flat_out != n_classes:
            raise DataError(
                f"class ids need an output of shape (classes,), the model gives "
                f"{format_shape(output_shape)}; give one-hot labels of that shape instead"
            )
        onehot = np.zeros((len(labels), *output_shape), dtype=dtype)
        onehot.reshape(len(labels), n_classes)[np.arange(len(labels)), labels] = 1
        return onehot
    if labels.shape[1:] != tuple(output_shape):
        if labels[0].size == int(np.prod(output_shape)):
            labels = labels.reshape(len(labels), *output_shape)
        else:
            raise DataError(
                f"labels of shape {format_shape(labels.shape)} do not fit the model output "
                f"{format_shape(output_shape)} per sample"
                + (" (or give integer class ids of shape (n,))" if classes else "")
            )
    if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)):
        raise DataError("labels must be finite numbers")
    return labels.astype(dtype, copy=False)


class DataLoader:
    """Shuffled (seeded) batches of a dataset. ``drop_last`` leaves out the last
    incomplete batch, as training does; evaluation keeps it."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch_size <= 0:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if len(dataset) == 0:
            raise DataError("the data set is empty: no samples to train on")
        if drop_last and len(dataset) < batch_size:
            raise DataError(
                f"the data set has {len(dataset)} samples, fewer than one batch of {batch_size}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[list[Array], Array]]:
        return self.epoch()

    def epoch(self, start: int = 0) -> Iterator[tuple[list[Array], Array]]:
        """One epoch's batches from batch ``start`` on. The epoch's order is drawn from
        ``rng`` when the first batch is asked for, whatever ``start`` is, so restoring
        ``rng`` to its state at the start of an epoch replays that epoch's order (a
        resumed checkpoint continues mid-epoch this way)."""
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, len(self)):
            yield self.dataset.take(order[b * self.batch_size : (b + 1) * self.batch_size])


class Subset:
    """The samples of ``dataset`` at ``indices``, in that order (a validation split of a
    dataset that is not in memory)."""

    def __init__(self, dataset: Dataset, indices: Array) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def take(self, indices: Array) -> tuple[list[Array], Array]:
        return self.dataset.take(self.indices[indices])


def split_dataset(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(training, validation): a seeded random ``fraction`` of the samples is held out."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"a validation split must be in (0, 1), got {fraction}")
    n = len(dataset)
    n_valid = round(n * fraction)
    if n_valid == 0 or n_valid == n:
        raise DataError(
            f"a validation split of {fraction} of {n} samples leaves "
            f"{n - n_valid} for training and {n_valid} for validation"
        )
    order = np.random.default_rng(seed).permutation(n)
    return Subset(dataset, np.sort(order[n_valid:])), Subset(dataset, np.sort(order[:n_valid]))


class CheckedDataset:
    """A dataset seen through the model: every batch is checked against the model's input
    shapes and its labels are made floats of the output's shape (class ids one-hot).

    :func:`check_dataset` makes one after reading every sample once, so problems surface
    before training starts; ``take`` keeps checking because lazy data may change.
    """

    def __init__(
        self,
        dataset: Dataset,
        input_shapes: Sequence[Shape],
        input_names: Sequence[str],
        output_shape: Shape,
        *,
        classes: bool,
        dtype: Any,
    ) -> None:
        self.dataset = dataset
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.input_names = list(input_names)
        self.output_shape = tuple(output_shape)
        self.classes = classes
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return len(self.dataset)

    def same_checks(self, other: CheckedDataset) -> bool:
        """Whether ``other`` checks for the same model (so a scan by one covers both)."""
        return (self.input_shapes, self.input_names, self.output_shape, self.classes, self.dtype) == (
            other.input_shapes, other.input_names, other.output_shape, other.classes, other.dtype
        )

    def take(self, indices: Array) -> tuple[list[Array], Array]:
        inputs, labels = self.dataset.take(indices)
        inputs = as_input_list(inputs)
        check_inputs(inputs, self.input_shapes, self.input_names)
        labels = prepare_labels(labels, self.output_shape, classes=self.classes, dtype=self.dtype)
        if len(labels) != len(inputs[0]):
            raise DataError(f"the data set gave {len(inputs[0])} inputs but {len(labels)} labels")
        return [a.astype(self.dtype, copy=False) for a in inputs], labels


#: how much data ``check_dataset`` reads at once
CHECK_CHUNK_BYTES = 4 * 1024 * 1024


def check_dataset(
    dataset: Dataset,
    input_shapes: Sequence[Shape],
    input_names: Sequence[str],
    output_shape: Shape,
    *,
    classes: bool,
    dtype: Any,
    chunk: int | None = None,
) -> CheckedDataset:
    """Read every sample once, ``chunk`` samples at a time (by default about
    ``CHECK_CHUNK_BYTES``, so memory stays bounded), and refuse the data set before training
    if any sample has the wrong shape, NaN/inf values, or labels that do not fit the
    output. The error names the first bad sample."""
    checked = CheckedDataset(
        dataset, input_shapes, input_names, output_shape, classes=classes, dtype=dtype
    )
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if isinstance(base, CheckedDataset) and base.same_checks(checked) and len(dataset) > 0:
        return checked
    n = len(dataset)
    if n == 0:
        raise DataError("the data set is empty: no samples to train on")
    if chunk is None:
        values = sum(int(np.prod(s)) for s in input_shapes) + int(np.prod(output_shape))
        chunk = max(1, CHECK_CHUNK_BYTES // (values * checked.dtype.itemsize))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        try:
            checked.take(np.arange(start, stop))
        except DataError as err:
            raise _first_bad_sample(checked, start, stop, err) from None
    return checked


def _first_bad_sample(data: CheckedDataset, start: int, stop: int, err: DataError) -> DataError:
    """The error of the first sample in ``[start, stop)`` that fails alone, naming it."""
    for index in range(start, stop):
        try:
            data.take(np.array([index]))
        except DataError as single:
            return DataError(f"sample {index}: {single}")
    return DataError(f"samples {start} to {stop - 1}: {err}")
