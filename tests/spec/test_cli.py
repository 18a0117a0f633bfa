"""The ``edgetrain`` command line: train, summary, errors as one line with exit code 2."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetrain import Model, cli
from edgetrain.datasets import write_raw_file

ROOT = Path(__file__).resolve().parents[2]
DIGITS_INI = ROOT / "examples" / "digits_cnn.ini"

MLP_INI = """
[Model]
type = NeuralNetwork
loss = cross
batch_size = 4
epochs = 2

[Optimizer]
type = sgd
learning_rate = 0.1

[x]
type = input
input_shape = 1:1:6

[hidden]
type = fully_connected
unit = 8
activation = relu

[out]
type = fully_connected
unit = 3
activation = softmax
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _mlp_files(tmp_path: Path, samples: int = 20, extra: str = "") -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=samples)]
    write_raw_file(tmp_path / "train.dat", x, y)
    write_raw_file(tmp_path / "valid.dat", x[:8], y[:8])
    ini = tmp_path / "mlp.ini"
    ini.write_text(MLP_INI + extra)
    return ini


def test_summary_prints_layers_shapes_and_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "summary", DIGITS_INI)
    assert code == 0 and err == ""
    assert re.search(r"conv1\s+conv2d\s+\(16, 8, 8\)\s+160", out)
    assert re.search(r"classes\s+fully_connected\s+\(10\)\s+2,570", out)
    assert "total parameters: 2,794" in out


def test_train_digits_reports_validation_memory_and_saves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "out" / "digits.bin"
    code, out, err = _run(
        capsys, "train", DIGITS_INI, "--data", "digits", "--epochs", "2", "--save", weights, "--seed", "1"
    )
    assert code == 0, err
    assert "1438 samples, 359 for validation, batch size 32, 2 epoch(s)" in out
    assert re.search(r"epoch 1/2  loss \d\.\d{4}  accuracy \d+\.\d\d%  val_loss \d\.\d{4}  val_accuracy", out)
    assert re.search(r"epoch 2/2 ", out)
    assert re.search(r"validation \(359 samples\): val_loss \d\.\d{4}  val_accuracy \d+\.\d\d%", out)
    assert re.search(r"peak memory: \d+\.\d MiB \(\+\d+\.\d MiB during training\)", out)
    assert f"saved weights to {weights}" in out
    assert "epoch 1/2" in err and "samples/s" in err  # the progress bar, on stderr
    model = Model.from_ini(DIGITS_INI)
    model.compile(batch_size=32)
    model.load(weights)
    assert weights.stat().st_size == 4 * 2794


def test_train_on_a_raw_file_given_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    code, out, err = _run(capsys, "train", ini, "--data", tmp_path / "train.dat", "--validation-split", "0", "--quiet")
    assert code == 0, err
    assert "20 samples, batch size 4, 2 epoch(s)" in out
    assert "val_" not in out and "saved" not in out


def test_train_uses_the_model_files_data_and_save_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    text = ini.read_text().replace("epochs = 2", "epochs = 2\nsave_path = saved/mlp.bin")
    ini.write_text(text + "\n[DataSet]\nTrainData = train.dat\nValidData = valid.dat\nTestData = valid.dat\n")
    code, out, err = _run(capsys, "train", ini, "--batch-size", "2", "--epochs", "3", "--quiet")
    assert code == 0, err
    assert "20 samples, 8 for validation, batch size 2, 3 epoch(s)" in out
    validation = re.search(r"validation \(8 samples\): (val_loss .*)", out)
    test = re.search(r"test \(8 samples\): (loss .*)", out)
    assert validation and test
    assert validation.group(1).replace("val_", "") == test.group(1)  # the same file, the same numbers
    assert (tmp_path / "saved" / "mlp.bin").stat().st_size == 4 * (6 * 8 + 8 + 8 * 3 + 3)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def test_load_starts_training_from_saved_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    data = ["--data", str(tmp_path / "train.dat"), "--quiet"]
    assert _run(capsys, "train", ini, *data, "--save", tmp_path / "first.npz")[0] == 0
    frozen = tmp_path / "frozen.ini"
    frozen.write_text(ini.read_text().replace("learning_rate = 0.1", "learning_rate = 1e-20"))
    code, out, err = _run(
        capsys, "train", frozen, *data, "--seed", "5", "--load", tmp_path / "first.npz", "--save", tmp_path / "again.npz"
    )
    assert code == 0, err
    assert f"starting from the weights in {tmp_path / 'first.npz'}" in out
    first, again = _npz(tmp_path / "first.npz"), _npz(tmp_path / "again.npz")
    for name, value in first.items():
        np.testing.assert_allclose(again[name], value, rtol=0, atol=1e-12)


