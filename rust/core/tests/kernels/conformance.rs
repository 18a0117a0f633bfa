//! The kernels against the numpy spec itself: `tests/data/layer_goldens.txt` holds the
//! spec layers' float32 inputs, weights, outputs and gradients (made by
//! `tests/data/make_layer_goldens.py`). Tolerance: float32 rounding of differently
//! ordered sums, `1e-5 + 1e-5 |expected|`; integer outputs (argmax) exactly.

use edgetrain_core::kernels::activation::{self, Activation};
use edgetrain_core::kernels::batch_norm::{
    self, BatchNormParams, BatchNormShape, BatchNormWeights,
};
use edgetrain_core::kernels::conv::{self, Conv2dShape, ConvScratch};
use edgetrain_core::kernels::fc::{self, FcShape};
use edgetrain_core::kernels::layer_norm::{self, LayerNormCache, LayerNormShape};
use edgetrain_core::kernels::pool::{self, Pool2dShape};
use edgetrain_core::kernels::window::{Padding, Window2d};
use edgetrain_core::kernels::{loss, InOut};
use std::collections::HashMap;

const GOLDENS: &str = include_str!("../data/layer_goldens.txt");

/// One case: its name line and tensors by name (dims, bit patterns).
struct Case {
    name: String,
    tensors: HashMap<String, (Vec<usize>, Vec<u32>)>,
}

impl Case {
    fn f32(&self, key: &str) -> Vec<f32> {
        self.bits(key).iter().map(|&b| f32::from_bits(b)).collect()
    }

    fn bits(&self, key: &str) -> &[u32] {
        &self
            .tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: no {key}", self.name))
            .1
    }

    fn dims(&self, key: &str) -> Vec<usize> {
        self.tensors[key].0.clone()
    }

    /// The numbers of `key=a,b,...` in the case name.
    fn param(&self, key: &str) -> Vec<f64> {
        let prefix = format!("{key}=");
        let word = self
            .name
            .split(' ')
            .find(|w| w.starts_with(&prefix))
            .expect(key);
        word[prefix.len()..]
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect()
    }

    fn pair(&self, key: &str) -> [usize; 2] {
        let v = self.param(key);
        [v[0] as usize, v[1] as usize]
    }

    #[track_caller]
    fn check(&self, key: &str, actual: &[f32]) {
        let expected = self.f32(key);
        assert_eq!(actual.len(), expected.len(), "{}: {key} length", self.name);
        for (i, (&a, &e)) in actual.iter().zip(&expected).enumerate() {
            let tolerance = 1e-5 + 1e-5 * e.abs();
            assert!(
                (a - e).abs() <= tolerance,
                "{}: {key}[{i}] = {a}, spec {e}",
                self.name
            );
        }
    }
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for line in GOLDENS.lines().filter(|l| !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix("case ") {
            out.push(Case {
                name: name.to_string(),
                tensors: HashMap::new(),
            });
            continue;
        }
        let mut words = line.split(' ');
        let key = words.next().unwrap().to_string();
        let dims = words
            .next()
            .unwrap()
            .split(',')
            .map(|d| d.parse().unwrap())
            .collect();
        let bits = words.map(|h| u32::from_str_radix(h, 16).unwrap()).collect();
        out.last_mut().unwrap().tensors.insert(key, (dims, bits));
    }
    out
}

fn named(prefix: &str) -> Vec<Case> {
    let found: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.name.starts_with(prefix))
        .collect();
    assert!(!found.is_empty(), "no golden starting with {prefix}");
    found
}

fn dims4(v: &[usize]) -> [usize; 4] {
    [v[0], v[1], v[2], v[3]]
}

fn padding(case: &Case) -> Padding {
    let p = case.param("padding");
    Padding {
        top: p[0] as usize,
        bottom: p[1] as usize,
        left: p[2] as usize,
        right: p[3] as usize,
    }
}

