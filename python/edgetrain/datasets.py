"""Where training data comes from: named built-in data, NNTrainer raw files, generators.

All three implement the ``Dataset`` protocol of ``data.py`` (``len`` and
``take(indices)``). The raw file and the generator are read lazily, one batch at a time,
so a data set may be larger than memory. The formats are written out in ``spec/data.md``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .data import as_input_list
from .errors import DataError
from .tensors import Shape, format_shape

if TYPE_CHECKING:
    from .model import Model

Array = NDArray[Any]

#: NNTrainer's ``RawFileDataProducer::pixel_size``: every value is one float32
RAW_VALUE = np.dtype("<f4")


# -- named built-in data -----------------------------------------------------------------


def load_digits() -> tuple[Array, Array]:
    """scikit-learn's bundled handwritten digits (no download): 1797 images as float32
    ``(n, 1, 8, 8)`` scaled to [0, 1], and int64 class ids 0-9."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError(
            "the 'digits' data set comes from scikit-learn, which is not installed: "
            "pip install 'edgetrain[examples]'"
        ) from None
    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return images.reshape(len(images), 1, 8, 8), labels


#: name -> loader of ``(inputs, class ids)``; ``edgetrain train --data <name>`` reads this
NAMED_DATASETS: dict[str, Callable[[], tuple[Array, Array]]] = {"digits": load_digits}


def load_named(name: str) -> tuple[Array, Array]:
    """The built-in data set ``name`` as ``(inputs, labels)`` arrays."""
    loader = NAMED_DATASETS.get(name)
    if loader is None:
        raise DataError(f"unknown data set '{name}'; built-in ones are {sorted(NAMED_DATASETS)}")
    return loader()


# -- NNTrainer raw float files -----------------------------------------------------------


