//! Tensor storage: shared, copy-on-write `f32` buffers, recycled across training steps.
//!
//! Two costs this removes, both measured on InceptionV3 (batch 8, frozen base, 2 threads):
//!
//! - **Fresh pages every step.** A step allocates the same few hundred activation and gradient
//!   buffers (megabytes each) as the step before. The allocator hands large blocks back to the
//!   kernel when they are freed, so every step paid for page faults and the kernel's zeroing of
//!   each new page: `clear_page_erms` was 18% of the profile, and the zeroing runs on whichever
//!   thread touches the page first, often the only one working. Buffers of at least
//!   [`MIN_POOLED`] values now go back to a process-wide pool when their last tensor is dropped,
//!   and the next request of the same size takes one from there: after the first step, a model
//!   allocates nothing large. This is the "arena reused across steps" of the design, kept per
//!   process rather than per model because buffers move between models (a frozen base's output
//!   feeds the head) and across `predict` / `fit` calls.
//! - **Copies kept for backward.** A layer that needs its input in the backward pass (every
//!   convolution, Dense, BatchNormalization) cloned it; InceptionV3's block inputs feed four
//!   branches, so each was copied four times. [`Tensor`](super::Tensor)'s data is now an
//!   `Arc<Buffer>`: `clone` shares it, and a write through `data_mut` copies only if the buffer
//!   is still shared (Rust's `Arc::make_mut`). Values never change under a reader.
//!
//! How the pool bounds itself: sizes are rounded up to a size class (four significant bits, so
//! at most 12.5% is wasted); a request takes a free buffer of its class or of the next classes
//! up to twice its size. Only buffers the pool handed out come back (it keeps their addresses), so
//! vectors made elsewhere (a data pipeline's batches, a user's `Vec`) are simply freed. A class
//! keeps at most as many free buffers as it ever had out at once: what a repeating step needs.
//! All classes together keep at most a limit, 1 GiB unless [`set_limit`] or
//! `FROSTNET_BUFFER_POOL_MB` says otherwise, evicting the least recently freed first; [`release`]
//! hands everything back to the allocator. (A limit derived from the most memory live at once
//! does not work: a frozen InceptionV3 step at batch 8 has ~60 MB live but cycles ~300 MB through
//! its classes, and capped at twice its live peak it still faulted in fresh pages for 10% of its
//! time.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Buffers below this many values (32 KB) come straight from the allocator: small blocks are
/// cheap there, and pooling them would only add locking. (At 256 KB, InceptionV3 at batch 1,
/// whose activations are mostly 50-250 KB, spent 8% of its time zero-filling and faulting in
/// fresh pages.)
pub(crate) const MIN_POOLED: usize = 1 << 13;
/// The pool's limit in values, when neither [`set_limit`] nor the environment set one.
const DEFAULT_LIMIT: usize = (1 << 30) / std::mem::size_of::<f32>();
/// The limit in values; `usize::MAX` until first read or set.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The most the pool keeps, in values: [`set_limit`]'s, else `FROSTNET_BUFFER_POOL_MB`'s (read
/// once), else 1 GiB.
fn limit() -> usize {
    static FROM_ENV: OnceLock<usize> = OnceLock::new();
    match LIMIT.load(Ordering::Relaxed) {
        usize::MAX => *FROM_ENV.get_or_init(|| {
            std::env::var("FROSTNET_BUFFER_POOL_MB")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .map_or(DEFAULT_LIMIT, |mb| {
                    mb.saturating_mul(1 << 20) / std::mem::size_of::<f32>()
                })
        }),
        l => l,
    }
}

/// Sets the most memory, in bytes, that freed tensor buffers are kept for reuse (0 turns reuse
/// off), and evicts what is above it now.
pub fn set_limit(bytes: usize) {
    let values = bytes / std::mem::size_of::<f32>();
    LIMIT.store(values.min(usize::MAX - 1), Ordering::Relaxed);
    let evicted = pool().evict_to(values);
    drop(evicted);
}

/// The spacing of size classes around `n`: an eighth of `n`'s power of two.
fn class_step(n: usize) -> usize {
    let e = usize::BITS - 1 - n.max(1).leading_zeros();
    1 << e.saturating_sub(3)
}

