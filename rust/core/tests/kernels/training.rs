//! The kernels composed into a small CNN trained for a few steps: conv (3x3, padding 1)
//! -> batch norm -> relu -> max pool 2x2 -> fully connected -> softmax cross entropy,
//! Adam. Three classes of 8x8 images (a bright row, column or diagonal, plus noise):
//! the loss must fall and every training sample must end up classified right.

use crate::support::Rng;
use edgetrain_core::kernels::activation::{self, Activation};
use edgetrain_core::kernels::batch_norm::{
    self, BatchNormParams, BatchNormShape, BatchNormWeights,
};
use edgetrain_core::kernels::conv::{self, Conv2dShape, ConvScratch};
use edgetrain_core::kernels::fc::{self, FcShape};
use edgetrain_core::kernels::pool::{self, Pool2dShape};
use edgetrain_core::kernels::window::{Padding, Window2d};
use edgetrain_core::kernels::{loss, InOut};
use edgetrain_core::optim::{adam_step, AdamConfig, Step};

const N: usize = 12;
const FILTERS: usize = 4;
const CLASSES: usize = 3;

fn dataset(rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let (mut x, mut label, mut classes) = (vec![0.0; N * 64], vec![0.0; N * CLASSES], Vec::new());
    for n in 0..N {
        let class = n % CLASSES;
        let at = (n / CLASSES) % 8;
        for r in 0..8 {
            for c in 0..8 {
                let on = match class {
                    0 => r == at,
                    1 => c == at,
                    _ => r == c,
                };
                x[n * 64 + r * 8 + c] = if on { 1.0 } else { 0.0 } + 0.1 * rng.next() as f32;
            }
        }
        label[n * CLASSES + class] = 1.0;
        classes.push(class);
    }
    (x, label, classes)
}