class RawFileDataset:
    """NNTrainer's raw data file, read lazily: samples back to back, each the float32
    values of every input (C*H*W each, in input order) then of every label.

    The file is never read whole: ``take`` reads just the rows asked for, one read per run
    of consecutive indices, straight into the batch array. (A memory map would be
    simpler, but the kernel maps whole page-cache folios on every fault, so a batch of 64
    random rows made the resident size grow by ~80 MiB; with reads memory holds the
    batch.) A file whose size is not a whole number of samples is refused, naming the
    file and both sizes.
    """

    def __init__(self, path: str | os.PathLike[str], input_shapes: Sequence[Shape], label_shape: Shape):
        self.path = Path(path)
        self.input_shapes = [tuple(int(d) for d in s) for s in input_shapes]
        self.label_shape = tuple(int(d) for d in label_shape)
        self.input_sizes = [int(np.prod(s)) for s in self.input_shapes]
        self.label_size = int(np.prod(self.label_shape))
        self.sample_values = sum(self.input_sizes) + self.label_size
        if not self.input_shapes or self.sample_values == 0:
            raise DataError(f"{self.path}: a raw data file needs inputs and labels of non-zero size")
        try:
            file_bytes = self.path.stat().st_size
        except OSError as err:
            raise DataError(f"cannot read data file {self.path}: {err.strerror or err}") from None
        if not self.path.is_file():
            raise DataError(f"data file {self.path} is not a regular file")
        self.sample_bytes = self.sample_values * RAW_VALUE.itemsize
        count, rest = divmod(file_bytes, self.sample_bytes)
        if rest:
            raise DataError(
                f"data file {self.path} has {file_bytes} bytes, not a multiple of the "
                f"{self.sample_bytes}-byte sample ({self._layout()} float32 values); "
                "the file does not match the model's input and output shapes"
            )
        if count == 0:
            raise DataError(f"data file {self.path} is empty: no samples to train on")
        self.count = count

    @classmethod
    def for_model(cls, path: str | os.PathLike[str], model: Model) -> RawFileDataset:
        """The file laid out for a compiled model: its inputs' shapes, then its output's."""
        inputs = [node.output_shapes[0][1:] for node in model.graph.input_nodes()]
        program = model.program
        return cls(path, inputs, program.tensors[program.output].shape[1:])

    def _layout(self) -> str:
        parts = [f"input {format_shape(s)}" for s in self.input_shapes]
        parts.append(f"label {format_shape(self.label_shape)}")
        return " + ".join(parts)

    def __len__(self) -> int:
        return self.count

    def read_rows(self, indices: Array) -> Array:
        """The raw ``(len(indices), values per sample)`` float32 rows, in the order asked."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= self.count):
            raise DataError(f"sample indices must be in [0, {self.count}) for {self.path}")
        if wanted.size == 0:
            return np.empty((0, self.sample_values), dtype=np.float32)
        in_order = bool(np.all(wanted[1:] >= wanted[:-1]))
        order = np.arange(len(wanted)) if in_order else np.argsort(wanted, kind="stable")
        ascending = wanted if in_order else wanted[order]
        rows = np.empty((len(wanted), self.sample_values), dtype=RAW_VALUE)
        runs = np.flatnonzero(np.diff(ascending) != 1) + 1
        try:
            with open(self.path, "rb", buffering=0) as handle:
                for first, stop in zip([0, *runs.tolist()], [*runs.tolist(), len(wanted)]):
                    handle.seek(int(ascending[first]) * self.sample_bytes)
                    self._read_into(handle, rows[first:stop].data.cast("B"))
        except OSError as err:
            raise DataError(f"cannot read data file {self.path}: {err.strerror or err}") from None
        if not in_order:
            unsorted = np.empty_like(rows)
            unsorted[order] = rows
            rows = unsorted
        return rows.astype(np.float32, copy=False)

    def _read_into(self, handle: io.FileIO, target: memoryview) -> None:
        done = 0
        while done < len(target):
            got = handle.readinto(target[done:])
            if not got:
                raise DataError(f"data file {self.path} became shorter while it was read")
            done += got

    def take(self, indices: Array) -> tuple[list[Array], Array]:
        rows = self.read_rows(indices)
        inputs: list[Array] = []
        start = 0
        for shape, size in zip(self.input_shapes, self.input_sizes):
            inputs.append(rows[:, start : start + size].reshape(len(rows), *shape))
            start += size
        labels = rows[:, start:].reshape(len(rows), *self.label_shape)
        return inputs, labels


def write_raw_file(
    path: str | os.PathLike[str], inputs: Array | Sequence[Array], labels: Array
) -> None:
    """Write samples in NNTrainer's raw layout (labels as given: one-hot floats for
    classification). The inverse of :class:`RawFileDataset`."""
    arrays = as_input_list(inputs)
    n = len(labels)
    if any(len(a) != n for a in arrays):
        raise DataError(f"inputs and labels have different numbers of samples: {[len(a) for a in arrays]}, {n}")
    columns = [np.asarray(a, dtype=RAW_VALUE).reshape(n, -1) for a in arrays]
    columns.append(np.asarray(labels, dtype=RAW_VALUE).reshape(n, -1))
    np.concatenate(columns, axis=1).tofile(path)


# -- generators ----------------------------------------------------------------------------


SampleFunction = Callable[[int], tuple[Array | Sequence[Array], Array]]


class GeneratorDataset:
    """Samples made on demand by ``sample(index) -> (inputs, label)`` for ``0 <= index <
    length``: decode a file, render, augment. Nothing is kept in memory beyond one batch.

    ``inputs`` is one array (single-input models) or one per input, without the batch axis;
    ``label`` is a class id or the output's per-sample values. The function must give the
    same sample for the same index: the data set is checked by reading it once before
    training, and the seeded loader decides the order.
    """

    def __init__(self, sample: SampleFunction, length: int) -> None:
        if isinstance(length, bool) or int(length) != length or length < 0:
            raise DataError(f"a generator data set needs a length >= 0, got {length!r}")
        self.sample = sample
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def take(self, indices: Array) -> tuple[list[Array], Array]:
        samples: list[list[Array]] = []
        labels: list[Array] = []
        for index in np.asarray(indices).tolist():
            if not 0 <= index < self.length:
                raise DataError(f"sample index {index} is outside the data set of {self.length}")
            inputs, label = self.sample(int(index))
            samples.append([np.asarray(a) for a in as_input_list(inputs)])
            labels.append(np.asarray(label))
        if not samples:
            raise DataError("no samples asked for")
        counts = {len(s) for s in samples}
        if len(counts) != 1:
            raise DataError(f"the generator gave different numbers of inputs per sample: {sorted(counts)}")
        try:
            stacked = [np.stack([s[i] for s in samples]) for i in range(len(samples[0]))]
            label_batch = np.stack(labels)
        except ValueError as err:
            raise DataError(f"the generator gave samples of different shapes: {err}") from None
        return stacked, label_batch

