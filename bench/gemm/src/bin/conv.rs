//! Times edgetrain-core's conv2d kernels (im2col + faer GEMM per sample) on VGG-16 and
//! ResNet-18 layers at batch 32, and reports how much of each step is the GEMM itself.
//!
//! `cargo run --release --bin conv -- <threads>`.

use edgetrain_core::gemm::{gemm, GemmSpec};
use edgetrain_core::kernels::conv::{self, Conv2dShape, ConvScratch};
use edgetrain_core::kernels::window::{Padding, Window2d};
use std::time::Instant;

/// Median seconds of `runs` calls after one warm-up.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[runs / 2]
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(1, |s| s.parse().expect("threads"));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("pool");
    let layers = [
        ("vgg conv1_2 64->64 @32", 64, 64, 32, 1),
        ("vgg conv3_2 256->256 @8", 256, 256, 8, 1),
        ("vgg conv5_2 512->512 @2", 512, 512, 2, 1),
        ("resnet 128->128 @16", 128, 128, 16, 1),
        ("resnet down 64->128 s2", 64, 128, 32, 2),
    ];
    println!("threads={threads}, batch 32, 3x3 kernels, padding 1; milliseconds (GFLOP/s)");
    println!(
        "{:<26} {:>4} {:>10} {:>16} {:>16} {:>16} {:>10}",
        "layer", "s", "scratch MB", "forward", "grad_weight", "backward_input", "gemm share"
    );
    for (name, c, f, size, stride) in layers {
        let window = Window2d {
            stride: [stride, stride],
            padding: Padding::uniform(1),
            ..Window2d::new([size, size], [3, 3])
        };
        for samples in [1, 8, 32] {
            let shape = Conv2dShape {
                samples_per_gemm: samples,
                ..Conv2dShape::new(32, c, f, window)
            };
            let [n, _, oh, ow] = shape.output_dims().unwrap();
            let x = vec![0.5f32; n * c * size * size];
            let w = vec![0.01f32; f * c * 9];
            let mut y = vec![0.0f32; n * f * oh * ow];
            let mut dw = vec![0.0f32; w.len()];
            let mut dx = vec![0.0f32; x.len()];
            let mut col = vec![0.0f32; shape.col_len().unwrap()];
            let mut stage = vec![0.0f32; shape.stage_len().unwrap()];
            let runs = 5;
            let fwd = time(runs, || {
                let scratch = ConvScratch {
                    col: &mut col,
                    stage: &mut stage,
                };
                conv::forward(&shape, &x, &w, None, &mut y, scratch, threads).unwrap()
            });
            let grad = time(runs, || {
                let scratch = ConvScratch {
                    col: &mut col,
                    stage: &mut stage,
                };
                conv::grad_weight(&shape, &x, &y, &mut dw, None, scratch, threads).unwrap()
            });
            let back = time(runs, || {
                let scratch = ConvScratch {
                    col: &mut col,
                    stage: &mut stage,
                };
                conv::backward_input(&shape, &y, &w, &mut dx, scratch, threads).unwrap()
            });
            let chunk = samples.min(n);
            let spec = GemmSpec::new(f, chunk * oh * ow, c * 9).threads(threads);
            let mut out = vec![0.0f32; f * chunk * oh * ow];
            let gemm_only = time(runs, || {
                for _ in 0..n / chunk {
                    gemm(&spec, &w, &col, &mut out).unwrap();
                }
            });
            let flops = 2.0 * (n * f * oh * ow * c * 9) as f64;
            let cell = |s: f64| format!("{:.1} ({:.0})", s * 1e3, flops / s / 1e9);
            let megabytes = 4.0 * (col.len() + stage.len()) as f64 / 1e6;
            println!(
                "{:<26} {:>4} {:>10.1} {:>16} {:>16} {:>16} {:>9.0}%",
                name,
                samples,
                megabytes,
                cell(fwd),
                cell(grad),
                cell(back),
                100.0 * gemm_only / fwd
            );
        }
    }
}
