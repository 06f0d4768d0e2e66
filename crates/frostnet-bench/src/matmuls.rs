//! `frostnet-bench matmul`: `tensor::matmul` alone on the shapes frostnet's workloads produce
//! (sgemm 2048, InceptionV3's convolutions as matrix products at batch 8, forward and both
//! backward products, and the MLP's dense layers), at every instruction set this CPU runs, so
//! the matmul kernel choices rest on numbers. GFLOP/s against wall time and against CPU time
//! (flops / (process CPU seconds / threads)); the latter is what the cores deliver while they run
//! us, robust to other processes sharing the machine.
//!
//! A second table times InceptionV3's spatial convolutions (`kernels::CONVS`) at batch
//! `CONV_BATCH`: forward, kernel gradient (`dW`) and input gradient (`dX`), each against the
//! forward's FLOP count, to show which backward pass lags its forward.

use crate::{median, time_reps, Args, Res};
use frostnet::tensor::conv::{conv2d_backward, conv2d_forward, Conv2dGeometry};
use frostnet::tensor::isa::{self, Isa};
use frostnet::tensor::{matmul, Transpose};

/// (name, m, k, n, A transposed, B transposed).
type Case = (&'static str, usize, usize, usize, bool, bool);

/// im2col shapes at batch 8: forward is `(n*oh*ow) x plen x filters`; the kernel gradient
/// `plen x (n*oh*ow) x filters` with A transposed; the input gradient `(n*oh*ow) x filters x
/// plen` with B transposed.
const CASES: [Case; 16] = [
    ("sgemm 2048", 2048, 2048, 2048, false, false),
    ("1x1 35x35 288->64", 9800, 288, 64, false, false),
    ("1x1 17x17 768->192", 2312, 768, 192, false, false),
    ("1x1 8x8 2048->384", 512, 2048, 384, false, false),
    ("3x3/2 288->384", 2312, 2592, 384, false, false),
    ("3x3 64->96 35x35", 9800, 576, 96, false, false),
    ("dW 1x1 288->64", 288, 9800, 64, true, false),
    ("dW 3x3/2 288->384", 2592, 2312, 384, true, false),
    ("dW 3x3 64->96", 576, 9800, 96, true, false),
    ("dW 1x1 8x8 2048->384", 2048, 512, 384, true, false),
    ("dX 1x1 288->64", 9800, 64, 288, false, true),
    ("dX 3x3/2 288->384", 2312, 384, 2592, false, true),
    ("dX 3x3 64->96", 9800, 96, 576, false, true),
    ("mlp 256x500x500", 256, 500, 500, false, false),
    ("mlp dW 500x256x500", 500, 256, 500, true, false),
    ("dense 8x2048x200", 8, 2048, 200, false, false),
];

pub(crate) fn run(args: &Args) -> Res<()> {
    println!(
        "matmul: {} threads, CPU levels {:?}, process default {}",
        args.threads,
        Isa::supported(),
        isa::process_default()
    );
    println!(
        "{:<24} {:<8} {:>9} {:>9} {:>8} {:>8}",
        "shape", "isa", "wall ms", "cpu ms", "GF/wall", "GF/cpu"
    );
    let filter = std::env::var("MATMUL_CASES").unwrap_or_default();
    for (name, m, k, n, ta, tb) in CASES {
        if !filter.is_empty() && !filter.split(',').any(|f| name.contains(f)) {
            continue;
        }
        let (a, b) = (crate::fill(m * k, 1), crate::fill(k * n, 2));
        let mut c = vec![0.0f32; m * n];
        let t = |x| if x { Transpose::Yes } else { Transpose::No };
        let flops = 2.0 * (m * k * n) as f64;
        for level in Isa::supported().into_iter().rev() {
            if level == Isa::Portable && flops > 4e9 {
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
            println!(
                "{name:<24} {level:<8} {w:>9.3} {cp:>9.3} {:>8.1} {:>8.1}",
                flops / (w * 1e-3) / 1e9,
                flops / (cp * 1e-3 / args.threads as f64) / 1e9
            );
        }
    }
    conv_table(args)
}

/// Batch of the convolution table (InceptionV3's training workloads run 8).
const CONV_BATCH: usize = 8;

fn conv_table(args: &Args) -> Res<()> {
    let filter = std::env::var("CONV_CASES").unwrap_or_default();
    if filter == "none" {
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<4} {:>9} {:>9} {:>8} {:>8}",
        "conv (batch 8)", "isa", "pass", "wall ms", "cpu ms", "GF/wall", "GF/cpu"
    );
    for (name, hwc, k, s, p, f) in crate::kernels::CONVS {
        if !filter.is_empty() && !filter.split(',').any(|x| name.contains(x)) {
            continue;
        }
        let shape = [CONV_BATCH, hwc[0], hwc[1], hwc[2]];
        let g = Conv2dGeometry::new(&shape, k, (s, s), p).ok_or("geometry")?;
        let x = crate::fill(shape.iter().product(), 3);
        let kern = crate::fill(g.patch_len() * f, 4);
        let dy = crate::fill(g.n * g.oh * g.ow * f, 5);
        let mut dk = vec![0.0f32; kern.len()];
        let flops = 2.0 * (g.n * g.oh * g.ow * f * g.patch_len()) as f64;
        for level in Isa::supported().into_iter().rev() {
            if level == Isa::Portable {
                continue;
            }
            for pass in ["fwd", "dW", "dX"] {
                let (wall, cpu) = isa::with_forced(level, || {
                    time_reps(args.warmup, args.reps, &mut || {
                        match pass {
                            "fwd" => {
                                std::hint::black_box(conv2d_forward(&x, &g, &kern, f, &[]));
                            }
                            "dW" => {
                                conv2d_backward(&x, &g, &kern, f, &dy, Some(&mut dk), false);
                            }
                            _ => {
                                std::hint::black_box(conv2d_backward(
                                    &x, &g, &kern, f, &dy, None, true,
                                ));
                            }
                        }
                        Ok(())
                    })
                })?;
                let (w, cp) = (median(&wall), median(&cpu));
                println!(
                    "{name:<24} {level:<8} {pass:<4} {w:>9.2} {cp:>9.2} {:>8.1} {:>8.1}",
                    flops / (w * 1e-3) / 1e9,
                    flops / (cp * 1e-3 / args.threads as f64) / 1e9
                );
            }
        }
    }
    Ok(())
}
