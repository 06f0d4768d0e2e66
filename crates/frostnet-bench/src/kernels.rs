//! `frostnet-bench kernels`: the numeric kernels alone, at every instruction set this CPU runs
//! (forced with `isa::with_forced`), so the ISA and engine choices in `frostnet::tensor` rest on
//! numbers: sgemm 2048, and InceptionV3's spatial convolutions by im2col + gemm and by the direct
//! kernel, and MobileNetV2's depthwise convolutions (forward, input gradient, kernel gradient) at
//! batch 8. Prints one table; GFLOP/s are given against wall time and against CPU time (flops /
//! (process CPU seconds / threads)), the latter being what the cores deliver while they run us,
//! robust to other processes sharing the machine; `GF/best` uses the fastest rep's CPU time
//! (the least disturbed by them).
//!
//! Environment filters (comma-separated words a name must contain): `KERNEL_CASES` (kernel
//! names), `KERNEL_ISAS` (levels), `KERNEL_ENGINES` (`im2col`, `direct`, `wino`, `wino1d`,
//! `layer`: what a `Conv2D` layer dispatches to, keeping its derived kernel; `fwd`, `dx`, `dk`);
//! `KERNEL_BATCH` sets the convolutions' batch (default 1, inference).

use crate::{median, time_reps, Args, Res};
use frostnet::tensor::conv::{
    conv2d_forward_cached, conv2d_forward_im2col, Conv2dGeometry, KernelCache, Padding,
};
use frostnet::tensor::depthwise;
use frostnet::tensor::direct_conv::conv2d_direct;
use frostnet::tensor::isa::{self, Isa};
use frostnet::tensor::{matmul, Transpose};
use frostnet::tensor::{winograd, winograd_1d};

/// (name, NHWC input without batch, kernel, strides, padding, filters): InceptionV3's spatial
/// convolutions at 299x299 (stem, then one of each kind in the mixed blocks).
pub(crate) type ConvCase = (
    &'static str,
    [usize; 3],
    (usize, usize),
    usize,
    Padding,
    usize,
);
pub(crate) const CONVS: [ConvCase; 13] = [
    (
        "stem1 3->32 3x3/2",
        [299, 299, 3],
        (3, 3),
        2,
        Padding::Valid,
        32,
    ),
    (
        "stem2 32->32 3x3",
        [149, 149, 32],
        (3, 3),
        1,
        Padding::Valid,
        32,
    ),
    (
        "stem3 32->64 3x3",
        [147, 147, 32],
        (3, 3),
        1,
        Padding::Same,
        64,
    ),
    (
        "stem5 80->192 3x3",
        [73, 73, 80],
        (3, 3),
        1,
        Padding::Valid,
        192,
    ),
    (
        "mixed 48->64 5x5",
        [35, 35, 48],
        (5, 5),
        1,
        Padding::Same,
        64,
    ),
    (
        "mixed 64->96 3x3",
        [35, 35, 64],
        (3, 3),
        1,
        Padding::Same,
        96,
    ),
    (
        "mixed 128->128 1x7",
        [17, 17, 128],
        (1, 7),
        1,
        Padding::Same,
        128,
    ),
    (
        "mixed 160->160 1x7",
        [17, 17, 160],
        (1, 7),
        1,
        Padding::Same,
        160,
    ),
    (
        "mixed 192->192 7x1",
        [17, 17, 192],
        (7, 1),
        1,
        Padding::Same,
        192,
    ),
    (
        "8x8 448->384 3x3",
        [8, 8, 448],
        (3, 3),
        1,
        Padding::Same,
        384,
    ),
    (
        "8x8 384->384 1x3",
        [8, 8, 384],
        (1, 3),
        1,
        Padding::Same,
        384,
    ),
    (
        "reduce 192->320 3x3/2",
        [17, 17, 192],
        (3, 3),
        2,
        Padding::Valid,
        320,
    ),
    (
        "reduce 288->384 3x3/2",
        [35, 35, 288],
        (3, 3),
        2,
        Padding::Valid,
        384,
    ),
];

/// (name, NHWC input without batch, stride): MobileNetV2's 3x3 depthwise convolutions at 224x224
/// (`same` padding; Keras pads its stride-2 ones explicitly, which is the same work).
const DEPTHWISE: [(&str, [usize; 3], usize); 6] = [
    ("dw 112x112x32 /1", [112, 112, 32], 1),
    ("dw 112x112x96 /2", [112, 112, 96], 2),
    ("dw 56x56x144 /1", [56, 56, 144], 1),
    ("dw 28x28x192 /1", [28, 28, 192], 1),
    ("dw 14x14x576 /1", [14, 14, 576], 1),
    ("dw 7x7x960 /1", [7, 7, 960], 1),
];

/// Batch for the depthwise cases: one image is too little work to measure.
const DEPTHWISE_BATCH: usize = 8;

fn row(what: &str, isa: Isa, engine: &str, flops: f64, wall: &[f64], cpu: &[f64], threads: usize) {
    let (w, c) = (median(wall), median(cpu));
    let best = cpu.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{what:<24} {isa:<8} {engine:<7} {w:>9.2} {c:>9.2} {:>8.1} {:>8.1} {:>8.1}",
        flops / (w * 1e-3) / 1e9,
        flops / (c * 1e-3 / threads as f64) / 1e9,
        flops / (best * 1e-3 / threads as f64) / 1e9
    );
}

