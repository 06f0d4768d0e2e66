//! Seeded randomness for initializers, shuffling and dropout.
//!
//! Everything random in frostnet flows from explicit seeds so that a run can be repeated.

use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_SEED: AtomicU64 = AtomicU64::new(0x5EED_F00D);

/// A fresh generator: seeded from `seed`, or from a process-wide sequence when `None`
/// (deterministic for a given order of calls, like Keras without a seed set).
pub fn rng(seed: Option<u64>) -> SmallRng {
    let s = seed.unwrap_or_else(|| NEXT_SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
    SmallRng::seed_from_u64(s)
}

/// Uniform samples in `[low, high)`.
pub fn uniform(rng: &mut SmallRng, n: usize, low: f32, high: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(low..high)).collect()
}

/// `n` standard normal samples (Box-Muller).
pub fn standard_normal(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Glorot (Xavier) uniform: `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`, Keras's default
/// kernel initializer.
pub fn glorot_uniform(rng: &mut SmallRng, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
    uniform(rng, n, -limit, limit)
}

/// A permutation of `0..n` (Fisher-Yates).
pub fn permutation(rng: &mut SmallRng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}
