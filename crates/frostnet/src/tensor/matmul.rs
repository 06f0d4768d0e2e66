//! Matrix multiplication: frostnet's own packed, BLIS-style f32 kernels ([`super::sgemm`]) at
//! the instruction-set level [`super::isa`] selects: AVX-512F (6 x 64, 8 x 48 or 12 x 32 zmm
//! register tiles, whichever pads the output least) where the CPU has it, AVX2+FMA (6 x 16 ymm) otherwise, a portable 4 x 16 kernel that
//! LLVM vectorizes for the compile target elsewhere on x86. `FROSTNET_ISA` and
//! [`super::isa::with_forced`] cover matmul like every other kernel. Large products are split
//! across rayon's threads by row blocks (and column panels when there are few rows). A
//! row-major operand is read in place rather than packed (`A` always, `B` unless its rows are
//! 2 KiB apart; see `sgemm.rs`'s header for the measurements).
//!
//! Why our own: the `gemm` crate (0.19) was used before. Its AVX-512 kernels reached only
//! 0.40 of the FMA peak on sgemm 2048 (run 5 in `bench/RESULTS.md`), and they cannot be chosen
//! per call. Measured with `frostnet-bench matmul --threads 2` (GFLOP/s per CPU-second per
//! thread, interleaved on a shared 2-core Xeon with AVX-512 at load ~18, so absolute numbers are
//! low; the FMA peak measured ~215 per thread at avx512, ~107 at avx2):
//!
//! | shape (m x k x n)                  | own avx512 | gemm avx512 | own avx2 | gemm avx2 |
//! |------------------------------------|-----------:|------------:|---------:|----------:|
//! | sgemm 2048                         |      140.9 |        76.6 |    121.9 |     100.4 |
//! | 1x1 conv 9800 x 288 x 64           |       96.8 |        53.0 |     86.7 |      58.4 |
//! | 1x1 conv 2312 x 768 x 192          |      124.6 |        71.2 |    112.4 |      91.9 |
//! | 3x3/2 im2col 2312 x 2592 x 384     |      134.2 |        71.3 |    116.0 |      93.2 |
//! | dX 9800 x 96 x 576 (B transposed)  |      130.7 |        53.3 |    121.7 |      63.7 |
//! | dW 2592 x 2312 x 384 (A transposed)|      128.4 |        81.7 |    112.1 |     100.5 |
//! | mlp 256 x 500 x 500                |      122.4 |        72.0 |    107.0 |      85.1 |
//! | dense 8 x 2048 x 200               |       31.4 |        42.7 |     34.8 |      60.2 |
//!
//! (Measured before the micro-kernel prefetched and before the 8 x 48 tile; with them, sgemm
//! 2048 runs at 0.79-0.89 of the FMA peak on 1 thread and 0.77-0.85 on 2, wall time on a quiet
//! machine: see `sgemm.rs` and its history.)
//!
//! Own kernels win everywhere but on products with very few rows (a Dense layer at batch 8:
//! 0.4 ms vs 0.3 ms, where packing all of `B` costs as much as the arithmetic); that case is
//! too small to matter in any workload, so `gemm` is no longer used on x86-64. On other
//! architectures (aarch64) `gemm`'s NEON kernels stay: they were not measured against ours
//! here and are surely faster than the portable kernel.

use super::isa::{self, Isa};
#[cfg(target_arch = "x86_64")]
use super::sgemm::{sgemm, Rhs, View};
#[cfg(not(target_arch = "x86_64"))]
use gemm_common::Parallelism;

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every matmul it calls on this thread kept on this thread. For kernels that
/// already share their work out over the pool in independent chunks (Winograd's tile rows):
/// there a matmul that splits itself again only adds hand-overs and waits. Measured on an
/// experimental Winograd engine for 1x7 layers (160->160 at 17x17, batch 8, AVX-512): 7.1 CPU
/// ms on 1 thread, 12.5 on 2 before this and 8.8-11.5 after (a noisy machine). On the 3x3
/// engine that shipped the difference was within that noise (-14% to +3% CPU per layer).
pub(crate) fn serially<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.set(self.0);
        }
    }
    let _restore = Restore(SERIAL.replace(true));
    f()
}

/// Whether the calling thread is inside [`serially`].
pub(crate) fn runs_serially() -> bool {
    SERIAL.get()
}