#[test]
fn conv2d_matches_the_spec() {
    for case in named("conv2d") {
        let [n, c, h, w] = dims4(&case.dims("x"));
        let window = Window2d {
            stride: case.pair("stride"),
            dilation: case.pair("dilation"),
            padding: padding(&case),
            ..Window2d::new([h, w], case.pair("kernel"))
        };
        for samples_per_gemm in [1, 2] {
            let filters = case.param("filters")[0] as usize;
            let shape = Conv2dShape {
                samples_per_gemm,
                ..Conv2dShape::new(n, c, filters, window)
            };
            let (x, weight, bias, dy) = (
                case.f32("x"),
                case.f32("weight_initial"),
                case.f32("bias_initial"),
                case.f32("dy"),
            );
            let mut col = vec![f32::NAN; shape.col_len().unwrap()];
            let mut stage = vec![f32::NAN; shape.stage_len().unwrap()];
            let mut y = vec![f32::NAN; dy.len()];
            conv::forward(
                &shape,
                &x,
                &weight,
                Some(&bias),
                &mut y,
                ConvScratch {
                    col: &mut col,
                    stage: &mut stage,
                },
                1,
            )
            .unwrap();
            case.check("y", &y);
            let (mut dw, mut db, mut dx) = (
                vec![0.0; weight.len()],
                vec![0.0; filters],
                vec![0.0; x.len()],
            );
            conv::grad_weight(
                &shape,
                &x,
                &dy,
                &mut dw,
                Some(&mut db),
                ConvScratch {
                    col: &mut col,
                    stage: &mut stage,
                },
                1,
            )
            .unwrap();
            conv::backward_input(
                &shape,
                &dy,
                &weight,
                &mut dx,
                ConvScratch {
                    col: &mut col,
                    stage: &mut stage,
                },
                1,
            )
            .unwrap();
            case.check("d_weight", &dw);
            case.check("d_bias", &db);
            case.check("dx", &dx);
        }
    }
}

#[test]
fn pooling_matches_the_spec() {
    for case in named("pool") {
        let dims = dims4(&case.dims("x"));
        let (x, dy) = (case.f32("x"), case.f32("dy"));
        let (mut y, mut dx) = (vec![f32::NAN; dy.len()], vec![f32::NAN; x.len()]);
        if case.name.contains("global_average") {
            pool::global_average_forward(dims, &x, &mut y).unwrap();
            pool::global_average_backward(dims, &dy, &mut dx).unwrap();
        } else if case.name.contains("global_max") {
            let mut mask = vec![0u8; x.len()];
            pool::global_max_forward(dims, &x, &mut y, &mut mask).unwrap();
            assert!(
                mask.iter().filter(|&&m| m == 1).count() > dims[0] * dims[1],
                "no ties"
            );
            pool::global_max_backward(dims, &dy, &mask, &mut dx).unwrap();
        } else {
            let window = Window2d {
                stride: case.pair("stride"),
                padding: padding(&case),
                ..Window2d::new([dims[2], dims[3]], case.pair("pool"))
            };
            let shape = Pool2dShape {
                batch: dims[0],
                channels: dims[1],
                window,
            };
            if case.name.contains("max") {
                let mut argmax = vec![-1; dy.len()];
                pool::max_forward(&shape, &x, &mut y, &mut argmax).unwrap();
                let expected: Vec<i32> = case.bits("argmax").iter().map(|&b| b as i32).collect();
                assert_eq!(argmax, expected, "{}", case.name);
                pool::max_backward(&shape, &dy, &argmax, &mut dx).unwrap();
            } else {
                pool::average_forward(&shape, &x, &mut y).unwrap();
                pool::average_backward(&shape, &dy, &mut dx).unwrap();
            }
        }
        case.check("y", &y);
        case.check("dx", &dx);
    }
}

