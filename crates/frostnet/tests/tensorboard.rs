//! The TensorBoard callback's files: the framing and messages byte-identical to TensorFlow's
//! (fixtures from `tools/tensorboard_fixtures.py`), and a real `fit` read back record by record —
//! length, masked CRC32C, Event protobuf — against the History it returned.

use frostnet::datasets::load_digits;
use frostnet::layers::{ActivationFn, Dense, Input};
use frostnet::training::tensorboard::{
    encode_event, encode_file_version_event, histogram_value, scalar_value, tfrecord,
};
use frostnet::training::{Adam, FitOptions, Loss, Metric, TensorBoard, UpdateFreq};
use frostnet::Sequential;
use std::collections::BTreeMap;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fixtures() -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/tensorboard/records.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn records_and_messages_are_byte_identical_to_tensorflows() {
    let f = fixtures();
    let payload = hex(f["tfrecord"]["payload"].as_str().unwrap());
    assert_eq!(
        tfrecord(&payload),
        hex(f["tfrecord"]["framed"].as_str().unwrap())
    );

    let e = &f["file_version_event"];
    assert_eq!(
        encode_file_version_event(e["wall_time"].as_f64().unwrap()),
        hex(e["bytes"].as_str().unwrap())
    );

    let e = &f["scalar_event"];
    let summary: Vec<u8> = e["scalars"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| scalar_value(p[0].as_str().unwrap(), p[1].as_f64().unwrap() as f32))
        .collect();
    assert_eq!(
        encode_event(
            e["wall_time"].as_f64().unwrap(),
            e["step"].as_i64().unwrap(),
            &summary
        ),
        hex(e["bytes"].as_str().unwrap())
    );

    let h = &f["histogram_summary"];
    let values: Vec<f32> = h["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        histogram_value(h["tag"].as_str().unwrap(), &values),
        hex(h["bytes"].as_str().unwrap())
    );
}

/// TFRecord's mask, written from the format's definition (independently of the library's).
#[allow(clippy::manual_rotate)] // spelled out as TensorFlow's crc32c.h states it
fn masked(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282ead8)
}

/// Splits a file into records, checking every length and both checksums.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert!(bytes.len() - at >= 12, "truncated header at {at}");
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(len_crc, masked(len_bytes), "length CRC at {at}");
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(data), "data CRC at {at}");
        out.push(data.to_vec());
        at += 16 + len;
    }
    out
}

/// A protobuf field's value.
#[derive(Clone, Debug)]
enum Field {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(Vec<u8>),
    Fixed32([u8; 4]),
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

/// Decodes a message into its fields by number, in order.
fn message(b: &[u8]) -> Vec<(u64, Field)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at);
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Field::Varint(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Fixed64(b[at - 8..at].try_into().unwrap())
            }
            2 => {
                let n = varint(b, &mut at) as usize;
                at += n;
                Field::Bytes(b[at - n..at].to_vec())
            }
            5 => {
                at += 4;
                Field::Fixed32(b[at - 4..at].try_into().unwrap())
            }
            w => panic!("wire type {w}"),
        };
        out.push((field, value));
    }
    assert_eq!(at, b.len());
    out
}

fn get(m: &[(u64, Field)], n: u64) -> Option<&Field> {
    m.iter().find(|(f, _)| *f == n).map(|(_, v)| v)
}
fn double(f: &Field) -> f64 {
    match f {
        Field::Fixed64(b) => f64::from_le_bytes(*b),
        other => panic!("not a double: {other:?}"),
    }
}
fn bytes(f: &Field) -> &[u8] {
    match f {
        Field::Bytes(b) => b,
        other => panic!("not bytes: {other:?}"),
    }
}

/// A decoded event: step and, per tag, a scalar or a histogram's fields.
#[derive(Debug)]
struct Event {
    step: i64,
    scalars: BTreeMap<String, f32>,
    histos: BTreeMap<String, Vec<(u64, Field)>>,
    file_version: Option<String>,
}

fn event(data: &[u8]) -> Event {
    let m = message(data);
    assert!(double(get(&m, 1).expect("wall_time")) > 1.6e9);
    let step = match get(&m, 2) {
        Some(Field::Varint(v)) => *v as i64,
        None => 0,
        other => panic!("step {other:?}"),
    };
    let mut e = Event {
        step,
        scalars: BTreeMap::new(),
        histos: BTreeMap::new(),
        file_version: get(&m, 3).map(|f| String::from_utf8(bytes(f).to_vec()).unwrap()),
    };
    if let Some(summary) = get(&m, 5) {
        for (n, value) in message(bytes(summary)) {
            assert_eq!(n, 1, "Summary has only `value` fields");
            let v = message(bytes(&value));
            let tag = String::from_utf8(bytes(get(&v, 1).unwrap()).to_vec()).unwrap();
            match (get(&v, 2), get(&v, 5)) {
                (Some(Field::Fixed32(b)), None) => {
                    e.scalars.insert(tag, f32::from_le_bytes(*b));
                }
                (None, Some(h)) => {
                    e.histos.insert(tag, message(bytes(h)));
                }
                other => panic!("value {tag}: {other:?}"),
            }
        }
    }
    e
}

/// The events of the one event file in `dir`.
fn run(dir: &std::path::Path) -> Vec<Event> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let events: Vec<Event> = records(&std::fs::read(&files[0]).unwrap())
        .iter()
        .map(|r| event(r))
        .collect();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert!(events[1..].iter().all(|e| e.file_version.is_none()));
    events
}

/// Every value of `tag` by step.
fn series(events: &[Event], tag: &str) -> Vec<(i64, f32)> {
    events
        .iter()
        .filter_map(|e| e.scalars.get(tag).map(|v| (e.step, *v)))
        .collect()
}