/// Whether an operand is read transposed. Transposes are free: they only swap strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// `c (m x n) = [c +] op(a) (m x k) * op(b) (k x n)`, all row-major, at [`isa::active`]'s level.
///
/// With `Transpose::Yes`, `a` is stored as `k x m` (and `b` as `n x k`). With `accumulate`, the
/// product is added to `c` instead of overwriting it (gradient accumulation without a temporary).
///
/// # Panics
/// If a slice is shorter than its dimensions require, or `m*k`, `k*n` or `m*n` overflows: callers
/// derive these sizes from tensors they own, so either is a bug in the caller, never user input.
/// The check uses checked arithmetic, so no overflow can let the unsafe kernel call read or write
/// out of bounds.
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
    matmul_with(isa::active(), a, ta, b, tb, c, m, k, n, accumulate)
}

/// [`matmul`] at an explicit instruction-set level (narrowed to what the CPU supports), for
/// kernels that already read [`isa::active`] on their calling thread and for benchmarks.
///
/// # Panics
/// As [`matmul`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    isa: Isa,
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
    product(isa, a, ta, b, tb, c, m, k, n, accumulate, None)
}

/// What [`matmul_then`] runs over finished output: `f(j0, segment)` where `segment` is part of
/// one row of `c`, starting at column `j0`.
pub(crate) type RowsFn<'a> = dyn Fn(usize, &mut [f32]) + Sync + 'a;

/// `c = op(a) * op(b)` as [`matmul`], then (if given) `then` over every value of `c`, each part
/// of a row once, while the kernel's output tile is still in L1 (a convolution's bias,
/// BatchNormalization and ReLU: a pass over the output from L2/L3 otherwise, 3-5% of a 1x1
/// convolution's time).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_then(
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    then: Option<&RowsFn>,
) {
    product(isa::active(), a, ta, b, tb, c, m, k, n, false, then)
}

/// [`matmul_with`], with [`matmul_then`]'s `then`.
#[allow(clippy::too_many_arguments)]
fn product(
    isa: Isa,
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    then: Option<&RowsFn>,
) {
    let need = |x: usize, y: usize, what: &str| {
        x.checked_mul(y)
            .unwrap_or_else(|| panic!("matmul: {what} = {x} x {y} overflows usize"))
    };
    let (mk, kn, mn) = (need(m, k, "m*k"), need(k, n, "k*n"), need(m, n, "m*n"));
    assert!(
        a.len() >= mk && b.len() >= kn && c.len() >= mn,
        "matmul: {m}x{k}x{n} needs a >= {mk}, b >= {kn}, c >= {mn} values; got {}, {}, {}",
        a.len(),
        b.len(),
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..mn].fill(0.0);
        }
        if let Some(f) = then {
            c[..mn].chunks_exact_mut(n).for_each(|r| f(0, r));
        }
        return;
    }
    let isa = isa.min(isa::detected());
    #[cfg(target_arch = "x86_64")]
    {
        let (a_rs, a_cs) = match ta {
            Transpose::No => (k, 1),
            Transpose::Yes => (1, m),
        };
        let (b_rs, b_cs) = match tb {
            Transpose::No => (n, 1),
            Transpose::Yes => (1, k),
        };
        let av = View {
            data: a,
            rs: a_rs,
            cs: a_cs,
        };
        let bv = View {
            data: b,
            rs: b_rs,
            cs: b_cs,
        };
        sgemm(isa, m, n, k, av, Rhs::View(bv), c, accumulate, then);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use rayon::prelude::*;
        matmul_gemm_crate(isa, a, ta, b, tb, c, m, k, n, accumulate);
        if let Some(f) = then {
            c[..mn].par_chunks_mut(n).for_each(|r| f(0, r));
        }
    }
}

