"""The ``edgetrain`` command: one function per subcommand, each registered in ``COMMANDS``.

A new subcommand is a function ``run(args) -> exit code`` decorated with
:func:`command`, which also names a function adding its arguments. Errors edgetrain raises
on purpose (:class:`EdgetrainError`) are printed as one line on stderr with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import __version__
from .backends import BACKENDS
from .checkpoint import CheckpointWarning, checkpoint_files, describe_checkpoint
from .data import ArrayDataset, Dataset, split_dataset
from .datasets import NAMED_DATASETS, RawFileDataset, load_named
from .errors import CheckpointError, ConfigError, DataError, EdgetrainError, SaveError
from .freezing import unfrozen_plan
from .model import Model
from .optimizers import OPTIMIZERS
from .planning import PLANNERS, MemoryPlan
from .planning.report import format_bytes
from .planning.swap_report import render_swap
from .planning.chart import draw_plan, draw_swap
from .planning.recompute import recompute_summary
from .planning.report import plan_json, render_plan
from .planning.swap import SwapSchedule
from .progress import MemoryWatch, ProgressBar
from .training import TrainingInterrupted
from .weights_io import check_save_path

Run = Callable[[argparse.Namespace], int]
EXIT_ERROR = 2
#: the shell's code for a process stopped by Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    """A subcommand: its name and help, how it adds its arguments, and what it runs."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Run


#: every subcommand, in the order ``edgetrain --help`` lists them
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Run], Run]:
    """Register the decorated function as subcommand ``name``."""

    def register(run: Run) -> Run:
        COMMANDS[name] = Command(name, help, arguments, run)
        return run

    return register


# -- argument types ------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model file in NNTrainer's INI syntax")


# -- summary -----------------------------------------------------------------------------


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("--batch-size", type=_positive_int, help="batch size (default: the model file's)")


@command("summary", "print the layers, their output shapes and parameter counts", _summary_arguments)
def summary(args: argparse.Namespace) -> int:
    setup = open_model_file(args.model, batch_size=args.batch_size)
    print(setup.model.summary())
    return 0


# -- plan --------------------------------------------------------------------------------


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument(
        "--planner",
        default="greedy_by_size",
        help=f"planner placing the tensors ({', '.join(PLANNERS)}; default greedy_by_size)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, help="batch size (default: the model file's)"
    )
    parser.add_argument(
        "--inference", action="store_true", help="plan the forward pass only (no training)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the plan as JSON ('-': stdout only)"
    )
    parser.add_argument(
        "--chart", type=Path, metavar="FILE", help="draw the arena (.png/.svg/.pdf; matplotlib)"
    )
    parser.add_argument(
        "--brief", action="store_true", help="totals only, not every execution order"
    )
    _recompute_argument(parser)
    _swap_arguments(parser, files=False)


def _recompute_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="recompute activations after batch/layer norms in the backward pass instead of "
        "keeping them, and drop max pooling's argmax where it can (same results, less memory; "
        "spec/recompute.md; the model file's [Model] recompute = true does the same)",
    )


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="executor: the compiled rust core, the numpy reference (python), or auto: the "
        "core wherever it can run the model (default)",
    )
    parser.add_argument(
        "--threads", type=_positive_int, help="threads of the rust core (default: every core this process may use)"
    )


def _swap_arguments(parser: argparse.ArgumentParser, *, files: bool) -> None:
    parser.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="resident memory for the arena (e.g. 32MiB, 1.5GB, bytes, or 25%% of the plan): "
        "swap tensors to a file to fit it (spec/swapping.md)",
    )
    parser.add_argument(
        "--lookahead",
        type=int,
        metavar="N",
        help="read swapped tensors back N orders before their use (default: chosen for the "
        "budget; the model file's memory_swap_lookahead with memory_swap = true)",
    )
    if files:
        parser.add_argument(
            "--swap-dir",
            type=Path,
            metavar="DIR",
            help="where the swap file goes (default: the model file's memory_swap_path, else "
            "the system temp directory)",
        )


