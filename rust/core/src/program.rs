//! The program the Python package lowers a compiled model into (`spec/core-program.md`):
//! every tensor with its planned byte offset, the layers with their properties and the
//! tensor indices of their bindings, the ordered steps and the optimizer. The core
//! runs it as given; it decides nothing about memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Error, Result};

/// The format name a description must carry.
pub const FORMAT: &str = "edgetrain-core-program";
/// The format version this core reads.
pub const VERSION: u32 = 1;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Activations, weights, gradients (the kernels are f32).
    Float32,
    /// Max-pooling argmax.
    Int32,
    /// Dropout and global-max masks.
    Uint8,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Float32 | DType::Int32 => 4,
            DType::Uint8 => 1,
        }
    }
}

/// One tensor: `offset` into the arena, or `None` for an external tensor whose memory
/// the caller binds (weights an inference program borrows).
#[derive(Debug, Clone, Deserialize)]
pub struct Tensor {
    /// The spec's tensor name (`conv1:weight`, ...).
    pub name: String,
    /// Byte offset in the arena; `None`: external.
    pub offset: Option<usize>,
    /// Full shape, batch included.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl Tensor {
    /// Elements of the tensor (`None` when the count overflows).
    pub fn elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Bytes of the tensor (`None` when the count overflows).
    pub fn nbytes(&self) -> Option<usize> {
        self.elements()?.checked_mul(self.dtype.size())
    }
}

/// The pooling kinds of `Pooling2D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Windowed maximum (argmax kept in int32 scratch).
    Max,
    /// Windowed mean of the real cells.
    Average,
    /// Maximum of each map (tie mask kept in uint8 scratch).
    GlobalMax,
    /// Mean of each map.
    GlobalAverage,
}

/// The loss kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Mean squared error; the output is the input itself.
    Mse,
    /// Softmax fused with cross entropy.
    CrossEntropy,
    /// Sigmoid fused with binary cross entropy.
    CrossEntropySigmoid,
}

/// A layer's operation and the properties its kernels need; shapes come from the
/// bound tensors. `padding` is `(top, bottom, left, right)`, resolved by the spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// Data entry: the caller writes the output.
    Input,
    /// `y = x W + b` over the last axis.
    FullyConnected,
    /// Rows of the weight table picked by the (f32, whole-number) ids of the input.
    Embedding,
    /// NCHW cross-correlation (conv1d lowers to this with height 1).
    Conv2d {
        /// `(kh, kw)`.
        kernel: [usize; 2],
        /// `(sh, sw)`.
        stride: [usize; 2],
        /// `(dh, dw)`.
        dilation: [usize; 2],
        /// `(top, bottom, left, right)`.
        padding: [usize; 4],
        /// Samples whose column matrices share one GEMM (the spec's choice; the
        /// `im2col`, `im2col_gradient` and `col2im` scratch are that many samples wide,
        /// and `stage`, `stage_gradient`, `stage_derivative` exist when it is over 1).
        samples_per_gemm: usize,
    },
    /// 2-D pooling.
    Pooling2d {
        /// Which pooling.
        pooling: Pooling,
        /// Window `(kh, kw)` (the whole map for global pooling).
        pool: [usize; 2],
        /// `(sh, sw)`.
        stride: [usize; 2],
        /// `(top, bottom, left, right)`.
        padding: [usize; 4],
    },
    /// An element-wise (or softmax) activation by its model-file name.
    Activation {
        /// `relu`, `sigmoid`, ...
        kind: String,
    },
    /// Flatten / reshape: the output is the input's bytes with another shape.
    View,
    /// Fan-out: copies of the input; the derivative sums.
    Multiout,
    /// Element-wise sum of the inputs.
    Addition,
    /// Concatenation along `axis`.
    Concat {
        /// The resolved axis.
        axis: usize,
    },
    /// Equal parts along `axis`.
    Split {
        /// The resolved axis.
        axis: usize,
    },
    /// Batch normalization over every axis but `axis`.
    BatchNormalization {
        /// The resolved channel axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
        /// Weight of the old moving statistics.
        momentum: f32,
    },
    /// Layer normalization over `axes`.
    LayerNormalization {
        /// The resolved, increasing axes.
        axes: Vec<usize>,
        /// Added to the variance.
        epsilon: f32,
    },
    /// Inverted dropout.
    Dropout {
        /// Probability of dropping an element.
        rate: f32,
    },
    /// A loss layer (the last node).
    Loss {
        /// Which loss.
        loss: LossKind,
    },
}

