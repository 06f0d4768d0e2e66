//! Which SIMD instruction set the numeric kernels use, chosen once at run time.
//!
//! The widest set the CPU supports is detected once (`is_x86_feature_detected!`). The
//! environment variable `FROSTNET_ISA=avx512|avx2|portable` narrows it for the whole process (to
//! benchmark the AVX2 path on an AVX-512 machine, say); it never widens it past what the CPU has,
//! since running AVX-512 instructions on a CPU without them is undefined behaviour. Tests force a
//! path for one closure on one thread with [`with_forced`], so parallel tests do not race on the
//! process environment.
//!
//! Kernels read [`active`] on the calling thread and pass the result down explicitly into any work
//! they hand to other threads, so a forced choice covers the whole kernel call.

use std::cell::Cell;
use std::sync::OnceLock;

/// An instruction-set level for the f32 kernels, ordered from narrowest to widest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No SIMD assumptions beyond the compile target (scalar kernels on x86; on other
    /// architectures, whatever the matmul library selects for them, e.g. NEON on aarch64).
    Portable,
    /// AVX2 + FMA: 8-wide fused multiply-adds.
    Avx2,
    /// AVX-512F: 16-wide fused multiply-adds.
    Avx512,
}

impl Isa {
    /// The name `FROSTNET_ISA` accepts for this level.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a `FROSTNET_ISA` value (case-insensitive).
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run kernels of this level.
    pub fn is_supported(self) -> bool {
        self <= detected()
    }

    /// Every level this CPU can run, narrowest first (what tests iterate over).
    pub fn supported() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The widest level the CPU supports, detected once.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(detect_cpu)
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn detect_cpu() -> Isa {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Isa::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn detect_cpu() -> Isa {
    Isa::Portable
}

/// The process-wide level: the detected one, narrowed by `FROSTNET_ISA` if set.
pub fn process_default() -> Isa {
    static DEFAULT: OnceLock<Isa> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        let cpu = detected();
        match std::env::var("FROSTNET_ISA") {
            Err(_) => cpu,
            Ok(v) => match Isa::parse(&v) {
                Some(want) => want.min(cpu),
                None => {
                    eprintln!(
                        "frostnet: ignoring FROSTNET_ISA={v:?} (expected avx512, avx2 or portable); using {cpu}"
                    );
                    cpu
                }
            },
        }
    })
}

/// Runs `f` compiled for `level` (a kernel's [`active`] level, passed into its worker threads
/// like every other kernel's choice), so plain Rust loops in it
/// (elementwise maps, pooling windows, transforms) are auto-vectorised with AVX-512 or AVX2
/// rather than the compile target's SSE2.
///
/// Why: a release build targets baseline x86-64, so every loop outside the hand-written
/// kernels ran 4 floats wide. In a frozen InceptionV3 step those loops (Winograd transforms,
/// the fused BatchNormalization/ReLU epilogue, pooling) took 13% of the CPU time (perf, AVX-512).
/// Only code inlined into `f` gets the features: keep the loops in `f`'s body or in
/// `#[inline(always)]` functions, not behind a `dyn` call. No float operation changes (Rust
/// never contracts `a * b + c` into a fused multiply-add), so the results are bit-identical
/// at every level.
#[inline(always)]
pub fn vectorized<R>(level: Isa, f: impl FnOnce() -> R) -> R {
    match level.min(detected()) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level is capped at `detected`, so the CPU has these features.
        Isa::Avx512 => unsafe { with_avx512(f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { with_avx2(f) },
        _ => f(),
    }
}

/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

thread_local! {
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The level kernels called from this thread use now.
pub fn active() -> Isa {
    FORCED.with(|f| f.get()).unwrap_or_else(process_default)
}

/// Runs `f` with this thread's kernels forced to `isa`, narrowed to what the CPU supports. The
/// previous choice is restored afterwards, even if `f` panics.
pub fn with_forced<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let prev = FORCED.with(|c| c.replace(Some(isa.min(detected()))));
    let _restore = Restore(prev);
    f()
}

/// Runs `f` on one of rayon's worker threads (inline when called on one), with this thread's
/// kernel level.
///
/// Why: a thread outside the pool that starts parallel work hands it to the pool and sleeps
/// until it is done, so every parallel kernel of a step cost two thread wake-ups (a futex wait
/// and wake each); on a worker, parallel work goes on its own queue and runs at once. A
/// training step of mlp_train runs about twenty parallel kernels: scheduling was 8% of its CPU
/// time (perf, Zen 4). The model's entry points (a forward pass, a training step) run their
/// whole body through here, so the hand-over happens once per step.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let level = active();
    rayon::scope(|_| with_forced(level, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forcing_never_widens_and_restores() {
        let cpu = detected();
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            with_forced(isa, || {
                assert_eq!(active(), isa.min(cpu));
                with_forced(Isa::Portable, || assert_eq!(active(), Isa::Portable));
                assert_eq!(active(), isa.min(cpu));
            });
        }
        assert_eq!(active(), process_default());
        assert!(process_default() <= cpu);
    }

    #[test]
    fn names_round_trip() {
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse("AVX512"), Some(Isa::Avx512));
        assert_eq!(Isa::parse("sse"), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn detection_agrees_with_cpu_features() {
        let has512 = std::arch::is_x86_feature_detected!("avx512f");
        let has2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        assert_eq!(Isa::Avx512.is_supported(), has512 && has2);
        assert_eq!(Isa::Avx2.is_supported(), has2);
        assert!(Isa::Portable.is_supported());
    }
}