/// The smallest size class holding `n` values.
fn class_up(n: usize) -> usize {
    n.next_multiple_of(class_step(n))
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    classes: None,
    lent: None,
    held: 0,
    clock: 0,
});

struct Pool {
    /// The size classes [`take`] has been asked for.
    classes: Option<HashMap<usize, Class>>,
    /// The buffers handed out and not returned, by address, with their class. Only these come
    /// back into the pool: a vector made elsewhere (a data pipeline's batch, a user's `Vec`) is
    /// simply freed, so the pool neither hoards what nobody asks for again nor miscounts a
    /// class's demand.
    lent: Option<HashMap<usize, usize>>,
    /// Values held in free buffers.
    held: usize,
    /// Counts recycling events, to find the least recently freed buffer.
    clock: u64,
}

/// One size class's free buffers and its demand.
#[derive(Default)]
struct Class {
    /// Free buffers, each with the tick it was freed at, oldest first.
    free: Vec<(u64, Vec<f32>)>,
    /// Buffers of this class handed out and not yet returned.
    out: usize,
    /// The most ever out at once: the class keeps no more free buffers than this.
    peak: usize,
}

fn pool() -> MutexGuard<'static, Pool> {
    // A panic while the lock was held left the pool's lists intact (no operation below panics
    // half-way through an update that matters): keep using it.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An empty vector with room for at least `n` values, from the pool when one of that size is
/// free.
pub(crate) fn take(n: usize) -> Vec<f32> {
    let mut v = reuse(n);
    v.clear();
    v
}

/// `n` values for a kernel that overwrites every one of them: a pooled buffer keeps whatever
/// its last user left (only values past its old length are zeroed), so in the steady state
/// nothing is filled twice. (The values are always initialised: safe Rust, no `MaybeUninit`.)
pub(crate) fn overwritten(n: usize) -> Vec<f32> {
    let mut v = reuse(n);
    if v.len() >= n {
        v.truncate(n);
    } else {
        v.resize(n, 0.0);
    }
    v
}

/// A vector with room for `n` values, holding what its last user left.
fn reuse(n: usize) -> Vec<f32> {
    if n < MIN_POOLED {
        return Vec::with_capacity(n);
    }
    let want = class_up(n);
    let (cap, reused) = {
        let mut p = pool();
        let classes = p.classes.get_or_insert_with(HashMap::new);
        // The smallest class with a free buffer, up to twice the size asked for: buffers that
        // sit idle in one class serve the next class up rather than a fresh allocation (on
        // InceptionV3's training step, 42 allocations per step without this).
        let mut c = want;
        let mut have = None;
        while c <= 2 * want {
            if classes.get(&c).is_some_and(|k| !k.free.is_empty()) {
                have = Some(c);
                break;
            }
            c += class_step(c);
        }
        let cap = have.unwrap_or(want);
        let class = classes.entry(cap).or_default();
        class.out += 1;
        class.peak = class.peak.max(class.out);
        let found = have.and_then(|_| class.free.pop()).map(|(_, v)| v);
        if let Some(v) = &found {
            p.held -= cap;
            lend(&mut p, v, cap);
        }
        (cap, found)
    };
    match reused {
        Some(v) => {
            HITS.fetch_add(1, Ordering::Relaxed);
            v
        }
        None => {
            MISSES.fetch_add(1, Ordering::Relaxed);
            let v = Vec::with_capacity(cap);
            lend(&mut pool(), &v, cap);
            v
        }
    }
}

/// Records `v` (of class `cap`) as handed out. An address still on record belonged to a buffer
/// that was freed without coming back (a pooled vector dropped as a plain `Vec`): its class's
/// count is corrected, so such a leak costs an allocation but does not inflate the demand.
fn lend(p: &mut Pool, v: &[f32], cap: usize) {
    let old = p
        .lent
        .get_or_insert_with(HashMap::new)
        .insert(v.as_ptr() as usize, cap);
    if let Some(class) = old.and_then(|c| p.classes.as_mut()?.get_mut(&c)) {
        class.out = class.out.saturating_sub(1);
    }
}

/// Requests of pooled size served from the pool, and those that had to allocate.
static HITS: AtomicUsize = AtomicUsize::new(0);
static MISSES: AtomicUsize = AtomicUsize::new(0);

