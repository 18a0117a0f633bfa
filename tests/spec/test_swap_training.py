"""Training with swap computes exactly what training without it computes: losses, weights
and predictions bit for bit, on every example model, with each lookahead and under
budgets; the transfers counted are the schedule's; the swap file is removed on close."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from edgetrain import Model
from edgetrain.errors import StateError
from edgetrain.planning.swap_check import check_swap
from edgetrain.swapping import SwapStore
from planning_models import BUILDERS


def _data(
    model: Model, shape: tuple[int, ...], loss: str, n: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    out = model.program.tensors[model.program.output].shape[1:]
    if loss.startswith("cross_entropy") and loss != "cross_entropy_sigmoid":
        return x, rng.integers(0, out[-1], size=n)
    return x, rng.random(size=(n, *out)).astype(np.float32)


def _train(
    name: str, tmp: Path, dtype: type = np.float32, **options: object
) -> tuple[list[float], Model, np.ndarray]:
    layers, loss, shape, optimizer = BUILDERS[name]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, seed=11, dtype=dtype, swap_dir=tmp, **options)  # type: ignore[arg-type]
    x, y = _data(model, shape, loss)
    losses = [model.train_step(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8, 0)]
    losses += model.fit(x, y, epochs=2, shuffle=True).loss
    return losses, model, x


def _assert_same(
    want: tuple[list[float], Model, np.ndarray], got: tuple[list[float], Model, np.ndarray]
) -> None:
    assert got[0] == want[0]
    want_weights, got_weights = want[1].get_weights(), got[1].get_weights()
    assert want_weights.keys() == got_weights.keys()
    for key, value in want_weights.items():
        np.testing.assert_array_equal(got_weights[key], value, err_msg=key)
    x = want[2]
    np.testing.assert_array_equal(got[1].predict(x), want[1].predict(x))
    np.testing.assert_array_equal(got[1].predict(x[:3]), want[1].predict(x[:3]))


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("lookahead", [0, 2])
def test_swapping_everything_trains_bit_for_bit(name: str, lookahead: int, tmp_path: Path) -> None:
    want = _train(name, tmp_path)
    got = _train(name, tmp_path, swap=True, lookahead=lookahead, debug_poison=True)
    model = got[1]
    schedule = model.swap_schedule
    assert schedule is not None and schedule.swapped and schedule.lookahead == lookahead
    assert isinstance(model._trainer().store, SwapStore)
    check_swap(model.program, schedule)
    _assert_same(want, got)
    traffic = model.swap_traffic
    assert traffic is not None and traffic.iterations == 4 + 2 * 3
    assert (traffic.last_written, traffic.last_read) == (
        schedule.bytes_written,
        schedule.bytes_read,
    )
    model.close()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["mlp", "convnet", "residual"])
def test_training_under_budgets_is_bit_for_bit(name: str, tmp_path: Path) -> None:
    want = _train(name, tmp_path)
    arena = want[1].plan().arena_bytes
    for fraction in (0.8, 0.6):
        got = _train(name, tmp_path, memory_budget=int(arena * fraction))
        schedule = got[1].swap_schedule
        assert schedule is not None and schedule.resident_bytes <= arena * fraction
        _assert_same(want, got)
        got[1].close()


def test_float64_training_with_swap_is_exact(tmp_path: Path) -> None:
    want = _train("residual", tmp_path, np.float64)
    got = _train("residual", tmp_path, np.float64, swap=True, lookahead=1)
    _assert_same(want, got)


def test_swapped_weights_are_shared_with_inference_and_set_weights(tmp_path: Path) -> None:
    layers, loss, shape, optimizer = BUILDERS["mlp"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, swap=True, swap_dir=tmp_path)
    schedule = model.swap_schedule
    assert schedule is not None and "fc1:weight" in schedule.swapped
    x, y = _data(model, shape, loss, 4)
    before = model.predict(x)
    given = np.full_like(model.get_weights()["fc1:weight"], 0.25)
    model.set_weights({"fc1:weight": given})
    after = model.predict(x)
    assert not np.array_equal(before, after)
    reference = Model(BUILDERS["mlp"]()[0], loss=loss)
    reference.compile(optimizer(), batch_size=4)
    reference.set_weights(model.get_weights())
    reference.train_step(x, y)
    model.train_step(x, y)  # reads the new weight back in from the file
    for key, value in reference.get_weights().items():
        np.testing.assert_array_equal(model.get_weights()[key], value)


def test_close_keeps_the_weights_and_removes_the_file(tmp_path: Path) -> None:
    layers, loss, shape, optimizer = BUILDERS["convnet"]()
    with Model(layers, loss=loss) as model:
        model.compile(optimizer(), batch_size=4, swap=True, swap_dir=tmp_path)
        x, y = _data(model, shape, loss, 4)
        model.train_step(x, y)
        (swap_file,) = tmp_path.iterdir()
        assert swap_file.name.startswith("edgetrain-swap-")
        assert swap_file.stat().st_size == model.swap_schedule.swap_file_bytes  # type: ignore[union-attr]
        weights = model.get_weights()
        out = model.predict(x)
    assert not swap_file.exists()
    for key, value in weights.items():
        np.testing.assert_array_equal(model.get_weights()[key], value)
    np.testing.assert_array_equal(model.predict(x), out)
    with pytest.raises(StateError, match="closed"):
        model.train_step(x, y)
    model.close()  # idempotent
    model.compile(optimizer(), batch_size=4, swap=True, swap_dir=tmp_path)
    model.train_step(x, y)
    assert len(list(tmp_path.iterdir())) == 1


def test_a_dropped_model_removes_its_swap_file(tmp_path: Path) -> None:
    layers, loss, _, optimizer = BUILDERS["mlp"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, swap=True, swap_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    del model
    gc.collect()
    assert not list(tmp_path.iterdir())


def test_recompiling_moves_weights_and_optimizer_state_into_the_new_swap(tmp_path: Path) -> None:
    runs = []
    for options in ({}, {"swap": True, "swap_dir": tmp_path}):
        layers, loss, shape, optimizer = BUILDERS["convnet"]()
        model = Model(layers, loss=loss)
        model.compile(optimizer(), batch_size=4, seed=11, **options)  # type: ignore[arg-type]
        x, y = _data(model, shape, loss)
        losses = [model.train_step(x[i : i + 4], y[i : i + 4]) for i in (0, 4)]
        model.unfreeze("conv1")  # already trains: recompiles with the same settings
        losses += [model.train_step(x[i : i + 4], y[i : i + 4]) for i in (8, 0)]
        runs.append((losses, model.get_weights(), model.swap_schedule))
    assert runs[1][2] is not None
    assert runs[1][0] == runs[0][0]
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][key], value)
    assert len(list(tmp_path.iterdir())) == 1


def test_an_error_inside_an_iteration_keeps_the_latest_weights(tmp_path: Path) -> None:
    layers, loss, shape, optimizer = BUILDERS["mlp"]()
    model = Model(layers, loss=loss)
    model.compile(optimizer(), batch_size=4, swap=True, swap_dir=tmp_path)
    x, y = _data(model, shape, loss, 4)
    model.train_step(x, y)
    weights = model.get_weights()
    trainer = model._trainer()
    store = trainer.store
    assert isinstance(store, SwapStore)
    calls = {"n": 0}
    real = store.end_step

    def failing(order: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")  # before this order's write-outs
        real(order)

    store.end_step = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        model.train_step(x, y)
    store.end_step = real  # type: ignore[method-assign]
    for key, value in model.get_weights().items():
        np.testing.assert_array_equal(value, weights[key])
    model.train_step(x, y)
    # an error after the updates: the updated weights reach the file at once
    steps = len(model.program.steps)
    calls["n"] = 3 - steps
    store.end_step = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        model.train_step(x, y)  # fails after its last step ran, before its write-outs
    store.end_step = real  # type: ignore[method-assign]
    reference = Model(BUILDERS["mlp"]()[0], loss=loss)
    reference.compile(optimizer(), batch_size=4)
    for _ in range(3):  # the step that failed in its forward pass changed nothing
        reference.train_step(x, y)
    for key, value in reference.get_weights().items():
        np.testing.assert_array_equal(model.get_weights()[key], value, err_msg=key)


def test_the_swap_file_is_removed_when_the_process_dies_of_an_error(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from edgetrain import Model
        from planning_models import BUILDERS
        layers, loss, _, optimizer = BUILDERS["mlp"]()
        model = Model(layers, loss=loss)
        model.compile(optimizer(), batch_size=4, swap=True, swap_dir={str(tmp_path)!r})
        assert len(list(__import__("pathlib").Path({str(tmp_path)!r}).iterdir())) == 1
        raise RuntimeError("the training script fails")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "the training script fails" in done.stderr
    assert not list(tmp_path.iterdir())