def _swap_options(args: argparse.Namespace, model: Model) -> dict[str, object]:
    """compile() swap keywords from the command line, else the model file's memory_swap
    keys (its memory_swap_path, when set, relative to the model file; else the system
    temp dir)."""
    description = model.description
    assert description is not None
    settings = description.swap
    options: dict[str, object] = {}
    if args.lookahead is not None and args.lookahead < 0:
        raise ConfigError(f"--lookahead must be 0 or more, got {args.lookahead}")
    if args.memory_budget is not None:
        options["memory_budget"] = args.memory_budget
    elif settings.enabled:
        options["swap"] = True
    lookahead = args.lookahead
    if lookahead is None and settings.enabled:
        lookahead = settings.lookahead
    if lookahead is not None:
        options["lookahead"] = lookahead
    swap_dir = getattr(args, "swap_dir", None)
    if swap_dir is None and settings.path is not None:
        path = Path(settings.path)
        base = description.source.parent if description.source is not None else Path.cwd()
        swap_dir = path if path.is_absolute() else base / path
    if swap_dir is not None:
        options["swap_dir"] = swap_dir
    return options


def _plan_swap(
    args: argparse.Namespace, model: Model, memory: MemoryPlan
) -> tuple[SwapSchedule | None, int | None]:
    """The schedule ``edgetrain plan`` shows (None without swapping) and the budget."""
    from .planning.budget import choose_swap, parse_budget
    from .planning.swap import plan_swap

    if args.inference:
        if args.memory_budget is not None:
            raise ConfigError("--memory-budget applies to training: drop --inference")
        return None, None
    options = _swap_options(args, model)
    if not ({"memory_budget", "swap"} & set(options)):
        return None, None
    lookahead = options.get("lookahead")
    assert lookahead is None or isinstance(lookahead, int)
    if "memory_budget" in options:
        budget = parse_budget(str(options["memory_budget"]), plan_bytes=memory.arena_bytes)
        schedule = choose_swap(
            model.program, budget, planner=args.planner, lookahead=lookahead, plan=memory
        )
        return schedule, budget
    return plan_swap(model.program, None, lookahead=lookahead or 0, planner=args.planner, plan=memory), None


@command("plan", "show where every tensor lives in the arena, per execution order", _plan_arguments)
def plan(args: argparse.Namespace) -> int:
    setup = open_model_file(
        args.model, batch_size=args.batch_size, training=not args.inference, recompute=args.recompute
    )
    model = setup.model
    memory = model.plan(args.planner)
    unfrozen = unfrozen_plan(model, args.planner)
    recomputed = recompute_summary(model, args.planner)
    mode = "inference" if args.inference else "training"
    what = f"{args.model.name}: {mode}, batch size {model.batch_size}"
    schedule, budget = _plan_swap(args, model, memory)
    if args.chart is not None:
        if schedule is not None:
            draw_swap(schedule, args.chart, title=what)
        else:
            draw_plan(memory, args.chart, title=what)
    data = plan_json(
        memory,
        unfrozen,
        model=str(args.model),
        batch_size=model.batch_size,
        training=not args.inference,
        recompute=recomputed,
    )
    if schedule is not None:
        data["swap"] = {"memory_budget": budget, **schedule.to_json()}
    if args.json is not None and str(args.json) == "-":
        print(json.dumps(data, indent=1))
        return 0
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(data, indent=1) + "\n")
        except OSError as err:
            raise SaveError(f"cannot write {args.json}: {err.strerror or err}") from None
    title = f"memory plan of {what}, {model.dtype}"
    print(
        render_plan(memory, title=title, orders=not args.brief, unfrozen=unfrozen, recompute=recomputed)
    )
    if schedule is not None:
        print("\n" + render_swap(schedule, budget=budget, orders=not args.brief))
    elif budget is not None or args.memory_budget is not None:
        print(f"\nthe plan fits the memory budget of {args.memory_budget}: nothing to swap")
    return 0


# -- train -------------------------------------------------------------------------------


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument(
        "--data",
        help=(
            f"training data: a built-in data set ({', '.join(sorted(NAMED_DATASETS))}) or "
            "an NNTrainer raw float file (default: the model file's data section)"
        ),
    )
    parser.add_argument("--epochs", type=_positive_int, help="epochs (default: the model file's)")
    parser.add_argument("--batch-size", type=_positive_int, help="batch size (default: the model file's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and splits")
    parser.add_argument("--save", type=Path, help="write the trained weights here (.bin, .npz or .safetensors)")
    parser.add_argument(
        "--load",
        type=Path,
        help="start from these weights (.bin, .npz or .safetensors) instead of fresh ones: fine-tuning "
        "(default: the save path when the model file says continue_train = true)",
    )
    parser.add_argument(
        "--validation-split",
        type=_fraction,
        help="fraction held out for validation (default 0.2, or the model file's "
        "validation data; 0 turns validation off)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="save the whole training state in DIR at every epoch's end, on Ctrl-C and "
        "every --checkpoint-every iterations (the newest two files are kept)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        metavar="N",
        help="also save a checkpoint every N iterations",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in --checkpoint DIR, ending with "
        "the weights an uninterrupted run would have (a fresh start when DIR has none)",
    )
    _recompute_argument(parser)
    _swap_arguments(parser, files=True)
    _backend_arguments(parser)


