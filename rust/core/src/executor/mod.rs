//! Runs a [`Program`] step by step inside one arena it owns (`spec/core-program.md`).
//!
//! The executor is the Rust twin of `python/edgetrain/executor.py`: the same steps in
//! the same order, each dispatched to the kernels ([`ops`]), the optimizer applied with
//! the weight penalties, and the derivative tensors nobody writes zero-filled. It owns
//! a rayon pool of the configured size and runs every step inside it.

pub mod memory;
mod ops;
pub mod swap;

use std::path::Path;

use rayon::ThreadPool;

use crate::error::{invalid, Error, Result};
use crate::program::{Program, StepKind};
pub use memory::{Arena, Element, Memory, ARENA_ALIGNMENT};
pub use swap::{SwapFile, SwapRuntime, SwapTraffic};

/// How one step runs.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Training behaviour (batch statistics, dropout masks).
    pub training: bool,
    /// Whether the label tensor holds a batch's labels (the loss is computed).
    pub label: bool,
    /// The learning rate of an update.
    pub lr: f64,
    /// Optimizer updates so far, this one included (Adam's bias correction).
    pub update: u64,
}

/// The dropout masks' source: SplitMix64, seeded by the caller. Its masks differ from
/// numpy's generator, so conformance compares dropout through a shared mask.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`, which is also its state: [`Rng::state`] of a generator
    /// gives one that continues the same sequence.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The whole state: the next masks follow from it alone (checkpoints save it).
    pub fn state(&self) -> u64 {
        self.0
    }

    /// The next uniform number in `[0, 1)` with 24 random bits.
    pub fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

/// What a step needs besides the memory.
struct State {
    program: Program,
    /// Before `memory`: dropped first, so its transfer thread is joined while the
    /// arena still exists.
    swap: Option<SwapRuntime>,
    memory: Memory,
    rng: Rng,
    threads: usize,
}

/// A program with its arena, its thread pool and its dropout generator.
pub struct Executor {
    pool: ThreadPool,
    state: State,
}

impl Executor {
    /// Allocates the arena of `program` and a pool of `threads` threads (at least 1).
    pub fn new(program: Program, threads: usize, seed: u64) -> Result<Executor> {
        Executor::with_swap_dir(program, threads, seed, None)
    }

