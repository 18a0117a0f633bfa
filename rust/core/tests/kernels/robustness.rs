//! Bad input is an `Err`, never a panic: kernels called with random small geometries
//! (zeros included) and slices of the right length or one off.

use crate::support::Rng;
use edgetrain_core::kernels::activation::{self, Activation};
use edgetrain_core::kernels::batch_norm::{self, BatchNormShape};
use edgetrain_core::kernels::conv::{self, Conv2dShape, ConvScratch};
use edgetrain_core::kernels::fc::{self, FcShape};
use edgetrain_core::kernels::layer_norm::{self, LayerNormShape};
use edgetrain_core::kernels::pool::{self, Pool2dShape};
use edgetrain_core::kernels::window::{im2col, Padding, Window2d};
use edgetrain_core::kernels::{loss, merge, InOut};

/// Draws sizes in `0..=max` and lengths that are right or one off.
struct Draw(Rng);

impl Draw {
    fn size(&mut self, max: usize) -> usize {
        ((self.0.next() + 1.0) * 0.5 * (max + 1) as f64) as usize % (max + 1)
    }

    fn pair(&mut self, max: usize) -> [usize; 2] {
        [self.size(max), self.size(max)]
    }

    /// A buffer of `len` elements, or one more or one fewer, one time in four each.
    fn buffer(&mut self, len: usize) -> Vec<f32> {
        let len = match self.size(7) {
            0 => len + 1,
            1 => len.saturating_sub(1),
            _ => len,
        };
        vec![0.5; len]
    }

    fn window(&mut self) -> Window2d {
        Window2d {
            input: self.pair(5),
            kernel: self.pair(3),
            stride: self.pair(2),
            dilation: self.pair(2),
            padding: Padding {
                top: self.size(2),
                bottom: self.size(2),
                left: self.size(2),
                right: self.size(2),
            },
        }
    }
}

fn product(dims: &[usize]) -> usize {
    dims.iter().product()
}

#[test]
fn random_geometries_and_lengths_never_panic() {
    let mut d = Draw(Rng::new(90));
    for _ in 0..3000 {
        let window = d.window();
        let [h, w] = window.input;
        let (n, c, f) = (d.size(2), d.size(2), d.size(2));
        let out = window.output("t").unwrap_or([1, 1]);
        let shape = Conv2dShape {
            samples_per_gemm: d.size(3),
            ..Conv2dShape::new(n, c, f, window)
        };
        let col_len = c
            * window.kernel[0]
            * window.kernel[1]
            * out[0]
            * out[1]
            * shape.samples_per_gemm.max(1);
        let (x, weight) = (
            d.buffer(n * c * h * w),
            d.buffer(f * c * window.kernel[0] * window.kernel[1]),
        );
        let mut y = d.buffer(n * f * out[0] * out[1]);
        let (mut col, mut stage) = (
            d.buffer(col_len),
            d.buffer(f * out[0] * out[1] * shape.samples_per_gemm),
        );
        let _ = conv::forward(
            &shape,
            &x,
            &weight,
            None,
            &mut y,
            ConvScratch {
                col: &mut col,
                stage: &mut stage,
            },
            1,
        );
        let mut dx = d.buffer(x.len());
        let _ = conv::backward_input(
            &shape,
            &y,
            &weight,
            &mut dx,
            ConvScratch {
                col: &mut col,
                stage: &mut stage,
            },
            1,
        );
        let mut dw = d.buffer(weight.len());
        let _ = conv::grad_weight(
            &shape,
            &x,
            &y,
            &mut dw,
            None,
            ConvScratch {
                col: &mut col,
                stage: &mut stage,
            },
            1,
        );
        let _ = im2col(&window, c, &x, &mut col);

        let pool_shape = Pool2dShape {
            batch: n,
            channels: c,
            window,
        };
        let mut argmax = vec![d.size(40) as i32 - 1; y.len()];
        let _ = pool::max_forward(&pool_shape, &x, &mut y, &mut argmax);
        let _ = pool::max_backward(&pool_shape, &y, &argmax, &mut dx);
        let _ = pool::average_forward(&pool_shape, &x, &mut y);
        let _ = pool::average_backward(&pool_shape, &y, &mut dx);
        let dims = [n, c, h, w];
        let _ = pool::global_average_forward(dims, &x, &mut y);
        let mut mask = vec![1u8; d.size(40)];
        let _ = pool::global_max_backward(dims, &y, &mask, &mut dx);
        let _ = pool::global_max_forward(dims, &x, &mut y, &mut mask);

        let fc_shape = FcShape {
            rows: n,
            inputs: c,
            units: f,
        };
        let _ = fc::forward(&fc_shape, &x, &weight, Some(&y), &mut dx, 1);
        let _ = fc::grad_weight(&fc_shape, &x, &y, &mut dw, Some(&mut dx), 1);

        let axis = d.size(4);
        let mut buffer = d.buffer(product(&dims));
        let kind = Activation::ALL[d.size(7)];
        let _ = activation::forward(kind, &dims, InOut::InPlace(&mut buffer));
        let _ = activation::backward(kind, &dims, &x, InOut::InPlace(&mut buffer));
        let bn = BatchNormShape { dims: &dims, axis };
        let (mut a, mut b) = (d.buffer(c), d.buffer(c));
        let _ = batch_norm::grad(&bn, &x, &buffer, &mut a, &mut b);
        let _ = batch_norm::backward(&bn, InOut::InPlace(&mut buffer), &x, &a, &b);
        let axes = [axis, axis + d.size(2)];
        let ln = LayerNormShape {
            dims: &dims,
            axes: &axes[..1 + d.size(1)],
        };
        let _ = layer_norm::forward(&ln, 1e-5, InOut::InPlace(&mut buffer), &a, &b, None);
        let _ = layer_norm::backward(&ln, InOut::InPlace(&mut buffer), &x, &a, &b);

        let _ = loss::softmax_cross_entropy_forward(&dims, &x, Some(&buffer), &mut y);
        let _ = loss::sigmoid_cross_entropy_backward(&dims, &x, &buffer, &mut y);
        let _ = loss::mse_forward(&dims[..axis.min(4)], &x, &buffer);
        let concat_dims: [&[usize]; 2] = [&dims, &dims[..axis.min(4)]];
        let _ = merge::concat_forward(&concat_dims, axis, &[&x, &buffer], &mut y);
        let _ = merge::concat_backward(&concat_dims, axis, &y, &mut [&mut dx, &mut buffer]);
        let _ = merge::add_forward(&[&x, &buffer], &mut y);
    }
}