@command("train", "train a model file on data, report accuracy and memory, save weights", _train_arguments)
def train(args: argparse.Namespace) -> int:
    setup = open_model_file(
        args.model,
        batch_size=args.batch_size,
        seed=args.seed,
        training=True,
        swap_args=args,
        recompute=args.recompute,
        backend=args.backend,
        threads=args.threads,
    )
    with setup.model:
        return _train(args, setup)


def _train(args: argparse.Namespace, setup: ModelFileSetup) -> int:
    save = args.save if args.save is not None else setup.save_path
    if save is not None:
        check_save_path(save)
    model = setup.model
    if (args.resume or args.checkpoint_every) and args.checkpoint is None:
        raise ConfigError("--resume and --checkpoint-every need --checkpoint DIR")
    if args.resume and args.load is not None:
        raise ConfigError("--resume continues from the checkpoint's weights: drop --load")
    start_from = args.load
    if (
        start_from is None
        and not args.resume
        and setup.continue_train
        and save is not None
        and Path(save).is_file()
    ):
        start_from = save
    if start_from is not None:
        model.load(start_from)
        print(f"starting from the weights in {start_from} (optimizer state starts fresh)")
    epochs = args.epochs or setup.epochs
    train_data, valid_data, test_data = _training_data(args, setup)
    print(
        f"training {args.model.name}: {len(train_data)} samples"
        + (f", {len(valid_data)} for validation" if valid_data is not None else "")
        + f", batch size {model.batch_size}, {epochs} epoch(s), {model.backend} backend"
    )
    if args.resume:
        found = checkpoint_files(args.checkpoint)
        print(
            f"resuming from the newest intact of {len(found)} checkpoint(s) in {args.checkpoint}"
            if found
            else f"no checkpoint in {args.checkpoint} yet: starting from the beginning"
        )
    bar = ProgressBar(disable=args.quiet)
    watch = MemoryWatch.start()
    start = time.perf_counter()
    finished: list[int] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        finished.append(epoch)
        print(f"epoch {epoch + 1}/{epochs}  {_metrics(metrics)}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", CheckpointWarning)
            warnings.showwarning = _print_warning
            history = model.fit(
                train_data,
                epochs=epochs,
                validation_data=valid_data,
                progress=bar,
                on_epoch=on_epoch,
                checkpoint=args.checkpoint,
                checkpoint_every=args.checkpoint_every,
                resume=args.resume,
            )
    except TrainingInterrupted as stop:
        bar.close()
        print(
            f"edgetrain: interrupted; the training state is saved in {stop.checkpoint}: run "
            "the same command with --resume to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if history.resumed_from is not None:
        print(f"resumed from {history.resumed_from}")
    trained = len(finished) * (len(train_data) // model.batch_size) * model.batch_size
    print(f"trained {len(finished)} epoch(s) in {seconds:.1f} s ({trained / seconds:,.0f} samples/s)")
    if valid_data is not None:
        final = {k: v for k, v in history.latest().items() if k.startswith("val_")}
        print(f"validation ({len(valid_data)} samples): {_metrics(final)}")
    if test_data is not None:
        print(f"test ({len(test_data)} samples): {_metrics(model.evaluate(test_data))}")
    print(watch.report())
    schedule, traffic = model.swap_schedule, model.swap_traffic
    if schedule is not None and traffic is not None:
        print(
            f"swap: resident arena {format_bytes(schedule.resident_bytes)} planned (without "
            f"swap {format_bytes(schedule.plan.arena_bytes)}); per iteration "
            f"{format_bytes(traffic.last_written)} written, {format_bytes(traffic.last_read)} "
            f"read; swap file {format_bytes(schedule.swap_file_bytes)}"
        )
    if save is not None:
        model.save(save)
        print(f"saved weights to {save}")
    return 0


def _print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"edgetrain: warning: {message}", file=sys.stderr)


def _metrics(metrics: dict[str, float]) -> str:
    return "  ".join(
        f"{name} {value:.2%}" if name.endswith("accuracy") else f"{name} {value:.4f}"
        for name, value in metrics.items()
    )


def _training_data(
    args: argparse.Namespace, setup: ModelFileSetup
) -> tuple[Dataset, Dataset | None, Dataset | None]:
    """(training, validation, test) data from ``--data`` or the model file, each read once
    and checked against the model before anything is trained, then split as asked."""
    model = setup.model
    valid: Dataset | None = None
    test: Dataset | None = None
    if args.data is not None:
        data = _checked(model, _named_or_raw(args.data, model), args.data)
    elif setup.train_data is not None:
        data = _checked(model, _raw(setup.train_data, model), setup.train_data)
        if setup.valid_data is not None and args.validation_split is None:
            valid = _checked(model, _raw(setup.valid_data, model), setup.valid_data)
        if setup.test_data is not None:
            test = _checked(model, _raw(setup.test_data, model), setup.test_data)
    else:
        raise ConfigError(
            f"{args.model}: no training data: give --data (a raw data file or one of "
            f"{sorted(NAMED_DATASETS)}) or a train data file in the model file"
        )
    split = args.validation_split
    if valid is None:
        split = 0.2 if split is None else split
        if split > 0:
            return (*split_dataset(data, split, seed=args.seed), test)
    return data, valid, test


def _checked(model: Model, data: Dataset, source: str | Path) -> Dataset:
    try:
        return model.check_data(data)
    except DataError as err:
        raise DataError(f"{source}: {err}") from None


def _named_or_raw(text: str, model: Model) -> Dataset:
    if text in NAMED_DATASETS:
        x, y = load_named(text)
        return ArrayDataset([x], y)
    path = Path(text)
    if not path.exists():
        raise DataError(
            f"--data {text}: no such file, and not a built-in data set ({', '.join(sorted(NAMED_DATASETS))})"
        )
    return _raw(path, model)


def _raw(path: Path, model: Model) -> RawFileDataset:
    return RawFileDataset.for_model(path, model)


# -- evaluate ----------------------------------------------------------------------------


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("weights", type=Path, help="trained weights (.bin, .npz or .safetensors)")
    parser.add_argument(
        "--data",
        help=(
            f"data to score: a built-in data set ({', '.join(sorted(NAMED_DATASETS))}) or an "
            "NNTrainer raw float file (default: the model file's test data, else its validation data)"
        ),
    )
    parser.add_argument("--batch-size", type=_positive_int, help="batch size (default: the model file's)")
    _backend_arguments(parser)


@command("evaluate", "score trained weights on data: loss and accuracy", _evaluate_arguments)
def evaluate(args: argparse.Namespace) -> int:
    setup = open_model_file(args.model, batch_size=args.batch_size, backend=args.backend, threads=args.threads)
    model = setup.model
    model.load(args.weights)
    source: str | Path | None = args.data or setup.test_data or setup.valid_data
    if source is None:
        raise ConfigError(
            f"{args.model}: no data to score: give --data (a raw data file or one of "
            f"{sorted(NAMED_DATASETS)}) or test data in the model file"
        )
    data = _checked(model, _named_or_raw(str(source), model), source)
    print(f"{args.weights.name} on {source} ({len(data)} samples): {_metrics(model.evaluate(data))}")
    return 0


# -- export ------------------------------------------------------------------------------


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("weights", type=Path, help="trained weights (.bin, .npz or .safetensors)")
    parser.add_argument("--onnx", type=Path, metavar="FILE", help="write an inference ONNX model")
    parser.add_argument("--opset", type=_positive_int, default=17, help="ONNX op set (default 17)")
    parser.add_argument(
        "--weights-to",
        type=Path,
        metavar="FILE",
        help="write the weights again in the format of FILE's extension (.bin, .npz, .safetensors)",
    )


@command("export", "write a model and its weights as ONNX (or weights in another format)", _export_arguments)
def export(args: argparse.Namespace) -> int:
    if args.onnx is None and args.weights_to is None:
        raise ConfigError("nothing to export: give --onnx FILE and/or --weights-to FILE")
    model = open_model_file(args.model).model
    model.load(args.weights)
    if args.onnx is not None:
        from .interchange import export_onnx

        export_onnx(model, args.onnx, opset=args.opset)
        print(f"wrote {args.onnx} (ONNX op set {args.opset}, input {_input_names(model)}, output 'output')")
    if args.weights_to is not None:
        model.save(args.weights_to)
        print(f"wrote {args.weights_to}")
    return 0


def _input_names(model: Model) -> str:
    return ", ".join(f"'{node.name}'" for node in model.graph.input_nodes())


# -- import ------------------------------------------------------------------------------


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="an ONNX model (exported from PyTorch or another framework)")
    parser.add_argument("--ini", type=Path, required=True, metavar="FILE", help="the model file to write")
    parser.add_argument(
        "--weights", type=Path, required=True, metavar="FILE", help="its weights (.bin, .npz or .safetensors)"
    )
    parser.add_argument("--loss", help="loss on the output, for fine-tuning (e.g. cross_entropy, mse)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="optimizer written to the model file")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="its learning rate (default 0.001)")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default 32)")


