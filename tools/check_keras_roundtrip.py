"""Checks that real Keras 3 loads the `.keras` files frostnet writes and computes what frostnet does.

Runs the ignored test `write_keras_roundtrip_files` (crates/frostnet/tests/keras_files.rs), which
writes, for the three fixture CNNs re-saved by frostnet, the Functional one with its conv layer
frozen, and a model with most of frostnet's layer classes: `<name>.keras`, frostnet's prediction
on `cnn_input.npy` as `<name>_frostnet.npy`, and its trainable / non-trainable counts. Then loads
each file with `keras.saving.load_model`, predicts, and prints the max abs difference and whether
Keras sees the same trainable / non-trainable counts. Finally trains each fixture `.keras` (which
holds Adam's state after one step) for one more step in Keras and in frostnet, and compares the
predictions: this checks that frostnet restores Keras's optimizer state.

Run with a Python that has keras 3 (TensorFlow backend), from the repository root:
`bench/.venv/bin/python tools/check_keras_roundtrip.py [out_dir]`. Not run by the tests.
Exits non-zero if any difference exceeds 1e-5 or any count differs.
"""

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "crates", "frostnet", "tests", "fixtures")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="frostnet-keras-")
    env = dict(os.environ, FROSTNET_KERAS_OUT=out)
    env.setdefault("CARGO_TARGET_DIR", "/work/target-files")
    subprocess.run(
        ["cargo", "test", "-q", "-p", "frostnet", "--test", "keras_files",
         "write_keras_roundtrip_files", "--", "--ignored"],
        cwd=ROOT, env=env, check=True)
    x = np.load(os.path.join(FIXTURES, "cnn_input.npy"))
    with open(os.path.join(out, "counts.json")) as f:
        counts = json.load(f)
    ok = True
    for name, (trainable, frozen) in counts.items():
        model = keras.saving.load_model(os.path.join(out, f"{name}.keras"))
        y = model.predict(x, verbose=0)
        want = np.load(os.path.join(out, f"{name}_frostnet.npy"))
        diff = float(np.max(np.abs(y - want)))
        k_t = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        k_n = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        same = (k_t, k_n) == (trainable, frozen)
        print(f"{name:24s} max abs diff {diff:.3e}   trainable/non-trainable "
              f"keras {k_t}/{k_n} frostnet {trainable}/{frozen} {'ok' if same else 'DIFFER'}")
        ok = ok and diff <= 1e-5 and same
    # The fixture archives carry Adam's state after one step: one more step in Keras and in
    # frostnet (which restored that state) must agree.
    y = np.array([[1, 0, 0], [0, 0, 1]], dtype="float32")
    for kind in ["cnn_seq", "cnn_func", "cnn_nested"]:
        model = keras.saving.load_model(os.path.join(FIXTURES, f"{kind}.keras"))
        model.train_on_batch(x, y)
        want = np.load(os.path.join(out, f"{kind}_after_step_frostnet.npy"))
        diff = float(np.max(np.abs(model.predict(x, verbose=0) - want)))
        print(f"{kind + ' +1 Adam step':24s} max abs diff {diff:.3e}")
        ok = ok and diff <= 1e-5
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