impl Op {
    /// The operation's name in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::FullyConnected => "fully_connected",
            Op::Embedding => "embedding",
            Op::Conv2d { .. } => "conv2d",
            Op::Pooling2d { .. } => "pooling2d",
            Op::Activation { .. } => "activation",
            Op::View => "view",
            Op::Multiout => "multiout",
            Op::Addition => "addition",
            Op::Concat { .. } => "concat",
            Op::Split { .. } => "split",
            Op::BatchNormalization { .. } => "batch_normalization",
            Op::LayerNormalization { .. } => "layer_normalization",
            Op::Dropout { .. } => "dropout",
            Op::Loss { .. } => "loss",
        }
    }
}

/// The regularizer and decay of one trained weight.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Penalty {
    /// L2 constant: the gradient gains `l2 * w`, the loss `l2 / 2 * sum(w^2)`.
    #[serde(default)]
    pub l2: f64,
    /// The weight's own decay (coupled for SGD / Adam, decoupled for AdamW).
    #[serde(default)]
    pub decay: f64,
}

/// The tensor indices one layer works on, keyed as the spec's `Binding`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Binding {
    /// Forward inputs.
    pub inputs: Vec<usize>,
    /// Forward outputs.
    pub outputs: Vec<usize>,
    /// Weights by name.
    pub weights: BTreeMap<String, usize>,
    /// dL/dweight by weight name (trained weights only).
    pub gradients: BTreeMap<String, usize>,
    /// Optimizer state by weight name, then state name.
    pub optimizer_state: BTreeMap<String, BTreeMap<String, usize>>,
    /// Scratch by name.
    pub scratch: BTreeMap<String, usize>,
    /// dL/doutput (given).
    pub grad_outputs: Vec<usize>,
    /// dL/dinput (written).
    pub grad_inputs: Vec<usize>,
    /// Penalties by weight name.
    pub penalties: BTreeMap<String, Penalty>,
}

/// One layer.
#[derive(Debug, Clone, Deserialize)]
pub struct Layer {
    /// The node name.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Its tensors.
    pub binding: Binding,
}

/// The kinds of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Outputs from inputs.
    Forward,
    /// dL/dweight.
    CalcGradient,
    /// dL/dinput.
    CalcDerivative,
    /// Optimizer update of the layer's trained weights.
    ApplyGradient,
    /// An activation's output written again for the backward pass (`spec/recompute.md`).
    Recompute,
}

impl StepKind {
    /// The spec's name of the step kind.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Forward => "forward",
            StepKind::CalcGradient => "calc_gradient",
            StepKind::CalcDerivative => "calc_derivative",
            StepKind::ApplyGradient => "apply_gradient",
            StepKind::Recompute => "recompute",
        }
    }
}

/// One entry of the execution order.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// What to run.
    pub kind: StepKind,
    /// Index into `layers`.
    pub layer: usize,
    /// Tensors set to zero before the step runs.
    #[serde(default)]
    pub zero_fill: Vec<usize>,
    /// The step's own binding when it differs from its layer's (a backward step that
    /// reads recomputed tensors in place of the forward ones).
    #[serde(default)]
    pub binding: Option<Binding>,
    /// What a `recompute` step writes and from which normalization.
    #[serde(default)]
    pub recompute: Option<Recompute>,
}

/// A `recompute` step's source and target.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Recompute {
    /// The normalization layer (index into `layers`) whose kept scratch is used.
    pub source: usize,
    /// The tensor written (`<activation>:output:recomputed`).
    pub output: usize,
}

/// The optimizer applied by `apply_gradient` steps.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Optimizer {
    /// SGD, with a `momentum` state when momentum > 0.
    Sgd {
        /// In `[0, 1)`.
        momentum: f64,
    },
    /// Adam (states `m`, `v`).
    Adam {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator guard.
        epsilon: f64,
    },
    /// AdamW (states `m`, `v`), decoupled decay `weight_decay`.
    Adamw {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator guard.
        epsilon: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
}