@command("import", "turn an ONNX model into a model file and its weights, to fine-tune here", _import_arguments)
def import_(args: argparse.Namespace) -> int:
    if args.optimizer is not None and args.loss is None:
        raise ConfigError("--optimizer needs --loss: fine-tuning needs a loss")
    model = Model.from_onnx(args.onnx, loss=args.loss)
    optimizer = OPTIMIZERS[args.optimizer](args.learning_rate) if args.optimizer else None
    model.compile(optimizer, batch_size=args.batch_size)
    check_save_path(args.weights)
    model.to_ini(args.ini)
    model.save(args.weights)
    parameters = sum(value.size for value in model.get_weights().values())
    print(f"{args.onnx.name}: {len(model.layers)} layers, {parameters:,} weights")
    print(f"wrote {args.ini} and {args.weights}")
    return 0


# -- checkpoints ---------------------------------------------------------------------------


def _checkpoints_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", type=Path, help="a checkpoint directory (edgetrain train --checkpoint) or one file"
    )


@command(
    "checkpoints",
    "check the checkpoints of a directory (or one file): intact or not, and where each run stood",
    _checkpoints_arguments,
)
def checkpoints(args: argparse.Namespace) -> int:
    files = [args.path] if args.path.is_file() else checkpoint_files(args.path)
    if not files:
        raise CheckpointError("no checkpoint files (checkpoint-<iteration>.ckpt)", path=args.path)
    usable: Path | None = None
    for path in files:
        line, intact = describe_checkpoint(path)
        print(line)
        usable = path if intact else usable
    if usable is None:
        raise CheckpointError("no intact checkpoint: --resume would refuse", path=args.path)
    if len(files) > 1 or not args.path.is_file():
        print(f"--resume continues from {usable.name}")
    return 0


