//! `frostnet-bench profile image_pipeline`: where one image's time goes, single-threaded, over the
//! workload's files: reading the file, decoding the JPEG (the `image` crate's decoder, which
//! `image_dataset_from_directory` calls), and the rest of `load_image` (conversion and the
//! 299x299 `tf.image.resize`), measured as `load_image` minus the decode of the same bytes.

use crate::workloads::{image_pipeline_dir, PIPELINE_SIDE};
use crate::{median, Args, Res};
use frostnet::datasets::{load_image, ColorMode, Interpolation};
use std::time::Instant;

fn jpegs(dir: &str) -> Res<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for class in std::fs::read_dir(dir)? {
        let class = class?.path();
        if class.is_dir() {
            for f in std::fs::read_dir(&class)? {
                files.push(f?.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

pub(crate) fn run(args: &Args) -> Res<()> {
    let files = jpegs(&image_pipeline_dir())?;
    // Every 10th file: enough for stable medians, a few seconds per rep.
    let sample: Vec<_> = files.iter().step_by(10).collect();
    let (mut read, mut decode, mut load) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..args.reps.max(1) {
        let (mut r, mut d, mut l) = (0.0, 0.0, 0.0);
        for f in &sample {
            let t = Instant::now();
            let bytes = std::fs::read(f)?;
            r += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let img = image::load_from_memory(&bytes)?;
            std::hint::black_box(&img);
            d += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let x = load_image(
                f,
                (PIPELINE_SIDE, PIPELINE_SIDE),
                ColorMode::Rgb,
                Interpolation::Bilinear,
            )?;
            std::hint::black_box(&x);
            l += t.elapsed().as_secs_f64();
        }
        if rep >= args.warmup.min(1) || args.reps == 1 {
            let n = sample.len() as f64;
            read.push(r / n * 1e3);
            decode.push(d / n * 1e3);
            load.push(l / n * 1e3);
        }
    }
    let (r, d, l) = (median(&read), median(&decode), median(&load));
    println!(
        "profile image_pipeline ({} of {} files, 1 thread): per image read {:.3} ms, decode \
         {:.3} ms, load_image {:.3} ms (so conversion + resize {:.3} ms)",
        sample.len(),
        files.len(),
        r,
        d,
        l,
        l - d - r
    );
    Ok(())
}
