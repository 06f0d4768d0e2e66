"""Ground truth for frostnet's `applications`: what real Keras 3 prints and counts for ResNet50,
MobileNetV2 and VGG16 (weights=None), written to crates/frostnet/tests/fixtures/.

Run with a Python that has keras (3.x, TensorFlow backend), e.g. `bench/.venv/bin/python
tools/keras_applications_reference.py`. Not run by the tests: the tests compare against the files
it wrote. Each model is built after `keras.backend.clear_session()`, so default names are those of
a fresh session, and summaries are printed at a wide terminal (Keras's canonical column widths).
"""

import io
import json
import os
import sys
from contextlib import redirect_stdout

os.environ.setdefault("COLUMNS", "250")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures")

CASES = {
    # name: (constructor, kwargs)
    "resnet50": (keras.applications.ResNet50, {}),
    "resnet50_notop": (keras.applications.ResNet50, {"include_top": False, "pooling": "avg"}),
    "mobilenet_v2": (keras.applications.MobileNetV2, {}),
    "mobilenet_v2_notop": (keras.applications.MobileNetV2, {"include_top": False, "pooling": "avg"}),
    "vgg16": (keras.applications.VGG16, {}),
    "vgg16_notop": (keras.applications.VGG16, {"include_top": False, "pooling": "avg"}),
}


def count(weights):
    return int(sum(int(w.numpy().size) for w in weights))


def main(names):
    facts = {"keras_version": keras.__version__, "backend": keras.backend.backend(), "models": {}}
    for name in names or CASES:
        ctor, kwargs = CASES[name]
        keras.backend.clear_session()
        model = ctor(weights=None, **kwargs)
        buf = io.StringIO()
        with redirect_stdout(buf):
            model.summary(line_length=None)
        with open(os.path.join(OUT, f"{name}_summary.txt"), "w") as f:
            f.write(buf.getvalue())
        layer_types = {}
        for layer in model.layers:
            layer_types[type(layer).__name__] = layer_types.get(type(layer).__name__, 0) + 1
        facts["models"][name] = {
            "kwargs": kwargs,
            "model_name": model.name,
            "total": count(model.weights),
            "trainable": count(model.trainable_weights),
            "non_trainable": count(model.non_trainable_weights),
            "n_layers": len(model.layers),
            "layer_type_counts": layer_types,
            "input_shape": list(model.input_shape),
            "output_shape": list(model.output_shape),
            "layer_names": [layer.name for layer in model.layers],
            "layer_configs": [
                {k: v for k, v in layer.get_config().items()
                 if k in ("name", "filters", "kernel_size", "strides", "padding", "use_bias",
                          "activation", "units", "pool_size", "axis", "epsilon", "momentum",
                          "max_value", "negative_slope", "threshold", "depth_multiplier",
                          "scale", "center", "target_shape")}
                for layer in model.layers
            ],
            "connections": [
                [layer.name, [t._keras_history[0].name for t in keras.tree.flatten(node.input_tensors)]]
                for layer in model.layers for node in layer._inbound_nodes
            ],
        }
        print(name, facts["models"][name]["total"], file=sys.stderr)
    with open(os.path.join(OUT, "applications_reference.json"), "w") as f:
        json.dump(facts, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
