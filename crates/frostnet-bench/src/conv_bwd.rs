//! `frostnet-bench conv-bwd`: the convolution backward kernels alone, on the training workloads'
//! layer shapes (InceptionV3 at batch 8, cnn_train at batch 64), at every instruction set this
//! CPU runs. For each shape it times the forward pass (the yardstick), the input gradient and the
//! kernel gradient by every engine `frostnet::tensor::conv_backward` has, so the choices made in
//! `conv2d_backward` rest on numbers. GFLOP/s are per CPU-second (`flops / process CPU
//! seconds`, both threads' work: a per-core rate, one core's AVX-512 FMA peak being the ceiling),
//! robust to other processes sharing the machine. Engines run interleaved, one call each per
//! round, and the median over the rounds is printed.

use crate::{median, time_reps, Args, Res};
use frostnet::tensor::conv::{conv2d_forward, Conv2dGeometry, Padding};
use frostnet::tensor::conv_backward::{self as cb, DkEngine, DxEngine};
use frostnet::tensor::depthwise;
use frostnet::tensor::isa::{self, Isa};

/// (name, batch, NHWC input without batch, kernel, stride, padding, filters).
type Case = (
    &'static str,
    usize,
    [usize; 3],
    (usize, usize),
    usize,
    Padding,
    usize,
);

const CASES: [Case; 17] = [
    (
        "cnn1 1->32 3x3",
        64,
        [28, 28, 1],
        (3, 3),
        1,
        Padding::Same,
        32,
    ),
    (
        "cnn2 32->64 3x3",
        64,
        [14, 14, 32],
        (3, 3),
        1,
        Padding::Same,
        64,
    ),
    (
        "stem1 3->32 3x3/2",
        8,
        [299, 299, 3],
        (3, 3),
        2,
        Padding::Valid,
        32,
    ),
    (
        "stem2 32->32 3x3",
        8,
        [149, 149, 32],
        (3, 3),
        1,
        Padding::Valid,
        32,
    ),
    (
        "stem3 32->64 3x3",
        8,
        [147, 147, 32],
        (3, 3),
        1,
        Padding::Same,
        64,
    ),
    (
        "stem5 80->192 3x3",
        8,
        [73, 73, 80],
        (3, 3),
        1,
        Padding::Valid,
        192,
    ),
    (
        "m5 48->64 5x5",
        8,
        [35, 35, 48],
        (5, 5),
        1,
        Padding::Same,
        64,
    ),
    (
        "m5 64->96 3x3",
        8,
        [35, 35, 64],
        (3, 3),
        1,
        Padding::Same,
        96,
    ),
    (
        "m5 96->96 3x3",
        8,
        [35, 35, 96],
        (3, 3),
        1,
        Padding::Same,
        96,
    ),
    (
        "m6a 288->384 3x3/2",
        8,
        [35, 35, 288],
        (3, 3),
        2,
        Padding::Valid,
        384,
    ),
    (
        "m6a 96->96 3x3/2",
        8,
        [35, 35, 96],
        (3, 3),
        2,
        Padding::Valid,
        96,
    ),
    (
        "m6 128->128 1x7",
        8,
        [17, 17, 128],
        (1, 7),
        1,
        Padding::Same,
        128,
    ),
    (
        "m6 192->192 7x1",
        8,
        [17, 17, 192],
        (7, 1),
        1,
        Padding::Same,
        192,
    ),
    (
        "m7a 192->320 3x3/2",
        8,
        [17, 17, 192],
        (3, 3),
        2,
        Padding::Valid,
        320,
    ),
    (
        "m7a 192->192 3x3/2",
        8,
        [17, 17, 192],
        (3, 3),
        2,
        Padding::Valid,
        192,
    ),
    (
        "m7 448->384 3x3",
        8,
        [8, 8, 448],
        (3, 3),
        1,
        Padding::Same,
        384,
    ),
    (
        "m7 384->384 1x3",
        8,
        [8, 8, 384],
        (1, 3),
        1,
        Padding::Same,
        384,
    ),
];

/// One timed call: pass, engine, the call.
type Run<'a> = (&'static str, String, Box<dyn FnMut() + 'a>);

/// Depthwise layers of MobileNetV2 (3x3) and EfficientNetB0 (5x5) at 224x224: (name, NHWC
/// input without batch, kernel side, stride); `same` padding, depth multiplier 1.
const DEPTHWISE: [(&str, [usize; 3], usize, usize); 9] = [
    ("dw3 112x112x32 /1", [112, 112, 32], 3, 1),
    ("dw3 112x112x96 /2", [112, 112, 96], 3, 2),
    ("dw3 56x56x144 /1", [56, 56, 144], 3, 1),
    ("dw3 14x14x576 /1", [14, 14, 576], 3, 1),
    ("dw3 7x7x960 /1", [7, 7, 960], 3, 1),
    ("dw5 56x56x144 /2", [56, 56, 144], 5, 2),
    ("dw5 28x28x240 /1", [28, 28, 240], 5, 1),
    ("dw5 14x14x672 /1", [14, 14, 672], 5, 1),
    ("dw5 7x7x1152 /1", [7, 7, 1152], 5, 1),
];

