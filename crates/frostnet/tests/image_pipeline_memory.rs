//! Streaming keeps memory bounded by a few batches, not by the folder: a pass over 600 JPEGs
//! (200x150, upsized to 128x128 so the decoded folder is large) by a consumer slower than the
//! decoders must not raise the process's peak resident memory by more than a fraction of what
//! holding the decoded folder would take (with an unbounded queue it takes nearly all of it). Own test binary
//! (one test), so the peak belongs to this pass alone. Linux only (`/proc/self/status`).

use frostnet::datasets::{image_dataset_from_directory, Dataset, ImageDatasetOptions};
use image::{Rgb, RgbImage};
use std::time::Instant;

/// Peak resident set size so far, in bytes.
fn vm_hwm() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn one_pass_over_a_folder_holds_a_few_batches_not_the_folder() {
    if vm_hwm().is_none() {
        eprintln!("no /proc/self/status: nothing to measure on this system");
        return;
    }
    let dir = std::env::temp_dir().join(format!("frostnet_pipeline_mem_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n = 600usize;
    for c in 0..3 {
        std::fs::create_dir_all(dir.join(format!("class{c}"))).unwrap();
    }
    for i in 0..n {
        let img = RgbImage::from_fn(200, 150, |x, y| {
            let v = ((x * 3 + y * 5 + i as u32 * 11) % 256) as u8;
            Rgb([v, v.wrapping_mul(3), 255 - v])
        });
        img.save(dir.join(format!("class{}/img{i:04}.jpg", i % 3)))
            .unwrap();
    }
    let opts = ImageDatasetOptions {
        image_size: (128, 128),
        batch_size: 16,
        seed: Some(1),
        verbose: false,
        num_workers: 2,
        prefetch: 2,
        ..Default::default()
    };
    let mut ds = image_dataset_from_directory(&dir, &opts).unwrap();
    let before = vm_hwm().unwrap();
    let start = Instant::now();
    let mut seen = 0;
    let mut checksum = 0.0f64;
    for b in ds.epoch().unwrap() {
        let b = b.unwrap();
        // A consumer slower than the decoders (as a training step is): without the bound the
        // workers would run ahead and pile up most of the folder.
        std::thread::sleep(std::time::Duration::from_millis(60));
        seen += b.x.batch();
        checksum += b.x.data()[0] as f64;
    }
    let secs = start.elapsed().as_secs_f64();
    let grew = vm_hwm().unwrap().saturating_sub(before);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(seen, n);
    assert!(checksum.is_finite());
    let batch_bytes = 16 * 128 * 128 * 3 * 4;
    let folder_bytes = n * 128 * 128 * 3 * 4;
    eprintln!(
        "{n} JPEGs 200x150 -> 128x128 in {secs:.2} s ({:.0} images/s); peak RSS grew {:.1} MB \
         (one batch {:.1} MB, the decoded folder {:.1} MB)",
        n as f64 / secs,
        grew as f64 / 1e6,
        batch_bytes as f64 / 1e6,
        folder_bytes as f64 / 1e6
    );
    // 2 workers x (2 queued + 1 in progress) + the consumer's = 7 batches, plus decode buffers
    // and allocator slack: well under half the folder.
    assert!(
        (grew as usize) < folder_bytes / 2,
        "peak RSS grew {grew} bytes; the whole decoded folder is {folder_bytes}"
    );
}