/// Whether `name` passes the comma-separated word filter in environment variable `var` (unset or
/// empty keeps everything).
fn keep(var: &str, name: &str) -> bool {
    let list = std::env::var(var).unwrap_or_default();
    list.is_empty() || list.split(',').any(|f| name.contains(f))
}

pub(crate) fn run(args: &Args, batch: usize) -> Res<()> {
    let batch = std::env::var("KERNEL_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(batch);
    println!(
        "kernels: {} threads, batch {batch}, CPU levels {:?}, process default {}",
        args.threads,
        Isa::supported(),
        isa::process_default()
    );
    println!(
        "{:<24} {:<8} {:<7} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "kernel", "isa", "engine", "wall ms", "cpu ms", "GF/wall", "GF/cpu", "GF/best"
    );
    let n = 2048;
    let (a, b) = (crate::fill(n * n, 1), crate::fill(n * n, 2));
    let mut c = vec![0.0f32; n * n];
    for level in Isa::supported() {
        if !keep("KERNEL_CASES", "sgemm 2048") || !keep("KERNEL_ISAS", level.name()) {
            continue;
        }
        let (wall, cpu) = isa::with_forced(level, || {
            time_reps(args.warmup, args.reps, &mut || {
                matmul(&a, Transpose::No, &b, Transpose::No, &mut c, n, n, n, false);
                Ok(())
            })
        })?;
        row(
            "sgemm 2048",
            level,
            "gemm",
            2.0 * (n * n * n) as f64,
            &wall,
            &cpu,
            args.threads,
        );
    }
    for (name, hwc, k, s, p, f) in CONVS {
        if !keep("KERNEL_CASES", name) {
            continue;
        }
        let shape = [batch, hwc[0], hwc[1], hwc[2]];
        let g = Conv2dGeometry::new(&shape, k, (s, s), p).ok_or("geometry")?;
        let x = crate::fill(shape.iter().product(), 3);
        let kern = crate::fill(g.patch_len() * f, 4);
        let flops = 2.0 * (g.n * g.oh * g.ow * f * g.patch_len()) as f64;
        for level in Isa::supported() {
            if !keep("KERNEL_ISAS", level.name()) {
                continue;
            }
            type Engine = fn(
                &[f32],
                &Conv2dGeometry,
                &[f32],
                usize,
                &[frostnet::tensor::conv::EpilogueStep],
            ) -> Vec<f32>;
            let engines: [(&str, Engine); 4] = [
                ("im2col", conv2d_forward_im2col),
                ("direct", conv2d_direct),
                ("wino", winograd::conv2d),
                ("wino1d", winograd_1d::conv2d),
            ];
            for (ename, engine) in engines {
                let runs = match ename {
                    "wino" => winograd::applicable(&g),
                    "wino1d" => winograd_1d::scheme(&g).is_some(),
                    _ => true,
                };
                if !keep("KERNEL_ENGINES", ename) || !runs {
                    continue;
                }
                let (wall, cpu) = isa::with_forced(level, || {
                    time_reps(args.warmup, args.reps, &mut || {
                        std::hint::black_box(engine(&x, &g, &kern, f, &[]));
                        Ok(())
                    })
                })?;
                row(name, level, ename, flops, &wall, &cpu, args.threads);
            }
            // What a `Conv2D` layer runs: the dispatch, with what the engine derives from the
            // kernel kept from the first call (the kernel never changes here).
            if keep("KERNEL_ENGINES", "layer") {
                let mut cache = KernelCache::default();
                let (wall, cpu) = isa::with_forced(level, || {
                    time_reps(args.warmup, args.reps, &mut || {
                        let y = conv2d_forward_cached(&x, &g, &kern, f, &[], &mut cache, 1);
                        std::hint::black_box(y);
                        Ok(())
                    })
                })?;
                row(name, level, "layer", flops, &wall, &cpu, args.threads);
            }
        }
    }
    for (name, hwc, s) in DEPTHWISE {
        if !keep("KERNEL_CASES", name) {
            continue;
        }
        let shape = [DEPTHWISE_BATCH, hwc[0], hwc[1], hwc[2]];
        let g = Conv2dGeometry::new(&shape, (3, 3), (s, s), Padding::Same).ok_or("geometry")?;
        let x = crate::fill(shape.iter().product(), 5);
        let kern = crate::fill(9 * g.c, 6);
        let dy = crate::fill(g.n * g.oh * g.ow * g.c, 7);
        let flops = 2.0 * (g.n * g.oh * g.ow * g.c * 9) as f64;
        for level in Isa::supported() {
            if !keep("KERNEL_ISAS", level.name()) {
                continue;
            }
            type Pass<'a> = (&'a str, Box<dyn Fn() -> Vec<f32> + 'a>);
            let passes: [Pass; 3] = [
                (
                    "fwd",
                    Box::new(|| depthwise::depthwise_forward(&x, &g, &kern, 1)),
                ),
                (
                    "dx",
                    Box::new(|| depthwise::depthwise_input_grad(&dy, &g, &kern, 1)),
                ),
                (
                    "dk",
                    Box::new(|| depthwise::depthwise_kernel_grad(&x, &g, &dy, 1)),
                ),
            ];
            for (pass, f) in passes {
                let (wall, cpu) = isa::with_forced(level, || {
                    time_reps(args.warmup, args.reps, &mut || {
                        std::hint::black_box(f());
                        Ok(())
                    })
                })?;
                row(name, level, pass, flops, &wall, &cpu, args.threads);
            }
        }
    }
    Ok(())
}
