//! One step of one layer: the program's tensors turned into kernel calls. Each arm is
//! the Rust twin of the spec layer's `forward` / `calc_gradient` / `calc_derivative`.

use crate::error::{invalid, Result};
use crate::kernels::{
    activation, batch_norm, conv, dropout, embedding, fc, layer_norm, loss, merge, pool, window,
    InOut,
};
use crate::optim;
use crate::program::{
    Binding, Layer, LossKind, Op, Optimizer, Pooling, Program, Recompute, StepKind,
};

use super::memory::{Memory, Views};
use super::{Mode, Rng};

/// What a layer's step sees.
pub(super) struct Context<'p> {
    pub program: &'p Program,
    pub layer: &'p Layer,
    /// The layer's binding, or the step's own (a backward step reading recomputed
    /// tensors).
    pub binding: &'p Binding,
    pub mode: Mode,
    pub threads: usize,
}

fn missing(what: &str, name: &str) -> crate::Error {
    invalid("executor", "binding", format!("no {what} '{name}'"))
}

impl Context<'_> {
    fn dims(&self, tensor: usize) -> &[usize] {
        &self.program.tensors[tensor].shape
    }

    fn one(&self, list: &[usize], what: &str) -> Result<usize> {
        list.first().copied().ok_or_else(|| missing(what, "0"))
    }

    fn input(&self) -> Result<usize> {
        self.one(&self.binding.inputs, "input")
    }

    fn output(&self) -> Result<usize> {
        self.one(&self.binding.outputs, "output")
    }

    fn dy(&self) -> Result<usize> {
        self.one(&self.binding.grad_outputs, "grad_output")
    }

    fn dx(&self) -> Result<usize> {
        self.one(&self.binding.grad_inputs, "grad_input")
    }

    fn weight(&self, name: &str) -> Result<usize> {
        self.layer
            .binding
            .weights
            .get(name)
            .copied()
            .ok_or_else(|| missing("weight", name))
    }

    fn gradient(&self, name: &str) -> Option<usize> {
        self.binding.gradients.get(name).copied()
    }

    fn scratch(&self, name: &str) -> Result<usize> {
        self.layer
            .binding
            .scratch
            .get(name)
            .copied()
            .ok_or_else(|| missing("scratch", name))
    }

    /// A scratch tensor the layer declares only in some configurations (a conv's
    /// `stage` when it puts several samples in one GEMM), else an empty slice.
    fn optional_scratch<'m>(&self, v: &mut Views<'m>, name: &str) -> Result<&'m mut [f32]> {
        match self.layer.binding.scratch.get(name) {
            Some(&t) => v.write(t),
            None => Ok(&mut []),
        }
    }

    fn label(&self) -> Result<usize> {
        self.program.label.ok_or_else(|| missing("tensor", "label"))
    }

    /// Runs step `kind` of the layer (`recompute` with the step's recomputation).
    pub fn run(
        &self,
        kind: StepKind,
        recompute: Option<&Recompute>,
        memory: &mut Memory,
        rng: &mut Rng,
    ) -> Result<()> {
        let mut v = memory.views();
        match kind {
            StepKind::Forward => self.forward(&mut v, rng),
            StepKind::CalcGradient => self.calc_gradient(&mut v),
            StepKind::CalcDerivative => self.calc_derivative(&mut v),
            StepKind::ApplyGradient => self.apply_gradient(&mut v),
            StepKind::Recompute => {
                let r = recompute.ok_or_else(|| missing("recomputation", "of the step"))?;
                self.recompute(&mut v, &self.program.layers[r.source], r.output)
            }
        }
    }

    /// `spec/recompute.md`: the normalization `source` writes its training output again
    /// into `output` from its kept `normalized` scratch, `gamma` and `beta` (the
    /// expression of its forward kernel, so the same bits), then this activation runs
    /// over it in place.
    fn recompute(&self, v: &mut Views, source: &Layer, output: usize) -> Result<()> {
        let scratch = |name: &str| {
            source
                .binding
                .scratch
                .get(name)
                .copied()
                .ok_or_else(|| missing("scratch", name))
        };
        let weight = |name: &str| {
            source
                .binding
                .weights
                .get(name)
                .copied()
                .ok_or_else(|| missing("weight", name))
        };
        let dims = self.dims(output).to_vec();
        let normalized = v.read::<f32>(scratch("normalized")?)?;
        let (gamma, beta) = (
            v.read::<f32>(weight("gamma")?)?,
            v.read::<f32>(weight("beta")?)?,
        );
        let out = v.write::<f32>(output)?;
        if out.len() != normalized.len() {
            return Err(invalid(
                "recompute",
                "shape",
                format!("output {dims:?} vs normalized of {}", normalized.len()),
            ));
        }
        let param: Box<dyn Fn(usize) -> usize> = match &source.op {
            Op::BatchNormalization { axis, .. } => {
                let inner: usize = dims.get(axis + 1..).map_or(1, |d| d.iter().product());
                let channels = *dims.get(*axis).unwrap_or(&1);
                Box::new(move |i| (i / inner.max(1)) % channels.max(1))
            }
            Op::LayerNormalization { axes, .. } => {
                let strides: Vec<usize> = (0..dims.len())
                    .map(|a| dims[a + 1..].iter().product())
                    .collect();
                let picks: Vec<(usize, usize, usize)> = axes
                    .iter()
                    .enumerate()
                    .map(|(k, &a)| {
                        (
                            strides[a],
                            dims[a],
                            axes[k + 1..].iter().map(|&b| dims[b]).product(),
                        )
                    })
                    .collect();
                Box::new(move |i| picks.iter().map(|&(s, d, p)| (i / s) % d * p).sum())
            }
            other => {
                return Err(invalid(
                    "recompute",
                    "source",
                    format!("{} cannot be recomputed from", other.name()),
                ))
            }
        };
        for (i, y) in out.iter_mut().enumerate() {
            let p = param(i);
            let (g, b) = (gamma.get(p), beta.get(p));
            let (Some(&g), Some(&b)) = (g, b) else {
                return Err(invalid(
                    "recompute",
                    "shape",
                    format!("gamma/beta of {} too short", gamma.len()),
                ));
            };
            *y = normalized[i] * g + b;
        }
        activation::forward(self.activation()?, &dims, InOut::InPlace(out))
    }

    /// `y = x` unless the plan put both on the same bytes.
    fn copy(&self, v: &mut Views, from: usize, to: usize) -> Result<()> {
        if !v.same_bytes(from, to) {
            let x = v.read::<f32>(from)?;
            v.write::<f32>(to)?.copy_from_slice(x);
        }
        Ok(())
    }

    fn conv_shape(&self, x: usize, w: usize, op: &Op) -> Result<conv::Conv2dShape> {
        let Op::Conv2d {
            kernel,
            stride,
            dilation,
            padding,
            samples_per_gemm,
        } = *op
        else {
            unreachable!()
        };
        let (d, wd) = (self.dims(x), self.dims(w));
        if d.len() != 4 || wd.len() != 4 {
            return Err(invalid(
                "conv2d",
                "shape",
                format!("input {d:?} / weight {wd:?} must be rank 4"),
            ));
        }
        let window = window::Window2d {
            input: [d[2], d[3]],
            kernel,
            stride,
            dilation,
            padding: window::Padding {
                top: padding[0],
                bottom: padding[1],
                left: padding[2],
                right: padding[3],
            },
        };
        Ok(conv::Conv2dShape {
            samples_per_gemm,
            ..conv::Conv2dShape::new(d[0], d[1], wd[0], window)
        })
    }

    fn pool_shape(&self, x: usize) -> Result<(pool::Pool2dShape, [usize; 4])> {
        let Op::Pooling2d {
            pool,
            stride,
            padding,
            ..
        } = self.layer.op
        else {
            unreachable!()
        };
        let d = self.dims(x);
        let dims: [usize; 4] = d
            .try_into()
            .map_err(|_| invalid("pooling2d", "shape", format!("input {d:?} must be rank 4")))?;
        let window = window::Window2d {
            input: [dims[2], dims[3]],
            kernel: pool,
            stride,
            dilation: [1, 1],
            padding: window::Padding {
                top: padding[0],
                bottom: padding[1],
                left: padding[2],
                right: padding[3],
            },
        };
        Ok((
            pool::Pool2dShape {
                batch: dims[0],
                channels: dims[1],
                window,
            },
            dims,
        ))
    }

    fn fc_shape(&self, x: usize, w: usize) -> Result<fc::FcShape> {
        let d = self.dims(x);
        let inputs = *d
            .last()
            .ok_or_else(|| invalid("fully_connected", "shape", "scalar input"))?;
        let units = *self.dims(w).last().unwrap_or(&0);
        Ok(fc::FcShape {
            rows: d[..d.len() - 1].iter().product(),
            inputs,
            units,
        })
    }

    fn embedding_shape(&self, w: usize) -> Result<embedding::EmbeddingShape> {
        match *self.dims(w) {
            [in_dim, out_dim] => Ok(embedding::EmbeddingShape { in_dim, out_dim }),
            ref other => Err(invalid(
                "embedding",
                "shape",
                format!("table {other:?} must be rank 2"),
            )),
        }
    }

    fn activation(&self) -> Result<activation::Activation> {
        let Op::Activation { kind } = &self.layer.op else {
            unreachable!()
        };
        activation::Activation::from_name(kind)
    }

    fn forward(&self, v: &mut Views, rng: &mut Rng) -> Result<()> {
        let b = &self.binding;
        let training = self.mode.training;
        match &self.layer.op {
            Op::Input => Ok(()),
            Op::Embedding => {
                let (x, y, w) = (self.input()?, self.output()?, self.weight("weight")?);
                let shape = self.embedding_shape(w)?;
                embedding::forward(&shape, v.read(x)?, v.read(w)?, v.write(y)?)
            }
            Op::FullyConnected => {
                let (x, y, w) = (self.input()?, self.output()?, self.weight("weight")?);
                let shape = self.fc_shape(x, w)?;
                let bias = match b.weights.get("bias") {
                    Some(&t) => Some(v.read::<f32>(t)?),
                    None => None,
                };
                fc::forward(
                    &shape,
                    v.read(x)?,
                    v.read(w)?,
                    bias,
                    v.write(y)?,
                    self.threads,
                )
            }
            op @ Op::Conv2d { .. } => {
                let (x, y, w) = (self.input()?, self.output()?, self.weight("weight")?);
                let shape = self.conv_shape(x, w, op)?;
                let bias = match b.weights.get("bias") {
                    Some(&t) => Some(v.read::<f32>(t)?),
                    None => None,
                };
                let scratch = conv::ConvScratch {
                    col: v.write(self.scratch("im2col")?)?,
                    stage: self.optional_scratch(v, "stage")?,
                };
                conv::forward(
                    &shape,
                    v.read(x)?,
                    v.read(w)?,
                    bias,
                    v.write(y)?,
                    scratch,
                    self.threads,
                )
            }
            Op::Pooling2d { pooling, .. } => {
                let (x, y) = (self.input()?, self.output()?);
                let (shape, dims) = self.pool_shape(x)?;
                match pooling {
                    Pooling::Max => match self.binding.scratch.get("argmax") {
                        Some(&argmax) => {
                            pool::max_forward(&shape, v.read(x)?, v.write(y)?, v.write(argmax)?)
                        }
                        None => {
                            // no argmax kept (`recompute`): the backward finds it again
                            let mut unused = vec![0i32; y_len(self.dims(y))];
                            pool::max_forward(&shape, v.read(x)?, v.write(y)?, &mut unused)
                        }
                    },
                    Pooling::Average => pool::average_forward(&shape, v.read(x)?, v.write(y)?),
                    Pooling::GlobalMax => pool::global_max_forward(
                        dims,
                        v.read(x)?,
                        v.write(y)?,
                        v.write(self.scratch("max_mask")?)?,
                    ),
                    Pooling::GlobalAverage => {
                        pool::global_average_forward(dims, v.read(x)?, v.write(y)?)
                    }
                }
            }
            Op::Activation { .. } => {
                let (x, y) = (self.input()?, self.output()?);
                activation::forward(self.activation()?, self.dims(x), v.in_out(x, y)?)
            }
            Op::View => self.copy(v, self.input()?, self.output()?),
            Op::Multiout => {
                let x = self.input()?;
                for &y in &b.outputs {
                    self.copy(v, x, y)?;
                }
                Ok(())
            }
            Op::Addition => {
                let inputs = b
                    .inputs
                    .iter()
                    .map(|&t| v.read::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                merge::add_forward(&inputs, v.write(self.output()?)?)
            }
            Op::Concat { axis } => {
                let dims: Vec<&[usize]> = b.inputs.iter().map(|&t| self.dims(t)).collect();
                let inputs = b
                    .inputs
                    .iter()
                    .map(|&t| v.read::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                merge::concat_forward(&dims, *axis, &inputs, v.write(self.output()?)?)
            }
            Op::Split { axis } => {
                let dims: Vec<&[usize]> = b.outputs.iter().map(|&t| self.dims(t)).collect();
                let x = v.read::<f32>(self.input()?)?;
                let mut outs = b
                    .outputs
                    .iter()
                    .map(|&t| v.write::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                merge::concat_backward(&dims, *axis, x, &mut outs)
            }
            Op::BatchNormalization {
                axis,
                epsilon,
                momentum,
            } => {
                let (x, y) = (self.input()?, self.output()?);
                let dims = self.dims(x);
                let shape = batch_norm::BatchNormShape { dims, axis: *axis };
                let gamma = v.read(self.weight("gamma")?)?;
                let beta = v.read(self.weight("beta")?)?;
                if training {
                    let weights = batch_norm::BatchNormWeights {
                        gamma,
                        beta,
                        moving_mean: v.write(self.weight("moving_mean")?)?,
                        moving_variance: v.write(self.weight("moving_variance")?)?,
                    };
                    let params = batch_norm::BatchNormParams {
                        epsilon: *epsilon,
                        momentum: *momentum,
                    };
                    let normalized = v.write(self.scratch("normalized")?)?;
                    let inv_std = v.write(self.scratch("inv_std")?)?;
                    batch_norm::train_forward(
                        &shape,
                        &params,
                        v.in_out(x, y)?,
                        weights,
                        normalized,
                        inv_std,
                    )
                } else {
                    let mean = v.read(self.weight("moving_mean")?)?;
                    let variance = v.read(self.weight("moving_variance")?)?;
                    batch_norm::infer_forward(
                        &shape,
                        *epsilon,
                        v.in_out(x, y)?,
                        gamma,
                        beta,
                        mean,
                        variance,
                    )
                }
            }
            Op::LayerNormalization { axes, epsilon } => {
                let (x, y) = (self.input()?, self.output()?);
                let shape = layer_norm::LayerNormShape {
                    dims: self.dims(x),
                    axes,
                };
                let gamma = v.read(self.weight("gamma")?)?;
                let beta = v.read(self.weight("beta")?)?;
                let cache = if training {
                    Some(layer_norm::LayerNormCache {
                        normalized: v.write(self.scratch("normalized")?)?,
                        inv_std: v.write(self.scratch("inv_std")?)?,
                    })
                } else {
                    None
                };
                layer_norm::forward(&shape, *epsilon, v.in_out(x, y)?, gamma, beta, cache)
            }
            Op::Dropout { rate } => {
                let (x, y) = (self.input()?, self.output()?);
                if !training || *rate == 0.0 {
                    return self.copy(v, x, y);
                }
                let mask = v.write::<u8>(self.scratch("mask")?)?;
                dropout::draw_mask(*rate, mask, || rng.uniform())?;
                dropout::apply_mask(*rate, v.in_out(x, y)?, mask)
            }
            Op::Loss { loss: kind } => self.loss_forward(v, *kind),
        }
    }

    fn loss_forward(&self, v: &mut Views, kind: LossKind) -> Result<()> {
        let (x, y) = (self.input()?, self.output()?);
        let dims = self.dims(x);
        let label = if self.mode.label {
            Some(v.read::<f32>(self.label()?)?)
        } else {
            None
        };
        let value = match kind {
            LossKind::Mse => {
                self.copy(v, x, y)?;
                match label {
                    Some(t) => Some(loss::mse_forward(dims, v.read(x)?, t)?),
                    None => None,
                }
            }
            LossKind::CrossEntropy => {
                loss::softmax_cross_entropy_forward(dims, v.read(x)?, label, v.write(y)?)?
            }
            LossKind::CrossEntropySigmoid => {
                loss::sigmoid_cross_entropy_forward(dims, v.read(x)?, label, v.write(y)?)?
            }
        };
        if let Some(value) = value {
            v.write::<f32>(self.scratch("loss")?)?[0] = value;
        }
        Ok(())
    }

    fn calc_gradient(&self, v: &mut Views) -> Result<()> {
        match &self.layer.op {
            Op::Embedding => {
                let (x, dy, w) = (self.input()?, self.dy()?, self.weight("weight")?);
                let shape = self.embedding_shape(w)?;
                let dw = v.write(
                    self.gradient("weight")
                        .ok_or_else(|| missing("gradient", "weight"))?,
                )?;
                embedding::grad(&shape, v.read(x)?, v.read(dy)?, dw)
            }
            Op::FullyConnected => {
                let (x, dy, w) = (self.input()?, self.dy()?, self.weight("weight")?);
                let shape = self.fc_shape(x, w)?;
                let dw = v.write(
                    self.gradient("weight")
                        .ok_or_else(|| missing("gradient", "weight"))?,
                )?;
                let db = match self.gradient("bias") {
                    Some(t) => Some(v.write::<f32>(t)?),
                    None => None,
                };
                fc::grad_weight(&shape, v.read(x)?, v.read(dy)?, dw, db, self.threads)
            }
            op @ Op::Conv2d { .. } => {
                let (x, dy, w) = (self.input()?, self.dy()?, self.weight("weight")?);
                let shape = self.conv_shape(x, w, op)?;
                let dw = v.write(
                    self.gradient("weight")
                        .ok_or_else(|| missing("gradient", "weight"))?,
                )?;
                let db = match self.gradient("bias") {
                    Some(t) => Some(v.write::<f32>(t)?),
                    None => None,
                };
                let scratch = conv::ConvScratch {
                    col: v.write(self.scratch("im2col_gradient")?)?,
                    stage: self.optional_scratch(v, "stage_gradient")?,
                };
                conv::grad_weight(
                    &shape,
                    v.read(x)?,
                    v.read(dy)?,
                    dw,
                    db,
                    scratch,
                    self.threads,
                )
            }
            Op::BatchNormalization { axis, .. } => {
                let dy = self.dy()?;
                let shape = batch_norm::BatchNormShape {
                    dims: self.dims(dy),
                    axis: *axis,
                };
                let (dg, db) = self.norm_gradients(v)?;
                batch_norm::grad(
                    &shape,
                    v.read(dy)?,
                    v.read(self.scratch("normalized")?)?,
                    dg,
                    db,
                )
            }
            Op::LayerNormalization { axes, .. } => {
                let dy = self.dy()?;
                let shape = layer_norm::LayerNormShape {
                    dims: self.dims(dy),
                    axes,
                };
                let (dg, db) = self.norm_gradients(v)?;
                layer_norm::grad(
                    &shape,
                    v.read(dy)?,
                    v.read(self.scratch("normalized")?)?,
                    dg,
                    db,
                )
            }
            _ => Ok(()),
        }
    }

    fn norm_gradients<'m>(&self, v: &mut Views<'m>) -> Result<(&'m mut [f32], &'m mut [f32])> {
        let dg = v.write(
            self.gradient("gamma")
                .ok_or_else(|| missing("gradient", "gamma"))?,
        )?;
        let db = v.write(
            self.gradient("beta")
                .ok_or_else(|| missing("gradient", "beta"))?,
        )?;
        Ok((dg, db))
    }

    fn calc_derivative(&self, v: &mut Views) -> Result<()> {
        let b = &self.binding;
        match &self.layer.op {
            Op::Input => Ok(()),
            Op::Embedding => Err(invalid(
                "embedding",
                "step",
                "has no derivative: its inputs are ids",
            )),
            Op::FullyConnected => {
                let (x, dy, dx, w) = (
                    self.input()?,
                    self.dy()?,
                    self.dx()?,
                    self.weight("weight")?,
                );
                let shape = self.fc_shape(x, w)?;
                fc::backward_input(&shape, v.read(dy)?, v.read(w)?, v.write(dx)?, self.threads)
            }
            op @ Op::Conv2d { .. } => {
                let (x, dy, dx, w) = (
                    self.input()?,
                    self.dy()?,
                    self.dx()?,
                    self.weight("weight")?,
                );
                let shape = self.conv_shape(x, w, op)?;
                let scratch = conv::ConvScratch {
                    col: v.write(self.scratch("col2im")?)?,
                    stage: self.optional_scratch(v, "stage_derivative")?,
                };
                conv::backward_input(
                    &shape,
                    v.read(dy)?,
                    v.read(w)?,
                    v.write(dx)?,
                    scratch,
                    self.threads,
                )
            }
            Op::Pooling2d { pooling, .. } => {
                let (dy, dx) = (self.dy()?, self.dx()?);
                let (shape, dims) = self.pool_shape(dx)?;
                match pooling {
                    Pooling::Max => match self.binding.scratch.get("argmax") {
                        Some(&argmax) => {
                            pool::max_backward(&shape, v.read(dy)?, v.read(argmax)?, v.write(dx)?)
                        }
                        None => {
                            let (x, y) = (self.input()?, self.output()?);
                            let mut argmax = vec![0i32; y_len(self.dims(y))];
                            max_positions(&shape, v.read(x)?, v.read(y)?, &mut argmax)?;
                            pool::max_backward(&shape, v.read(dy)?, &argmax, v.write(dx)?)
                        }
                    },
                    Pooling::Average => pool::average_backward(&shape, v.read(dy)?, v.write(dx)?),
                    Pooling::GlobalMax => pool::global_max_backward(
                        dims,
                        v.read(dy)?,
                        v.read(self.scratch("max_mask")?)?,
                        v.write(dx)?,
                    ),
                    Pooling::GlobalAverage => {
                        pool::global_average_backward(dims, v.read(dy)?, v.write(dx)?)
                    }
                }
            }
            Op::Activation { .. } => {
                let kind = self.activation()?;
                let (dy, dx) = (self.dy()?, self.dx()?);
                let source = if kind.backward_reads_output() {
                    self.output()?
                } else {
                    self.input()?
                };
                let a = v.read(source)?;
                activation::backward(kind, self.dims(dy), a, v.in_out(dy, dx)?)
            }
            Op::View => self.copy(v, self.dy()?, self.dx()?),
            Op::Multiout => {
                let dx = self.dx()?;
                let (&first, rest) = b
                    .grad_outputs
                    .split_first()
                    .ok_or_else(|| missing("grad_output", "0"))?;
                let rest = rest
                    .iter()
                    .map(|&t| v.read::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                let out = match v.in_out(first, dx)? {
                    InOut::Separate(g, out) => {
                        out.copy_from_slice(g);
                        out
                    }
                    InOut::InPlace(out) => out,
                };
                for extra in rest {
                    out.iter_mut().zip(extra).for_each(|(o, &e)| *o += e);
                }
                Ok(())
            }
            Op::Addition => {
                let dy = self.dy()?;
                let targets: Vec<usize> = b
                    .grad_inputs
                    .iter()
                    .copied()
                    .filter(|&t| !v.same_bytes(t, dy))
                    .collect();
                let g = v.read::<f32>(dy)?;
                let mut dxs = targets
                    .iter()
                    .map(|&t| v.write::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                merge::add_backward(g, &mut dxs)
            }
            Op::Concat { axis } => {
                let dims: Vec<&[usize]> = b.inputs.iter().map(|&t| self.dims(t)).collect();
                let g = v.read::<f32>(self.dy()?)?;
                let mut dxs = b
                    .grad_inputs
                    .iter()
                    .map(|&t| v.write::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                merge::concat_backward(&dims, *axis, g, &mut dxs)
            }
            Op::Split { axis } => {
                let dims: Vec<&[usize]> = b.outputs.iter().map(|&t| self.dims(t)).collect();
                let gs = b
                    .grad_outputs
                    .iter()
                    .map(|&t| v.read::<f32>(t))
                    .collect::<Result<Vec<_>>>()?;
                merge::concat_forward(&dims, *axis, &gs, v.write(self.dx()?)?)
            }
            Op::BatchNormalization { axis, .. } => {
                let (dy, dx) = (self.dy()?, self.dx()?);
                let shape = batch_norm::BatchNormShape {
                    dims: self.dims(dy),
                    axis: *axis,
                };
                let normalized = v.read(self.scratch("normalized")?)?;
                let inv_std = v.read(self.scratch("inv_std")?)?;
                let gamma = v.read(self.weight("gamma")?)?;
                batch_norm::backward(&shape, v.in_out(dy, dx)?, normalized, inv_std, gamma)
            }
            Op::LayerNormalization { axes, .. } => {
                let (dy, dx) = (self.dy()?, self.dx()?);
                let shape = layer_norm::LayerNormShape {
                    dims: self.dims(dy),
                    axes,
                };
                let normalized = v.read(self.scratch("normalized")?)?;
                let inv_std = v.read(self.scratch("inv_std")?)?;
                let gamma = v.read(self.weight("gamma")?)?;
                layer_norm::backward(&shape, v.in_out(dy, dx)?, normalized, inv_std, gamma)
            }
            Op::Dropout { rate } => {
                let (dy, dx) = (self.dy()?, self.dx()?);
                if *rate == 0.0 {
                    return self.copy(v, dy, dx);
                }
                let mask = v.read::<u8>(self.scratch("mask")?)?;
                dropout::apply_mask(*rate, v.in_out(dy, dx)?, mask)
            }
            Op::Loss { loss: kind } => {
                let (y, dx, t) = (self.output()?, self.dx()?, self.label()?);
                let dims = self.dims(y);
                let (y, t) = (v.read(y)?, v.read(t)?);
                let dx = v.write(dx)?;
                match kind {
                    LossKind::Mse => loss::mse_backward(dims, y, t, dx),
                    LossKind::CrossEntropy => loss::softmax_cross_entropy_backward(dims, y, t, dx),
                    LossKind::CrossEntropySigmoid => {
                        loss::sigmoid_cross_entropy_backward(dims, y, t, dx)
                    }
                }
            }
        }
    }

    fn apply_gradient(&self, v: &mut Views) -> Result<()> {
        let b = &self.binding;
        let optimizer = self
            .program
            .optimizer
            .ok_or_else(|| missing("optimizer", "of the program"))?;
        for (name, &g) in &b.gradients {
            let penalty = b.penalties.get(name).copied().unwrap_or_default();
            let weight = v.write::<f32>(self.weight(name)?)?;
            let grad = v.write::<f32>(g)?;
            if penalty.l2 != 0.0 {
                let l2 = penalty.l2 as f32;
                grad.iter_mut()
                    .zip(weight.iter())
                    .for_each(|(g, &w)| *g += l2 * w);
            }
            let at = optim::Step {
                lr: self.mode.lr,
                step: self.mode.update,
                decay: penalty.decay,
            };
            let state = |key: &str| -> Result<usize> {
                b.optimizer_state
                    .get(name)
                    .and_then(|s| s.get(key))
                    .copied()
                    .ok_or_else(|| missing("optimizer state", key))
            };
            match optimizer {
                Optimizer::Sgd { momentum } => {
                    let buffer = if momentum > 0.0 {
                        Some(v.write::<f32>(state("momentum")?)?)
                    } else {
                        None
                    };
                    optim::sgd_step(&optim::SgdConfig { momentum }, &at, weight, grad, buffer)?;
                }
                Optimizer::Adam {
                    beta1,
                    beta2,
                    epsilon,
                }
                | Optimizer::Adamw {
                    beta1,
                    beta2,
                    epsilon,
                    ..
                } => {
                    let decoupled_weight_decay = match optimizer {
                        Optimizer::Adamw { weight_decay, .. } => Some(weight_decay),
                        _ => None,
                    };
                    let config = optim::AdamConfig {
                        beta1,
                        beta2,
                        epsilon,
                        decoupled_weight_decay,
                    };
                    let (m, s) = (v.write::<f32>(state("m")?)?, v.write::<f32>(state("v")?)?);
                    optim::adam_step(&config, &at, weight, grad, m, s)?;
                }
            }
        }
        Ok(())
    }
}

fn y_len(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// The argmax `pool::max_forward` writes, found again from the input and the output
/// (max pooling compiled without its argmax scratch, `spec/recompute.md`): per window,
/// the first real tap in row-major order whose value equals the output.
fn max_positions(
    shape: &pool::Pool2dShape,
    x: &[f32],
    y: &[f32],
    argmax: &mut [i32],
) -> Result<()> {
    let w = &shape.window;
    let [oh, ow] = w.output("max_pool2d_positions")?;
    let [height, width] = w.input;
    let maps = shape.batch * shape.channels;
    if x.len() != maps * height * width || y.len() != maps * oh * ow || argmax.len() != y.len() {
        return Err(invalid(
            "max_pool2d_positions",
            "shape",
            "input, output and argmax sizes differ from the pooling",
        ));
    }
    for m in 0..maps {
        let map = &x[m * height * width..(m + 1) * height * width];
        for (o, (&target, position)) in y[m * oh * ow..(m + 1) * oh * ow]
            .iter()
            .zip(&mut argmax[m * oh * ow..(m + 1) * oh * ow])
            .enumerate()
        {
            let (r0, c0) = ((o / ow) * w.stride[0], (o % ow) * w.stride[1]);
            let taps =
                (0..w.kernel[0]).flat_map(|i| (0..w.kernel[1]).map(move |j| (r0 + i, c0 + j)));
            let real = taps.filter_map(|(r, c)| {
                let h = r.checked_sub(w.padding.top).filter(|&h| h < height)?;
                let v = c.checked_sub(w.padding.left).filter(|&v| v < width)?;
                Some(h * width + v)
            });
            let mut first = None;
            for cell in real {
                first.get_or_insert(cell);
                if map[cell] == target {
                    first = Some(cell);
                    break;
                }
            }
            *position = first.unwrap_or(0) as i32;
        }
    }
    Ok(())
}
