"""Weight files: NNTrainer's .bin layout, named .npz, atomic saves and checked loads."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgetrain import Model, ModelFileError, SaveError, StateError
from edgetrain import layers as L
from edgetrain.datasets import RawFileDataset
from edgetrain.optimizers import SGD
from edgetrain.weights_io import atomic_write, check_save_path, load_weights, save_weights


def _mlp(seed: int = 0, hidden: int = 5) -> Model:
    model = Model(
        [
            L.Input(shape=(3,), name="x"),
            L.FullyConnected(unit=hidden, activation="relu", name="fc1"),
            L.FullyConnected(unit=2, name="fc2"),
        ],
        "mse",
    )
    model.compile(SGD(0.1), batch_size=2, seed=seed)
    return model


def test_bin_is_float32_weights_in_layer_order(tmp_path: Path) -> None:
    model = _mlp()
    model.save(tmp_path / "w.bin")
    w = model.get_weights()
    expected = np.concatenate(
        [w[n].astype("<f4").ravel() for n in ("fc1:weight", "fc1:bias", "fc2:weight", "fc2:bias")]
    )
    raw = np.fromfile(tmp_path / "w.bin", dtype="<f4")
    np.testing.assert_array_equal(raw, expected)
    assert (tmp_path / "w.bin").stat().st_size == 4 * (3 * 5 + 5 + 5 * 2 + 2)


@pytest.mark.parametrize("name", ["w.bin", "w.npz", "weights.nntrainer"])
def test_save_then_load_restores_every_weight(tmp_path: Path, name: str) -> None:
    trained, fresh = _mlp(seed=1), _mlp(seed=2)
    trained.fit(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32), epochs=2)
    trained.save(tmp_path / name)
    fresh.load(tmp_path / name)
    for key, value in trained.get_weights().items():
        np.testing.assert_array_equal(fresh.get_weights()[key], value)
    x = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    np.testing.assert_array_equal(fresh.predict(x), trained.predict(x))


def test_npz_keeps_names(tmp_path: Path) -> None:
    _mlp().save(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as archive:
        assert sorted(archive.files) == ["fc1:bias", "fc1:weight", "fc2:bias", "fc2:weight"]


def test_bin_from_a_different_model_is_refused_with_sizes(tmp_path: Path) -> None:
    _mlp(hidden=6).save(tmp_path / "other.bin")
    model = _mlp(hidden=5)
    before = model.get_weights()
    with pytest.raises(ModelFileError, match=r"other\.bin: has 152 bytes but .* take 128 bytes"):
        model.load(tmp_path / "other.bin")
    for key, value in before.items():
        np.testing.assert_array_equal(model.get_weights()[key], value)


def test_bin_accepts_nntrainer_training_trailers(tmp_path: Path) -> None:
    """NNTrainer in training mode appends epoch and iteration (uint32 each), and for Adam
    the tag "adam" and the moment tensors before them; the weights come first."""
    model = _mlp(seed=3)
    model.save(tmp_path / "w.bin")
    weights = (tmp_path / "w.bin").read_bytes()
    counters = np.array([4, 100], dtype="<u4").tobytes()
    adam = b"adam" + np.zeros(2 * 32, dtype="<f4").tobytes()
    for trailer in (counters, adam + counters):
        (tmp_path / "t.bin").write_bytes(weights + trailer)
        other = _mlp(seed=4)
        other.load(tmp_path / "t.bin")
        np.testing.assert_array_equal(other.get_weights()["fc2:weight"], model.get_weights()["fc2:weight"])
    (tmp_path / "junk.bin").write_bytes(weights + b"\1\2\3")
    with pytest.raises(ModelFileError, match="different model"):
        _mlp().load(tmp_path / "junk.bin")


def test_npz_names_and_shapes_are_checked(tmp_path: Path) -> None:
    shapes = {"fc:weight": (3, 2), "fc:bias": (2,)}
    np.savez(tmp_path / "missing.npz", **{"fc:weight": np.zeros((3, 2))})
    with pytest.raises(ModelFileError, match=r"missing \['fc:bias'\]"):
        load_weights(tmp_path / "missing.npz", shapes)
    np.savez(tmp_path / "extra.npz", **{"fc:weight": np.zeros((3, 2)), "fc:bias": np.zeros(2), "x": np.zeros(1)})
    with pytest.raises(ModelFileError, match=r"not in this model \['x'\]"):
        load_weights(tmp_path / "extra.npz", shapes)
    np.savez(tmp_path / "shape.npz", **{"fc:weight": np.zeros((2, 3)), "fc:bias": np.zeros(2)})
    with pytest.raises(ModelFileError, match=r"'fc:weight' has shape \(2, 3\) in the file, the model needs \(3, 2\)"):
        load_weights(tmp_path / "shape.npz", shapes)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a readable .npz"):
        load_weights(tmp_path / "garbage.npz", shapes)


def test_loading_a_missing_file_or_nan_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such weights file"):
        load_weights(tmp_path / "nope.bin", {"a": (1,)})
    np.array([np.nan], dtype="<f4").tofile(tmp_path / "nan.bin")
    with pytest.raises(ModelFileError, match="'a' has NaN"):
        load_weights(tmp_path / "nan.bin", {"a": (1,)})


def test_save_and_load_need_a_compiled_model(tmp_path: Path) -> None:
    model = Model([L.Input(shape=(3,)), L.FullyConnected(unit=2)], "mse")
    with pytest.raises(StateError, match="compile"):
        model.save(tmp_path / "w.bin")
    with pytest.raises(StateError, match="compile"):
        model.load(tmp_path / "w.bin")


def test_a_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    target.write_bytes(b"previous")

    def fail_midway(handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(SaveError, match=r"cannot save weights to .*w\.bin: No space left on device"):
        atomic_write(target, fail_midway)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_interrupted_save_removes_its_temp_file(tmp_path: Path) -> None:
    def interrupted(handle: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "w.bin", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_paths_raise_save_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file" / "w.bin", tmp_path):
        with pytest.raises(SaveError, match="cannot save weights to"):
            check_save_path(bad)
        with pytest.raises(SaveError, match="cannot save weights to"):
            save_weights(bad, {"a": np.zeros(1)})


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_directory_is_refused_and_old_file_kept(tmp_path: Path) -> None:
    target = tmp_path / "ro" / "w.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    target.parent.chmod(0o500)
    try:
        with pytest.raises(SaveError, match="Permission denied"):
            check_save_path(target)
        with pytest.raises(SaveError, match="Permission denied"):
            save_weights(target, {"a": np.zeros(1)})
        assert target.read_bytes() == b"old"
    finally:
        target.parent.chmod(0o700)


def test_check_save_path_creates_missing_directories(tmp_path: Path) -> None:
    target = check_save_path(tmp_path / "out" / "deep" / "w.bin")
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []


def test_saving_non_finite_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SaveError, match="'a' has NaN"):
        save_weights(tmp_path / "w.bin", {"a": np.array([np.inf])})
    assert not (tmp_path / "w.bin").exists()


# -- NNTrainer's own files -------------------------------------------------------------------

NNTRAINER = Path(__file__).resolve().parents[1] / "data" / "nntrainer" / "weights"


def _read_grey_png(path: Path) -> np.ndarray:
    """The first channel of an 8-bit, non-interlaced PNG (grey, or red of RGB/RGBA) as a
    uint8 (height, width) array: just enough PNG for NNTrainer's test digits."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    assert (depth, interlace) == (8, 0)
    raw = zlib.decompress(idat)
    stride = width * channels
    image = np.zeros((height, stride), dtype=np.int64)
    previous = np.zeros(stride, dtype=np.int64)
    for r in range(height):
        start = r * (stride + 1)
        kind = raw[start]
        row = np.frombuffer(raw, np.uint8, stride, start + 1).astype(np.int64)
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                predictor = left
            elif kind == 2:
                predictor = up
            elif kind == 3:
                predictor = (left + up) // 2
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
            else:
                predictor = 0
            row[i] = (row[i] + predictor) % 256
        image[r] = previous = row
    return image.reshape(height, width, channels)[:, :, 0].astype(np.uint8)