/// What the pool has done since the process started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests for a buffer of pooled size (at least 32 KB) served by a freed buffer.
    pub hits: usize,
    /// Such requests that had to allocate: after a model's first step, this stops growing.
    pub misses: usize,
    /// Bytes of freed buffers the pool holds now.
    pub held_bytes: usize,
}

/// The pool's counters (for tests, and to check that a training loop has reached its steady
/// state).
pub fn stats() -> PoolStats {
    PoolStats {
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        held_bytes: pool().held * std::mem::size_of::<f32>(),
    }
}

/// [`take`], filled with zeros (for kernels that accumulate into their output).
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    let mut v = take(n);
    v.resize(n, 0.0);
    v
}

/// A copy of `src` in a buffer from the pool.
pub(crate) fn copy_of(src: &[f32]) -> Vec<f32> {
    let mut v = take(src.len());
    v.extend_from_slice(src);
    v
}

/// Gives `v`'s memory back to the pool if the pool handed it out (else, or when its class or the
/// pool is full, to the allocator).
pub(crate) fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_POOLED {
        return;
    }
    let limit = limit();
    let evicted = {
        let mut p = pool();
        let Some(cap) = p
            .lent
            .as_mut()
            .and_then(|l| l.remove(&(v.as_ptr() as usize)))
        else {
            return;
        };
        if v.capacity() < cap {
            // Shrunk since it was handed out: no longer holds its class.
            return;
        }
        let Some(class) = p.classes.as_mut().and_then(|c| c.get_mut(&cap)) else {
            return;
        };
        class.out = class.out.saturating_sub(1);
        if class.free.len() >= class.peak || cap > limit {
            return;
        }
        let mut evicted = p.evict_to(limit - cap);
        p.clock += 1;
        let tick = p.clock;
        match p.classes.as_mut().and_then(|c| c.get_mut(&cap)) {
            Some(class) => {
                class.free.push((tick, v));
                p.held += cap;
            }
            None => evicted.push(v),
        }
        evicted
    };
    // Freed outside the lock.
    drop(evicted);
}

impl Pool {
    /// Removes the least recently freed buffers until at most `values` are held, and returns
    /// them (to be freed after the lock is released).
    fn evict_to(&mut self, values: usize) -> Vec<Vec<f32>> {
        let mut evicted = Vec::new();
        let Some(classes) = self.classes.as_mut() else {
            return evicted;
        };
        while self.held > values {
            // The oldest entry of any list (each list is in freeing order).
            let Some((&cap, class)) = classes
                .iter_mut()
                .filter(|(_, c)| !c.free.is_empty())
                .min_by_key(|(_, c)| c.free[0].0)
            else {
                break;
            };
            evicted.push(class.free.remove(0).1);
            self.held -= cap;
        }
        evicted
    }
}

/// Hands every pooled buffer back to the allocator (and so, for large ones, to the operating
/// system). Nothing needs this for correctness; a long-running program that is done with a big
/// model can call it to shrink.
pub fn release() {
    let free: Vec<_> = {
        let mut p = pool();
        p.held = 0;
        p.classes
            .iter_mut()
            .flat_map(|c| c.values_mut())
            .map(|c| std::mem::take(&mut c.free))
            .collect()
    };
    drop(free);
}

/// Tensor storage, and a kernel's scratch space (`Buffer(overwritten(n))`): a vector
/// that goes back to the pool when dropped.
#[derive(Debug)]
pub(crate) struct Buffer(pub(crate) Vec<f32>);

impl std::ops::Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.0));
    }
}

impl Clone for Buffer {
    fn clone(&self) -> Buffer {
        Buffer(copy_of(&self.0))
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Buffer) -> bool {
        self.0 == other.0
    }
}