    /// As [`Executor::new`]; a program with a swap schedule gets its swap file in
    /// `swap_dir` (default: the system temporary directory), created at its full size
    /// now so a missing or unwritable directory or a full disk fails here.
    pub fn with_swap_dir(
        program: Program,
        threads: usize,
        seed: u64,
        swap_dir: Option<&Path>,
    ) -> Result<Executor> {
        program.validate()?;
        if threads == 0 {
            return Err(invalid("executor", "threads", "must be at least 1"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| invalid("executor", "threads", e.to_string()))?;
        let mut memory = Memory::new(&program)?;
        let swap = match program.swap {
            Some(_) => {
                let dir = swap_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
                Some(SwapRuntime::new(&program, &mut memory, &dir)?)
            }
            None => None,
        };
        Ok(Executor {
            pool,
            state: State {
                program,
                memory,
                rng: Rng::new(seed),
                threads,
                swap,
            },
        })
    }

    /// The program being run.
    pub fn program(&self) -> &Program {
        &self.state.program
    }

    /// The arena and tensor regions.
    pub fn memory(&self) -> &Memory {
        &self.state.memory
    }

    /// The dropout generator's state (it advances with every mask drawn).
    pub fn dropout_state(&self) -> u64 {
        self.state.rng.state()
    }

    /// Continues the dropout masks from a saved [`Executor::dropout_state`].
    pub fn set_dropout_state(&mut self, state: u64) {
        self.state.rng = Rng::new(state);
    }

    /// Threads of the pool.
    pub fn threads(&self) -> usize {
        self.state.threads
    }

    /// Binds external tensor `name` to caller memory.
    ///
    /// # Safety
    /// As [`Memory::bind_external`]: `ptr` valid for `bytes`, aligned, alive as long as
    /// the executor, and not accessed elsewhere while a step runs.
    pub unsafe fn bind_external(&mut self, name: &str, ptr: *mut u8, bytes: usize) -> Result<()> {
        let index =
            self.state.program.tensor_index(name).ok_or_else(|| {
                invalid("executor", "external", format!("no tensor named '{name}'"))
            })?;
        let tensor = &self.state.program.tensors[index];
        if tensor.offset.is_some() || self.state.program.is_swapped(index) {
            return Err(invalid(
                "executor",
                "external",
                format!("tensor '{name}' lives in the arena or the swap file"),
            ));
        }
        let needed = tensor.nbytes().unwrap_or(usize::MAX);
        if bytes != needed || !(ptr as usize).is_multiple_of(tensor.dtype.size()) {
            return Err(invalid(
                "executor",
                "external",
                format!("tensor '{name}' needs {needed} aligned bytes, got {bytes} at {ptr:p}"),
            ));
        }
        // SAFETY: forwarded from the caller's contract; size and alignment checked.
        unsafe {
            self.state
                .memory
                .bind_external(index, ptr, bytes, tensor.dtype)
        };
        Ok(())
    }

    /// Tensor `name` to read or write between steps (batches in, results out).
    pub fn tensor_mut<T: memory::Element>(&mut self, name: &str) -> Result<&mut [T]> {
        let index =
            self.state.program.tensor_index(name).ok_or_else(|| {
                invalid("executor", "tensor", format!("no tensor named '{name}'"))
            })?;
        self.state.memory.views().write::<T>(index)
    }

    /// The swap runtime of a program that swaps.
    pub fn swap(&self) -> Option<&SwapRuntime> {
        self.state.swap.as_ref()
    }

    /// Starts an iteration of a swapping program (settling an interrupted one): order
    /// 0's segments are entered, so the input and label tensors are where the batch
    /// goes. [`Executor::train_step`] does it itself when it was not done.
    pub fn begin_iteration(&mut self) -> Result<()> {
        let state = &mut self.state;
        if let Some(swap) = state.swap.as_mut() {
            swap.begin(&state.program, &mut state.memory)?;
        }
        Ok(())
    }

    /// Drops the swap file's pages from the process's resident set (after the weights
    /// were copied into their slots).
    pub fn release_swap_pages(&mut self) {
        if let Some(swap) = self.state.swap.as_mut() {
            swap.release_file_pages();
        }
    }

    /// Puts every swapped tensor back in its slot (resident weights written back), then
    /// unlinks the swap file; training afterwards is refused.
    pub fn close_swap(&mut self) {
        let state = &mut self.state;
        if let Some(swap) = state.swap.as_mut() {
            swap.close(&state.program, &mut state.memory);
        }
    }

    fn refuse_swapping(&self, what: &str) -> Result<()> {
        if self.state.swap.is_some() {
            return Err(invalid(
                "executor",
                "swap",
                format!(
                    "{what} of a swapping program: only whole training iterations run with swap"
                ),
            ));
        }
        Ok(())
    }

    /// Runs entry `order` of the execution order.
    pub fn run_step(&mut self, order: usize, mode: Mode) -> Result<()> {
        self.refuse_swapping("a single step")?;
        let state = &mut self.state;
        self.pool.install(|| state.run_step(order, mode))
    }

    /// One training iteration over the batch already in the input and label tensors:
    /// every step in order; returns the loss plus the L2 penalty of the weights the
    /// forward used (the spec's `Executor.train_step`).
    pub fn train_step(&mut self, lr: f64, update: u64) -> Result<f64> {
        let state = &mut self.state;
        if !state.program.training {
            return Err(invalid(
                "executor",
                "program",
                "train_step on an inference program",
            ));
        }
        let mode = Mode {
            training: true,
            label: true,
            lr,
            update,
        };
        if let Some(swap) = state.swap.as_mut() {
            if !swap.in_iteration() {
                swap.begin(&state.program, &mut state.memory)?;
            }
        }
        let penalized = state
            .program
            .layers
            .iter()
            .any(|l| l.binding.penalties.values().any(|p| p.l2 != 0.0));
        if let Some(swap) = state.swap.as_mut().filter(|_| penalized) {
            swap.wait_all(); // the penalty reads weights whose read-ins are in flight
        }
        let result = self.pool.install(|| {
            let penalty = state.regularization_loss()?;
            for order in 0..state.program.steps.len() {
                if let Some(swap) = state.swap.as_mut() {
                    swap.before_step(order)?;
                }
                state.run_step(order, mode)?;
                if let Some(swap) = state.swap.as_mut() {
                    swap.end_step(&state.program, &mut state.memory, order)?;
                }
            }
            Ok(f64::from(state.loss()?) + penalty)
        });
        if result.is_err() {
            if let Some(swap) = state.swap.as_mut() {
                swap.settle(&state.program, &mut state.memory);
            }
        }
        result
    }

    /// Forward steps only; `label` computes the loss too.
    pub fn forward(&mut self, training: bool, label: bool) -> Result<()> {
        self.refuse_swapping("a forward-only run")?;
        let state = &mut self.state;
        let mode = Mode {
            training,
            label,
            lr: 0.0,
            update: 0,
        };
        self.pool.install(|| {
            for order in 0..state.program.steps.len() {
                if state.program.steps[order].kind == StepKind::Forward {
                    state.run_step(order, mode)?;
                }
            }
            Ok(())
        })
    }

    /// The loss of the last forward with labels.
    pub fn loss(&mut self) -> Result<f32> {
        self.state.loss()
    }

    /// `sum(l2 / 2 * sum(w^2))` over the trained weights with an L2 regularizer.
    pub fn regularization_loss(&mut self) -> Result<f64> {
        self.state.regularization_loss()
    }
}

impl State {
    fn run_step(&mut self, order: usize, mode: Mode) -> Result<()> {
        let step = self.program.steps.get(order).ok_or_else(|| {
            invalid(
                "executor",
                "order",
                format!("{order} is past the last step {}", self.program.steps.len()),
            )
        })?;
        let layer = &self.program.layers[step.layer];
        let wrap = |source: Error| Error::Step {
            layer: layer.name.clone(),
            op: layer.op.name(),
            step: step.kind.name(),
            source: Box::new(source),
        };
        {
            let mut views = self.memory.views();
            for &t in &step.zero_fill {
                views.write::<f32>(t).map_err(wrap)?.fill(0.0);
            }
        }
        let context = ops::Context {
            program: &self.program,
            layer,
            binding: step.binding.as_ref().unwrap_or(&layer.binding),
            mode,
            threads: self.threads,
        };
        context
            .run(
                step.kind,
                step.recompute.as_ref(),
                &mut self.memory,
                &mut self.rng,
            )
            .map_err(wrap)
    }

    fn loss(&mut self) -> Result<f32> {
        let loss = self
            .program
            .loss
            .ok_or_else(|| invalid("executor", "loss", "the program has no loss"))?;
        Ok(self.memory.read_scalars::<f32>(loss)?[0])
    }

    fn regularization_loss(&mut self) -> Result<f64> {
        let mut total = 0.0;
        for layer in &self.program.layers {
            for (weight, penalty) in &layer.binding.penalties {
                if penalty.l2 != 0.0 {
                    let index = *layer.binding.weights.get(weight).ok_or_else(|| {
                        invalid(
                            "executor",
                            "penalties",
                            format!("layer '{}' has no weight '{weight}'", layer.name),
                        )
                    })?;
                    let values = self.memory.read_scalars::<f32>(index)?;
                    let sum: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                    total += 0.5 * penalty.l2 * sum;
                }
            }
        }
        Ok(total)
    }
}
