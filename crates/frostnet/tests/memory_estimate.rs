//! `memory_estimate` against the memory one training step really takes: this test binary counts
//! every allocation (a global allocator that tracks live and peak bytes) and compares the peak of
//! one `train_on_batch` with the estimate, which must be within 25%.

use frostnet::layers::{
    ActivationFn, BatchNormalization, Conv2D, Dense, Flatten, Input, MaxPooling2D,
};
use frostnet::tensor::Padding;
use frostnet::training::{Adam, Loss};
use frostnet::{Model, Sequential, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counters are plain atomics and never affect what is allocated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tests in this binary measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak bytes alive during `f`, counting what was alive before it (the model, the data).
fn peak_during(f: impl FnOnce()) -> usize {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed)
}

fn cnn(frozen_prefix: bool) -> Model {
    let mut m = Sequential::new();
    m.add(Input::new(&[64, 64, 3])).unwrap();
    m.add(Conv2D::new(32, 3).padding(Padding::Same)).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(frostnet::layers::Activation::new(ActivationFn::Relu))
        .unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(
        Conv2D::new(64, 3)
            .padding(Padding::Same)
            .activation(ActivationFn::Relu),
    )
    .unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(10).activation(ActivationFn::Softmax))
        .unwrap();
    let mut model = m;
    if frozen_prefix {
        model.set_trainable_range(0..6, false).unwrap();
    }
    model.compile(
        Adam::new(0.001),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[],
    );
    model
}

fn check(frozen_prefix: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The estimate is what a step needs live; the buffer pool keeps freed buffers on top of
    // that for the next step (bounded by its own limit), so it is off while measuring.
    frostnet::tensor::buffer::set_limit(0);
    let batch = 32;
    // Everything alive before the model and the data exist is the harness's, not the step's.
    let start = LIVE.load(Ordering::Relaxed);
    let x = Tensor::rand(&[batch, 64, 64, 3], 1);
    let y = Tensor::from_vec(&[batch], (0..batch).map(|i| (i % 10) as f32).collect()).unwrap();
    let data = ((x.len() + y.len()) * 4) as u64;
    let mut model = cnn(frozen_prefix);
    // One step first: the optimizer's slots exist from then on, as in every later step.
    model.train_on_batch(&x, &y).unwrap();
    let peak = peak_during(|| {
        model.train_on_batch(&x, &y).unwrap();
    });
    let est = model.memory_estimate(batch).unwrap();
    let measured = (peak - start) as u64 - data;
    let ratio = est.training_step() as f64 / measured as f64;
    eprintln!(
        "frozen prefix {frozen_prefix}: estimate {} vs measured {measured}: {ratio:.3}",
        est.training_step()
    );
    assert!(
        (0.75..=1.25).contains(&ratio),
        "frozen prefix {frozen_prefix}: estimate {} bytes ({est:?}) vs measured {measured}: \
         ratio {ratio:.3}",
        est.training_step()
    );
}

#[test]
fn training_step_estimate_is_within_25_percent_of_the_measured_peak() {
    check(false);
}

#[test]
fn frozen_prefix_keeps_no_activations_and_the_estimate_still_holds() {
    check(true);
    let est_frozen = cnn(true).memory_estimate(32).unwrap();
    let est_full = cnn(false).memory_estimate(32).unwrap();
    assert!(est_frozen.activations_kept < est_full.activations_kept / 4);
}
