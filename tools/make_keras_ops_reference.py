"""Ground truth for Keras 3 op nodes (issue #14): graphs whose nodes are calls of `keras.ops` or
tensor operators on symbolic tensors (`x + 3.0`, `3.0 - x`, `x / 2`, `x * y`, `ops.mean(x, axis)`),
written by Keras as layers of module `keras.src.ops.numpy` with their constants in the node's
`inbound_nodes[0].args`. Output goes to crates/frostnet/tests/fixtures/keras_ops/.

Run with the system python3 (Keras 3.15.1, TensorFlow backend), from anywhere:
`python3 tools/make_keras_ops_reference.py`. Not run by the tests: they compare against the
files it wrote.

* Applications: `MobileNetV3Small`, `MobileNetV3Large`, `ConvNeXtTiny` with `weights=None`, each
  saved as `.keras` and loaded back by Keras. Only the config (`<app>.config.json.gz`, the
  `config.json` of the archive) and the loaded model's `summary(line_length=None)` at a wide
  terminal (`<app>_summary.txt.gz`) are kept, not the weights. `op_nodes.json` lists, per
  application, the (module, class_name, registered_name) of every op node and how many.
* Small models (a few KB each, seeded): `mnv3_block` (a MobileNetV3 block with the hard sigmoid
  written as `ReLU(6)(x + 3.0) * (1 / 6)` and the hard swish as the op `x * hard_sigmoid(x)`),
  `convnext_block` (depthwise conv, LayerNormalization, MLP, LayerScale and the residual
  `inputs + x`), `scalar_ops` (`3.0 - x`, `x / 2`, `x - 1.5`, `2.0 * x`, `ops.divide(x, 4.0)`,
  the broadcasting `x * g` with g of shape (None, 1, 1, C), `ops.mean(x, [1, 2], keepdims=True)`,
  `ops.mean(x, -1)`), `more_ops` (`ops.maximum(x, 0.0)`, `ops.minimum(0.5, x)`, `x ** 2`,
  `2.0 ** x`, `-x`, `ops.sum`, `ops.square`, `ops.sqrt`, `ops.abs` / `abs(x)`, `ops.exp`). Each is saved as `<name>.keras` with `<name>.npz`: x, y, pred (Keras's
  prediction), loss and after_i (the i-th of `model.get_weights()` after one SGD(0.1) step on the
  mean squared error), its summary `<name>_summary.txt` and its `config.json` as
  `<name>.config.json`.

`--apps DIR` saves the three applications with their (random, seeded) weights as `<app>.keras`
in DIR (with `classifier_activation=None`: logits), with `<app>_x.npy` (two images) and
`<app>_pred.npy` (Keras's prediction): tens of MB, not
checked in; the ignored test `keras_saved_applications_predict_as_keras` reads them
(FROSTNET_KERAS_APPS_DIR=DIR).

`--check DIR` loads every `<name>.keras` in DIR (written by frostnet: the ignored test
`write_files_for_keras` of crates/frostnet/tests/keras_op_nodes.rs with FROSTNET_OPS_OUT=DIR), and
prints Keras's max abs prediction error against the fixture's `pred`; exits non-zero above 1e-5.
"""

import collections
import gzip
import io
import json
import os
import sys
import tempfile
import zipfile
from contextlib import redirect_stdout

os.environ.setdefault("COLUMNS", "250")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "frostnet",
                   "tests", "fixtures", "keras_ops")

APPS = {
    "mobilenet_v3_small": keras.applications.MobileNetV3Small,
    "mobilenet_v3_large": keras.applications.MobileNetV3Large,
    "convnext_tiny": keras.applications.ConvNeXtTiny,
}