/// A vector of plain values other than `f32` (ReLU's derivative codes, max pooling's argmax
/// indices) in the bytes of a pooled [`Buffer`], so that it too comes from the pool and goes
/// back to it. (As fresh `Vec<u8>`s, InceptionV3's training step faulted in and zeroed ~80 MB of
/// new pages every step: the allocator had returned the previous step's to the kernel.)
#[derive(Clone, Debug)]
pub struct Pooled<T> {
    buf: Buffer,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> Pooled<T> {
    /// `len` values for a kernel that writes every one of them (until it does, they hold
    /// whatever the buffer's last user left, as with [`overwritten`]).
    pub(crate) fn overwritten(len: usize) -> Pooled<T> {
        const {
            assert!(std::mem::align_of::<T>() <= std::mem::align_of::<f32>());
        }
        let floats = (len * std::mem::size_of::<T>()).div_ceil(std::mem::size_of::<f32>());
        Pooled {
            buf: Buffer(overwritten(floats)),
            len,
            _values: std::marker::PhantomData,
        }
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for Pooled<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &bytemuck::cast_slice(&self.buf.0)[..self.len]
    }
}

impl<T: bytemuck::Pod> std::ops::DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut bytemuck::cast_slice_mut(&mut self.buf.0)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide and tests run in parallel, so these check only what no other
    /// test can disturb: a buffer handed back is the one handed out next for its size class.
    #[test]
    fn a_freed_buffer_is_reused_for_its_size_class() {
        // A size class (2.9M..3.1M values) no other test allocates.
        let n = 3_000_017;
        let mut v = take(n);
        assert!(v.capacity() >= n && v.is_empty());
        v.resize(n, 1.5);
        let ptr = v.as_ptr();
        recycle(v);
        let o = overwritten(n - 5);
        assert_eq!(
            o.as_ptr(),
            ptr,
            "the same size class reuses the freed buffer"
        );
        assert_eq!(o.len(), n - 5);
        assert!(
            o.iter().all(|&x| x == 1.5),
            "overwritten() keeps what was there"
        );
        recycle(o);
        let z = zeroed(n);
        assert_eq!(z.as_ptr(), ptr);
        assert!(
            z.len() == n && z.iter().all(|&x| x == 0.0),
            "zeroed() zeroes"
        );
        recycle(z);
        let t = take(n);
        assert!(t.as_ptr() == ptr && t.is_empty(), "take() empties");
    }

    #[test]
    fn a_free_buffer_up_to_twice_the_size_serves_a_smaller_request() {
        // Classes 4,718,592 and 5,242,880 values, which no other test allocates.
        let big = take(5_000_000);
        let ptr = big.as_ptr();
        recycle(big);
        let smaller = take(4_200_000);
        assert_eq!(smaller.as_ptr(), ptr);
        recycle(smaller);
    }

    #[test]
    fn a_vector_the_pool_did_not_hand_out_is_freed_not_kept() {
        let n = 7_000_003;
        recycle(Vec::with_capacity(class_up(n)));
        let before = stats().misses;
        let v = take(n);
        assert!(
            stats().misses > before,
            "served from a vector the pool never lent"
        );
        recycle(v);
    }

    #[test]
    fn size_classes_round_to_four_significant_bits() {
        for n in [
            MIN_POOLED,
            MIN_POOLED + 1,
            100_000,
            299 * 299 * 3,
            5_000_000,
            (1 << 30) + 7,
        ] {
            let up = class_up(n);
            assert!(up >= n && (up - n) * 8 <= n, "class_up({n}) = {up}");
            assert_eq!(class_up(up), up, "a class is its own class");
        }
        assert_eq!(class_up(9 << 20), 9 << 20);
        assert_eq!(class_up((9 << 20) + 1), 10 << 20);
    }

    #[test]
    fn pooled_bytes_reuse_a_freed_buffer() {
        // 50 MB: a size class (12.5M values) no other test allocates.
        let n = 50_000_000;
        let mut a = Pooled::<u8>::overwritten(n);
        assert_eq!(a.len(), n);
        a.fill(7);
        let ptr = a.as_ptr();
        drop(a);
        let b = Pooled::<u32>::overwritten(n / 4);
        assert_eq!(b.len(), n / 4);
        assert_eq!(
            b.as_ptr().cast::<u8>(),
            ptr,
            "the freed bytes serve the next request"
        );
        assert!(b.iter().all(|&v| v == u32::from_ne_bytes([7; 4])));
    }

    #[test]
    fn small_buffers_bypass_the_pool() {
        let v = take(100);
        assert!(v.capacity() >= 100 && v.capacity() < MIN_POOLED);
        recycle(v);
    }
}
