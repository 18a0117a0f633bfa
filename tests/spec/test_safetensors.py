"""Weights as safetensors: names, float32, metadata, atomic saves and checked loads."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from edgetrain import Model, ModelFileError, SaveError
from edgetrain import layers as L
from edgetrain.optimizers import SGD


def _cnn(seed: int = 0, filters: int = 3) -> Model:
    model = Model(
        [
            L.Input(shape=(1, 6, 6), name="image"),
            L.Conv2D(filters=filters, kernel_size=3, padding=1, name="conv"),
            L.BatchNormalization(name="bn", activation="relu"),
            L.Flatten(name="flat"),
            L.FullyConnected(unit=4, name="fc"),
        ],
        "cross_entropy",
    )
    model.compile(SGD(0.1), batch_size=4, seed=seed)
    return model


def _header(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header: dict[str, object] = json.loads(data[8 : 8 + length])
    return header


def test_tensors_are_named_float32_weights_with_metadata(tmp_path: Path) -> None:
    model = _cnn()
    model.save(tmp_path / "w.safetensors")
    header = _header(tmp_path / "w.safetensors")
    assert header.pop("__metadata__") == {"format": "edgetrain", "version": "1"}
    weights = model.get_weights()
    assert set(header) == set(weights)
    for name, entry in header.items():
        assert isinstance(entry, dict)
        assert entry["dtype"] == "F32"
        assert tuple(entry["shape"]) == weights[name].shape
    stored = load_file(str(tmp_path / "w.safetensors"))
    for name, value in weights.items():
        np.testing.assert_array_equal(stored[name], value)


def test_round_trip_restores_weights_and_outputs(tmp_path: Path) -> None:
    trained, fresh = _cnn(seed=1), _cnn(seed=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 1, 6, 6)).astype(np.float32)
    trained.fit(x, rng.integers(0, 4, size=8), epochs=2)
    trained.save(tmp_path / "w.safetensors")
    fresh.load(tmp_path / "w.safetensors")
    for name, value in trained.get_weights().items():
        np.testing.assert_array_equal(fresh.get_weights()[name], value)
    np.testing.assert_array_equal(fresh.predict(x), trained.predict(x))


def test_float64_model_is_written_as_float32_and_loads_back(tmp_path: Path) -> None:
    model = Model([L.Input(shape=(3,)), L.FullyConnected(unit=2, name="fc")], "mse")
    model.compile(None, batch_size=1, dtype=np.float64)
    model.save(tmp_path / "w.safetensors")
    assert load_file(str(tmp_path / "w.safetensors"))["fc:weight"].dtype == np.float32
    model.load(tmp_path / "w.safetensors")
    assert model.get_weights()["fc:weight"].dtype == np.float64


def test_a_file_written_by_another_tool_loads_by_name(tmp_path: Path) -> None:
    """No metadata, any order, float16 and float64 accepted (converted)."""
    model = _cnn()
    weights = model.get_weights()
    converted = {
        name: value.astype(np.float16 if name.startswith("bn") else np.float64)
        for name, value in reversed(list(weights.items()))
    }
    save_file(converted, str(tmp_path / "other.safetensors"))
    model.load(tmp_path / "other.safetensors")
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, converted[name].astype(np.float32))


def test_missing_and_unknown_names_are_listed(tmp_path: Path) -> None:
    weights = _cnn().get_weights()
    weights["head:weight"] = weights.pop("fc:weight")
    save_file(weights, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelFileError, match=r"missing \['fc:weight'\]; not in this model \['head:weight'\]"):
        _cnn().load(tmp_path / "w.safetensors")


def test_a_wrong_shape_names_both_shapes_and_changes_nothing(tmp_path: Path) -> None:
    _cnn(filters=5).save(tmp_path / "w.safetensors")
    model = _cnn(filters=3)
    before = model.get_weights()
    with pytest.raises(ModelFileError, match=r"'conv:weight' has shape \(5.*the model needs \(3"):
        model.load(tmp_path / "w.safetensors")
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"abc", "not a safetensors file: only 3 bytes"),
        (struct.pack("<Q", 10**6) + b"{}", "header of 1000000 bytes"),
        (struct.pack("<Q", 4) + b"nope", "header is not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_a_file_that_is_not_safetensors_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "w.safetensors").write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as caught:
        _cnn().load(tmp_path / "w.safetensors")
    assert "w.safetensors" in str(caught.value)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    _cnn().save(tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[:-10])
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        _cnn().load(tmp_path / "w.safetensors")


def test_integer_tensors_are_refused(tmp_path: Path) -> None:
    weights = {name: value for name, value in _cnn().get_weights().items()}
    weights["fc:bias"] = np.zeros(4, np.int32)  # type: ignore[assignment]
    save_file(weights, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelFileError, match="'fc:bias' has dtype I32"):
        _cnn().load(tmp_path / "w.safetensors")


def test_nan_weights_are_refused_on_load(tmp_path: Path) -> None:
    weights = _cnn().get_weights()
    weights["fc:bias"][1] = np.nan
    save_file(weights, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelFileError, match="'fc:bias' has NaN"):
        _cnn().load(tmp_path / "w.safetensors")


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "w.safetensors"
    model = _cnn()
    model.save(target)
    before = target.read_bytes()
    model.set_weights({"fc:bias": np.full(4, 7.0, np.float32)})
    (tmp_path / "blocker.safetensors").mkdir()
    with pytest.raises(SaveError, match="is a directory"):
        model.save(tmp_path / "blocker.safetensors")
    assert target.read_bytes() == before
    model.save(target)
    assert load_file(str(target))["fc:bias"].tolist() == [7.0] * 4
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
