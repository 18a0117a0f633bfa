//! Sums over `f32` data accumulated in `f64`: the per-channel reductions of batch norm.
//!
//! Each function continues a running total (`acc`), so a channel spread over several
//! ranges is summed range after range. A sum added one element at a time in index order
//! is a chain of dependent additions (one `f64` add latency, ~4 cycles, per element:
//! batch norm was latency-bound at ~6 ns per element). Both paths therefore keep
//! independent `f64` partial sums: the portable loops eight lanes (element `i` of a
//! range into lane `i mod 8`, the lanes added pairwise at the end of the range, the tail
//! after them in order), which the compiler turns into SIMD on any target; the NEON path
//! (aarch64) widens four `f32` lanes per step into two `f64x2` accumulators.
//!
//! Both accumulate in `f64`, where the product of two `f32` is exact, so they differ from
//! each other and from an in-order sum only in the order of the `f64` additions:
//! relative differences near 1e-16, which the kernels' rounding of the results to `f32`
//! hides except at rare rounding ties. The tests below compare both with the in-order
//! sums (the NEON path on aarch64, `make test-arm`).

/// `acc + sum(x)`.
pub(crate) fn add_sum(acc: f64, x: &[f32]) -> f64 {
    #[cfg(target_arch = "aarch64")]
    {
        acc + neon::sum(x)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::add_sum(acc, x)
    }
}

/// `acc + sum(x * x)`.
pub(crate) fn add_sum_of_squares(acc: f64, x: &[f32]) -> f64 {
    #[cfg(target_arch = "aarch64")]
    {
        acc + neon::sum_of_squares(x)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::add_sum_of_squares(acc, x)
    }
}

/// `(acc.0 + sum(a), acc.1 + sum(a * b))`; `a` and `b` have the same length.
pub(crate) fn add_sum_and_dot(acc: (f64, f64), a: &[f32], b: &[f32]) -> (f64, f64) {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "aarch64")]
    {
        let (sum, dot) = neon::sum_and_dot(a, b);
        (acc.0 + sum, acc.1 + dot)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::add_sum_and_dot(acc, a, b)
    }
}

/// Eight independent `f64` lanes per range (see the module documentation).
#[cfg_attr(all(target_arch = "aarch64", not(test)), allow(dead_code))]
mod portable {
    const LANES: usize = 8;

    /// The lanes added pairwise, in a fixed order.
    fn combine(l: [f64; LANES]) -> f64 {
        ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
    }

    pub(super) fn add_sum(acc: f64, x: &[f32]) -> f64 {
        let body = x.chunks_exact(LANES);
        let tail = body.remainder();
        let mut lanes = [0f64; LANES];
        for chunk in body {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f64::from(v);
            }
        }
        tail.iter()
            .fold(acc + combine(lanes), |s, &v| s + f64::from(v))
    }

    pub(super) fn add_sum_of_squares(acc: f64, x: &[f32]) -> f64 {
        let body = x.chunks_exact(LANES);
        let tail = body.remainder();
        let mut lanes = [0f64; LANES];
        for chunk in body {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f64::from(v) * f64::from(v);
            }
        }
        tail.iter()
            .fold(acc + combine(lanes), |s, &v| s + f64::from(v) * f64::from(v))
    }

    pub(super) fn add_sum_and_dot(acc: (f64, f64), a: &[f32], b: &[f32]) -> (f64, f64) {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let body = n / LANES * LANES;
        let (mut sums, mut dots) = ([0f64; LANES], [0f64; LANES]);
        for (p, q) in a[..body]
            .chunks_exact(LANES)
            .zip(b[..body].chunks_exact(LANES))
        {
            for k in 0..LANES {
                sums[k] += f64::from(p[k]);
                dots[k] += f64::from(p[k]) * f64::from(q[k]);
            }
        }
        let start = (acc.0 + combine(sums), acc.1 + combine(dots));
        a[body..]
            .iter()
            .zip(&b[body..])
            .fold(start, |(s, d), (&p, &q)| {
                (s + f64::from(p), d + f64::from(p) * f64::from(q))
            })
    }
}