# -- model files ---------------------------------------------------------------------------


@dataclass
class ModelFileSetup:
    """A compiled model from a model file, and the training settings the file gives."""

    model: Model
    epochs: int
    save_path: Path | None
    train_data: Path | None
    valid_data: Path | None
    test_data: Path | None
    continue_train: bool = False


def open_model_file(
    path: Path,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    training: bool = False,
    swap_args: argparse.Namespace | None = None,
    recompute: bool = False,
    backend: str = "auto",
    threads: int | None = None,
) -> ModelFileSetup:
    """Read a model file and compile it (for training when ``training``; swapping as
    ``swap_args`` and the model file's memory_swap keys say when given; recomputing when
    ``recompute`` or the file's ``[Model] recompute``) on ``backend``."""
    model = Model.from_ini(path)
    description = model.description
    assert description is not None
    if training and description.optimizer is None:
        raise ConfigError(f"{path}: training needs an optimizer: add an [Optimizer] section")
    swap = _swap_options(swap_args, model) if swap_args is not None else {}
    model.compile(
        description.optimizer if training else None,
        batch_size=batch_size or description.batch_size,
        seed=seed,
        recompute=recompute or description.recompute,
        backend=backend,
        threads=threads,
        **swap,  # type: ignore[arg-type]
    )
    data = description.data
    return ModelFileSetup(
        model,
        description.epochs,
        description.save_path,
        data.train,
        data.valid,
        data.test,
        description.continue_train,
    )


# -- entry point ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="edgetrain",
        description="Train neural networks on the device, with every byte planned ahead.",
    )
    parser.add_argument("--version", action="version", version=f"edgetrain {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for cmd in COMMANDS.values():
        sub = subcommands.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.arguments(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 for a usage or input error)."""
    args = build_parser().parse_args(argv)
    run: Run = args.run
    try:
        return run(args)
    except EdgetrainError as err:
        message = " ".join(str(err).split())
        print(f"edgetrain: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("edgetrain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
