//! frostnet's side of `bench/run`: runs one workload in this process and prints exactly one JSON
//! line on stdout (see `bench/README.md` for the protocol and the workloads).
//!
//! ```text
//! frostnet-bench WORKLOAD [--warmup W] [--reps R] [--threads N]
//! frostnet-bench profile WORKLOAD [--warmup W] [--reps R] [--threads N]
//! frostnet-bench kernels [--warmup W] [--reps R] [--threads N]
//! frostnet-bench matmul [--warmup W] [--reps R] [--threads N]
//! frostnet-bench gemm-shapes [--warmup W] [--reps R] [--threads N]   (see `gemm_shapes.rs`)
//! frostnet-bench conv-bwd [--warmup W] [--reps R] [--threads N]      (see `conv_bwd.rs`)
//! ```
//!
//! `matmul` times `tensor::matmul` on the workloads' product shapes (see `matmuls.rs`).
//!
//! `kernels` times sgemm, InceptionV3's spatial convolutions (im2col vs direct) and
//! MobileNetV2's depthwise convolutions at every instruction set the CPU runs (see `kernels.rs`).
//!
//! `profile` (every workload but sgemm) runs the model layer by layer, timing each layer's
//! forward (and, for training, backward) call, and prints the time summed by layer class to
//! stdout as a table; it is how `bench/RESULTS.md` explains where the time goes.

/// Training allocates and frees many activation-sized buffers per step; glibc's malloc hands
/// those back to the kernel (mmap/munmap) each time, and the page faults cost ~25% of a small
/// CNN's step. mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod conv_bwd;
mod gemm_shapes;
mod kernels;
mod matmuls;
mod pipeline_profile;
mod profile;
mod sys;
mod workloads;

use std::process::ExitCode;
use std::time::Instant;

pub(crate) const WORKLOADS: [&str; 8] = [
    "mlp_train",
    "cnn_train",
    "inception_infer",
    "inception_frozen",
    "inception_finetune",
    "sgemm",
    "image_pipeline",
    "transfer_fit",
];

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Command-line options.
pub(crate) struct Args {
    pub(crate) profile: bool,
    pub(crate) kernels: bool,
    pub(crate) matmul: bool,
    pub(crate) workload: String,
    pub(crate) warmup: usize,
    pub(crate) reps: usize,
    pub(crate) threads: usize,
}

const USAGE: &str =
    "usage: frostnet-bench [profile] WORKLOAD [--warmup W] [--reps R] [--threads N]\n\
     frostnet-bench kernels [--warmup W] [--reps R] [--threads N]\n\
     frostnet-bench matmul [--warmup W] [--reps R] [--threads N]\n\
     frostnet-bench gemm-shapes [--warmup W] [--reps R] [--threads N]\n\
     workloads: mlp_train cnn_train inception_infer inception_frozen inception_finetune sgemm\n\
     \x20          image_pipeline transfer_fit";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        profile: false,
        kernels: false,
        matmul: false,
        workload: String::new(),
        warmup: 3,
        reps: 10,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a non-negative integer"))
        };
        match a.as_str() {
            "--warmup" => args.warmup = num("--warmup")?,
            "--reps" => args.reps = num("--reps")?,
            "--threads" => args.threads = num("--threads")?,
            "-h" | "--help" => return Err(USAGE.into()),
            "profile" if args.workload.is_empty() && !args.profile => args.profile = true,
            "kernels" if args.workload.is_empty() && !args.profile => args.kernels = true,
            "matmul" if args.workload.is_empty() && !args.profile => args.matmul = true,
            "conv-bwd" if args.workload.is_empty() && !args.profile => args.workload = a,
            "gemm-shapes" if args.workload.is_empty() && !args.profile => {
                args.workload = "gemm-shapes".into()
            }
            w if WORKLOADS.contains(&w) && args.workload.is_empty() => args.workload = w.into(),
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    if args.workload.is_empty() && !args.kernels && !args.matmul {
        return Err(USAGE.into());
    }
    if args.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(args)
}

/// Wall-clock and process-CPU milliseconds of each timed rep, after `warmup` untimed ones.
pub(crate) fn time_reps(
    warmup: usize,
    reps: usize,
    step: &mut dyn FnMut() -> Res<()>,
) -> Res<(Vec<f64>, Vec<f64>)> {
    for _ in 0..warmup {
        step()?;
    }
    let mut wall = Vec::with_capacity(reps);
    let mut cpu = Vec::with_capacity(reps);
    for _ in 0..reps {
        let c0 = sys::process_cpu_ms();
        let t0 = Instant::now();
        step()?;
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push(sys::process_cpu_ms() - c0);
    }
    Ok((wall, cpu))
}

/// `n` deterministic values in [-0.5, 0.5) (a multiplicative hash of the index), the kernel
/// benches' inputs: cheap to make, the same on every run.
pub(crate) fn fill(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn run(args: &Args) -> Res<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()?;
    if args.profile {
        return profile::run(args);
    }
    if args.kernels {
        return kernels::run(args, 1);
    }
    if args.matmul {
        return matmuls::run(args);
    }
    if args.workload == "conv-bwd" {
        return conv_bwd::run(args);
    }
    if args.workload == "gemm-shapes" {
        return gemm_shapes::run(args);
    }
    let mut w = workloads::build(&args.workload)?;
    time_reps(args.warmup, 0, &mut *w.step)?;
    let pool0 = frostnet::tensor::buffer::stats();
    let (wall, cpu) = time_reps(0, args.reps, &mut *w.step)?;
    let pool1 = frostnet::tensor::buffer::stats();
    let med = median(&wall);
    let mut rec = serde_json::json!({
        "runner": "frostnet",
        "workload": args.workload,
        "median_ms": round4(med),
        "min_ms": round4(wall.iter().copied().fold(f64::INFINITY, f64::min)),
        "max_ms": round4(wall.iter().copied().fold(0.0, f64::max)),
        "reps": wall.len(),
        "max_rss_kb": sys::max_rss_kb(),
        "version": format!("frostnet {}", env!("CARGO_PKG_VERSION")),
        "threads": args.threads,
        "cpu_ms": round4(median(&cpu)),
        // Buffers of pooled size the timed reps had to allocate (0 once a model's steps repeat;
        // see frostnet::tensor::buffer), and the pool's size at the end.
        "pool_misses": pool1.misses - pool0.misses,
        "pool_held_mb": pool1.held_bytes >> 20,
    });
    let obj = rec.as_object_mut().expect("a JSON object");
    if args.workload == "sgemm" {
        let n = workloads::SGEMM_N as f64;
        let gflops = 2.0 * n * n * n / (med * 1e-3) / 1e9;
        obj.insert("gflops".into(), ((gflops * 100.0).round() / 100.0).into());
    }
    for (k, v) in w.extra {
        obj.insert(k.into(), v);
    }
    println!("{rec}");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frostnet-bench {}: {e}", args.workload);
            ExitCode::FAILURE
        }
    }
}
