#!/usr/bin/env python3
"""Ground truth for frostnet's TensorBoard writer, made by TensorFlow's own code.

Writes crates/frostnet/tests/fixtures/tensorboard/records.json: the bytes TensorFlow produces for
one TFRecord (tf.io.TFRecordWriter: length, masked CRC32C, data, masked CRC32C) and for the Event,
Summary and HistogramProto messages frostnet encodes by hand (TensorFlow's protobuf classes).

Run: python3 tools/tensorboard_fixtures.py   (needs tensorflow)
"""
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework.summary_pb2 import HistogramProto, Summary  # noqa: E402
from tensorflow.core.util.event_pb2 import Event  # noqa: E402

OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "tensorboard",
    "records.json",
)


def main():
    fixtures = {}
    payload = b"frostnet event payload"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.tfrecord")
        with tf.io.TFRecordWriter(path) as w:
            w.write(payload)
        with open(path, "rb") as f:
            fixtures["tfrecord"] = {"payload": payload.hex(), "framed": f.read().hex()}

    fixtures["file_version_event"] = {
        "wall_time": 1700000000.25,
        "bytes": Event(wall_time=1700000000.25, file_version="brain.Event:2")
        .SerializeToString()
        .hex(),
    }
    scalars = [("epoch_loss", 0.125), ("epoch_accuracy", 0.75), ("epoch_learning_rate", 0.001)]
    summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in scalars])
    fixtures["scalar_event"] = {
        "wall_time": 1700000001.5,
        "step": 7,
        "scalars": scalars,
        "bytes": Event(wall_time=1700000001.5, step=7, summary=summary).SerializeToString().hex(),
    }
    # A histogram of these values with 30 equal-width buckets over [min, max], right edges as
    # bucket_limit (the last is max), as frostnet computes it.
    values = [-1.0, 0.5, 0.0, 2.0, 0.25]
    lo, hi, n = min(values), max(values), 30
    width = (hi - lo) / n
    counts = [0.0] * n
    for v in values:
        counts[min(int((v - lo) / width), n - 1)] += 1.0
    limits = [hi if k == n else lo + width * k for k in range(1, n + 1)]
    histo = HistogramProto(
        min=lo,
        max=hi,
        num=float(len(values)),
        sum=sum(values),
        sum_squares=sum(v * v for v in values),
        bucket_limit=limits,
        bucket=counts,
    )
    fixtures["histogram_summary"] = {
        "tag": "dense/kernel/histogram",
        "values": values,
        "bytes": Summary(value=[Summary.Value(tag="dense/kernel/histogram", histo=histo)])
        .SerializeToString()
        .hex(),
    }
    fixtures["generated_by"] = f"tensorflow {tf.__version__}"
    with open(OUT, "w") as f:
        json.dump(fixtures, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