/// Every trained weight with its Adam state.
struct Param {
    w: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Param {
    fn new(w: Vec<f32>) -> Self {
        let len = w.len();
        Param {
            w,
            g: vec![0.0; len],
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }
}

#[test]
fn a_small_cnn_learns_with_the_kernels_composed() {
    let mut rng = Rng::new(80);
    let (x, label, classes) = dataset(&mut rng);
    let window = Window2d {
        padding: Padding::uniform(1),
        ..Window2d::new([8, 8], [3, 3])
    };
    let conv_shape = Conv2dShape::new(N, 1, FILTERS, window);
    let bn_dims = [N, FILTERS, 8, 8];
    let bn_shape = BatchNormShape {
        dims: &bn_dims,
        axis: 1,
    };
    let bn_params = BatchNormParams {
        epsilon: 1e-3,
        momentum: 0.99,
    };
    let pool_window = Window2d {
        stride: [2, 2],
        ..Window2d::new([8, 8], [2, 2])
    };
    let pool_shape = Pool2dShape {
        batch: N,
        channels: FILTERS,
        window: pool_window,
    };
    let fc_shape = FcShape {
        rows: N,
        inputs: FILTERS * 16,
        units: CLASSES,
    };

    let mut kernel = Param::new((0..FILTERS * 9).map(|_| 0.5 * rng.next() as f32).collect());
    let mut bias = Param::new(vec![0.0; FILTERS]);
    let mut gamma = Param::new(vec![1.0; FILTERS]);
    let mut beta = Param::new(vec![0.0; FILTERS]);
    let mut dense = Param::new(
        (0..FILTERS * 16 * CLASSES)
            .map(|_| 0.3 * rng.next() as f32)
            .collect(),
    );
    let mut dense_bias = Param::new(vec![0.0; CLASSES]);
    let (mut moving_mean, mut moving_var) = (vec![0.0; FILTERS], vec![1.0; FILTERS]);

    let maps = N * FILTERS * 64;
    let (mut conv_out, mut act, mut x_hat, mut inv_std) = (
        vec![0.0; maps],
        vec![0.0; maps],
        vec![0.0; maps],
        vec![0.0; FILTERS],
    );
    let (mut pooled, mut argmax) = (vec![0.0; N * FILTERS * 16], vec![0; N * FILTERS * 16]);
    let (mut logits, mut probs) = (vec![0.0; N * CLASSES], vec![0.0; N * CLASSES]);
    let (mut d_logits, mut d_pooled, mut d_act) = (
        vec![0.0; N * CLASSES],
        vec![0.0; N * FILTERS * 16],
        vec![0.0; maps],
    );
    let mut d_input = vec![0.0; N * 64];
    let mut col = vec![0.0; conv_shape.col_len().unwrap()];
    let mut losses = Vec::new();
    let adam = AdamConfig::default();

    for step in 1..=60u64 {
        let scratch = ConvScratch {
            col: &mut col,
            stage: &mut [],
        };
        conv::forward(
            &conv_shape,
            &x,
            &kernel.w,
            Some(&bias.w),
            &mut conv_out,
            scratch,
            1,
        )
        .unwrap();
        let weights = BatchNormWeights {
            gamma: &gamma.w,
            beta: &beta.w,
            moving_mean: &mut moving_mean,
            moving_variance: &mut moving_var,
        };
        batch_norm::train_forward(
            &bn_shape,
            &bn_params,
            InOut::Separate(&conv_out, &mut act),
            weights,
            &mut x_hat,
            &mut inv_std,
        )
        .unwrap();
        activation::forward(Activation::Relu, &bn_dims, InOut::InPlace(&mut act)).unwrap();
        pool::max_forward(&pool_shape, &act, &mut pooled, &mut argmax).unwrap();
        fc::forward(
            &fc_shape,
            &pooled,
            &dense.w,
            Some(&dense_bias.w),
            &mut logits,
            1,
        )
        .unwrap();
        let value =
            loss::softmax_cross_entropy_forward(&[N, CLASSES], &logits, Some(&label), &mut probs)
                .unwrap();
        losses.push(value.unwrap());

        loss::softmax_cross_entropy_backward(&[N, CLASSES], &probs, &label, &mut d_logits).unwrap();
        fc::grad_weight(
            &fc_shape,
            &pooled,
            &d_logits,
            &mut dense.g,
            Some(&mut dense_bias.g),
            1,
        )
        .unwrap();
        fc::backward_input(&fc_shape, &d_logits, &dense.w, &mut d_pooled, 1).unwrap();
        pool::max_backward(&pool_shape, &d_pooled, &argmax, &mut d_act).unwrap();
        activation::backward(Activation::Relu, &bn_dims, &act, InOut::InPlace(&mut d_act)).unwrap();
        batch_norm::grad(&bn_shape, &d_act, &x_hat, &mut gamma.g, &mut beta.g).unwrap();
        batch_norm::backward(
            &bn_shape,
            InOut::InPlace(&mut d_act),
            &x_hat,
            &inv_std,
            &gamma.w,
        )
        .unwrap();
        let scratch = ConvScratch {
            col: &mut col,
            stage: &mut [],
        };
        conv::grad_weight(
            &conv_shape,
            &x,
            &d_act,
            &mut kernel.g,
            Some(&mut bias.g),
            scratch,
            1,
        )
        .unwrap();
        let scratch = ConvScratch {
            col: &mut col,
            stage: &mut [],
        };
        conv::backward_input(&conv_shape, &d_act, &kernel.w, &mut d_input, scratch, 1).unwrap();

        for p in [
            &mut kernel,
            &mut bias,
            &mut gamma,
            &mut beta,
            &mut dense,
            &mut dense_bias,
        ] {
            adam_step(
                &adam,
                &Step::new(0.02, step),
                &mut p.w,
                &p.g,
                &mut p.m,
                &mut p.v,
            )
            .unwrap();
        }
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.1 * first, "loss {first} -> {last}");
    for (n, &class) in classes.iter().enumerate() {
        let row = &probs[n * CLASSES..(n + 1) * CLASSES];
        let best = (0..CLASSES)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        assert_eq!(best, class, "sample {n}: {row:?}");
    }
    assert!(d_input.iter().all(|v| v.is_finite()));
}
