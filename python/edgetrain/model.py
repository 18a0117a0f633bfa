"""The user-facing model: build from layers, compile, train, predict, read and write weights."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .backends.choice import resolve_backend
from .data import (
    ArrayDataset,
    Dataset,
    as_input_list,
    check_dataset,
    check_inputs,
    prepare_labels,
)
from .errors import ConfigError, DataError, StateError
from .executor import Executor, HeapStore, TensorStore
from .graph import Graph, build_graph
from .initializers import initialize_into
from .layers.base import Layer
from .losses import LossLayer, MeanSquaredError, make_loss
from .planning import ArenaStore, MemoryPlan, check_plan, get_planner, plan_memory
from .planning.recompute import build_with_recompute
from .planning.swap import SwapSchedule
from .optimizers import Optimizer
from .program import Program, build_program
from .tensors import TensorKind, format_shape

if TYPE_CHECKING:
    from pathlib import Path

    from .backends.rust import RustExecutor
    from .swapping import SwapFile, SwapTraffic

    from .ini import ModelDescription
    from .training import OptimizerState

Array = NDArray[Any]


@dataclass
class History:
    """Per-epoch metrics of ``fit``; validation entries are present when validating.
    A resumed run's history holds the epochs before the checkpoint too, and
    ``resumed_from`` names the checkpoint file it continued from."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    resumed_from: Path | None = None

    def latest(self) -> dict[str, float]:
        """The last epoch's metrics by name (only those that were measured)."""
        lists = {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
        }
        return {name: values[-1] for name, values in lists.items() if values}


