//! One vector type per instruction-set level, shared by the hand-written kernels (sgemm, direct and
//! depthwise convolution, the direct kernel gradient). Each kernel file
//! adds its own entry points on top (`unsafe trait Simd: Vector`, implemented for these same
//! levels) and writes its loops once, generic over the level; [`super::isa`] picks the level.

/// `L` f32 lanes and the handful of operations the kernels are written in.
///
/// # Safety
/// Implementations may use CPU features; their methods are only called from functions compiled
/// with those features enabled, on a CPU that has them (the kernel files' entry points, each
/// `#[target_feature]`, reached after [`super::isa`] checked the CPU).
pub(crate) unsafe trait Vector {
    type V: Copy;
    const L: usize;
    /// # Safety (all below)
    /// Pointers must be valid for `L` (load/store) or 1 (splat) f32 values.
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn splat(p: *const f32) -> Self::V;
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// A hint to fetch `p`'s cache line; never faults, so any address is sound.
    unsafe fn prefetch(p: *const f32);
}

/// Plain arrays: LLVM vectorizes them for the compile target (SSE2 on x86-64, NEON on aarch64).
/// Multiply then add rather than `mul_add`, which is a slow library call without hardware FMA.
pub(crate) struct Portable;

// SAFETY: uses no CPU feature beyond the compile target's.
unsafe impl Vector for Portable {
    type V = [f32; 8];
    const L: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable values.
        unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 1 readable value.
        [unsafe { *p }; 8]
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| c[i] + a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable values.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], v) }
    }
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    /// AVX-512F: 16 lanes.
    pub(crate) struct Avx512;
    /// AVX2 + FMA: 8 lanes.
    pub(crate) struct Avx2;

    // SAFETY: the intrinsics need avx512f; the kernel files inline these only into functions
    // that enable it, called once the CPU was detected to have it.
    unsafe impl Vector for Avx512 {
        type V = __m512;
        const L: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 readable values.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 1 readable value.
            _mm512_set1_ps(unsafe { *p })
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees 16 writable values.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            // SAFETY: a prefetch is a hint that never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
    }

    // SAFETY: the intrinsics need avx2 and fma; as above, inlined only into functions that
    // enable both, called once the CPU was detected to have them.
    unsafe impl Vector for Avx2 {
        type V = __m256;
        const L: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable values.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 1 readable value.
            _mm256_set1_ps(unsafe { *p })
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees 8 writable values.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            // SAFETY: a prefetch is a hint that never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
    }
}
