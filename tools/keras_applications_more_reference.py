"""Ground truth for the rest of frostnet's `applications` (ResNet101/152, ResNet V2, Xception,
DenseNet, MobileNet, InceptionResNetV2, NASNetMobile): what real Keras 3 prints and counts,
written to crates/frostnet/tests/fixtures/applications/.

Run with the system python3 (Keras 3.15.1, TensorFlow backend):
`python3 tools/keras_applications_more_reference.py [CASE ...]` (or `--layer` for the
`CustomScaleLayer` fixture below). Not run by the tests: they compare
against the files it wrote. As in `keras_applications_reference.py` (which made the ResNet50 and
InceptionV3 fixtures), each model is built with `weights=None` after `keras.backend.clear_session()`,
so default names are those of a fresh session, and printed with `summary(line_length=None)` at a
wide terminal (`COLUMNS=250`), which gives Keras's canonical column widths. Summaries are gzip'd
(`<case>_summary.txt.gz`); the counts, names and shapes go to `reference.json.gz`.

`--layer` writes `custom_scale_layer.keras` (a small model around InceptionResNetV2's
`CustomScaleLayer`, saved by Keras) and `custom_scale_layer.npz`: x, y, pred (Keras's prediction),
and after_i (the i-th of `model.get_weights()` after one SGD(0.1) step on the mean squared error),
loss (that step's loss), as `make_layers_reference.py` writes for the other layers.
`--check FILE` loads a `.keras` file frostnet wrote with Keras and prints its prediction error on
the fixture input.
"""

import gzip
import io
import json
import os
import sys
from contextlib import redirect_stdout

os.environ.setdefault("COLUMNS", "250")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

A = keras.applications
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures",
                   "applications")
NOTOP_AVG = {"include_top": False, "pooling": "avg"}
NOTOP_MAX = {"include_top": False, "pooling": "max"}

CASES = {
    # name: (constructor, kwargs)
    "resnet101": (A.ResNet101, {}),
    "resnet101_notop": (A.ResNet101, NOTOP_AVG),
    "resnet152": (A.ResNet152, {}),
    "resnet152_notop": (A.ResNet152, NOTOP_MAX),
    "resnet50_v2": (A.ResNet50V2, {}),
    "resnet50_v2_notop": (A.ResNet50V2, NOTOP_AVG),
    "resnet101_v2": (A.ResNet101V2, {}),
    "resnet101_v2_notop": (A.ResNet101V2, NOTOP_MAX),
    "resnet152_v2": (A.ResNet152V2, {}),
    "resnet152_v2_notop": (A.ResNet152V2, NOTOP_AVG),
    "resnet50_v2_small_nopool": (A.ResNet50V2, {"include_top": False, "input_shape": (64, 48, 3)}),
    "xception": (A.Xception, {}),
    "xception_notop": (A.Xception, NOTOP_AVG),
    "xception_small_nopool": (A.Xception, {"include_top": False, "input_shape": (71, 80, 3)}),
    "densenet121": (A.DenseNet121, {}),
    "densenet121_notop": (A.DenseNet121, NOTOP_AVG),
    "densenet169": (A.DenseNet169, {}),
    "densenet169_notop": (A.DenseNet169, NOTOP_MAX),
    "densenet201": (A.DenseNet201, {}),
    "densenet201_notop": (A.DenseNet201, NOTOP_AVG),
    "mobilenet": (A.MobileNet, {}),
    "mobilenet_notop": (A.MobileNet, NOTOP_AVG),
    "mobilenet_alpha050_128": (A.MobileNet, {"alpha": 0.5, "input_shape": (128, 128, 3),
                                             "classes": 10}),
    "mobilenet_alpha075_notop_max": (A.MobileNet, {"alpha": 0.75, **NOTOP_MAX}),
    "mobilenet_alpha025_nopool": (A.MobileNet, {"alpha": 0.25, "include_top": False,
                                                "input_shape": (33, 40, 3)}),
    "inception_resnet_v2": (A.InceptionResNetV2, {}),
    "inception_resnet_v2_notop": (A.InceptionResNetV2, NOTOP_AVG),
    "nasnet_mobile": (A.NASNetMobile, {}),
    "nasnet_mobile_notop": (A.NASNetMobile, NOTOP_AVG),
}


def count(weights):
    return int(sum(int(w.numpy().size) for w in weights))


def write_gz(path, text):
    """gzip with mtime=0 and no file name: the same bytes on every run."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(text.encode())


def main(names):
    path = os.path.join(OUT, "reference.json.gz")
    facts = {"keras_version": keras.__version__, "backend": keras.backend.backend(), "models": {}}
    if names and os.path.exists(path):
        with gzip.open(path, "rt") as f:
            facts["models"] = json.load(f)["models"]
    for name in names or CASES:
        ctor, kwargs = CASES[name]
        keras.backend.clear_session()
        model = ctor(weights=None, **kwargs)
        buf = io.StringIO()
        with redirect_stdout(buf):
            model.summary(line_length=None)
        write_gz(os.path.join(OUT, f"{name}_summary.txt.gz"), buf.getvalue())
        layer_types = {}
        for layer in model.layers:
            layer_types[type(layer).__name__] = layer_types.get(type(layer).__name__, 0) + 1
        facts["models"][name] = {
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "model_name": model.name,
            "total": count(model.weights),
            "trainable": count(model.trainable_weights),
            "non_trainable": count(model.non_trainable_weights),
            "n_layers": len(model.layers),
            "layer_type_counts": layer_types,
            "input_shape": list(model.input_shape),
            "output_shape": list(model.output_shape),
            "layer_names": [layer.name for layer in model.layers],
        }
        print(name, facts["models"][name]["total"], file=sys.stderr)
    write_gz(path, json.dumps(facts, indent=1))


def custom_scale_model():
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    x = keras.Input((4, 4, 3), name="image")
    r = keras.layers.Conv2D(3, 1, name="conv")(x)
    y = CustomScaleLayer(0.17, name="scale")([x, r])
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(2, name="head")(y)
    return keras.Model(x, y, name="custom_scale")


def layer_fixture():
    import numpy as np

    keras.utils.set_random_seed(14)
    rng = np.random.default_rng(14)
    model = custom_scale_model()
    x = rng.uniform(-1, 1, size=(5, 4, 4, 3)).astype("float32")
    pred = model.predict(x, verbose=0)
    y = rng.uniform(-1, 1, size=pred.shape).astype("float32")
    model.save(os.path.join(OUT, "custom_scale_layer.keras"))
    arrays = {"x": x, "y": y, "pred": pred}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    arrays["loss"] = np.array([model.train_on_batch(x, y)], dtype="float32")
    for i, w in enumerate(model.get_weights()):
        arrays[f"after_{i}"] = np.asarray(w).astype("float32")
    np.savez(os.path.join(OUT, "custom_scale_layer.npz"), **arrays)


def check(path):
    import numpy as np

    a = np.load(os.path.join(OUT, "custom_scale_layer.npz"))
    model = keras.models.load_model(path)
    err = float(np.abs(model.predict(a["x"], verbose=0) - a["pred"]).max())
    print(f"{path}: {type(model.layers[2]).__name__} scale={model.layers[2].scale}, "
          f"max abs error {err:.2e}")
    sys.exit(0 if err < 1e-5 else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--layer"]:
        layer_fixture()
    elif sys.argv[1:2] == ["--check"]:
        check(sys.argv[2])
    else:
        main(sys.argv[1:])