@dataclass(frozen=True)
class EpochProgress:
    """What a progress callback sees after each batch."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    accuracy: float | None
    samples_per_second: float


ProgressCallback = Callable[[EpochProgress], None]
#: called after each epoch (and its validation) with the epoch index and its metrics
EpochCallback = Callable[[int, dict[str, float]], None]


#: elements of a weight copied between two releases of the swap file's pages
COPY_BLOCK = 1 << 18


def copy_releasing(target: Array, values: Array, release: Callable[[], None] | None) -> None:
    """``target[...] = values`` (cast as needed), ``COPY_BLOCK`` elements at a time with
    ``release`` called after each when given (see ``Model._place_weights``)."""
    if release is None or not target.flags.c_contiguous:  # reshape would copy: at once
        np.copyto(target, values, casting="unsafe")
        return
    flat = target.reshape(-1)
    source = np.broadcast_to(values, target.shape).reshape(-1)
    for start in range(0, flat.size, COPY_BLOCK):
        np.copyto(flat[start : start + COPY_BLOCK], source[start : start + COPY_BLOCK], casting="unsafe")
        release()


class Model:
    """A network of layers with a loss; see ``spec/graph.md`` for how layers connect."""

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: str | LossLayer | None = None,
        *,
        name: str = "model",
    ) -> None:
        self.layers = list(layers)
        self.loss_name = loss if isinstance(loss, str) or loss is None else loss.type_name
        self.name = name
        self.optimizer: Optimizer | None = None
        self.batch_size = 0
        self.seed = 0
        self.dtype: np.dtype[Any] = np.dtype(np.float32)
        self.iteration = 0
        self.planner: str | None = "greedy_by_size"
        self.debug_poison = False
        #: swap settings of the last compile (``spec/swapping.md``)
        self.memory_budget: int | str | None = None
        self.swap = False
        self.lookahead: int | None = None
        self.swap_dir: str | os.PathLike[str] | None = None
        #: recompute instead of keep in the last compile (``spec/recompute.md``)
        self.recompute = False
        #: the executor of the last compile (``"python"`` or ``"rust"``) and its threads
        self.backend = "python"
        self.threads: int | None = None
        self._closed = False
        self._weights: dict[str, Array] = {}
        self._train: Executor | None = None
        self._inference: dict[int, Executor] = {}
        self._graph: Graph | None = None
        #: what the model file said, for models made by :meth:`from_ini`
        self.description: ModelDescription | None = None

    # -- model files -----------------------------------------------------------------

    @classmethod
    def from_ini(cls, path: str | os.PathLike[str]) -> Model:
        """A model from an NNTrainer INI file (``spec/ini.md``); ``optimizer`` and
        ``batch_size`` are the file's: ``compile(model.optimizer, model.batch_size)``."""
        from .ini import load_model

        return load_model(path)

    def to_ini(self, path: str | os.PathLike[str]) -> None:
        """Write the layers, loss, optimizer and schedule as an NNTrainer INI file,
        atomically; ``Model.from_ini`` reads it back to the same model."""
        from .ini import save_model

        save_model(self, path)

    @classmethod
    def from_onnx(
        cls, path: str | os.PathLike[str], loss: str | None = None, *, name: str | None = None
    ) -> Model:
        """A model with the weights of an ONNX file (exported from PyTorch or another
        framework), compiled for inference; ``compile(optimizer, batch_size)`` fine-tunes
        it with those weights. ``loss`` goes on the output (none by default). Needs the
        ``onnx`` package; see ``spec/interchange.md`` for the ops imported."""
        from .interchange import import_onnx

        return import_onnx(path, loss=loss, name=name)

    # -- compile -------------------------------------------------------------------

    def _new_loss(self) -> LossLayer | None:
        return make_loss(self.loss_name) if self.loss_name else None

    def compile(
        self,
        optimizer: Optimizer | None = None,
        batch_size: int = 32,
        *,
        seed: int = 0,
        dtype: Any = np.float32,
        planner: str | None = "greedy_by_size",
        debug_poison: bool = False,
        memory_budget: int | str | None = None,
        swap: bool = False,
        lookahead: int | None = None,
        swap_dir: str | os.PathLike[str] | None = None,
        recompute: bool = False,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        """Build the graph and program for ``batch_size`` and initialise weights from
        ``seed`` (kept when recompiling). Without an optimizer the model only infers.

        ``backend="rust"`` runs the program in the compiled core (``spec/core-program.md``)
        on ``threads`` threads (default: every core the process may use); ``"python"`` is
        the numpy reference. Both give the same results within the tolerances of
        ``spec/core-program.md``; the rust backend refuses float64 and ``debug_poison``
        (ConfigError), and layer types it cannot run yet, by name. ``"auto"`` (the
        default) is the rust backend wherever it can run the model and the python one
        otherwise (float64, ``debug_poison``, such a layer, or no ``_core`` built);
        ``model.backend`` tells which.

        Swapping (``spec/swapping.md``): ``memory_budget`` (bytes, or ``"64MiB"``,
        ``"1.5GB"``, ``"25%"`` of the plan without swap) chooses buffers to swap to a file and the lookahead so that the
        resident arena fits, or raises ConfigError naming the smallest budget that would;
        ``swap=True`` swaps every buffer that can be, at ``lookahead`` (default 0; with a
        budget it fixes the lookahead instead of trying several). The swap file is made
        in ``swap_dir`` (default: the system temp dir) at its full size now, so a missing
        or full directory fails here (SwapError), and removed by :meth:`close`.

        ``planner`` lays every tensor out in one arena (``spec/planning.md``; None gives
        each tensor its own array); ``debug_poison`` fills dead bytes with NaN after
        every step, so a planning mistake shows up as a wrong number.

        ``recompute`` (training; ``spec/recompute.md``) trades a little compute for
        memory with the same results bit for bit: an activation right after a batch or
        layer normalization is not kept for the backward pass but written again from the
        normalization's kept scratch just before it is needed, and max pooling drops
        its argmax scratch where its input and output are kept anyway."""
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype}")
        self._check_backend(backend, threads, debug_poison)
        self.threads = threads
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if planner is not None:
            get_planner(planner)
        self.planner = planner
        self.debug_poison = bool(debug_poison)
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        graph = build_graph(self.layers, self.batch_size, self._new_loss())
        self._graph = graph
        training = optimizer is not None
        if training and self.loss_name is None:
            raise ConfigError("training needs a loss: pass loss= to Model")
        self.recompute = bool(recompute)
        program = self._build_program(self.layers, training=training, recompute=self.recompute)
        self._graph = program.graph
        self.backend = resolve_backend(backend, program, optimizer, debug_poison=self.debug_poison)
        swapping = self._swap_setup(program, memory_budget, swap, lookahead, swap_dir)
        old_stores = [e.store for e in (self._train, *self._inference.values()) if e is not None]
        self._inference = {}
        self._train = None
        try:
            if training:
                self._train = self._executor(program, owns_weights=True, swapping=swapping)
            else:
                self._inference[self.batch_size] = self._executor(program, owns_weights=True)
        except BaseException:
            if swapping is not None:
                _close_swapping(swapping[1])
            raise
        self._closed = False
        for store in old_stores:
            closing = getattr(store, "close", None)
            if closing is not None and store is not getattr(self._train, "store", None):
                closing()

    def _build_program(self, layers: list[Layer], *, training: bool, recompute: bool) -> Program:
        """The program of ``layers`` at this model's batch size, with its loss, dtype and
        optimizer state, recomputing as ``recompute`` says: what ``compile`` runs, and
        what the plans of "what if nothing were frozen / nothing recomputed" compare."""
        optimizer = self.optimizer
        return build_with_recompute(
            lambda: build_program(
                build_graph(layers, self.batch_size, self._new_loss()),
                training=training,
                dtype=self.dtype,
                optimizer_state=optimizer.state_names() if optimizer else (),
            ),
            layers,
            recompute,
        )

    def _swap_setup(
        self,
        program: Program,
        memory_budget: int | str | None,
        swap: bool,
        lookahead: int | None,
        swap_dir: str | os.PathLike[str] | None,
    ) -> tuple[SwapSchedule, SwapFile | RustExecutor] | None:
        """The swap schedule and its swap file, made before anything about the model
        changes (a budget that cannot fit or a swap directory that fails leaves the
        weights as they were); None when nothing is swapped. With the rust backend the
        core makes the file: its executor is made here, the weights copied in later."""
        from .planning.budget import choose_swap, parse_budget
        from .planning.swap import plan_swap
        from .swapping import SwapFile

        if memory_budget is not None:
            parse_budget(memory_budget, plan_bytes=1 << 40)  # malformed budgets fail first
        if lookahead is not None and (
            isinstance(lookahead, bool) or int(lookahead) != lookahead or lookahead < 0
        ):
            raise ConfigError(f"lookahead must be a non-negative integer, got {lookahead!r}", key="lookahead")
        self.memory_budget, self.swap, self.swap_dir = memory_budget, bool(swap), swap_dir
        self.lookahead = None if lookahead is None else int(lookahead)
        if memory_budget is None and not swap:
            return None
        if not program.training:
            raise ConfigError("swapping applies to training: compile with an optimizer")
        if self.planner is None:
            raise ConfigError("swapping needs a planner (planner=None gives every tensor its own array)")
        base = plan_memory(program, self.planner)
        schedule: SwapSchedule | None
        if memory_budget is not None:
            budget = parse_budget(memory_budget, plan_bytes=base.arena_bytes)
            schedule = choose_swap(program, budget, planner=self.planner, lookahead=self.lookahead, plan=base)
        else:
            schedule = plan_swap(program, None, lookahead=self.lookahead or 0, planner=self.planner, plan=base)
        if schedule is None or not schedule.swapped:
            return None
        if self.debug_poison:
            from .planning.swap_check import check_swap

            check_swap(program, schedule)
        if self.backend == "rust":
            from .backends.rust import RustExecutor

            executor = RustExecutor(
                program,
                schedule.plan,
                self.optimizer,
                threads=self.threads,
                seed=self.seed + 1,
                schedule=schedule,
                swap_dir=swap_dir,
            )
            return schedule, executor
        return schedule, SwapFile(swap_dir, schedule.swap_file_bytes)

    def _place_weights(
        self, program: Program, store: TensorStore, release: Callable[[], None] | None = None
    ) -> None:
        """Writes every weight's initial value straight into its tensor in ``store`` (the
        arena, or a swap file slot) and makes ``_weights`` those views: a weight of the
        same shape keeps its values from the previous compile, a new one is drawn from
        ``seed``, in graph order, a block at a time (``initialize_into``). No copy of the
        weights exists beside the arena, so compiling adds nothing to the peak memory.
        ``release`` (swapping: drops the swap file's pages from the process) is called
        after every block written: the pages written in a slot would otherwise all count
        in the resident set until the end, the swapped weights' bytes on top of the
        budget at compile's peak."""
        rng = np.random.default_rng(self.seed)
        placed: dict[str, Array] = {}
        for node in program.graph.nodes:
            for spec in node.setup.weights:
                name = f"{node.name}:{spec.name}"
                target, old = store[name], self._weights.get(name)
                if old is not None and old.shape == spec.shape:
                    copy_releasing(target, old, release)
                else:
                    initialize_into(spec.initializer, target, rng, after_block=release)
                placed[name] = target
        if release is not None:
            release()
        self._weights = placed

    def _executor(
        self,
        program: Program,
        *,
        owns_weights: bool = False,
        swapping: tuple[SwapSchedule, SwapFile | RustExecutor] | None = None,
    ) -> Executor:
        """An executor over a heap store, or over an arena when a planner is set. The
        compiled program's arena holds the weights (``_weights`` become views into it);
        other programs borrow them. ``debug_poison`` also runs the plan checker. With
        ``swapping`` the store is a swapping store: swapped weights live in their swap
        file slot between iterations, and ``_weights`` are views there."""
        if self.backend == "rust":
            return self._rust_executor(program, owns_weights=owns_weights, swapping=swapping)
        store: TensorStore
        if swapping is not None:
            from .swapping import SwapFile, SwapStore

            schedule, swap_file = swapping
            assert isinstance(swap_file, SwapFile)
            swap_store = SwapStore(program.tensors, schedule, swap_file, poison=self.debug_poison)
            self._place_weights(program, swap_store, release=swap_store.release_file_pages)
            store = swap_store
        elif self.planner is None:
            store = HeapStore(program.tensors, shared=None if owns_weights else self._weights)
            if owns_weights:
                self._place_weights(program, store)
        else:
            external = () if owns_weights else list(self._weights)
            plan = plan_memory(program, self.planner, external=external)
            if self.debug_poison:
                check_plan(program, plan)
            shared = None if owns_weights else self._weights
            store = ArenaStore(program.tensors, plan, shared=shared, poison=self.debug_poison)
            if owns_weights:
                self._place_weights(program, store)
        rng = np.random.default_rng(self.seed + 1)
        return Executor(program, store, self.optimizer, rng)

    def _check_backend(
        self,
        backend: str,
        threads: int | None,
        debug_poison: bool,
    ) -> None:
        from .backends import BACKENDS

        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}", key="backend")
        if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads <= 0):
            raise ConfigError(f"threads must be a positive integer, got {threads!r}", key="threads")
        if backend != "rust":
            return
        if self.dtype != np.dtype(np.float32):
            raise ConfigError(f"the rust backend runs float32 models, got dtype {self.dtype}", key="dtype")
        if debug_poison:
            raise ConfigError("debug_poison is a python-backend tool (the rust arena is not poisoned)")

    def _rust_executor(
        self,
        program: Program,
        *,
        owns_weights: bool,
        swapping: tuple[SwapSchedule, SwapFile | RustExecutor] | None = None,
    ) -> Executor:
        """The program in the Rust core's arena. The compiled program owns the weights
        (``_weights`` become numpy views into its arena); other programs (inference at
        other batch sizes) bind those same arrays as external tensors, so predict, the
        training step and get/set_weights all see one copy of every weight."""
        from .backends.rust import RustExecutor

        external = () if owns_weights else list(self._weights)
        if swapping is not None:  # made by _swap_setup, with its swap file
            executor = swapping[1]
            assert isinstance(executor, RustExecutor)
        else:
            plan = plan_memory(program, self.planner or "naive", external=external)
            executor = RustExecutor(
                program,
                plan,
                self.optimizer,
                threads=self.threads,
                seed=self.seed + 1,
                shared=None if owns_weights else self._weights,
            )
        if owns_weights:
            if swapping is not None:  # the initial values touch the file's pages
                self._place_weights(program, executor.store, release=executor.core.release_swap_pages)
            else:
                self._place_weights(program, executor.store)
        return executor

    def _inference_executor(self, batch: int) -> Executor:
        if batch not in self._inference:
            graph = build_graph(self.layers, batch, self._new_loss())
            program = build_program(graph, training=False, dtype=self.dtype)
            self._inference[batch] = self._executor(program)
        return self._inference[batch]

    # -- properties ------------------------------------------------------------------

    @property
    def graph(self) -> Graph:
        if self._graph is None:
            raise StateError("the model is not compiled yet: call compile() first")
        return self._graph

    @property
    def program(self) -> Program:
        """The compiled program (the training one when there is an optimizer)."""
        executor = self._train or self._inference.get(self.batch_size)
        if executor is None:
            raise StateError("the model is not compiled yet: call compile() first")
        return executor.program

    def plan(self, planner: str | None = None) -> MemoryPlan:
        """The memory plan of the compiled program (the training one when there is an
        optimizer) with ``planner``, by default the one compiled with (greedy_by_size
        when compiled without a planner): the very plan the arena runs when it matches."""
        chosen = planner or self.planner or "greedy_by_size"
        executor = self._train or self._inference.get(self.batch_size)
        if executor is not None and isinstance(executor.store, ArenaStore):
            if executor.store.plan.planner == chosen:
                return executor.store.plan
        schedule = self.swap_schedule
        if schedule is not None and schedule.planner == chosen:
            return schedule.plan
        return plan_memory(self.program, chosen)

    @property
    def swap_schedule(self) -> SwapSchedule | None:
        """The swap schedule training runs (None without swapping): what is swapped,
        when it moves, the resident arena and the swap file (``spec/swapping.md``)."""
        from .backends.rust import RustExecutor
        from .swapping import SwapStore

        if isinstance(self._train, RustExecutor):
            return self._train.schedule
        store = self._train.store if self._train is not None else None
        return store.schedule if isinstance(store, SwapStore) else None

    @property
    def swap_traffic(self) -> SwapTraffic | None:
        """Bytes written to and read from the swap file, per iteration and in total (and,
        on the rust backend, the waits for read-ins and the time waited)."""
        from .backends.rust import RustExecutor
        from .swapping import SwapStore

        if isinstance(self._train, RustExecutor):
            return self._train.traffic if self._train.schedule is not None else None
        store = self._train.store if self._train is not None else None
        return store.traffic if isinstance(store, SwapStore) else None

    def close(self) -> None:
        """Delete the swap file (if training swaps). The weights are copied into memory
        first, so get_weights, save and predict keep working; training needs compile()
        again. Idempotent; also done by ``with model:`` and at interpreter exit."""
        from .backends.rust import RustExecutor
        from .swapping import SwapStore

        store = self._train.store if self._train is not None else None
        rust_swap = isinstance(self._train, RustExecutor) and self._train.schedule is not None
        if not (isinstance(store, SwapStore) or rust_swap) or self._closed:
            return
        self._weights = {name: np.array(values) for name, values in self._weights.items()}
        self._inference = {}
        if isinstance(store, SwapStore):
            store.close()
        elif isinstance(self._train, RustExecutor):
            self._train.close_swap()
        self._closed = True

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _classifies(self) -> bool:
        return self.loss_name is not None and not isinstance(self._new_loss(), MeanSquaredError)

    def _input_shapes(self) -> tuple[list[tuple[int, ...]], list[str]]:
        nodes = self.graph.input_nodes()
        return [n.output_shapes[0][1:] for n in nodes], [n.name for n in nodes]

    def _output_shape(self) -> tuple[int, ...]:
        return self.program.tensors[self.program.output].shape[1:]

    def _labels(self, y: Array) -> Array:
        return prepare_labels(y, self._output_shape(), classes=self._classifies(), dtype=self.dtype)

    def check_data(self, data: Dataset) -> Dataset:
        """``data`` read once and checked against the model (shapes, NaN, labels), so bad
        data fails before training; the result gives labels in the output's shape.
        ``fit`` and ``evaluate`` do this themselves; a split of a checked dataset
        (``data.split_dataset``) is not read again."""
        shapes, names = self._input_shapes()
        return check_dataset(
            data, shapes, names, self._output_shape(), classes=self._classifies(), dtype=self.dtype
        )

    def _dataset(self, x: Array | Sequence[Array], y: Array) -> ArrayDataset:
        inputs = as_input_list(x)
        shapes, names = self._input_shapes()
        check_inputs(inputs, shapes, names)
        return ArrayDataset(inputs, self._labels(y))

    # -- freezing ----------------------------------------------------------------------

    def freeze(
        self, layers: str | Sequence[str] | None = None, *, up_to: str | None = None
    ) -> list[str]:
        """Stop training ``layers`` (a name or several), or the layer ``up_to`` *and every
        layer whose forward step runs before it* (inclusive, in execution order), or every
        layer when neither is given; returns the names selected, in execution order.

        A frozen layer gets no gradient, optimizer state or update, and derivatives stop
        at the lowest layer that still trains, so the memory plan shrinks
        (``spec/graph.md``). A compiled model is recompiled at once, keeping its weights,
        its iteration (the schedule's position) and the optimizer state of the weights
        that still train. Batch-norm moving statistics of a frozen layer still follow
        the training batches (NNTrainer's rule, ``spec/layers/normalization.md``)."""
        return self._set_trainable(False, layers, up_to)

    def unfreeze(
        self, layers: str | Sequence[str] | None = None, *, up_to: str | None = None
    ) -> list[str]:
        """Train again the layers :meth:`freeze` would select with the same arguments.
        A compiled model is recompiled, keeping weights and iteration; when a weight starts
        training, the optimizer state of *every* weight starts fresh (zero moments, step
        count 0), as one shared step count cannot bias-correct weights that began
        training at different times."""
        return self._set_trainable(True, layers, up_to)

    def _set_trainable(
        self, trainable: bool, names: str | Sequence[str] | None, up_to: str | None
    ) -> list[str]:
        from .freezing import select_layers

        chosen = select_layers(self.layers, names, up_to)
        for layer in chosen:
            layer.trainable = trainable
        if self._graph is not None:
            self._recompile()
        return [str(layer.name) for layer in chosen]

    def _recompile(self) -> None:
        """Compile again with the same settings; weights and iteration are kept, and the
        optimizer state (with its step count) when no weight starts training."""
        old = self._train
        state: dict[str, Array] = {}
        old_gradients: set[str] = set()
        if old is not None:
            for name, spec in old.program.tensors.items():
                if spec.kind is TensorKind.OPTIMIZER_STATE:
                    state[name] = old.store[name].copy()
                elif spec.kind is TensorKind.GRADIENT:
                    old_gradients.add(name)
        self.compile(
            self.optimizer,
            self.batch_size,
            seed=self.seed,
            dtype=self.dtype,
            planner=self.planner,
            debug_poison=self.debug_poison,
            memory_budget=self.memory_budget,
            swap=self.swap,
            lookahead=self.lookahead,
            swap_dir=self.swap_dir,
            recompute=self.recompute,
            backend=self.backend,
            threads=self.threads,
        )
        new = self._train
        if old is None or new is None:
            return
        gradients = {n for n, s in new.program.tensors.items() if s.kind is TensorKind.GRADIENT}
        if gradients <= old_gradients:
            for name, values in state.items():
                if name in new.program.tensors:
                    np.copyto(new.store[name], values)
            new.update_count = old.update_count

    # -- training ----------------------------------------------------------------------

    def _trainer(self) -> Executor:
        if self._closed:
            raise StateError("the model was closed (its swap file is gone): compile() again to train")
        if self._train is None:
            raise StateError("the model is not compiled for training: call compile(optimizer=...)")
        return self._train

    def train_step(self, x: Array | Sequence[Array], y: Array) -> float:
        """One iteration on exactly one batch; returns the batch loss."""
        trainer = self._trainer()
        data = self._dataset(x, y)
        if len(data) != self.batch_size:
            raise DataError(f"train_step takes one batch of {self.batch_size} samples, got {len(data)}")
        return self._step(trainer, data.inputs, data.labels)

    def _step(self, trainer: Executor, inputs: Sequence[Array], labels: Array) -> float:
        assert self.optimizer is not None
        lr = self.optimizer.schedule.lr_at(self.iteration)
        # a diverging run overflows inside the kernels first; it is reported below, once,
        # as a DataError naming the iteration rather than as numpy warnings
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                loss = trainer.train_step(inputs, labels, lr)
        except BaseException:
            settle = getattr(trainer.store, "settle", None)
            if settle is not None:  # a swapping store: put updated weights back in the file
                settle()
            raise
        self.iteration += 1
        if not math.isfinite(loss):
            raise DataError(
                f"the loss became {loss} at iteration {self.iteration}: lower the learning rate "
                "or check the data"
            )
        return loss

    def fit(
        self,
        x: Array | Sequence[Array] | Dataset,
        y: Array | None = None,
        *,
        epochs: int = 1,
        validation_split: float = 0.0,
        validation_data: tuple[Array | Sequence[Array], Array] | Dataset | None = None,
        shuffle: bool = True,
        progress: ProgressCallback | None = None,
        on_epoch: EpochCallback | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
    ) -> History:
        """Train for ``epochs`` passes over the data (the last incomplete batch of each
        epoch is left out; shuffling changes which). Everything is checked first.

        With ``checkpoint`` (a directory) the whole training state is saved there at the
        end of every epoch, every ``checkpoint_every`` iterations and on Ctrl-C (the step
        in progress completes, the checkpoint is written, then
        :class:`~edgetrain.TrainingInterrupted`, a ``KeyboardInterrupt``, is
        raised); the newest two files are kept. ``resume=True`` continues from the newest
        intact checkpoint there (a fresh start when there is none), ending with exactly
        the weights of an uninterrupted run; ``epochs`` may be raised to train further.
        A directory holding an earlier run's checkpoints without ``resume`` is refused.
        See ``spec/checkpoint.md``."""
        from .training import fit_loop

        self._trainer()
        if epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {epochs}")
        if not 0.0 <= validation_split < 1.0:
            raise ConfigError(f"validation_split must be in [0, 1), got {validation_split}")
        train: Dataset
        valid: Dataset | None = None
        if y is None:
            if isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
                raise DataError("fit needs labels y when x is an array")
            train = self.check_data(x)  # type: ignore[arg-type]
        else:
            full = self._dataset(x, y)  # type: ignore[arg-type]
            if validation_split > 0:
                n_valid = int(round(len(full) * validation_split))
                order = np.random.default_rng(self.seed + 2).permutation(len(full))
                valid = ArrayDataset(*full.take(order[:n_valid]))
                train = ArrayDataset(*full.take(order[n_valid:]))
            else:
                train = full
        if validation_data is not None:
            valid = (
                self._dataset(*validation_data)
                if isinstance(validation_data, tuple)
                else self.check_data(validation_data)
            )
        return fit_loop(
            self,
            train,
            valid,
            epochs=epochs,
            shuffle=shuffle,
            progress=progress,
            on_epoch=on_epoch,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )

    def optimizer_state(self) -> OptimizerState:
        """Copies of the optimizer's state tensors (momentum, Adam moments) by
        ``"<layer>:<weight>:<state>"`` and its update count (Adam's bias-correction
        step); :meth:`load_optimizer_state` puts them back."""
        from .training import read_optimizer_state

        return read_optimizer_state(self._trainer())

    def load_optimizer_state(self, state: OptimizerState) -> None:
        """Overwrite the optimizer state and update count; names, shapes and values are
        all checked before anything changes (``ConfigError``)."""
        from .training import write_optimizer_state

        write_optimizer_state(self._trainer(), state)

    # -- inference ---------------------------------------------------------------------

    def _batches(self, n: int) -> list[tuple[int, int]]:
        size = self.batch_size or 1
        return [(start, min(start + size, n)) for start in range(0, n, size)]

    def predict(self, x: Array | Sequence[Array]) -> Array:
        """Outputs for any number of samples (softmax probabilities with cross entropy)."""
        if self._graph is None:
            raise StateError("the model is not compiled yet: call compile() first")
        inputs = as_input_list(x)
        shapes, names = self._input_shapes()
        check_inputs(inputs, shapes, names)
        n = len(inputs[0])
        result = np.empty((n, *self._output_shape()), dtype=self.dtype)
        for start, stop in self._batches(n):
            executor = self._inference_executor(stop - start)
            result[start:stop] = executor.forward([a[start:stop] for a in inputs])
        return result

    def evaluate(self, x: Array | Sequence[Array] | Dataset, y: Array | None = None) -> dict[str, float]:
        """Loss (and accuracy for classification) over all samples, in inference mode."""
        if self.loss_name is None:
            raise ConfigError("evaluate needs a loss: pass loss= to Model")
        data = self.check_data(x) if y is None else self._dataset(x, y)  # type: ignore[arg-type]
        return self._evaluate_dataset(data)

    def _evaluate_dataset(self, data: Dataset) -> dict[str, float]:
        total, correct = 0.0, 0
        n = len(data)
        if n == 0:
            raise DataError("the validation data set is empty")
        for start, stop in self._batches(n):
            inputs, labels = data.take(np.arange(start, stop))
            executor = self._inference_executor(stop - start)
            out = executor.forward(inputs, labels)
            total += executor.loss() * (stop - start)
            if self._classifies():
                correct += _count_correct(out, labels)
        metrics = {"loss": total / n}
        if self._classifies():
            metrics["accuracy"] = correct / n
        return metrics

    # -- weights -------------------------------------------------------------------------

    def get_weights(self) -> dict[str, Array]:
        """Copies of every weight (batch-norm moving statistics included), by
        ``"<layer>:<weight>"``."""
        if not self._weights:
            raise StateError("the model has no weights yet: call compile() first")
        return {name: value.copy() for name, value in self._weights.items()}

    def set_weights(self, weights: Mapping[str, Array]) -> None:
        """Overwrite weights in place; every name and shape is checked before any is set."""
        if not self._weights:
            raise StateError("the model has no weights yet: call compile() first")
        unknown = sorted(set(weights) - set(self._weights))
        if unknown:
            raise ConfigError(f"unknown weight name(s) {unknown}; the model has {sorted(self._weights)}")
        for name, value in weights.items():
            have = self._weights[name].shape
            if np.shape(value) != have:
                raise ConfigError(
                    f"weight '{name}' has shape {format_shape(have)}, got {format_shape(np.shape(value))}"
                )
            if not np.all(np.isfinite(value)):
                raise ConfigError(f"weight '{name}' contains NaN or infinite values")
        for name, value in weights.items():
            np.copyto(self._weights[name], value, casting="unsafe")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the weights atomically: NNTrainer's ``.bin`` (float32 in layer order), or by
        name as ``.npz`` or ``.safetensors`` when ``path`` ends so. See ``spec/weights.md``
        and ``spec/interchange.md``."""
        from .weights_io import save_weights

        if not self._weights:
            raise StateError("the model has no weights yet: call compile() first")
        save_weights(path, self._weights)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Read weights saved by :meth:`save` (or by NNTrainer) into the compiled model;
        sizes, names and shapes are checked before any weight changes."""
        from .weights_io import load_weights

        if not self._weights:
            raise StateError("the model has no weights yet: call compile() first")
        self.set_weights(load_weights(path, {n: w.shape for n, w in self._weights.items()}))

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts."""
        graph = self.graph
        rows = [("layer", "type", "output shape", "params")]
        total = 0
        frozen: dict[str, int] = {}
        for node in graph.nodes:
            count = sum(int(np.prod(w.shape)) for w in node.setup.weights)
            total += count
            if count and not node.layer.trainable:
                frozen[node.name] = count
            shapes = ", ".join(format_shape(s[1:]) for s in node.output_shapes)
            rows.append((node.name, node.layer.type_name, shapes, f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total parameters: {total:,}")
        if frozen:
            lines.append(
                f"frozen parameters: {sum(frozen.values()):,} in {', '.join(frozen)} "
                "(see freeze())"
            )
        return "\n".join(lines)


def _close_swapping(owner: SwapFile | RustExecutor) -> None:
    """Delete the swap file of a compile that failed after making it."""
    from .swapping import SwapFile

    if isinstance(owner, SwapFile):
        owner.close()
    else:
        owner.close_swap()


def _count_correct(outputs: Array, labels: Array) -> int:
    n = len(labels)
    predicted = outputs.reshape(n, -1).argmax(axis=1)
    truth = labels.reshape(n, -1).argmax(axis=1)
    return int(np.count_nonzero(predicted == truth))


__all__ = ["EpochProgress", "History", "Model"]