/// The `gemm` crate's kernels, with its own run-time dispatch (NEON on aarch64).
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
fn matmul_gemm_crate(
    _isa: Isa,
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
    // m, k, n >= 1 here and each is at most a product that fits in a slice length (<= isize::MAX
    // elements), so these casts are lossless.
    let (a_rs, a_cs) = match ta {
        Transpose::No => (k as isize, 1),
        Transpose::Yes => (1, m as isize),
    };
    let (b_rs, b_cs) = match tb {
        Transpose::No => (n as isize, 1),
        Transpose::Yes => (1, k as isize),
    };
    let par = if !runs_serially() && m.saturating_mul(n).saturating_mul(k) >= 64 * 64 * 64 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let args = GemmArgs {
        m,
        n,
        k,
        dst: c.as_mut_ptr(),
        dst_cs: 1,
        dst_rs: n as isize,
        read_dst: accumulate,
        lhs: a.as_ptr(),
        lhs_cs: a_cs,
        lhs_rs: a_rs,
        rhs: b.as_ptr(),
        rhs_cs: b_cs,
        rhs_rs: b_rs,
        par,
    };
    // SAFETY: the caller's checks guarantee (without overflow) that every index the kernel
    // forms, i*rs + j*cs for i < rows and j < cols of each operand under the strides chosen here,
    // lies inside its slice (for op(a): max index (m-1)*k + (k-1) = m*k - 1 < a.len(), likewise
    // for b and c); `c` is borrowed mutably, so it cannot alias `a` or `b`. gemm checks the CPU
    // features itself before running any kernel.
    unsafe { args.native() }
}

/// How many values [`pack_rhs`] writes for a `k x n` matrix at `isa`'s level.
#[cfg(target_arch = "x86_64")]
pub(crate) fn packed_rhs_len(isa: Isa, k: usize, n: usize) -> usize {
    super::sgemm::packed_rhs_len(isa.min(isa::detected()), k, n)
}

/// Packs the row-major `k x n` matrix `b` into `dst` ([`packed_rhs_len`] values) the way
/// [`matmul_packed_then`] at `isa`'s level reads it: for a `B` that many products share (a
/// frozen convolution's kernel), packed once instead of once per product.
///
/// # Panics
/// If `b` or `dst` is too short.
#[cfg(target_arch = "x86_64")]
pub(crate) fn pack_rhs(isa: Isa, b: &[f32], k: usize, n: usize, dst: &mut [f32]) {
    let isa = isa.min(isa::detected());
    super::sgemm::pack_rhs(
        isa,
        k,
        n,
        View {
            data: b,
            rs: n,
            cs: 1,
        },
        dst,
    )
}

/// [`matmul_then`] with `B` already packed by [`pack_rhs`] at the same `isa`: the same
/// operations in the same order, so the same bits, without packing (or a strided read of) `B`.
///
/// # Panics
/// As [`matmul`], or if `packed` is shorter than [`packed_rhs_len`].
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_packed_then(
    isa: Isa,
    a: &[f32],
    packed: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    then: Option<&RowsFn>,
) {
    let mk = m.checked_mul(k).expect("matmul: m*k overflows usize");
    let mn = m.checked_mul(n).expect("matmul: m*n overflows usize");
    assert!(
        a.len() >= mk && c.len() >= mn,
        "matmul: {m}x{k}x{n} needs a >= {mk}, c >= {mn} values; got {}, {}",
        a.len(),
        c.len()
    );
    let av = View {
        data: a,
        rs: k,
        cs: 1,
    };
    let isa = isa.min(isa::detected());
    sgemm(isa, m, n, k, av, Rhs::Packed(packed), c, false, then);
}

/// One product's raw operands, as `gemm`'s drivers take them (column stride first).
#[cfg(not(target_arch = "x86_64"))]
struct GemmArgs {
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    par: Parallelism,
}

#[cfg(not(target_arch = "x86_64"))]
impl GemmArgs {
    /// `gemm`'s own run-time dispatch (widest kernels the CPU supports among those built).
    ///
    /// # Safety
    /// The pointers and strides must describe valid operands, `dst` not aliasing the others;
    /// gemm checks the CPU features itself.
    unsafe fn native(&self) {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            gemm_f32::gemm::f32::get_gemm_fn()(
                self.m,
                self.n,
                self.k,
                self.dst,
                self.dst_cs,
                self.dst_rs,
                self.read_dst,
                self.lhs,
                self.lhs_cs,
                self.lhs_rs,
                self.rhs,
                self.rhs_cs,
                self.rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                self.par,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside `serially` a product large enough to split runs on the calling thread, with the
    /// same values (splitting shares out rows and columns, never the depth), and the flag is
    /// restored afterwards, also when the closure panics.
    #[test]
    fn serially_is_scoped_and_changes_no_value() {
        let (m, k, n) = (150, 130, 170);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.25).collect();
        let run = || {
            let mut c = vec![0.0f32; m * n];
            matmul(&a, Transpose::No, &b, Transpose::No, &mut c, m, k, n, false);
            c
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let parallel = run();
            assert!(!runs_serially());
            let inside = serially(|| {
                assert!(runs_serially());
                run()
            });
            assert!(!runs_serially());
            assert_eq!(parallel, inside);
            let caught = std::panic::catch_unwind(|| serially(|| panic!("in the closure")));
            assert!(caught.is_err());
            assert!(!runs_serially());
        });
    }

