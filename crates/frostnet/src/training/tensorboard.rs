//! `TensorBoard(log_dir)`: event files TensorBoard reads, in Keras's layout, written without
//! TensorFlow.
//!
//! Keras's `keras.callbacks.TensorBoard` writes, under `log_dir`:
//! - `train/`: `epoch_<name>` for every logged name without `val_` plus `epoch_learning_rate`, at
//!   step = epoch (0-based); `batch_<name>` at step = global batch (1-based) every `update_freq`
//!   batches when asked; `<layer>/<weight>/histogram` at step = epoch every `histogram_freq`
//!   epochs when asked.
//! - `validation/`: `epoch_<name>` for every `val_<name>` at step = epoch, and
//!   `evaluation_<name>_vs_iterations` at step = the optimizer's iteration count.
//!
//! The file format: a TFRecord stream (`u64` length, masked CRC32C of the length, the bytes,
//! masked CRC32C of the bytes), each record a `tensorflow.Event` protocol buffer; the first one
//! carries `file_version = "brain.Event:2"`. Scalars are `Summary.Value.simple_value`, histograms
//! `Summary.Value.histo` (`HistogramProto`); TensorBoard reads both. The few protobuf fields
//! are encoded by hand here: a code generator would cost more than these fifty lines.

use super::callbacks::{Callback, Logs};
use crate::error::{Error, Result};
use crate::models::Model;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How often per-batch scalars are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFreq {
    /// Only per epoch (Keras's default, `update_freq="epoch"`).
    Epoch,
    /// `batch_<name>` every `n` batches (`update_freq=n`; `"batch"` is 1).
    Batches(usize),
}

/// Writes TensorBoard event files during `fit` (see the module's documentation for what).
pub struct TensorBoard {
    log_dir: PathBuf,
    histogram_freq: usize,
    update_freq: UpdateFreq,
    train: Option<EventWriter>,
    validation: Option<EventWriter>,
    global_batch: u64,
}

impl TensorBoard {
    /// Logs under `log_dir` (`train/` and `validation/` are created when first written).
    pub fn new(log_dir: impl AsRef<Path>) -> TensorBoard {
        TensorBoard {
            log_dir: log_dir.as_ref().to_path_buf(),
            histogram_freq: 0,
            update_freq: UpdateFreq::Epoch,
            train: None,
            validation: None,
            global_batch: 0,
        }
    }
    /// Weight histograms every `n` epochs (0, the default, never).
    pub fn histogram_freq(mut self, n: usize) -> Self {
        self.histogram_freq = n;
        self
    }
    /// Per-batch scalars (Keras's `update_freq`).
    pub fn update_freq(mut self, f: UpdateFreq) -> Self {
        self.update_freq = f;
        self
    }

    fn writer(&mut self, validation: bool) -> Result<&mut EventWriter> {
        let (slot, run) = if validation {
            (&mut self.validation, "validation")
        } else {
            (&mut self.train, "train")
        };
        if slot.is_none() {
            *slot = Some(EventWriter::create(&self.log_dir.join(run))?);
        }
        Ok(slot.as_mut().expect("just created"))
    }
}

impl Callback for TensorBoard {
    fn on_train_begin(&mut self, _model: &mut Model) -> Result<()> {
        if let UpdateFreq::Batches(0) = self.update_freq {
            return Err(Error::InvalidConfig(
                "TensorBoard: update_freq must be at least 1 batch".into(),
            ));
        }
        self.global_batch = 0;
        Ok(())
    }

    fn on_batch_begin(&mut self, _model: &mut Model, _batch: usize) -> Result<()> {
        self.global_batch += 1;
        Ok(())
    }

    fn on_batch_end(&mut self, _model: &mut Model, _batch: usize, logs: &Logs) -> Result<()> {
        let UpdateFreq::Batches(n) = self.update_freq else {
            return Ok(());
        };
        if !self.global_batch.is_multiple_of(n as u64) {
            return Ok(());
        }
        let step = self.global_batch as i64;
        let values: Vec<(String, f64)> = logs
            .iter()
            .map(|(k, v)| (format!("batch_{k}"), *v))
            .collect();
        self.writer(false)?.scalars(step, &values)
    }

    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        let step = epoch as i64;
        let mut train: Vec<(String, f64)> = Vec::new();
        let mut val: Vec<(String, f64)> = Vec::new();
        for (k, v) in logs {
            match k.strip_prefix("val_") {
                Some(name) => val.push((name.to_string(), *v)),
                None => train.push((format!("epoch_{k}"), *v)),
            }
        }
        let (lr, iterations) = match model.optimizer_mut() {
            Some(opt) => (Some(opt.learning_rate() as f64), opt.iterations() as i64),
            None => (None, self.global_batch as i64),
        };
        if let Some(lr) = lr {
            train.push(("epoch_learning_rate".into(), lr));
        }
        if !train.is_empty() {
            self.writer(false)?.scalars(step, &train)?;
        }
        if !val.is_empty() {
            let epoch_tags: Vec<(String, f64)> = val
                .iter()
                .map(|(k, v)| (format!("epoch_{k}"), *v))
                .collect();
            let evaluation: Vec<(String, f64)> = val
                .iter()
                .map(|(k, v)| (format!("evaluation_{k}_vs_iterations"), *v))
                .collect();
            let w = self.writer(true)?;
            w.scalars(step, &epoch_tags)?;
            w.scalars(iterations, &evaluation)?;
            w.flush()?;
        }
        if self.histogram_freq > 0 && epoch.is_multiple_of(self.histogram_freq) {
            // Keras's tag: the weight's path (`dense/kernel`) plus `/histogram`.
            let summary: Vec<u8> = model
                .named_weights()
                .into_iter()
                .flat_map(|(path, w)| {
                    histogram_value(&format!("{path}/histogram"), w.value().data())
                })
                .collect();
            self.writer(false)?.event(step, &summary)?;
        }
        if let Some(w) = self.train.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, _model: &mut Model) -> Result<()> {
        for w in [self.train.as_mut(), self.validation.as_mut()]
            .into_iter()
            .flatten()
        {
            w.flush()?;
        }
        Ok(())
    }
}