def _nntrainer_mnist() -> Model:
    model = Model.from_ini(NNTRAINER / "mnist.ini")
    model.compile(batch_size=32)
    return model


def test_nntrainer_trained_weights_classify_its_test_digits() -> None:
    """NNTrainer's MNIST model file and the weights it trained (``model.bin``, with the
    training trailer: 1500 epochs, 46500 iterations) give NNTrainer's answers for the
    digit images its nnstreamer test checks (0.png, 2.png, 9.png as 0-255 floats)."""
    model = _nntrainer_mnist()
    model.load(NNTRAINER / "model.bin")
    images = np.stack([_read_grey_png(NNTRAINER / f"{d}.png") for d in (0, 2, 9)])
    predicted = model.predict(images.astype(np.float32).reshape(3, 1, 28, 28)).argmax(axis=1)
    np.testing.assert_array_equal(predicted, [0, 2, 9])
    trailer = np.frombuffer((NNTRAINER / "model.bin").read_bytes()[-8:], "<u4")
    np.testing.assert_array_equal(trailer, [1500, 46500])


def test_nntrainer_weights_and_raw_data_agree_with_edgetrain() -> None:
    """The weights score 99% on the first 100 samples of NNTrainer's MNIST raw data file
    (a wrong weight order or data layout scores about 10%)."""
    model = _nntrainer_mnist()
    model.load(NNTRAINER / "model.bin")
    data = RawFileDataset(NNTRAINER / "mnist_first100.dat", [(1, 28, 28)], (10,))
    assert len(data) == 100
    assert model.evaluate(data)["accuracy"] >= 0.98


def test_saving_nntrainer_weights_gives_back_its_bytes(tmp_path: Path) -> None:
    """edgetrain writes NNTrainer's layout byte for byte (without the training trailer)."""
    model = _nntrainer_mnist()
    model.load(NNTRAINER / "model.bin")
    model.save(tmp_path / "again.bin")
    original = (NNTRAINER / "model.bin").read_bytes()
    assert (tmp_path / "again.bin").read_bytes() == original[:-8]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_atomic_write_syncs_the_file_and_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_weights(tmp_path / "w.bin", {"a": np.ones(3)})
    assert len(synced) == 2
    assert Path(synced[0]).parent == tmp_path and Path(synced[0]).name.startswith(".w.bin.")
    assert Path(synced[1]) == tmp_path


def test_failed_rename_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "w.npz"
    save_weights(target, {"a": np.ones(3)})
    before = target.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(SaveError, match="Permission denied"):
        save_weights(target, {"a": np.zeros(3)})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    save_weights(tmp_path / "w.bin", {"a": np.ones(1)})
    assert (tmp_path / "w.bin").stat().st_mode & 0o777 == 0o666 & ~umask
