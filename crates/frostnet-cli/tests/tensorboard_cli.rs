//! Issue #11, point 3: `frostnet fit --tensorboard DIR` and `frostnet tune --tensorboard DIR`
//! write event files in Keras's run layout (`train/`, `validation/`; one run per trial for the
//! tuner). The files are read here from the format's definition: TFRecord framing with masked
//! CRC32C (computed bit by bit below, independently of the library's), `Event` protocol buffers.

use image::{Rgb, RgbImage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::{frostnet, ok, scratch};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// TFRecord's mask: rotate right by 15 bits, add 0xa282ead8.
#[allow(clippy::manual_rotate)] // spelled out as TensorFlow's crc32c.h states it
fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return v;
        }
    }
    panic!("varint too long");
}

/// A message's fields: (number, varint value or bytes or fixed bytes).
fn fields(b: &[u8]) -> Vec<(u64, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at);
        let (n, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(b, &mut at);
                out.push((n, Vec::new(), v));
            }
            1 | 5 => {
                let len = if wire == 1 { 8 } else { 4 };
                out.push((n, b[at..at + len].to_vec(), 0));
                at += len;
            }
            2 => {
                let len = varint(b, &mut at) as usize;
                out.push((n, b[at..at + len].to_vec(), 0));
                at += len;
            }
            w => panic!("wire type {w}"),
        }
    }
    assert_eq!(at, b.len());
    out
}

/// Every scalar of the run in `dir` (one event file): tag -> [(step, value)]; checks the framing,
/// both checksums of every record and the file-version record first.
fn scalars(dir: &Path) -> BTreeMap<String, Vec<(i64, f32)>> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let mut out: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    let (mut at, mut first) = (0, true);
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
            masked(len_bytes)
        );
        let data = &bytes[at + 12..at + 12 + len];
        assert_eq!(
            u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap()),
            masked(data)
        );
        at += 16 + len;
        let event = fields(data);
        if first {
            let version = event.iter().find(|f| f.0 == 3).expect("file_version");
            assert_eq!(version.1, b"brain.Event:2");
            first = false;
            continue;
        }
        let step = event.iter().find(|f| f.0 == 2).map_or(0, |f| f.2 as i64);
        for (n, summary, _) in &event {
            if *n != 5 {
                continue;
            }
            for (_, value, _) in fields(summary) {
                let v = fields(&value);
                let tag =
                    String::from_utf8(v.iter().find(|f| f.0 == 1).unwrap().1.clone()).unwrap();
                if let Some(s) = v.iter().find(|f| f.0 == 2) {
                    let x = f32::from_le_bytes(s.1.clone().try_into().unwrap());
                    out.entry(tag).or_default().push((step, x));
                }
            }
        }
    }
    out
}

fn steps(s: &BTreeMap<String, Vec<(i64, f32)>>, tag: &str) -> Vec<i64> {
    s.get(tag)
        .unwrap_or_else(|| panic!("no {tag} in {:?}", s.keys()))
        .iter()
        .map(|x| x.0)
        .collect()
}

fn make_folder(dir: &Path) {
    for (class, colour) in [("red", [220u8, 30, 30]), ("blue", [30, 30, 220])] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..6u32 {
            let img = RgbImage::from_fn(32 + i, 36 - i, |x, y| {
                Rgb(colour.map(|c| c.saturating_add(((x * 7 + y * 13 + i) % 40) as u8)))
            });
            img.save(dir.join(class).join(format!("{class}{i}.png")))
                .unwrap();
        }
    }
}

#[test]
fn fit_writes_one_run_whose_fine_tuning_epochs_continue_the_heads() {
    let dir = scratch("fit");
    let data = dir.join("photos");
    make_folder(&data);
    let logs = dir.join("logs");
    ok(&frostnet(&[
        "fit",
        "--app",
        "mobilenet_v2",
        "--weights",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--validation-split",
        "0.25",
        "--fine-tune-at",
        "block_16_expand",
        "--fine-tune-epochs",
        "1",
        "--fine-tune-lr",
        "0.0001",
        "--tensorboard",
        logs.to_str().unwrap(),
        "--output",
        dir.join("m.keras").to_str().unwrap(),
    ]));
    let train = scalars(&logs.join("train"));
    assert_eq!(steps(&train, "epoch_loss"), [0, 1, 2]);
    assert_eq!(steps(&train, "epoch_accuracy"), [0, 1, 2]);
    // The learning rate of each phase, as Adam holds it (f32).
    let lr: Vec<f32> = train["epoch_learning_rate"].iter().map(|x| x.1).collect();
    assert_eq!(lr, [1e-3, 1e-3, 1e-4]);
    let val = scalars(&logs.join("validation"));
    assert_eq!(steps(&val, "epoch_accuracy"), [0, 1, 2]);
    assert_eq!(steps(&val, "epoch_loss"), [0, 1, 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tune_writes_one_run_per_trial() {
    let dir = scratch("tune");
    let store = format!("sqlite:{}", dir.join("s.sqlite3").display());
    let logs = dir.join("logs");
    ok(&frostnet(&[
        "tune",
        "worker",
        "--store",
        &store,
        "--trials",
        "2",
        "--epochs",
        "2",
        "--tensorboard",
        logs.to_str().unwrap(),
    ]));
    let study = frostnet_tuner::Study::open_existing(
        "digits_mlp",
        &frostnet_tuner::Storage::sqlite(dir.join("s.sqlite3")),
    )
    .unwrap();
    let records = study.trial_records().unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        let run = logs.join(format!("trial_{}", r.number));
        let train = scalars(&run.join("train"));
        assert_eq!(steps(&train, "epoch_loss"), [0, 1]);
        let val = scalars(&run.join("validation"));
        // The validation accuracy TensorBoard shows is the one the trial reported.
        let acc = &val["epoch_accuracy"];
        assert_eq!(acc.len(), r.intermediate.len());
        for ((step, v), (s, reported)) in acc.iter().zip(&r.intermediate) {
            assert_eq!(*step as u64, *s);
            assert!((*v as f64 - reported).abs() < 1e-6, "{v} vs {reported}");
        }
    }

    // The image search: one run per trial as well.
    let data = dir.join("photos");
    make_folder(&data);
    let image_logs = dir.join("image-logs");
    ok(&frostnet(&[
        "tune",
        "--store",
        &store,
        "--study",
        "colours",
        "--app",
        "mobilenet_v2",
        "--weights",
        "none",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--validation-split",
        "0.25",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--fine-tune-at",
        "none",
        "--tensorboard",
        image_logs.to_str().unwrap(),
    ]));
    let train = scalars(&image_logs.join("trial_0/train"));
    assert_eq!(steps(&train, "epoch_loss"), [0]);
    let val = scalars(&image_logs.join("trial_0/validation"));
    assert_eq!(steps(&val, "epoch_accuracy"), [0]);
    std::fs::remove_dir_all(&dir).unwrap();
}
