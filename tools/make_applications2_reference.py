"""Ground truth for frostnet's EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt applications:
what real Keras 3 prints and counts (weights=None), written to
crates/frostnet/tests/fixtures/applications/.

Run with the system python3 (Keras 3.15.1, TensorFlow backend): `python3
tools/make_applications2_reference.py [case ...]`. Not run by the tests: they read the files it wrote.
As `tools/keras_applications_reference.py` does for the older applications, each model is built after
`keras.backend.clear_session()` (fresh default names) and summarised with `line_length=None` at a
wide terminal (`COLUMNS=250`), which gives Keras's canonical column widths. Summaries are gzip'd
(`<case>_summary.txt.gz`, mtime 0 so reruns are byte-stable); counts and layer names go to
`applications2_reference.json`.
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
NOTOP = {"include_top": False, "pooling": "avg"}

CASES = {
    # name: (constructor, kwargs)
    **{f"efficientnet_b{i}": (getattr(A, f"EfficientNetB{i}"), {}) for i in range(8)},
    "efficientnet_b0_notop": (A.EfficientNetB0, NOTOP),
    "efficientnet_b3_notop_max_64": (A.EfficientNetB3, {"include_top": False, "pooling": "max",
                                                         "input_shape": (64, 64, 3)}),
    **{f"efficientnet_v2_b{i}": (getattr(A, f"EfficientNetV2B{i}"), {}) for i in range(4)},
    "efficientnet_v2_s": (A.EfficientNetV2S, {}),
    "efficientnet_v2_b0_notop": (A.EfficientNetV2B0, NOTOP),
    "efficientnet_v2_s_notop_noprep": (A.EfficientNetV2S, {"include_top": False,
                                                           "include_preprocessing": False}),
    "mobilenet_v3_small": (A.MobileNetV3Small, {}),
    "mobilenet_v3_large": (A.MobileNetV3Large, {}),
    "mobilenet_v3_small_notop": (A.MobileNetV3Small, NOTOP),
    "mobilenet_v3_large_minimalistic_notop": (A.MobileNetV3Large, {
        "minimalistic": True, "include_top": False, "pooling": "max",
        "include_preprocessing": False}),
    "mobilenet_v3_small_075_minimalistic": (A.MobileNetV3Small, {"alpha": 0.75,
                                                                 "minimalistic": True}),
    "convnext_tiny": (A.ConvNeXtTiny, {}),
    "convnext_tiny_notop": (A.ConvNeXtTiny, NOTOP),
}


def count(weights):
    return int(sum(int(w.numpy().size) for w in weights))


def main(names):
    path = os.path.join(OUT, "applications2_reference.json")
    facts = {"keras_version": keras.__version__, "backend": keras.backend.backend(), "models": {}}
    if names and os.path.exists(path):
        with open(path) as f:
            facts = json.load(f)
    for name in names or CASES:
        ctor, kwargs = CASES[name]
        keras.backend.clear_session()
        model = ctor(weights=None, **kwargs)
        buf = io.StringIO()
        with redirect_stdout(buf):
            model.summary(line_length=None)
        with open(os.path.join(OUT, f"{name}_summary.txt.gz"), "wb") as f:
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
                g.write(buf.getvalue().encode())
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
            # Keras ops called on symbolic tensors (`x + 3.0` in MobileNetV3's hard_sigmoid,
            # ConvNeXt's residual `inputs + x`) are graph nodes the summary prints but
            # `model.layers` leaves out; `model.operations` has both.
            "operation_names": [op.name for op in model.operations],
        }
        print(name, facts["models"][name]["total"], file=sys.stderr)
    with open(path, "w") as f:
        json.dump(facts, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