/// Times the depthwise kernels (forward, input gradient, kernel gradient) at batch 1 and 8;
/// prints GFLOP and GB (input + output tensors once) per CPU-second.
fn run_depthwise(args: &Args, only: Option<&str>) -> Res<()> {
    use frostnet::tensor::conv::Padding;
    for (name, hwc, k, s) in DEPTHWISE {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        for batch in [1, 8] {
            let shape = [batch, hwc[0], hwc[1], hwc[2]];
            let g = Conv2dGeometry::new(&shape, (k, k), (s, s), Padding::Same).ok_or("geometry")?;
            let x = crate::fill(shape.iter().product(), 5);
            let kern = crate::fill(k * k * g.c, 6);
            let dy = crate::fill(g.n * g.oh * g.ow * g.c, 7);
            let flops = 2.0 * (g.n * g.oh * g.ow * g.c * k * k) as f64;
            let bytes = 4.0 * (x.len() + dy.len()) as f64;
            let (x, kern, dy, g) = (&x[..], &kern[..], &dy[..], &g);
            for level in Isa::supported().into_iter().rev() {
                let mut runs: Vec<Run> = vec![
                    (
                        "fwd",
                        "dw".into(),
                        Box::new(move || {
                            std::hint::black_box(depthwise::depthwise_forward(x, g, kern, 1));
                        }),
                    ),
                    (
                        "dx",
                        "dw".into(),
                        Box::new(move || {
                            std::hint::black_box(depthwise::depthwise_input_grad(dy, g, kern, 1));
                        }),
                    ),
                    (
                        "dk",
                        "dw".into(),
                        Box::new(move || {
                            std::hint::black_box(depthwise::depthwise_kernel_grad(x, g, dy, 1));
                        }),
                    ),
                ];
                let cpu = interleaved(args, level, &mut runs)?;
                for ((pass, _, _), c) in runs.iter().zip(&cpu) {
                    let c = median(c);
                    println!(
                        "{name:<18} b{batch:<2} {level:<8} {pass:<5} {c:>9.3} {:>8.1} {:>7.1}",
                        flops / (c * 1e-3) / 1e9,
                        bytes / (c * 1e-3) / 1e9
                    );
                }
            }
        }
    }
    Ok(())
}

/// Runs every entry of `runs` once per round (`args.reps` rounds after one warm-up round) at
/// `level`; returns each one's CPU milliseconds per round.
fn interleaved(args: &Args, level: Isa, runs: &mut [Run]) -> Res<Vec<Vec<f64>>> {
    let warm = args.warmup.min(1);
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    for round in 0..args.reps.max(1) + warm {
        for (i, (_, _, run)) in runs.iter_mut().enumerate() {
            let (_, c) = isa::with_forced(level, || {
                time_reps(0, 1, &mut || {
                    run();
                    Ok(())
                })
            })?;
            if round >= warm {
                cpu[i].extend(c);
            }
        }
    }
    Ok(cpu)
}

pub(crate) fn run(args: &Args) -> Res<()> {
    println!(
        "conv-bwd: {} threads, CPU levels {:?}, process default {}; GF/s per CPU-second",
        args.threads,
        Isa::supported(),
        isa::process_default()
    );
    println!(
        "{:<20} {:<8} {:<5} {:<9} {:>9} {:>8}",
        "layer", "isa", "pass", "engine", "cpu ms", "GF/cpu"
    );
    let only = std::env::var("CONV_BWD_ONLY").ok();
    if only.as_deref().is_some_and(|o| o.starts_with("dw")) {
        println!(
            "{:<18} {:<3} {:<8} {:<5} {:>9} {:>8} {:>7}",
            "depthwise", "n", "isa", "pass", "cpu ms", "GF/cpu", "GB/cpu"
        );
        return run_depthwise(args, only.as_deref());
    }
    for (name, batch, hwc, k, s, p, f) in CASES {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let shape = [batch, hwc[0], hwc[1], hwc[2]];
        let g = Conv2dGeometry::new(&shape, k, (s, s), p).ok_or("geometry")?;
        let x = crate::fill(shape.iter().product(), 3);
        let kern = crate::fill(g.patch_len() * f, 4);
        let dy = crate::fill(g.n * g.oh * g.ow * f, 5);
        let flops = 2.0 * (g.n * g.oh * g.ow * f * g.patch_len()) as f64;
        let (x, kern, dy, g) = (&x[..], &kern[..], &dy[..], &g);
        for level in Isa::supported().into_iter().rev() {
            if level == Isa::Portable {
                continue;
            }
            let mut runs: Vec<Run> = vec![(
                "fwd",
                "auto".into(),
                Box::new(move || {
                    std::hint::black_box(conv2d_forward(x, g, kern, f, &[]));
                }),
            )];
            for e in DxEngine::ALL {
                if cb::dx_engine_applies(e, g, f) {
                    runs.push((
                        "dx",
                        format!("{e:?}"),
                        Box::new(move || {
                            std::hint::black_box(cb::input_grad_with(e, dy, g, kern, f));
                        }),
                    ));
                }
            }
            for e in DkEngine::ALL {
                let mut dk = vec![0.0f32; g.patch_len() * f];
                runs.push((
                    "dk",
                    format!("{e:?}"),
                    Box::new(move || {
                        cb::kernel_grad_with(e, x, g, f, dy, &mut dk);
                        std::hint::black_box(&dk);
                    }),
                ));
            }
            let cpu = interleaved(args, level, &mut runs)?;
            for ((pass, engine, _), c) in runs.iter().zip(&cpu) {
                let c = median(c);
                println!(
                    "{name:<20} {level:<8} {pass:<5} {engine:<9} {c:>9.2} {:>8.1}",
                    flops / (c * 1e-3) / 1e9
                );
            }
        }
    }
    Ok(())
}
