#!/usr/bin/env python3
"""Reads frostnet's TensorBoard event files with TensorBoard's own reader and checks them.

Runs `cargo run --example tensorboard_digits -- DIR` (5 epochs on the bundled digits, 1,437
training samples in batches of 64: 23 steps per epoch; TensorBoard callback with update_freq=5 and
histogram_freq=1, a CsvLogger beside it), then loads DIR/train and DIR/validation with
tensorboard's EventAccumulator (which verifies the TFRecord checksums) and asserts:
- Keras's tags: epoch_loss, epoch_accuracy, epoch_learning_rate in train/; epoch_loss,
  epoch_accuracy, evaluation_*_vs_iterations in validation/; batch_loss, batch_accuracy every 5th
  global batch; dense/kernel/histogram ... per epoch;
- steps 0..4 for the epoch scalars, 23, 46, ... for evaluation_*_vs_iterations;
- values equal to the CSV's (as float32).

Run: pip install tensorboard; python3 tools/check_tensorboard.py [DIR]
"""
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load(run_dir):
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def main():
    log_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="frostnet_tb_")
    subprocess.run(
        ["cargo", "run", "-q", "-p", "frostnet", "--all-features", "--example", "tensorboard_digits", "--", log_dir],
        cwd=ROOT,
        check=True,
    )
    with open(os.path.join(log_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    epochs = len(rows)
    steps_per_epoch = 23
    train, val = load(os.path.join(log_dir, "train")), load(os.path.join(log_dir, "validation"))
    t_tags, v_tags = train.Tags(), val.Tags()
    assert set(t_tags["scalars"]) == {
        "epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss", "batch_accuracy",
    }, t_tags["scalars"]
    assert set(v_tags["scalars"]) == {
        "epoch_loss", "epoch_accuracy",
        "evaluation_loss_vs_iterations", "evaluation_accuracy_vs_iterations",
    }, v_tags["scalars"]
    assert set(t_tags["histograms"]) == {
        "dense/kernel/histogram", "dense/bias/histogram",
        "dense_1/kernel/histogram", "dense_1/bias/histogram",
    }, t_tags["histograms"]

    def check(acc, tag, column, steps):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == steps, (tag, [e.step for e in events])
        want = [np.float32(float(r[column])) for r in rows]
        got = [np.float32(e.value) for e in events]
        assert got == want, (tag, got, want)

    epoch_steps = list(range(epochs))
    check(train, "epoch_loss", "loss", epoch_steps)
    check(train, "epoch_accuracy", "accuracy", epoch_steps)
    check(val, "epoch_loss", "val_loss", epoch_steps)
    check(val, "epoch_accuracy", "val_accuracy", epoch_steps)
    iters = [steps_per_epoch * (e + 1) for e in range(epochs)]
    check(val, "evaluation_loss_vs_iterations", "val_loss", iters)
    lr = [e.value for e in train.Scalars("epoch_learning_rate")]
    assert lr == [np.float32(0.001)] * epochs, lr
    batch_steps = [e.step for e in train.Scalars("batch_loss")]
    assert batch_steps == list(range(5, steps_per_epoch * epochs + 1, 5)), batch_steps
    for h in t_tags["histograms"]:
        hs = train.Histograms(h)
        assert [e.step for e in hs] == epoch_steps, (h, [e.step for e in hs])
        assert all(e.histogram_value.num > 0 for e in hs)
    print(
        f"ok: {log_dir}: {len(t_tags['scalars'])} train and {len(v_tags['scalars'])} validation "
        f"scalar tags, {len(t_tags['histograms'])} histogram tags, {epochs} epochs, values equal "
        "to the CSV"
    )


if __name__ == "__main__":
    main()