/// One event file.
struct EventWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// Creates `dir` and a new event file in it, named as TensorFlow names them
    /// (`events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2`: TensorBoard only reads files with
    /// `tfevents` in the name), and writes the file-version record.
    fn create(dir: &Path) -> Result<EventWriter> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && !h.contains(['/', '\\']))
            .unwrap_or_else(|| "localhost".into());
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.{n}.v2",
            wall_time() as u64,
            std::process::id()
        ));
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        let mut w = EventWriter {
            path,
            file: std::io::BufWriter::new(file),
        };
        w.record(&encode_file_version_event(wall_time()))?;
        Ok(w)
    }

    /// An event with `summary` (an encoded `Summary`) at `step`.
    fn event(&mut self, step: i64, summary: &[u8]) -> Result<()> {
        self.record(&encode_event(wall_time(), step, summary))
    }

    /// One event holding every `(tag, value)` as a scalar.
    fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values {
            summary.extend(scalar_value(tag, *v as f32));
        }
        self.event(step, &summary)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let framed = tfrecord(data);
        self.file.write_all(&framed).map_err(|source| Error::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|source| Error::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant, so that a CRC of data
/// that itself holds CRCs stays well-distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Frames one record: length (u64 little-endian), its masked CRC, the data, the data's masked CRC.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// An encoded `Summary.Value { tag, simple_value }` inside its `Summary.value` field.
pub fn scalar_value(tag: &str, v: f32) -> Vec<u8> {
    let mut value = Vec::new();
    pb::bytes(&mut value, 1, tag.as_bytes());
    pb::fixed32(&mut value, 2, v.to_bits());
    let mut out = Vec::new();
    pb::bytes(&mut out, 1, &value);
    out
}

/// An encoded `HistogramProto` of `values`: 30 equal-width buckets over `[min, max]` (TensorFlow's
/// default count); `bucket_limit` holds each bucket's right edge.
pub fn histogram(values: &[f32]) -> Vec<u8> {
    const BUCKETS: usize = 30;
    let finite = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
    let (mut min, mut max, mut sum, mut sum_sq, mut num) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0, 0usize);
    for v in finite.clone() {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        sum_sq += v * v;
        num += 1;
    }
    if num == 0 {
        (min, max) = (0.0, 0.0);
    }
    let (limits, counts) = if max > min {
        let width = (max - min) / BUCKETS as f64;
        let mut counts = vec![0f64; BUCKETS];
        for v in finite {
            let k = (((v - min) / width) as usize).min(BUCKETS - 1);
            counts[k] += 1.0;
        }
        let limits = (1..=BUCKETS)
            .map(|k| {
                if k == BUCKETS {
                    max
                } else {
                    min + width * k as f64
                }
            })
            .collect();
        (limits, counts)
    } else {
        (vec![max], vec![num as f64])
    };
    let mut h = Vec::new();
    pb::double(&mut h, 1, min);
    pb::double(&mut h, 2, max);
    pb::double(&mut h, 3, num as f64);
    pb::double(&mut h, 4, sum);
    pb::double(&mut h, 5, sum_sq);
    pb::packed_doubles(&mut h, 6, &limits);
    pb::packed_doubles(&mut h, 7, &counts);
    h
}

/// The protocol-buffer wire format, only what events need.
mod pb {
    pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, ((field as u64) << 3) | wire as u64);
    }
    pub(super) fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 0);
        varint(out, v);
    }
    pub(super) fn double(out: &mut Vec<u8>, field: u32, v: f64) {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn fixed32(out: &mut Vec<u8>, field: u32, bits: u32) {
        key(out, field, 5);
        out.extend_from_slice(&bits.to_le_bytes());
    }
    pub(super) fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    pub(super) fn packed_doubles(out: &mut Vec<u8>, field: u32, vs: &[f64]) {
        key(out, field, 2);
        varint(out, vs.len() as u64 * 8);
        for v in vs {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Encodes an `Event { wall_time, step, summary }` (`summary`: encoded `Summary.value` fields, as
/// [`scalar_value`] and [`histogram_value`] make them).
pub fn encode_event(wall_time: f64, step: i64, summary: &[u8]) -> Vec<u8> {
    let mut event = Vec::new();
    pb::double(&mut event, 1, wall_time);
    pb::varint_field(&mut event, 2, step as u64);
    pb::bytes(&mut event, 5, summary);
    event
}

/// The first event of every file: `Event { wall_time, file_version: "brain.Event:2" }`.
pub fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Vec::new();
    pb::double(&mut event, 1, wall_time);
    pb::bytes(&mut event, 3, b"brain.Event:2");
    event
}

/// A histogram summary value, `Summary.Value { tag, histo }` inside `Summary.value`.
pub fn histogram_value(tag: &str, values: &[f32]) -> Vec<u8> {
    let mut value = Vec::new();
    pb::bytes(&mut value, 1, tag.as_bytes());
    pb::bytes(&mut value, 5, &histogram(values));
    let mut out = Vec::new();
    pb::bytes(&mut out, 1, &value);
    out
}
