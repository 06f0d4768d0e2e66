//! `frostnet-bench gemm-shapes`: `tensor::matmul` on sgemm 2048 and InceptionV3's convolutions
//! as matrix products (im2col at batch 8: `M = batch * oh * ow` rows, `K = kh * kw * c_in`,
//! `N = filters`), each in the three orientations training uses: forward `M x K x N`, the
//! kernel gradient `K x M x N` with `A` transposed (`patches^T * dy`) and the input gradient
//! `M x N x K` with `B` transposed (`dy * kernel^T`). Every instruction set the CPU runs but the
//! portable one, as GFLOP/s against wall time and against CPU time per thread (robust to other
//! processes sharing the machine), and as a fraction of the level's FMA peak per thread when it
//! is given: `FMA_PEAK_GFLOPS` for AVX-512, `FMA_PEAK_GFLOPS_AVX2` for AVX2 (`bench/fma_peak.c`
//! measures both: `fma_peak 1 50000000 avx512`, `... avx2`). The AVX2 peak is not derived
//! from the AVX-512 one: Intel's cores with two 512-bit FMA units run AVX2 at half the rate, but
//! Zen 4 splits every 512-bit FMA over its two 256-bit units, so AVX2 reaches the same peak
//! there (measured: 116 GFLOP/s per thread at both widths). `GF/cpu1`
//! is the CPU-time rate scaled to the thread count (flops / (CPU seconds / threads)); `GF/best`
//! the same for the fastest rep, the one least disturbed by other processes.
//!
//! `GEMM_SHAPES=name,name` keeps only shapes whose name contains one of the words;
//! `GEMM_PASSES=fwd,dW,dX` picks orientations; `GEMM_ISAS=avx512,avx2` levels.

use crate::{median, time_reps, Args, Res};
use frostnet::tensor::isa::{self, Isa};
use frostnet::tensor::{matmul, Transpose};

/// (name, M, K, N) of the forward product.
const SHAPES: [(&str, usize, usize, usize); 10] = [
    ("sgemm 2048", 2048, 2048, 2048),
    ("3x3 147x147 32->64", 8 * 147 * 147, 288, 64),
    ("3x3 35x35 32->96", 8 * 35 * 35, 288, 96),
    ("1x1 35x35 192->64", 8 * 35 * 35, 192, 64),
    ("1x1 35x35 288->64", 8 * 35 * 35, 288, 64),
    ("1x1 35x35 256->48", 8 * 35 * 35, 256, 48),
    ("1x1 17x17 768->192", 8 * 17 * 17, 768, 192),
    ("7x1 17x17 192->192", 8 * 17 * 17, 1344, 192),
    ("3x3 8x8 ->320", 8 * 8 * 8, 1280, 320),
    ("1x1 8x8 2048->448", 8 * 8 * 8, 2048, 448),
];

pub(crate) fn run(args: &Args) -> Res<()> {
    let peak_of = |var: &str| -> Option<f64> { std::env::var(var).ok()?.parse().ok() };
    let (peak512, peak256) = (peak_of("FMA_PEAK_GFLOPS"), peak_of("FMA_PEAK_GFLOPS_AVX2"));
    println!(
        "gemm-shapes: {} threads, CPU levels {:?}, process default {}",
        args.threads,
        Isa::supported(),
        isa::process_default()
    );
    println!(
        "{:<22} {:<4} {:<8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6}",
        "shape", "pass", "isa", "wall ms", "cpu ms", "GF/wall", "GF/cpu1", "GF/best", "%peak"
    );
    let shapes = std::env::var("GEMM_SHAPES").unwrap_or_default();
    let passes = std::env::var("GEMM_PASSES").unwrap_or_else(|_| "fwd,dW,dX".into());
    let keep =
        |list: &str, name: &str| list.is_empty() || list.split(',').any(|f| name.contains(f));
    for (name, bm, bk, bn) in SHAPES {
        if !keep(&shapes, name) {
            continue;
        }
        for pass in ["fwd", "dW", "dX"] {
            if !passes.split(',').any(|p| p == pass) {
                continue;
            }
            // (m, k, n, A transposed, B transposed)
            let (m, k, n, ta, tb) = match pass {
                "fwd" => (bm, bk, bn, false, false),
                "dW" => (bk, bm, bn, true, false),
                _ => (bm, bn, bk, false, true),
            };
            let (a, b) = (crate::fill(m * k, 1), crate::fill(k * n, 2));
            let mut c = vec![0.0f32; m * n];
            let t = |x| if x { Transpose::Yes } else { Transpose::No };
            let flops = 2.0 * (m * k * n) as f64;
            for level in Isa::supported().into_iter().rev() {
                let isas = std::env::var("GEMM_ISAS").unwrap_or_default();
                if level == Isa::Portable || !keep(&isas, level.name()) {
                    continue;
                }
                let (wall, cpu) = isa::with_forced(level, || {
                    time_reps(args.warmup, args.reps, &mut || {
                        matmul(&a, t(ta), &b, t(tb), &mut c, m, k, n, false);
                        std::hint::black_box(&c);
                        Ok(())
                    })
                })?;
                let (w, cp) = (median(&wall), median(&cpu));
                let per_thread = flops / (cp * 1e-3 / args.threads as f64) / 1e9;
                let best = cpu.iter().copied().fold(f64::INFINITY, f64::min);
                let best = flops / (best * 1e-3 / args.threads as f64) / 1e9;
                let peak = if level == Isa::Avx2 { peak256 } else { peak512 };
                let pct = peak.map_or(String::from("-"), |p| {
                    format!(
                        "{:.0}",
                        100.0 * flops / (w * 1e-3) / 1e9 / (p * args.threads as f64)
                    )
                });
                println!(
                    "{name:<22} {pass:<4} {level:<8} {w:>9.3} {cp:>9.3} {:>8.1} {per_thread:>8.1} {best:>8.1} {pct:>6}",
                    flops / (w * 1e-3) / 1e9,
                );
            }
        }
    }
    Ok(())
}