/// Four `f32` lanes per step, widened to two `f64x2` halves with one accumulator each.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// The two `f64x2` halves of the four `f32` at `p`.
    ///
    /// # Safety
    /// `p` must point to four readable `f32`.
    #[inline(always)]
    unsafe fn widen4(p: *const f32) -> (float64x2_t, float64x2_t) {
        let v = vld1q_f32(p);
        (vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v))
    }

    pub(super) fn sum(x: &[f32]) -> f64 {
        let body = x.len() / 4 * 4;
        // SAFETY: each load reads x[i..i + 4] with i + 4 <= body <= x.len(). NEON is part
        // of the aarch64 base architecture, enabled for every aarch64 Rust target.
        let total = unsafe {
            let (mut lo, mut hi) = (vdupq_n_f64(0.0), vdupq_n_f64(0.0));
            for i in (0..body).step_by(4) {
                let (l, h) = widen4(x.as_ptr().add(i));
                lo = vaddq_f64(lo, l);
                hi = vaddq_f64(hi, h);
            }
            vaddvq_f64(vaddq_f64(lo, hi))
        };
        x[body..].iter().fold(total, |s, &v| s + f64::from(v))
    }

    pub(super) fn sum_of_squares(x: &[f32]) -> f64 {
        let body = x.len() / 4 * 4;
        // SAFETY: as in `sum`.
        let total = unsafe {
            let (mut lo, mut hi) = (vdupq_n_f64(0.0), vdupq_n_f64(0.0));
            for i in (0..body).step_by(4) {
                let (l, h) = widen4(x.as_ptr().add(i));
                // v * v is exact in f64, so the fused multiply-add rounds once, as the
                // portable `s + v * v` does.
                lo = vfmaq_f64(lo, l, l);
                hi = vfmaq_f64(hi, h, h);
            }
            vaddvq_f64(vaddq_f64(lo, hi))
        };
        x[body..]
            .iter()
            .fold(total, |s, &v| s + f64::from(v) * f64::from(v))
    }

    pub(super) fn sum_and_dot(a: &[f32], b: &[f32]) -> (f64, f64) {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let body = n / 4 * 4;
        // SAFETY: loads read a[i..i + 4] and b[i..i + 4] with i + 4 <= body <= n.
        let (sum, dot) = unsafe {
            let zero = vdupq_n_f64(0.0);
            let (mut s_lo, mut s_hi, mut d_lo, mut d_hi) = (zero, zero, zero, zero);
            for i in (0..body).step_by(4) {
                let (a_lo, a_hi) = widen4(a.as_ptr().add(i));
                let (b_lo, b_hi) = widen4(b.as_ptr().add(i));
                s_lo = vaddq_f64(s_lo, a_lo);
                s_hi = vaddq_f64(s_hi, a_hi);
                d_lo = vfmaq_f64(d_lo, a_lo, b_lo);
                d_hi = vfmaq_f64(d_hi, a_hi, b_hi);
            }
            (
                vaddvq_f64(vaddq_f64(s_lo, s_hi)),
                vaddvq_f64(vaddq_f64(d_lo, d_hi)),
            )
        };
        a[body..]
            .iter()
            .zip(&b[body..])
            .fold((sum, dot), |(s, d), (&p, &q)| {
                (s + f64::from(p), d + f64::from(p) * f64::from(q))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values of mixed sign over five orders of magnitude (a 64-bit LCG).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                (unit - 0.5) * if state & 1 == 0 { 1e3 } else { 1e-2 }
            })
            .collect()
    }

    /// The sums one element at a time in index order: what both paths must agree with.
    mod in_order {
        pub(super) fn add_sum(acc: f64, x: &[f32]) -> f64 {
            x.iter().fold(acc, |s, &v| s + f64::from(v))
        }

        pub(super) fn add_sum_of_squares(acc: f64, x: &[f32]) -> f64 {
            x.iter().fold(acc, |s, &v| s + f64::from(v) * f64::from(v))
        }

        pub(super) fn add_sum_and_dot(acc: (f64, f64), a: &[f32], b: &[f32]) -> (f64, f64) {
            a.iter().zip(b).fold(acc, |(s, d), (&p, &q)| {
                (s + f64::from(p), d + f64::from(p) * f64::from(q))
            })
        }
    }

    /// `|got - want| <= 1e-13 * scale`: f64 rounding of another addition order.
    fn assert_near(got: f64, want: f64, scale: f64, what: &str) {
        assert!(
            (got - want).abs() <= 1e-13 * scale,
            "{what}: {got} vs {want} (scale {scale})"
        );
    }

    #[test]
    fn portable_and_dispatched_sums_match_the_in_order_sums_at_every_length_and_offset() {
        // lengths around the eight-lane body and its tail, and unaligned starts
        for n in (0..40).chain([63, 64, 65, 1000, 4099]) {
            for offset in 0..4 {
                let a = values(n + offset, n as u64);
                let b = values(n + offset, 7 + n as u64);
                let (a, b) = (&a[offset..], &b[offset..]);
                let acc = 0.25;
                let abs = acc + a.iter().map(|&v| f64::from(v).abs()).sum::<f64>();
                let products: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
                    .sum();
                let squares = in_order::add_sum_of_squares(acc, a);
                let (os, od) = in_order::add_sum_and_dot((acc, -acc), a, b);
                for (sum, name) in [(portable::add_sum(acc, a), "portable"), (add_sum(acc, a), "dispatched")] {
                    assert_near(sum, in_order::add_sum(acc, a), abs, name);
                }
                for got in [portable::add_sum_of_squares(acc, a), add_sum_of_squares(acc, a)] {
                    assert_near(got, squares, squares, "squares");
                    assert_eq!(got as f32, squares as f32, "n {n}");
                }
                for (s, d) in [
                    portable::add_sum_and_dot((acc, -acc), a, b),
                    add_sum_and_dot((acc, -acc), a, b),
                ] {
                    assert_near(s, os, abs, "sum_and_dot.0");
                    assert_near(d, od, acc + products, "sum_and_dot.1");
                }
            }
        }
    }

    #[test]
    fn sums_of_small_integers_are_exact() {
        let x: Vec<f32> = (1..=37).map(|i| i as f32).collect();
        let squares = f64::from(37 * 38 * 75 / 6);
        assert_eq!(add_sum(0.0, &x), 703.0);
        assert_eq!(add_sum(1.0, &x), 704.0);
        assert_eq!(add_sum_of_squares(0.0, &x), squares);
        assert_eq!(add_sum_and_dot((0.0, 0.0), &x, &x), (703.0, squares));
        assert_eq!(add_sum_and_dot((1.0, 2.0), &x[..5], &x[..5]), (16.0, 57.0));
        assert_eq!(add_sum(3.5, &[]), 3.5);
    }

    #[test]
    fn non_finite_values_propagate_as_in_the_portable_loops() {
        let mut x = values(13, 3);
        x[9] = f32::NAN;
        assert!(add_sum(0.0, &x).is_nan() && add_sum_of_squares(0.0, &x).is_nan());
        assert!(add_sum_and_dot((0.0, 0.0), &x, &x).1.is_nan());
        x[9] = f32::INFINITY;
        assert_eq!(add_sum(0.0, &x), f64::INFINITY);
        assert_eq!(add_sum_of_squares(0.0, &x), f64::INFINITY);
    }
}