def write_gz(path, text):
    """gzip with mtime=0 and no file name: the same bytes on every run."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(text.encode())


def summary_text(model):
    buf = io.StringIO()
    with redirect_stdout(buf):
        model.summary(line_length=None)
    return buf.getvalue()


def op_nodes(config):
    """(module, class_name, registered_name) -> count for every node not from keras.layers."""
    seen = collections.Counter()
    for layer in config["config"]["layers"]:
        if layer.get("module", "").startswith("keras.src.ops"):
            seen[(layer["module"], layer["class_name"], layer.get("registered_name"))] += 1
    return seen


def applications():
    listing = {}
    tmp = tempfile.mkdtemp(prefix="keras-ops-")
    for name, ctor in APPS.items():
        keras.backend.clear_session()
        model = ctor(weights=None)
        path = os.path.join(tmp, f"{name}.keras")
        model.save(path)
        with zipfile.ZipFile(path) as z:
            config_text = z.read("config.json").decode()
        write_gz(os.path.join(OUT, f"{name}.config.json.gz"), config_text)
        loaded = keras.saving.load_model(path)
        text = summary_text(loaded)
        assert text == summary_text(model), f"{name}: the loaded model prints differently"
        write_gz(os.path.join(OUT, f"{name}_summary.txt.gz"), text)
        listing[name] = [
            {"module": m, "class_name": c, "registered_name": r, "count": n}
            for (m, c, r), n in sorted(op_nodes(json.loads(config_text)).items())
        ]
        os.remove(path)
        print(name, listing[name], file=sys.stderr)
    with open(os.path.join(OUT, "op_nodes.json"), "w") as f:
        json.dump(listing, f, indent=1)
        f.write("\n")


def hard_sigmoid(x):
    return layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def mnv3_block():
    inputs = keras.Input((6, 6, 4), name="image")
    x = layers.Conv2D(8, 1, use_bias=False, name="expand")(inputs)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name="expand_bn")(x)
    x = x * hard_sigmoid(x)  # hard swish, as an op node
    s = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    s = layers.Conv2D(4, 1, name="se_reduce")(s)
    s = layers.ReLU(name="se_relu")(s)
    s = layers.Conv2D(8, 1, name="se_expand")(s)
    s = hard_sigmoid(s)
    x = layers.Multiply(name="se_mul")([x, s])
    x = layers.Conv2D(4, 1, name="project")(x)
    x = layers.Add(name="residual")([inputs, x])
    x = layers.Flatten(name="flat")(x)
    y = layers.Dense(3, name="head")(x)
    return keras.Model(inputs, y, name="mnv3_block")


def convnext_block():
    from keras.src.applications.convnext import LayerScale

    inputs = keras.Input((5, 5, 8), name="image")
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    x = layers.LayerNormalization(epsilon=1e-6, name="ln")(x)
    x = layers.Dense(16, name="pw1")(x)
    x = layers.Activation("gelu", name="gelu")(x)
    x = layers.Dense(8, name="pw2")(x)
    x = LayerScale(0.5, 8, name="layer_scale")(x)
    x = inputs + x
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    y = layers.Dense(3, name="head")(x)
    return keras.Model(inputs, y, name="convnext_block")


def scalar_ops():
    inputs = keras.Input((4, 4, 3), name="image")
    h = layers.Conv2D(3, 1, name="conv")(inputs)
    g = layers.GlobalAveragePooling2D(name="pool")(h)
    g = layers.Dense(3, name="gate")(g)
    g = layers.Reshape((1, 1, 3), name="gate_shape")(g)
    a = 3.0 - h
    b = h / 2
    c = h * g
    d = ops.mean(h, axis=[1, 2], keepdims=True)
    e = a + b + c + d
    f = h - 1.5
    k = 2.0 * h
    m = ops.divide(h, 4.0)
    n = ops.mean(e * f + k + m, axis=-1)
    x = layers.Flatten(name="flat")(n)
    y = layers.Dense(2, name="head")(x)
    return keras.Model(inputs, y, name="scalar_ops")


def more_ops():
    inputs = keras.Input((3, 3, 2), name="image")
    h = layers.Conv2D(2, 1, name="conv")(inputs)
    t = ops.maximum(h, 0.0) + ops.minimum(0.5, h)
    t = t + h**2 + 2.0**h + (-h)
    t = t + ops.sum(h, axis=[1, 2], keepdims=True) + ops.square(h)
    t = t + ops.sqrt(ops.abs(h) + 0.5) + ops.exp(h * 0.5) + abs(h)
    x = layers.Flatten(name="flat")(t)
    y = layers.Dense(2, name="head")(x)
    return keras.Model(inputs, y, name="more_ops")


SMALL = {"mnv3_block": mnv3_block, "convnext_block": convnext_block, "scalar_ops": scalar_ops,
         "more_ops": more_ops}


def small_models():
    for i, (name, make) in enumerate(SMALL.items()):
        keras.backend.clear_session()
        keras.utils.set_random_seed(20 + i)
        rng = np.random.default_rng(20 + i)
        model = make()
        x = rng.uniform(-1, 1, size=(4, *model.input_shape[1:])).astype("float32")
        pred = model.predict(x, verbose=0)
        y = rng.uniform(-1, 1, size=pred.shape).astype("float32")
        model.save(os.path.join(OUT, f"{name}.keras"))
        with zipfile.ZipFile(os.path.join(OUT, f"{name}.keras")) as z:
            with open(os.path.join(OUT, f"{name}.config.json"), "wb") as f:
                f.write(z.read("config.json"))
        with open(os.path.join(OUT, f"{name}_summary.txt"), "w") as f:
            f.write(summary_text(model))
        arrays = {"x": x, "y": y, "pred": pred}
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        arrays["loss"] = np.array([model.train_on_batch(x, y)], dtype="float32")
        for j, w in enumerate(model.get_weights()):
            arrays[f"after_{j}"] = np.asarray(w).astype("float32")
        np.savez(os.path.join(OUT, f"{name}.npz"), **arrays)
        print(name, file=sys.stderr)


def check(directory):
    worst = 0.0
    for name in SMALL:
        path = os.path.join(directory, f"{name}.keras")
        a = np.load(os.path.join(OUT, f"{name}.npz"))
        model = keras.saving.load_model(path)
        err = float(np.abs(model.predict(a["x"], verbose=0) - a["pred"]).max())
        kinds = sorted({type(op).__name__ for op in model._operations})
        print(f"{path}: max abs error {err:.2e}; operations {kinds}")
        worst = max(worst, err)
    sys.exit(0 if worst < 1e-5 else 1)


def calibrate_batch_norms(model, x):
    """With Keras's initial moving statistics (mean 0, variance 1) a random MobileNetV3's signal
    dies out (logits ~1e-10), which would make a 1e-5 comparison meaningless: set each
    BatchNormalization's moving statistics, in graph order, to its input's statistics on x."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            probe = keras.Model(model.input, layer.input)
            h = probe.predict(x, verbose=0)
            gamma, beta, _, _ = layer.get_weights()
            axes = tuple(range(h.ndim - 1))
            layer.set_weights([gamma, beta, h.mean(axis=axes), h.var(axis=axes)])


def full_applications(directory):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(7)
    for i, (name, ctor) in enumerate(APPS.items()):
        keras.backend.clear_session()
        keras.utils.set_random_seed(30 + i)
        # Logits: with random weights MobileNetV3's softmax is uniform to float precision.
        model = ctor(weights=None, classifier_activation=None)
        x = rng.uniform(0, 255, size=(2, 224, 224, 3)).astype("float32")
        calibrate_batch_norms(model, x)
        model.save(os.path.join(directory, f"{name}.keras"))
        np.save(os.path.join(directory, f"{name}_x.npy"), x)
        np.save(os.path.join(directory, f"{name}_pred.npy"), model.predict(x, verbose=0))
        print(name, file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        check(sys.argv[2])
    elif sys.argv[1:2] == ["--apps"]:
        full_applications(sys.argv[2])
    else:
        os.makedirs(OUT, exist_ok=True)
        small_models()
        applications()