    fn naive(a: &[f32], ta: bool, b: &[f32], tb: bool, m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    /// Every level this CPU runs, forced through `with_forced`, against an f64 reference on odd
    /// sizes (tails in every micro-kernel dimension), all transpose combinations, overwrite and
    /// accumulate, serial and parallel (>= 64^3) products. Tolerance: 1e-5 relative to the sum of
    /// |a||b| terms, the f32 rounding bound of a length-k dot product.
    fn every_isa_matches_f64_reference_on_odd_sizes_and_transposes(levels: Vec<Isa>) {
        let mut r = crate::tensor::random::rng(Some(1));
        let isas = levels.clone();
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (31, 1, 47),
            (65, 130, 67),
            (128, 1, 3),
            (97, 211, 53),
            // Several depth blocks (k > KC), row blocks (m > MC) and column panels, with tails
            // in each; the last two have too few rows for the row blocks alone to occupy every
            // thread, so the columns are split as well.
            (401, 263, 130),
            (33, 520, 65),
            (7, 300, 1000),
            (1, 129, 517),
        ] {
            for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
                let a = crate::tensor::random::uniform(&mut r, m * k, -1.0, 1.0);
                let b = crate::tensor::random::uniform(&mut r, k * n, -1.0, 1.0);
                let abs_a: Vec<f32> = a.iter().map(|x| x.abs()).collect();
                let abs_b: Vec<f32> = b.iter().map(|x| x.abs()).collect();
                let want = naive(&a, ta, &b, tb, m, k, n);
                let scale = naive(&abs_a, ta, &abs_b, tb, m, k, n);
                let t = |x| if x { Transpose::Yes } else { Transpose::No };
                for &isa in &isas {
                    isa::with_forced(isa, || {
                        assert_eq!(isa::active(), isa);
                        let mut c = vec![0.5f32; m * n];
                        matmul(&a, t(ta), &b, t(tb), &mut c, m, k, n, false);
                        let mut c2 = vec![1.0f32; m * n];
                        matmul(&a, t(ta), &b, t(tb), &mut c2, m, k, n, true);
                        for i in 0..m * n {
                            let tol = 1e-5 * (scale[i] + 1.0);
                            let (x, y) = (c[i] as f64, want[i]);
                            assert!(
                                (x - y).abs() <= tol,
                                "{isa} {m}x{k}x{n} {ta} {tb}: {x} vs {y}"
                            );
                            let x2 = c2[i] as f64;
                            assert!(
                                (x2 - (y + 1.0)).abs() <= tol,
                                "{isa} accumulate: {x2} vs {y}+1"
                            );
                        }
                    });
                }
            }
        }
    }
    crate::level_tests!(every_isa_matches_f64_reference_on_odd_sizes_and_transposes);

    #[test]
    fn degenerate_sizes() {
        let mut c = vec![3.0f32; 6];
        matmul(
            &[],
            Transpose::No,
            &[],
            Transpose::No,
            &mut c,
            2,
            0,
            3,
            true,
        );
        assert_eq!(c, vec![3.0; 6]);
        matmul(
            &[],
            Transpose::No,
            &[],
            Transpose::No,
            &mut c,
            2,
            0,
            3,
            false,
        );
        assert_eq!(c, vec![0.0; 6]);
        matmul(
            &[],
            Transpose::No,
            &[0.0; 15],
            Transpose::No,
            &mut c,
            0,
            5,
            3,
            false,
        );
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn overflowing_sizes_panic_before_the_kernel_runs() {
        // m*k wraps to a small number without checked arithmetic; it must not reach the kernel.
        let mut c = vec![0.0f32; 4];
        let huge = usize::MAX / 2 + 1;
        matmul(
            &[0.0; 4],
            Transpose::No,
            &[0.0; 4],
            Transpose::No,
            &mut c,
            2,
            huge,
            2,
            false,
        );
    }

    #[test]
    #[should_panic(expected = "needs a >=")]
    fn short_slices_panic() {
        let mut c = vec![0.0f32; 4];
        matmul(
            &[0.0; 3],
            Transpose::No,
            &[0.0; 4],
            Transpose::No,
            &mut c,
            2,
            2,
            2,
            false,
        );
    }
}