/// A whole program.
#[derive(Debug, Clone, Deserialize)]
pub struct Program {
    /// Must be [`FORMAT`].
    pub format: String,
    /// Must be [`VERSION`].
    pub version: u32,
    /// Whether the steps include the backward.
    pub training: bool,
    /// Bytes of the arena (the plan's `arena_bytes`).
    pub arena_bytes: usize,
    /// Every tensor.
    pub tensors: Vec<Tensor>,
    /// Every layer (graph node), in graph order.
    pub layers: Vec<Layer>,
    /// The execution order.
    pub steps: Vec<Step>,
    /// The optimizer of a training program.
    #[serde(default)]
    pub optimizer: Option<Optimizer>,
    /// Input tensors, in the model's input order.
    pub inputs: Vec<usize>,
    /// The output tensor.
    pub output: usize,
    /// The label tensor (programs with a loss).
    #[serde(default)]
    pub label: Option<usize>,
    /// The loss scalar `(1,)` (programs with a loss).
    #[serde(default)]
    pub loss: Option<usize>,
    /// The swap schedule of a training program that swaps (`spec/swapping.md`).
    #[serde(default)]
    pub swap: Option<Swap>,
}

/// What happens to a segment after the step at its last order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentExit {
    /// Copied to the buffer's slot in the swap file.
    Write,
    /// The slot already holds these bytes: released without a copy.
    Drop,
    /// The buffer's last use in the iteration: released.
    Free,
}

/// A swapped buffer resident over orders `[start, end]` at `offset` in the arena.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub struct SwapSegment {
    /// First resident order (the read-in, or the birth).
    pub start: usize,
    /// Last resident order (its last use).
    pub end: usize,
    /// Read from the slot before order `start` runs (else born there).
    pub read_in: bool,
    /// The first order that uses it (`start` when absent): a read-in must be complete
    /// before this order runs.
    #[serde(default)]
    pub first_use: Option<usize>,
    /// After order `end`.
    pub exit: SegmentExit,
    /// The last order its arena block is reserved (`end` when absent): `end + 1` for a
    /// write-out, so the copy runs beside that step and is waited for only before the
    /// order after it.
    #[serde(default)]
    pub held: Option<usize>,
    /// Byte offset in the arena.
    pub offset: usize,
}

impl SwapSegment {
    /// The last order its arena block is reserved.
    pub fn held_until(&self) -> usize {
        self.held.unwrap_or(self.end)
    }
}

/// One swapped buffer: tensors sharing bytes, moved together.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SwapBuffer {
    /// The plan's buffer name (its first member).
    pub name: String,
    /// Tensor indices of the members (all at the buffer's offset).
    pub members: Vec<usize>,
    /// Bytes one transfer copies (the largest member).
    pub nbytes: usize,
    /// Aligned bytes of its arena blocks and of its slot.
    pub size: usize,
    /// Weights and optimizer state: in the slot between iterations.
    pub persistent: bool,
    /// Byte offset of its slot in the swap file.
    pub slot: usize,
    /// Its resident segments, in order.
    pub segments: Vec<SwapSegment>,
}

/// The swap schedule the core carries out.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Swap {
    /// Orders a read-in is issued before the segment's first use.
    pub lookahead: usize,
    /// Bytes of the swap file.
    pub file_bytes: usize,
    /// The swapped buffers, in the plan's buffer order.
    pub buffers: Vec<SwapBuffer>,
}

fn bad(what: &'static str, reason: impl Into<String>) -> Error {
    invalid("program", what, reason)
}

impl Program {
    /// Parses and validates a JSON description.
    pub fn from_json(text: &str) -> Result<Program> {
        let program: Program =
            serde_json::from_str(text).map_err(|e| bad("description", e.to_string()))?;
        program.validate()?;
        Ok(program)
    }

    /// Whether tensor `index` belongs to a swapped buffer (it has no fixed offset).
    pub fn is_swapped(&self, index: usize) -> bool {
        self.swap
            .as_ref()
            .is_some_and(|s| s.buffers.iter().any(|b| b.members.contains(&index)))
    }

