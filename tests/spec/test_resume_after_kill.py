"""A training process killed (SIGKILL) or stopped with Ctrl-C (SIGINT) mid-run, then
resumed from its checkpoints in a new process, ends with exactly the weights of a
process that trained without stopping; the same through ``edgetrain train``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgetrain.checkpoint import checkpoint_files, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]

#: trains an MLP with dropout, batch norm, Adam and a cosine schedule on shuffled data
#: with a validation split; argv: checkpoint directory ("-" for none), output .npz,
#: "resume" or "fresh", seconds to sleep after each batch (so a signal lands mid-run),
#: iterations between checkpoints
SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from edgetrain import Model, layers as L, optimizers as O, schedules as S
    from edgetrain.training import TrainingInterrupted

    directory, out, mode, pause, every = sys.argv[1:4] + [float(sys.argv[4]), int(sys.argv[5])]
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 10))
    y = (x[:, :3].sum(axis=1) > 0).astype(int) + (x[:, 3] > 1).astype(int)
    model = Model(
        [
            L.Input(shape=(10,), name="in"),
            L.FullyConnected(unit=32, name="hidden", activation="relu"),
            L.BatchNormalization(name="norm"),
            L.Dropout(name="drop", dropout_rate=0.2),
            L.FullyConnected(unit=3, name="out", activation="softmax"),
        ],
        loss="cross_entropy",
    )
    model.compile(O.Adam(S.Cosine(0.01, decay_steps=40, min_learning_rate=0.0005)), batch_size=10, seed=4)
    checkpoint = None if directory == "-" else directory
    try:
        history = model.fit(
            x, y, epochs=5, validation_split=0.2, checkpoint=checkpoint,
            checkpoint_every=every if checkpoint else None,
            resume=mode == "resume", progress=lambda p: time.sleep(pause),
        )
    except TrainingInterrupted as stop:
        print("interrupted", stop.checkpoint, flush=True)
        sys.exit(3)
    print("resumed from", history.resumed_from, "iteration", model.iteration, flush=True)
    model.save(out)
    """
)
TOTAL_ITERATIONS = 5 * (240 // 10)


def script(tmp_path: Path) -> Path:
    path = tmp_path / "train_script.py"
    path.write_text(SCRIPT)
    return path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script(tmp_path)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoints(process: subprocess.Popen[str], directory: Path, iteration: int) -> None:
    """Until a checkpoint of ``iteration`` or later exists (fails if the process ends first)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        files = checkpoint_files(directory)
        if files and int(files[-1].stem.split("-")[1]) >= iteration:
            return
        time.sleep(0.005)
    out, err = process.communicate()
    pytest.fail(f"no checkpoint appeared before the process ended:\n{out}\n{err}")


def weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert list(wa) == list(wb)
    for name in wa:
        assert np.array_equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = run(folder, "-", str(folder / "w.npz"), "fresh", "0", "0")
    assert done.returncode == 0, done.stderr
    return folder / "w.npz"


@pytest.mark.parametrize(
    ("signum", "every"),
    [(signal.SIGKILL, 7), (signal.SIGINT, 7), (signal.SIGKILL, 1)],
    ids=["SIGKILL", "SIGINT", "SIGKILL-saving-every-step"],
)
def test_killed_or_interrupted_process_resumes_to_the_same_weights(
    tmp_path: Path, uninterrupted: Path, signum: int, every: int
) -> None:
    """Saving at every step, the kill most likely lands inside a save: the file being
    written is a temporary one, never a damaged checkpoint."""
    directory = tmp_path / "checkpoints"
    process = start(
        [
            sys.executable,
            str(script(tmp_path)),
            str(directory),
            str(tmp_path / "x.npz"),
            "fresh",
            "0.01",
            str(every),
        ]
    )
    wait_for_checkpoints(process, directory, iteration=14)
    assert process.poll() is None, "the run finished before it could be stopped"
    os.kill(process.pid, signum)
    out, err = process.communicate(timeout=60)
    assert not (tmp_path / "x.npz").exists()
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 3, err
        saved = Path(out.split()[1])
        assert saved.is_file() and saved.parent == directory
    stopped_at = read_checkpoint(checkpoint_files(directory)[-1]).state["progress"]["iteration"]
    assert 0 < stopped_at < TOTAL_ITERATIONS

    resumed = run(
        tmp_path, str(directory), str(tmp_path / "resumed.npz"), "resume", "0", str(every)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Warning" not in resumed.stderr
    assert not list(directory.glob(".*.tmp"))
    assert f"checkpoint-{stopped_at:09d}.ckpt" in resumed.stdout
    assert f"iteration {TOTAL_ITERATIONS}" in resumed.stdout
    assert_same_weights(uninterrupted, tmp_path / "resumed.npz")


def test_cli_train_interrupted_with_ctrl_c_resumes_to_the_same_weights(tmp_path: Path) -> None:
    ini = ROOT / "examples" / "digits_cnn.ini"
    edgetrain = [sys.executable, "-m", "edgetrain", "train", str(ini), "--data", "digits"]
    common = ["--epochs", "3", "--seed", "2", "--quiet"]
    whole = subprocess.run(
        [*edgetrain, *common, "--save", str(tmp_path / "a.npz")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert whole.returncode == 0, whole.stderr

    directory = tmp_path / "b"
    argv = [
        *edgetrain,
        *common,
        *["--checkpoint", str(directory), "--checkpoint-every", "10"],
        *["--save", str(tmp_path / "b.npz")],
    ]
    process = start(argv)
    wait_for_checkpoints(process, directory, iteration=10)
    assert process.poll() is None, "the run finished before it could be stopped"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"interrupted; the training state is saved in {directory}" in err
    assert "--resume" in err
    assert not (tmp_path / "b.npz").exists()

    resumed = subprocess.run(
        [*argv, "--resume"], capture_output=True, text=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {directory}" in resumed.stdout
    assert_same_weights(tmp_path / "a.npz", tmp_path / "b.npz")
