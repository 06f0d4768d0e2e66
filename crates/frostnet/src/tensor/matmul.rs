//! Matrix multiplication through the `gemm` crate (the same kernels candle uses), which picks
//! AVX2/FMA or AVX-512 micro-kernels at run time and splits large products across rayon threads.

use gemm::{gemm, Parallelism};

/// Whether an operand is read transposed. Transposes are free: they only swap strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// `c (m x n) = [c +] op(a) (m x k) * op(b) (k x n)`, all row-major.
///
/// With `Transpose::Yes`, `a` is stored as `k x m` (and `b` as `n x k`). With `accumulate`, the
/// product is added to `c` instead of overwriting it (gradient accumulation without a temporary).
///
/// # Panics
/// If a slice is shorter than its dimensions require: that is a bug in the caller, never user input.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = match ta {
        Transpose::No => (k as isize, 1),
        Transpose::Yes => (1, m as isize),
    };
    let (b_rs, b_cs) = match tb {
        Transpose::No => (n as isize, 1),
        Transpose::Yes => (1, k as isize),
    };
    let par = if m * n * k >= 64 * 64 * 64 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the assert above guarantees that every index gemm forms, i*rs + j*cs for i < rows
    // and j < cols of each operand under the strides chosen here, lies inside its slice; `c` is
    // borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], ta: bool, b: &[f32], tb: bool, m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_odd_sizes_and_transposes() {
        let mut r = crate::tensor::random::rng(Some(1));
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (65, 130, 67),
            (128, 1, 3),
        ] {
            for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
                let a = crate::tensor::random::uniform(&mut r, m * k, -1.0, 1.0);
                let b = crate::tensor::random::uniform(&mut r, k * n, -1.0, 1.0);
                let t = |x| if x { Transpose::Yes } else { Transpose::No };
                let mut c = vec![0.5f32; m * n];
                matmul(&a, t(ta), &b, t(tb), &mut c, m, k, n, false);
                let want = naive(&a, ta, &b, tb, m, k, n);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4, "{m}x{k}x{n} {ta} {tb}: {x} vs {y}");
                }
                // accumulate adds on top
                let mut c2 = vec![1.0f32; m * n];
                matmul(&a, t(ta), &b, t(tb), &mut c2, m, k, n, true);
                for (x, y) in c2.iter().zip(&want) {
                    assert!((x - (y + 1.0)).abs() < 1e-4);
                }
            }
        }
    }
}