    /// Index of the tensor named `name`.
    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// Checks everything the executor relies on: the format, every index in range, every
    /// arena tensor inside the arena at an offset aligned for its type, the step kinds
    /// a layer can run, and an optimizer for every update.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(bad(
                "format",
                format!(
                    "expected {FORMAT} version {VERSION}, got {} version {}",
                    self.format, self.version
                ),
            ));
        }
        let count = self.tensors.len();
        for t in &self.tensors {
            let bytes = t.nbytes().ok_or_else(|| {
                bad(
                    "tensor",
                    format!("'{}' of shape {:?} overflows", t.name, t.shape),
                )
            })?;
            if let Some(offset) = t.offset {
                if !offset.is_multiple_of(t.dtype.size()) {
                    return Err(bad(
                        "offset",
                        format!(
                            "tensor '{}' at byte {offset} is misaligned for {:?}",
                            t.name, t.dtype
                        ),
                    ));
                }
                if offset
                    .checked_add(bytes)
                    .is_none_or(|end| end > self.arena_bytes)
                {
                    return Err(bad(
                        "offset",
                        format!(
                            "tensor '{}' ({bytes} bytes at {offset}) lies outside the arena of {} bytes",
                            t.name, self.arena_bytes
                        ),
                    ));
                }
            }
        }
        let index = |what: &'static str, i: usize| -> Result<()> {
            if i < count {
                Ok(())
            } else {
                Err(bad(
                    what,
                    format!("tensor index {i} out of range (0..{count})"),
                ))
            }
        };
        let check_binding = |name: &str, b: &Binding| -> Result<()> {
            let all = b
                .inputs
                .iter()
                .chain(&b.outputs)
                .chain(&b.grad_outputs)
                .chain(&b.grad_inputs);
            for &i in all
                .chain(b.weights.values())
                .chain(b.gradients.values())
                .chain(b.scratch.values())
                .chain(b.optimizer_state.values().flat_map(|s| s.values()))
            {
                index("binding", i)?;
            }
            for w in b.gradients.keys().chain(b.penalties.keys()) {
                if !b.weights.contains_key(w) {
                    return Err(bad(
                        "binding",
                        format!(
                            "layer '{name}' has a gradient or penalty of '{w}' but no such weight"
                        ),
                    ));
                }
            }
            Ok(())
        };
        for layer in &self.layers {
            check_binding(&layer.name, &layer.binding)?;
        }
        for &i in self
            .inputs
            .iter()
            .chain([&self.output])
            .chain(&self.label)
            .chain(&self.loss)
        {
            index("program tensors", i)?;
        }
        for (order, step) in self.steps.iter().enumerate() {
            let layer = self.layers.get(step.layer).ok_or_else(|| {
                bad(
                    "step",
                    format!(
                        "step {order} names layer {} of {}",
                        step.layer,
                        self.layers.len()
                    ),
                )
            })?;
            for &i in &step.zero_fill {
                index("zero_fill", i)?;
            }
            if let Some(b) = &step.binding {
                check_binding(&layer.name, b)?;
            }
            if step.kind == StepKind::Recompute {
                let r = step.recompute.ok_or_else(|| {
                    bad(
                        "step",
                        format!("recompute step {order} says nothing to recompute"),
                    )
                })?;
                index("recompute", r.output)?;
                let source = self.layers.get(r.source).map(|l| &l.op);
                let normalizes = matches!(
                    source,
                    Some(Op::BatchNormalization { .. } | Op::LayerNormalization { .. })
                );
                if !normalizes || !matches!(layer.op, Op::Activation { .. }) {
                    return Err(bad(
                        "step",
                        format!(
                            "recompute step {order}: an activation recomputes from a normalization"
                        ),
                    ));
                }
            }
            if step.kind == StepKind::ApplyGradient && self.optimizer.is_none() {
                return Err(bad(
                    "optimizer",
                    format!(
                        "step {order} updates layer '{}' but the program has no optimizer",
                        layer.name
                    ),
                ));
            }
            if step.kind != StepKind::Forward && !self.training {
                return Err(bad(
                    "step",
                    format!("step {order} is a backward step of an inference program"),
                ));
            }
        }
        if let Some(swap) = &self.swap {
            self.validate_swap(swap)?;
        }
        Ok(())
    }

    /// Tensors step `order` certainly touches (a subset: what a step of its kind
    /// always reads or writes; the inputs and scratch a backward step reads depend on
    /// the layer): forward outputs and weights, the derivatives a derivative step
    /// writes, an update's weights, gradients and state, zero-fill, recompute targets.
    pub fn step_tensors(&self, order: usize) -> Vec<usize> {
        let step = &self.steps[order];
        let b = step
            .binding
            .as_ref()
            .unwrap_or(&self.layers[step.layer].binding);
        let mut all: Vec<usize> = step.zero_fill.clone();
        match step.kind {
            StepKind::Forward => {
                all.extend(b.outputs.iter().chain(b.weights.values()));
            }
            StepKind::CalcDerivative => all.extend(&b.grad_inputs),
            StepKind::ApplyGradient => {
                for (w, g) in &b.gradients {
                    all.push(*g);
                    all.extend(b.weights.get(w));
                    all.extend(
                        b.optimizer_state
                            .get(w)
                            .into_iter()
                            .flat_map(|s| s.values()),
                    );
                }
            }
            StepKind::CalcGradient => {}
            StepKind::Recompute => all.extend(step.recompute.iter().map(|r| r.output)),
        }
        all
    }

    /// The schedule is carried out without further checks, so everything it relies on
    /// is checked here: members swapped once and without an arena offset, slots inside
    /// the file and apart, segments inside the arena, in order, each exit allowed, no two
    /// segments on the same bytes at the same order, and every swapped tensor a step
    /// touches resident at that order (`spec/swapping.md`).
    fn validate_swap(&self, swap: &Swap) -> Result<()> {
        let orders = self.steps.len();
        let mut owner = vec![None; self.tensors.len()];
        for (i, b) in swap.buffers.iter().enumerate() {
            let name = &b.name;
            if b.members.is_empty() || b.nbytes > b.size || b.size == 0 {
                return Err(bad(
                    "swap",
                    format!("buffer '{name}': no members or bad sizes"),
                ));
            }
            for &m in &b.members {
                let t = self.tensors.get(m).ok_or_else(|| {
                    bad(
                        "swap",
                        format!("buffer '{name}': tensor index {m} out of range"),
                    )
                })?;
                if owner[m].is_some() || t.offset.is_some() {
                    return Err(bad(
                        "swap",
                        format!(
                            "tensor '{}' is swapped twice or also has an arena offset",
                            t.name
                        ),
                    ));
                }
                if t.nbytes().is_none_or(|n| n > b.nbytes) {
                    return Err(bad(
                        "swap",
                        format!("tensor '{}' is larger than its buffer '{name}'", t.name),
                    ));
                }
                owner[m] = Some(i);
            }
            if !b.slot.is_multiple_of(crate::executor::ARENA_ALIGNMENT)
                || b.slot
                    .checked_add(b.size)
                    .is_none_or(|e| e > swap.file_bytes)
            {
                return Err(bad(
                    "swap",
                    format!(
                        "buffer '{name}': slot {} outside the file of {} bytes",
                        b.slot, swap.file_bytes
                    ),
                ));
            }
            let mut previous: Option<usize> = None;
            for (j, s) in b.segments.iter().enumerate() {
                let last = j + 1 == b.segments.len();
                let exit_ok = match s.exit {
                    SegmentExit::Free => !b.persistent && last,
                    SegmentExit::Drop => s.read_in,
                    SegmentExit::Write => !last || b.persistent,
                };
                if s.start > s.end
                    || s.first_use.is_some_and(|u| u < s.start || u > s.end)
                    || s.end >= orders
                    || s.held_until() < s.end
                    || s.held_until() >= orders
                    || previous.is_some_and(|p| p >= s.start)
                    || (!s.read_in && (b.persistent || j > 0))
                    || !exit_ok
                    || !s.offset.is_multiple_of(crate::executor::ARENA_ALIGNMENT)
                    || s.offset
                        .checked_add(b.size)
                        .is_none_or(|e| e > self.arena_bytes)
                {
                    return Err(bad(
                        "swap",
                        format!("buffer '{name}': segment {j} {s:?} is not a valid segment"),
                    ));
                }
                previous = Some(s.held_until());
            }
        }
        let blocks: Vec<(usize, &SwapBuffer, &SwapSegment)> = swap
            .buffers
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.segments.iter().map(move |s| (i, b, s)))
            .collect();
        for (x, &(i, a, s)) in blocks.iter().enumerate() {
            for &(k, c, t) in &blocks[x + 1..] {
                let in_time = s.start <= t.held_until() && t.start <= s.held_until();
                let in_space = s.offset < t.offset + c.size && t.offset < s.offset + a.size;
                if i != k && in_time && in_space {
                    return Err(bad(
                        "swap",
                        format!(
                            "segments of '{}' and '{}' overlap in the arena",
                            a.name, c.name
                        ),
                    ));
                }
            }
        }
        for order in 0..orders {
            for t in self.step_tensors(order) {
                if let Some(i) = owner[t] {
                    let b = &swap.buffers[i];
                    if !b
                        .segments
                        .iter()
                        .any(|s| s.first_use.unwrap_or(s.start) <= order && order <= s.end)
                    {
                        return Err(bad(
                            "swap",
                            format!(
                                "tensor '{}' is used at order {order} but not resident",
                                self.tensors[t].name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
