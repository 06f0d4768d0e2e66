//! Tells the tests which kernel levels this machine's CPU runs.
//!
//! Why: every fast kernel is tested once per instruction-set level (`testing::level_tests!`),
//! and a level the CPU lacks cannot run. The test for it is then marked ignored with the reason,
//! so `cargo test` says "ignored, this CPU lacks AVX-512F" instead of passing without having run
//! the AVX-512 kernels. Rust's test harness only ignores statically, hence a build-time probe:
//! tests run on the machine that built them. If a test binary ever runs on a CPU narrower than
//! its build machine's, the level's test fails with a message saying so (never passes).
//!
//! Sets `frostnet_cpu_avx2` (AVX2 and FMA) and `frostnet_cpu_avx512` (AVX-512F, AVX2 and FMA),
//! the same conditions as `tensor::isa`'s run-time detection, when building for the host.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(frostnet_cpu_avx2)");
    println!("cargo::rustc-check-cfg=cfg(frostnet_cpu_avx512)");
    println!("cargo::rerun-if-changed=build.rs");
    // Re-probe on a new machine: a target directory can outlive the machine that filled it (a
    // new session's machine may be another CPU). Linux dates /proc/cpuinfo at the boot, later
    // than the last probe after a reboot, earlier within one.
    println!("cargo::rerun-if-changed=/proc/cpuinfo");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("TARGET") != var("HOST") || var("CARGO_CFG_TARGET_ARCH") != "x86_64" {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2 {
            println!("cargo::rustc-cfg=frostnet_cpu_avx2");
            if std::arch::is_x86_feature_detected!("avx512f") {
                println!("cargo::rustc-cfg=frostnet_cpu_avx512");
            }
        }
    }
}