def test_continue_train_resumes_from_the_save_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    text = ini.read_text().replace("learning_rate = 0.1", "learning_rate = 1e-20")
    ini.write_text(text.replace("epochs = 2", "epochs = 1\nsave_path = w.npz\ncontinue_train = true"))
    data = ["--data", str(tmp_path / "train.dat"), "--quiet"]
    code, out, _ = _run(capsys, "train", ini, *data, "--seed", "1")
    assert code == 0 and "starting from" not in out  # nothing to continue from yet
    first = _npz(tmp_path / "w.npz")
    code, out, _ = _run(capsys, "train", ini, *data, "--seed", "2")
    assert code == 0 and f"starting from the weights in {tmp_path / 'w.npz'}" in out
    for name, value in _npz(tmp_path / "w.npz").items():
        np.testing.assert_allclose(value, first[name], rtol=0, atol=1e-12)


def test_loading_weights_of_another_model_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = _mlp_files(tmp_path)
    np.zeros(5, dtype="<f4").tofile(tmp_path / "small.bin")
    code, out, err = _run(capsys, "train", ini, "--data", tmp_path / "train.dat", "--load", tmp_path / "small.bin")
    _one_line_error(code, out, err, r"small\.bin: has 20 bytes but this model's 4 weight tensors take 332 bytes")


def test_evaluate_scores_saved_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    data = tmp_path / "train.dat"
    assert _run(capsys, "train", ini, "--data", data, "--quiet", "--save", tmp_path / "w.bin")[0] == 0
    code, out, err = _run(capsys, "evaluate", ini, tmp_path / "w.bin", "--data", data)
    assert code == 0, err
    match = re.fullmatch(r"w\.bin on .*train\.dat \(20 samples\): loss (\d\.\d{4})  accuracy (\d+\.\d\d)%\n", out)
    assert match
    model = Model.from_ini(ini)
    model.compile(batch_size=4)
    model.load(tmp_path / "w.bin")
    from edgetrain.datasets import RawFileDataset

    expected = model.evaluate(RawFileDataset.for_model(data, model))
    assert match.group(1) == f"{expected['loss']:.4f}" and match.group(2) == f"{expected['accuracy']:.2%}"[:-1]


def test_evaluate_defaults_to_the_model_files_test_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    assert _run(capsys, "train", ini, "--data", tmp_path / "train.dat", "--quiet", "--save", tmp_path / "w.npz")[0] == 0
    code, out, err = _run(capsys, "evaluate", ini, tmp_path / "w.npz")
    _one_line_error(code, out, err, "no data to score")
    ini.write_text(ini.read_text() + "\n[DataSet]\nTrainData = train.dat\nTestData = valid.dat\n")
    code, out, err = _run(capsys, "evaluate", ini, tmp_path / "w.npz")
    assert code == 0 and "valid.dat (8 samples): loss" in out, err


def test_python_dash_m_runs_the_same_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgetrain", "summary", str(DIGITS_INI)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "total parameters: 2,794" in result.stdout


# -- errors ---------------------------------------------------------------------------------


def _one_line_error(code: int, out: str, err: str, pattern: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("edgetrain: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "epoch" not in out  # nothing was trained


def test_unwritable_save_path_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("")
    code, out, err = _run(
        capsys, "train", DIGITS_INI, "--data", "digits", "--save", tmp_path / "a_file" / "w.bin"
    )
    _one_line_error(code, out, err, r"cannot save weights to .*a_file/w\.bin")
    assert out == ""


def test_save_path_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "train", DIGITS_INI, "--data", "digits", "--save", tmp_path)
    _one_line_error(code, out, err, "is a directory")


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "summary", tmp_path / "nope.ini")
    _one_line_error(code, out, err, r"nope\.ini: cannot read the model file")


