use crate::support::{to_f32, Rng};
use edgetrain_core::kernels::window::{
    col2im, col2im_block, im2col, im2col_block, ColumnBlock, Padding, Window2d,
};

/// Geometries covering stride, uneven padding on every side, dilation and a 1x1 kernel.
pub fn geometries() -> Vec<Window2d> {
    let mut out = vec![Window2d::new([5, 6], [3, 3]), Window2d::new([4, 4], [1, 1])];
    out.push(Window2d {
        stride: [2, 1],
        padding: Padding {
            top: 1,
            bottom: 2,
            left: 0,
            right: 1,
        },
        ..Window2d::new([7, 5], [3, 2])
    });
    out.push(Window2d {
        stride: [1, 2],
        dilation: [2, 2],
        padding: Padding::uniform(2),
        ..Window2d::new([6, 7], [3, 3])
    });
    out.push(Window2d {
        stride: [3, 3],
        padding: Padding {
            top: 0,
            bottom: 1,
            left: 2,
            right: 0,
        },
        ..Window2d::new([8, 5], [2, 4])
    });
    // Taps that only ever read padding (the right-hand ones): a dilated kernel spanning
    // the whole padded width of a 2-wide map.
    out.push(Window2d {
        dilation: [2, 2],
        padding: Padding {
            top: 1,
            bottom: 2,
            left: 0,
            right: 3,
        },
        ..Window2d::new([3, 2], [2, 3])
    });
    out
}

/// The column matrix by its definition, cell by cell.
fn naive_im2col(w: &Window2d, channels: usize, x: &[f64]) -> Vec<f64> {
    let [oh, ow] = w.output("test").unwrap();
    let [h, wd] = w.input;
    let mut col = Vec::new();
    for c in 0..channels {
        for i in 0..w.kernel[0] {
            for j in 0..w.kernel[1] {
                for r in 0..oh {
                    for s in 0..ow {
                        let y =
                            (r * w.stride[0] + i * w.dilation[0]) as isize - w.padding.top as isize;
                        let z = (s * w.stride[1] + j * w.dilation[1]) as isize
                            - w.padding.left as isize;
                        let inside = (0..h as isize).contains(&y) && (0..wd as isize).contains(&z);
                        col.push(if inside {
                            x[(c * h + y as usize) * wd + z as usize]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
    }
    col
}

#[test]
fn im2col_matches_the_definition() {
    let mut rng = Rng::new(2);
    for w in geometries() {
        let x = rng.vec(2 * w.input[0] * w.input[1]);
        let expected = naive_im2col(&w, 2, &x);
        let mut col = vec![f32::NAN; expected.len()];
        im2col(&w, 2, &to_f32(&x), &mut col).unwrap();
        assert_eq!(col, to_f32(&expected), "{w:?}");
    }
}

#[test]
fn col2im_is_the_adjoint_of_im2col() {
    let mut rng = Rng::new(3);
    for w in geometries() {
        let channels = 3;
        let x = to_f32(&rng.vec(channels * w.input[0] * w.input[1]));
        let [oh, ow] = w.output("test").unwrap();
        let c = to_f32(&rng.vec(channels * w.taps() * oh * ow));
        let mut col = vec![0.0; c.len()];
        im2col(&w, channels, &x, &mut col).unwrap();
        let mut back = vec![f32::NAN; x.len()];
        col2im(&w, channels, &c, &mut back).unwrap();
        let dot = |p: &[f32], q: &[f32]| {
            p.iter()
                .zip(q)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>()
        };
        let (lhs, rhs) = (dot(&c, &col), dot(&back, &x));
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "{w:?}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn output_size_and_refusals() {
    let same_like = Window2d {
        stride: [2, 2],
        padding: Padding {
            top: 0,
            bottom: 1,
            left: 0,
            right: 1,
        },
        ..Window2d::new([5, 5], [3, 3])
    };
    assert_eq!(same_like.output("t").unwrap(), [2, 2]);
    let too_big = Window2d::new([2, 2], [3, 3]);
    assert!(too_big
        .output("t")
        .unwrap_err()
        .to_string()
        .contains("smaller than the kernel span"));
    let zero_stride = Window2d {
        stride: [0, 1],
        ..Window2d::new([4, 4], [2, 2])
    };
    assert!(zero_stride.output("t").is_err());
    let mut col = vec![0.0; 3];
    assert!(im2col(&Window2d::new([4, 4], [2, 2]), 1, &[0.0; 16], &mut col).is_err());
}

#[test]
fn blocks_of_a_shared_column_matrix_match_single_samples() {
    let mut rng = Rng::new(4);
    for w in geometries() {
        let [oh, ow] = w.output("test").unwrap();
        let (map, rows) = (oh * ow, 2 * w.taps());
        let plane = 2 * w.input[0] * w.input[1];
        let samples = [to_f32(&rng.vec(plane)), to_f32(&rng.vec(plane))];
        let mut shared = vec![f32::NAN; rows * 2 * map];
        for (n, x) in samples.iter().enumerate() {
            let block = ColumnBlock {
                row_len: 2 * map,
                first: n * map,
            };
            im2col_block(&w, 2, x, &mut shared, block).unwrap();
            let mut alone = vec![0.0; rows * map];
            im2col(&w, 2, x, &mut alone).unwrap();
            for r in 0..rows {
                assert_eq!(
                    &shared[r * 2 * map + n * map..][..map],
                    &alone[r * map..][..map]
                );
            }
            let (mut back, mut back_alone) = (vec![0.0; plane], vec![0.0; plane]);
            col2im_block(&w, 2, &shared, &mut back, block).unwrap();
            col2im(&w, 2, &alone, &mut back_alone).unwrap();
            assert_eq!(back, back_alone, "{w:?}");
        }
        let outside = ColumnBlock {
            row_len: 2 * map,
            first: map + 1,
        };
        assert!(im2col_block(&w, 2, &samples[0], &mut shared, outside).is_err());
    }
}

/// Runs `work` on a rayon pool of `threads` threads (the executor runs every step so).
fn on_threads<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(work)
}

#[test]
fn several_threads_give_the_same_columns_and_maps_as_one() {
    // Large enough for the channels to be shared out between threads; a block that is
    // one sample of three sharing the matrix, as a blocked convolution fills it.
    let mut rng = Rng::new(9);
    for w in [Window2d::new([18, 17], [3, 3]), geometries()[2]] {
        let channels = 70;
        let [oh, ow] = w.output("test").unwrap();
        let block = ColumnBlock {
            row_len: 3 * oh * ow,
            first: oh * ow,
        };
        let x = to_f32(&rng.vec(channels * w.input[0] * w.input[1]));
        let c = to_f32(&rng.vec(channels * w.taps() * block.row_len));
        let run = |threads: usize| {
            on_threads(threads, || {
                let mut col = vec![7.0f32; c.len()];
                im2col_block(&w, channels, &x, &mut col, block).unwrap();
                let mut back = vec![f32::NAN; x.len()];
                col2im_block(&w, channels, &c, &mut back, block).unwrap();
                (col, back)
            })
        };
        let (one, many) = (run(1), run(4));
        assert_eq!(one.0, many.0, "{w:?}: im2col");
        assert_eq!(one.1, many.1, "{w:?}: col2im");
        assert!(one.0.contains(&7.0), "columns of other samples untouched");
    }
}