#[test]
fn normalization_matches_the_spec() {
    for case in named("batch_norm") {
        let dims = case.dims("x");
        let shape = BatchNormShape {
            dims: &dims,
            axis: 1,
        };
        let params = BatchNormParams {
            epsilon: case.param("epsilon")[0] as f32,
            momentum: case.param("momentum")[0] as f32,
        };
        let (x, dy, gamma, beta) = (
            case.f32("x"),
            case.f32("dy"),
            case.f32("gamma_initial"),
            case.f32("beta_initial"),
        );
        let (mut mean, mut var) = (
            case.f32("moving_mean_initial"),
            case.f32("moving_variance_initial"),
        );
        let (mut y, mut x_hat, mut inv_std) = (
            vec![0.0; x.len()],
            vec![0.0; x.len()],
            vec![0.0; gamma.len()],
        );
        let weights = BatchNormWeights {
            gamma: &gamma,
            beta: &beta,
            moving_mean: &mut mean,
            moving_variance: &mut var,
        };
        batch_norm::train_forward(
            &shape,
            &params,
            InOut::Separate(&x, &mut y),
            weights,
            &mut x_hat,
            &mut inv_std,
        )
        .unwrap();
        case.check("y", &y);
        case.check("moving_mean", &mean);
        case.check("moving_variance", &var);
        let (mut dg, mut db, mut dx) = (vec![0.0; gamma.len()], vec![0.0; gamma.len()], dy.clone());
        batch_norm::grad(&shape, &dy, &x_hat, &mut dg, &mut db).unwrap();
        batch_norm::backward(&shape, InOut::InPlace(&mut dx), &x_hat, &inv_std, &gamma).unwrap();
        case.check("d_gamma", &dg);
        case.check("d_beta", &db);
        case.check("dx", &dx);
    }
    for case in named("layer_norm") {
        let dims = case.dims("x");
        let axes: Vec<usize> = case.param("axes").iter().map(|&a| a as usize).collect();
        let shape = LayerNormShape {
            dims: &dims,
            axes: &axes,
        };
        let (x, dy, gamma, beta) = (
            case.f32("x"),
            case.f32("dy"),
            case.f32("gamma_initial"),
            case.f32("beta_initial"),
        );
        let groups = x.len() / gamma.len();
        let (mut y, mut x_hat, mut inv_std) =
            (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; groups]);
        let cache = LayerNormCache {
            normalized: &mut x_hat,
            inv_std: &mut inv_std,
        };
        let epsilon = case.param("epsilon")[0] as f32;
        layer_norm::forward(
            &shape,
            epsilon,
            InOut::Separate(&x, &mut y),
            &gamma,
            &beta,
            Some(cache),
        )
        .unwrap();
        case.check("y", &y);
        let (mut dg, mut db, mut dx) = (
            vec![0.0; gamma.len()],
            vec![0.0; gamma.len()],
            vec![0.0; x.len()],
        );
        layer_norm::grad(&shape, &dy, &x_hat, &mut dg, &mut db).unwrap();
        layer_norm::backward(
            &shape,
            InOut::Separate(&dy, &mut dx),
            &x_hat,
            &inv_std,
            &gamma,
        )
        .unwrap();
        case.check("d_gamma", &dg);
        case.check("d_beta", &db);
        case.check("dx", &dx);
    }
}

#[test]
fn fully_connected_matches_the_spec() {
    for case in named("fc") {
        let [rows, inputs] = [case.dims("x")[0], case.dims("x")[1]];
        let units = case.param("units")[0] as usize;
        let shape = FcShape {
            rows,
            inputs,
            units,
        };
        let (x, w, b, dy) = (
            case.f32("x"),
            case.f32("weight_initial"),
            case.f32("bias_initial"),
            case.f32("dy"),
        );
        let mut y = vec![0.0; rows * units];
        fc::forward(&shape, &x, &w, Some(&b), &mut y, 1).unwrap();
        case.check("y", &y);
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; units], vec![0.0; x.len()]);
        fc::grad_weight(&shape, &x, &dy, &mut dw, Some(&mut db), 1).unwrap();
        fc::backward_input(&shape, &dy, &w, &mut dx, 1).unwrap();
        case.check("d_weight", &dw);
        case.check("d_bias", &db);
        case.check("dx", &dx);
    }
}

#[test]
fn losses_match_the_spec() {
    for case in named("loss") {
        let dims = case.dims("x");
        let (x, label) = (case.f32("x"), case.f32("label"));
        let (mut y, mut dx) = (x.clone(), vec![f32::NAN; x.len()]);
        let value = match case.name.as_str() {
            "loss cross_entropy" => {
                let value =
                    loss::softmax_cross_entropy_forward(&dims, &x, Some(&label), &mut y).unwrap();
                loss::softmax_cross_entropy_backward(&dims, &y, &label, &mut dx).unwrap();
                value.unwrap()
            }
            "loss mse" => {
                loss::mse_backward(&dims, &x, &label, &mut dx).unwrap();
                loss::mse_forward(&dims, &x, &label).unwrap()
            }
            "loss cross_entropy_sigmoid" => {
                let value =
                    loss::sigmoid_cross_entropy_forward(&dims, &x, Some(&label), &mut y).unwrap();
                loss::sigmoid_cross_entropy_backward(&dims, &y, &label, &mut dx).unwrap();
                value.unwrap()
            }
            other => panic!("unknown loss case {other}"),
        };
        case.check("y", &y);
        case.check("loss", &[value]);
        case.check("dx", &dx);
    }
}

#[test]
fn activations_match_the_spec() {
    for case in named("activation") {
        let kind = Activation::from_name(case.name.split(' ').nth(1).unwrap()).unwrap();
        let dims = case.dims("x");
        let (x, dy) = (case.f32("x"), case.f32("dy"));
        let mut y = vec![f32::NAN; x.len()];
        activation::forward(kind, &dims, InOut::Separate(&x, &mut y)).unwrap();
        case.check("y", &y);
        let source = if kind.backward_reads_output() { &y } else { &x };
        let mut dx = dy.clone();
        activation::backward(kind, &dims, source, InOut::InPlace(&mut dx)).unwrap();
        case.check("dx", &dx);
    }
}