def test_model_file_error_names_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(MLP_INI.replace("unit = 8", "unit = eight"))
    code, out, err = _run(capsys, "train", ini, "--data", "digits")
    _one_line_error(code, out, err, r"bad\.ini:\d+ \[hidden\] key 'unit'")


def test_unknown_data_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "train", DIGITS_INI, "--data", "digitz")
    _one_line_error(code, out, err, r"--data digitz: no such file, and not a built-in data set \(digits\)")


def test_no_data_at_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "train", DIGITS_INI)
    _one_line_error(code, out, err, r"no training data: give --data")


def test_raw_file_of_the_wrong_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    with open(tmp_path / "train.dat", "ab") as f:
        f.write(b"\0" * 8)
    code, out, err = _run(capsys, "train", ini, "--data", tmp_path / "train.dat")
    _one_line_error(code, out, err, r"train\.dat has 728 bytes, not a multiple of the 36-byte sample")


def test_digits_into_a_model_of_another_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    code, out, err = _run(capsys, "train", ini, "--data", "digits")
    _one_line_error(code, out, err, r"digits: sample 0: input 'x' expects samples of shape \(1, 1, 6\), got samples of shape \(1, 8, 8\)")


def test_nan_in_a_raw_file_is_found_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _mlp_files(tmp_path)
    values = np.fromfile(tmp_path / "train.dat", dtype="<f4")
    values[40] = np.nan
    values.tofile(tmp_path / "train.dat")
    code, out, err = _run(capsys, "train", ini, "--data", tmp_path / "train.dat")
    _one_line_error(code, out, err, r"train\.dat: sample 4: input .x. contains 1 NaN")


def test_model_file_without_optimizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "noopt.ini"
    ini.write_text(MLP_INI.replace("[Optimizer]\ntype = sgd\nlearning_rate = 0.1\n", ""))
    code, out, err = _run(capsys, "train", ini, "--data", "digits")
    _one_line_error(code, out, err, r"training needs an optimizer")


@pytest.mark.parametrize("argv", [["train", "m.ini", "--epochs", "0"], ["train", "m.ini", "--validation-split", "1"], []])
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: edgetrain" in capsys.readouterr().err


def test_unexpected_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Model, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Model, "fit", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["train", str(DIGITS_INI), "--data", "digits", "--quiet"])


def test_a_new_subcommand_is_one_registered_function(capsys: pytest.CaptureFixture[str]) -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")

    @cli.command("hello", "say hello", arguments)
    def hello(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 0

    try:
        assert _run(capsys, "hello", "world")[:2] == (0, "hello world\n")
        help_text = cli.build_parser().format_help()
        assert "hello" in help_text and "train" in help_text and "summary" in help_text
    finally:
        del cli.COMMANDS["hello"]


# -- progress and memory ----------------------------------------------------------------------


def test_progress_bar_shows_loss_accuracy_and_throughput() -> None:
    import io

    from edgetrain.model import EpochProgress
    from edgetrain.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(file=out)
    for batch in range(3):
        bar(EpochProgress(0, 2, batch, 3, loss=0.5 - 0.1 * batch, accuracy=0.75, samples_per_second=1234.0))
    text = out.getvalue()
    assert "epoch 1/2" in text and "3/3" in text
    assert "loss=0.3000" in text and "acc=75.0%" in text and "samples/s=1,234" in text
    assert bar._bar is None  # closed after the epoch's last batch
    quiet = io.StringIO()
    ProgressBar(file=quiet, disable=True)(EpochProgress(0, 1, 0, 1, 0.1, None, 1.0))
    assert quiet.getvalue() == ""


def test_memory_report_is_the_peak_and_its_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgetrain import progress

    readings = iter([100 * progress.MIB, 150 * progress.MIB])
    monkeypatch.setattr(progress, "peak_memory_bytes", lambda: next(readings))
    watch = progress.MemoryWatch.start()
    assert watch.report() == "peak memory: 150.0 MiB (+50.0 MiB during training)"
    monkeypatch.undo()
    peak = progress.peak_memory_bytes()  # the real reading: ru_maxrss in bytes
    assert peak is not None and 10 * progress.MIB < peak < 64 * 1024 * progress.MIB
