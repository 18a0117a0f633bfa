"""A program and its memory plan as the plain description the Rust core runs
(``spec/core-program.md``).

Everything the core needs is decided here, in the spec's terms: every tensor's byte
offset (or ``None`` for an external tensor), every layer's operation with its resolved
properties (the conv window with ``same`` padding turned into numbers, the batch-norm
axis, the layer-norm axes...), the tensor indices of each binding, the steps, the
optimizer. The core decides nothing about memory or geometry, so a plan runs there
exactly as the planner laid it out. Layers the core cannot run are refused here, by
name and type, before anything is allocated.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..layers.activation import Activation
from ..layers.base import Layer
from ..layers.conv2d import Conv2D
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.fully_connected import FullyConnected
from ..layers.input import Input
from ..layers.merge import Addition, Concat
from ..layers.multiout import Multiout
from ..layers.normalization import BatchNormalization, LayerNormalization
from ..layers.pooling import Pooling2D
from ..layers.reshape import Flatten, Reshape
from ..layers.split import Split
from ..losses import MeanSquaredError, SigmoidCrossEntropy, SoftmaxCrossEntropy
from ..optimizers import SGD, Adam, AdamW, Optimizer
from ..planning.lifetimes import Lifespan
from ..planning.plan import MemoryPlan
from ..planning.swap import SwapSchedule
from ..program import Binding, Program, Step
from ..tensors import Shape

#: the executors ``Model.compile(backend=...)`` accepts
BACKENDS = ("auto", "python", "rust")
FORMAT = "edgetrain-core-program"
#: the step kinds the core runs
STEP_KINDS = ("forward", "calc_gradient", "calc_derivative", "apply_gradient", "recompute")
VERSION = 1


def _window(window: Any) -> dict[str, Any]:
    return {"stride": list(window.stride), "padding": list(window.pads)}


def lower_op(layer: Layer, input_shapes: list[Shape]) -> dict[str, Any]:
    """The operation of one layer with the properties its kernels need, resolved for
    its input shapes; ConfigError for a layer type the core cannot run."""
    shape = input_shapes[0] if input_shapes else ()
    if isinstance(layer, Input):
        return {"type": "input"}
    if isinstance(layer, FullyConnected):
        return {"type": "fully_connected"}
    if isinstance(layer, Embedding):
        return {"type": "embedding"}
    if isinstance(layer, Conv2D):  # conv1d too: a height-1 conv2d
        window = layer.window(shape[2], shape[3])
        return {
            "type": "conv2d",
            "kernel": list(window.kernel),
            "dilation": list(window.dilation),
            **_window(window),
            "samples_per_gemm": layer.samples_per_gemm(shape),
        }
    if isinstance(layer, Pooling2D):
        window = layer.window(shape[2], shape[3])
        return {"type": "pooling2d", "pooling": layer.pooling, "pool": list(window.kernel), **_window(window)}
    if isinstance(layer, Activation):
        return {"type": "activation", "kind": layer.kind}
    if isinstance(layer, (Flatten, Reshape)):
        return {"type": "view"}
    if isinstance(layer, Multiout):
        return {"type": "multiout"}
    if isinstance(layer, Addition):
        return {"type": "addition"}
    if isinstance(layer, Concat):
        return {"type": "concat", "axis": layer.concat_axis(shape)}
    if isinstance(layer, Split):
        return {"type": "split", "axis": layer._resolved_axis(shape)}
    if isinstance(layer, BatchNormalization):
        return {
            "type": "batch_normalization",
            "axis": layer.channel_axis(shape),
            "epsilon": layer.epsilon,
            "momentum": layer.momentum,
        }
    if isinstance(layer, LayerNormalization):
        return {
            "type": "layer_normalization",
            "axes": list(layer.normalized_axes(shape)),
            "epsilon": layer.epsilon,
        }
    if isinstance(layer, Dropout):
        return {"type": "dropout", "rate": layer.dropout_rate}
    if isinstance(layer, MeanSquaredError):
        return {"type": "loss", "loss": "mse"}
    if isinstance(layer, SoftmaxCrossEntropy):
        return {"type": "loss", "loss": "cross_entropy"}
    if isinstance(layer, SigmoidCrossEntropy):
        return {"type": "loss", "loss": "cross_entropy_sigmoid"}
    raise ConfigError(
        f"the rust backend cannot run layer '{layer.display_name}' of type "
        f"'{layer.type_name}' yet; compile with backend='python'"
    )


def lower_optimizer(optimizer: Optimizer | None) -> dict[str, Any] | None:
    if optimizer is None:
        return None
    if isinstance(optimizer, AdamW):
        return {
            "type": "adamw",
            "beta1": optimizer.beta1,
            "beta2": optimizer.beta2,
            "epsilon": optimizer.epsilon,
            "weight_decay": optimizer.weight_decay,
        }
    if isinstance(optimizer, Adam):
        return {"type": "adam", "beta1": optimizer.beta1, "beta2": optimizer.beta2, "epsilon": optimizer.epsilon}
    if isinstance(optimizer, SGD):
        return {"type": "sgd", "momentum": optimizer.momentum}
    raise ConfigError(f"the rust backend cannot run optimizer '{optimizer.type_name}' yet")


def lowering_refusal(program: Program, optimizer: Optimizer | None = None) -> str | None:
    """Why the core cannot run ``program`` with ``optimizer`` (None when it can): a float
    type other than float32, the first layer of an unsupported type, or the optimizer."""
    try:
        lower_optimizer(optimizer)
    except ConfigError as error:
        return str(error)
    if program.dtype != np.dtype(np.float32):
        return f"the rust backend runs float32 programs, got {program.dtype}"
    for step in program.steps:
        if step.kind.value not in STEP_KINDS:
            return f"the rust backend cannot run {step.kind.value} steps (layer '{step.node}') yet"
    for node in program.graph.nodes:
        try:
            lower_op(node.layer, [program.graph.shape_of(p) for p in node.inputs])
        except ConfigError as error:
            return str(error)
    return None


def _lower_binding(b: Binding, index: dict[str, int]) -> dict[str, Any]:
    return {
        "inputs": [index[n] for n in b.inputs],
        "outputs": [index[n] for n in b.outputs],
        "weights": {k: index[n] for k, n in b.weights.items()},
        "gradients": {k: index[n] for k, n in b.gradients.items()},
        "optimizer_state": {w: {k: index[n] for k, n in s.items()} for w, s in b.optimizer_state.items()},
        "scratch": {k: index[n] for k, n in b.scratch.items()},
        "grad_outputs": [index[n] for n in b.grad_outputs],
        "grad_inputs": [index[n] for n in b.grad_inputs],
        "penalties": {k: {"l2": p.l2, "decay": p.decay} for k, p in b.penalties.items()},
    }


def _lower_step(
    program: Program, step: Step, index: dict[str, int], layer_index: dict[str, int]
) -> dict[str, Any]:
    """One step; a backward step reading recomputed tensors carries its own binding, a
    recompute step its source normalization and target (``spec/recompute.md``)."""
    lowered: dict[str, Any] = {
        "kind": step.kind.value,
        "layer": layer_index[step.node],
        "zero_fill": [index[n] for n in step.zero_fill],
    }
    binding = program.step_binding(step)
    if binding != program.bindings[step.node]:
        lowered["binding"] = _lower_binding(binding, index)
    if step.kind.value == "recompute":
        r = program.recompute[step.node]
        lowered["recompute"] = {"source": layer_index[r.source], "output": index[r.recomputed]}
    return lowered


def lower_swap(schedule: SwapSchedule, index: dict[str, int]) -> dict[str, Any]:
    """The schedule as the core carries it out: per swapped buffer (in buffer order) its
    member tensors, transfer bytes, slot and segments (``spec/core-program.md``)."""
    plan = schedule.plan
    buffers = []
    for name in schedule.swapped:
        b = plan.buffers[name]
        buffers.append(
            {
                "name": name,
                "members": [index[m] for m in b.members],
                "nbytes": schedule.buffer_nbytes(name),
                "size": b.size,
                "persistent": b.lifespan is Lifespan.PERSISTENT,
                "slot": schedule.slots[name].offset,
                "segments": [
                    {
                        "start": s.start,
                        "end": s.end,
                        "read_in": s.read_in,
                        "first_use": s.uses[0],
                        "exit": s.exit.value,
                        "held": s.held,
                        "offset": s.offset,
                    }
                    for s in schedule.segments[name]
                ],
            }
        )
    return {"lookahead": schedule.lookahead, "file_bytes": schedule.swap_file_bytes, "buffers": buffers}


def _offset(plan: MemoryPlan, name: str, schedule: SwapSchedule | None) -> int | None:
    """The tensor's arena offset: the plan's, or its buffer's resident offset under a
    swap schedule (None for external and swapped tensors)."""
    t = plan.tensors[name]
    if schedule is None or t.offset is None:
        return t.offset
    buffer = plan.buffers[t.buffer]
    if t.buffer in schedule.swapped:
        return None
    return schedule.resident_offsets[t.buffer] + (t.offset - buffer.offset)


def lower_program(
    program: Program,
    plan: MemoryPlan,
    optimizer: Optimizer | None,
    schedule: SwapSchedule | None = None,
) -> dict[str, Any]:
    """The description of ``program`` laid out by ``plan``, or by ``schedule``'s resident
    arena and swap file when it swaps (``spec/core-program.md``)."""
    refusal = lowering_refusal(program)
    if refusal is not None:
        raise ConfigError(refusal)
    if schedule is not None and schedule.plan is not plan:
        raise ConfigError("the swap schedule was made for another plan")
    names = list(program.tensors)
    index = {name: i for i, name in enumerate(names)}
    tensors = [
        {
            "name": name,
            "offset": _offset(plan, name, schedule),
            "shape": list(spec.shape),
            "dtype": str(spec.dtype),
        }
        for name, spec in program.tensors.items()
    ]
    layers = [
        {
            "name": node.name,
            "op": lower_op(node.layer, [program.graph.shape_of(p) for p in node.inputs]),
            "binding": _lower_binding(program.bindings[node.name], index),
        }
        for node in program.graph.nodes
    ]
    layer_index = {node.name: i for i, node in enumerate(program.graph.nodes)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "training": program.training,
        "arena_bytes": plan.arena_bytes if schedule is None else schedule.resident_bytes,
        "tensors": tensors,
        "layers": layers,
        "steps": [_lower_step(program, step, index, layer_index) for step in program.steps],
        "optimizer": lower_optimizer(optimizer) if program.training else None,
        "inputs": [index[n] for n in program.inputs],
        "output": index[program.output],
        "label": None if program.label is None else index[program.label],
        "loss": None if program.loss is None else index[program.loss],
        "swap": None if schedule is None else lower_swap(schedule, index),
    }


def program_json(
    program: Program, plan: MemoryPlan, optimizer: Optimizer | None, schedule: SwapSchedule | None = None
) -> str:
    """:func:`lower_program` as the JSON text ``_core.CoreExecutor`` parses."""
    return json.dumps(lower_program(program, plan, optimizer, schedule))