#[test]
fn fit_writes_keras_runs_tags_and_steps_that_match_the_history() {
    let digits = load_digits().unwrap();
    let ((x, y), _) = digits.split(400);
    let x = x.reshape(&[400, 64]).unwrap();
    let mut model = Sequential::new();
    model.add(Input::new(&[64])).unwrap();
    model
        .add(Dense::new(16).activation(ActivationFn::Relu))
        .unwrap();
    model
        .add(Dense::new(10).activation(ActivationFn::Softmax))
        .unwrap();
    model.compile(
        Adam::default(),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let dir = std::env::temp_dir().join(format!("frostnet_tb_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let epochs = 3;
    let history = model
        .fit(
            &x,
            &y,
            FitOptions {
                epochs,
                batch_size: 50,
                validation_split: 0.25, // 300 training samples: 6 batches per epoch
                seed: Some(3),
                verbose: 0,
                callbacks: vec![Box::new(
                    TensorBoard::new(&dir)
                        .update_freq(UpdateFreq::Batches(2))
                        .histogram_freq(2),
                )],
                ..Default::default()
            },
        )
        .unwrap();
    let mut runs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    runs.sort();
    assert_eq!(runs, ["train", "validation"]);
    let train = run(&dir.join("train"));
    let val = run(&dir.join("validation"));
    let h = |k: &str| -> Vec<(i64, f32)> {
        history
            .get(k)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(e, v)| (e as i64, *v as f32))
            .collect()
    };
    // Per epoch, step = epoch: train gets the names without val_, validation the val_ ones
    // under the same tags.
    assert_eq!(series(&train, "epoch_loss"), h("loss"));
    assert_eq!(series(&train, "epoch_accuracy"), h("accuracy"));
    assert_eq!(series(&val, "epoch_loss"), h("val_loss"));
    assert_eq!(series(&val, "epoch_accuracy"), h("val_accuracy"));
    assert_eq!(
        series(&train, "epoch_learning_rate"),
        (0..epochs as i64)
            .map(|e| (e, 0.001f32))
            .collect::<Vec<_>>()
    );
    // evaluation_<name>_vs_iterations at the optimizer's iteration count: 6 steps per epoch.
    let at_iterations =
        |k: &str| -> Vec<(i64, f32)> { h(k).into_iter().map(|(e, v)| (6 * (e + 1), v)).collect() };
    assert_eq!(
        series(&val, "evaluation_loss_vs_iterations"),
        at_iterations("val_loss")
    );
    assert_eq!(
        series(&val, "evaluation_accuracy_vs_iterations"),
        at_iterations("val_accuracy")
    );
    // Batch scalars every 2nd global batch (1-based): 2, 4, ..., 18; the last batch of an epoch
    // carries the epoch's running mean, which is the epoch's value.
    let batch_loss = series(&train, "batch_loss");
    assert_eq!(
        batch_loss.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=9).map(|k| 2 * k).collect::<Vec<_>>()
    );
    for (e, v) in h("loss") {
        assert!(batch_loss.contains(&(6 * (e + 1), v)), "epoch {e}");
    }
    assert_eq!(series(&train, "batch_accuracy").len(), 9);
    // Histograms at epochs 0 and 2 of every weight, tagged by its path; the last one describes
    // the trained weights exactly.
    let histo_steps: Vec<i64> = train
        .iter()
        .filter(|e| !e.histos.is_empty())
        .map(|e| e.step)
        .collect();
    assert_eq!(histo_steps, [0, 2]);
    let last = train.iter().rev().find(|e| !e.histos.is_empty()).unwrap();
    let named = model.named_weights();
    assert_eq!(last.histos.keys().cloned().collect::<Vec<_>>(), {
        let mut t: Vec<String> = named
            .iter()
            .map(|(p, _)| format!("{p}/histogram"))
            .collect();
        t.sort();
        t
    });
    for (path, w) in &named {
        let hm = &last.histos[&format!("{path}/histogram")];
        let data = w.value().data();
        let min = data.iter().fold(f32::INFINITY, |a, &b| a.min(b)) as f64;
        let max = data.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        assert_eq!(double(get(hm, 1).unwrap()), min, "{path} min");
        assert_eq!(double(get(hm, 2).unwrap()), max, "{path} max");
        assert_eq!(double(get(hm, 3).unwrap()), data.len() as f64, "{path} num");
        let sum: f64 = data.iter().map(|&v| v as f64).sum();
        assert!((double(get(hm, 4).unwrap()) - sum).abs() < 1e-9 * (1.0 + sum.abs()));
        // Packed doubles: counts add up to num; limits ascend and end at max.
        let unpack = |f: &Field| -> Vec<f64> {
            bytes(f)
                .chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let limits = unpack(get(hm, 6).unwrap());
        let counts = unpack(get(hm, 7).unwrap());
        assert_eq!(limits.len(), counts.len());
        assert_eq!(counts.iter().sum::<f64>(), data.len() as f64, "{path}");
        assert!(limits.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*limits.last().unwrap(), max);
        // Each value counted in the bucket whose edges hold it.
        let mut want = vec![0f64; counts.len()];
        for &v in data {
            let k = limits
                .iter()
                .position(|&l| (v as f64) < l)
                .unwrap_or(counts.len() - 1);
            want[k] += 1.0;
        }
        if counts.len() > 1 {
            // Values exactly on an inner edge may fall on either side by rounding of the width.
            let moved: f64 = want.iter().zip(&counts).map(|(a, b)| (a - b).abs()).sum();
            assert!(moved <= 2.0, "{path}: {want:?} vs {counts:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
