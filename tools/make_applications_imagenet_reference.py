#!/usr/bin/env python3
"""Ground truth for every built-in application as Keras users use it (frostnet issue #15).

For each application frostnet builds (`crates/frostnet/src/applications/by_name.rs`), records
from Keras 3 itself:

1. `keras.applications.<module>.preprocess_input` on one small fixed batch of 0..255 RGB images:
   `crates/frostnet/tests/fixtures/applications/preprocess/<name>.npy` (input: `x.npy`).
2. The file Keras downloads for `weights="imagenet"`, with and without the top: `fname`, `origin`
   and `file_hash` exactly as the application passes them to `keras.utils.get_file` (captured by
   replacing `get_file` with a recorder that stops the constructor), plus the model's name (what
   `frostnet predict` recognises a plain application by) and `preprocess_input`'s mode read from
   its source. Written to `.../applications/imagenet_reference.json`.
3. The layer names of each base without top (`.../applications/layers_notop.json.gz`).

Run from the repository root with the system python3 (Keras 3.15.1):
    python3 tools/make_applications_imagenet_reference.py
"""

import gzip
import inspect
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.utils import file_utils  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "applications")

# (frostnet CLI name, keras.applications module, constructor, extra constructor arguments)
APPS = [
    ("inception_v3", "inception_v3", "InceptionV3"),
    ("resnet50", "resnet50", "ResNet50"),
    ("mobilenet_v2", "mobilenet_v2", "MobileNetV2"),
    ("vgg16", "vgg16", "VGG16"),
    ("resnet101", "resnet", "ResNet101"),
    ("resnet152", "resnet", "ResNet152"),
    ("resnet50_v2", "resnet_v2", "ResNet50V2"),
    ("resnet101_v2", "resnet_v2", "ResNet101V2"),
    ("resnet152_v2", "resnet_v2", "ResNet152V2"),
    ("xception", "xception", "Xception"),
    ("densenet121", "densenet", "DenseNet121"),
    ("densenet169", "densenet", "DenseNet169"),
    ("densenet201", "densenet", "DenseNet201"),
    ("mobilenet", "mobilenet", "MobileNet"),
    ("inception_resnet_v2", "inception_resnet_v2", "InceptionResNetV2"),
    ("nasnet_mobile", "nasnet", "NASNetMobile"),
] + [(f"efficientnet_b{i}", "efficientnet", f"EfficientNetB{i}") for i in range(8)] + [
    (f"efficientnet_v2_{v}", "efficientnet_v2", f"EfficientNetV2{v.upper()}")
    for v in ["b0", "b1", "b2", "b3", "s"]
] + [
    ("mobilenet_v3_small", "mobilenet_v3", "MobileNetV3Small"),
    ("mobilenet_v3_large", "mobilenet_v3", "MobileNetV3Large"),
    ("convnext_tiny", "convnext", "ConvNeXtTiny"),
]


class Recorded(Exception):
    pass


def recorder(store):
    def get_file(fname=None, origin=None, *args, **kwargs):
        store["fname"] = fname
        store["origin"] = origin
        store["file_hash"] = kwargs.get("file_hash")
        # The constructor built the model just before asking for its weights.
        frame = inspect.currentframe().f_back
        while frame is not None:
            m = frame.f_locals.get("model")
            if isinstance(m, keras.Model):
                store["model_name"] = m.name
                store["layers"] = [layer.name for layer in m.layers]
                break
            frame = frame.f_back
        raise Recorded()

    return get_file


def imagenet_file(ctor, include_top, **kwargs):
    store = {}
    saved = file_utils.get_file
    file_utils.get_file = recorder(store)
    try:
        ctor(weights="imagenet", include_top=include_top, **kwargs)
    except Recorded:
        pass
    finally:
        file_utils.get_file = saved
    return store


def preprocess_mode(module):
    src = inspect.getsource(module.preprocess_input)
    for mode in ["caffe", "tf", "torch"]:
        if f'mode="{mode}"' in src:
            return mode
    assert src.rstrip().endswith("return x"), src
    return "identity"


def main():
    os.makedirs(os.path.join(ROOT, "preprocess"), exist_ok=True)
    rng = np.random.default_rng(15)
    x = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    x[0, 0, 0] = [0.0, 127.5, 255.0]
    np.save(os.path.join(ROOT, "preprocess", "x.npy"), x)
    ref = {"keras_version": keras.__version__, "applications": {}}
    layers = {}
    for name, module_name, ctor_name in APPS:
        module = getattr(keras.applications, module_name)
        ctor = getattr(keras.applications, ctor_name)
        y = np.asarray(module.preprocess_input(x.copy()))
        np.save(os.path.join(ROOT, "preprocess", f"{name}.npy"), y.astype(np.float32))
        top = imagenet_file(ctor, True)
        notop = imagenet_file(ctor, False)
        layers[name] = notop.pop("layers")
        top.pop("layers")
        entry = {
            "module": module_name,
            "constructor": ctor_name,
            "preprocess_mode": preprocess_mode(module),
            "model_name": top.pop("model_name"),
            "top": top,
            "notop": {k: v for k, v in notop.items() if k != "model_name"},
        }
        ref["applications"][name] = entry
        print(name, entry["preprocess_mode"], entry["model_name"], top["fname"], flush=True)
    # Keras's other square sizes for the MobileNets pick other files.
    ref["mobilenet_v2_160_notop"] = imagenet_file(
        keras.applications.MobileNetV2, False, input_shape=(160, 160, 3)
    )
    ref["mobilenet_128_top"] = imagenet_file(
        keras.applications.MobileNet, True, input_shape=(128, 128, 3)
    )
    for k in ["mobilenet_v2_160_notop", "mobilenet_128_top"]:
        ref[k].pop("layers")
        ref[k].pop("model_name")
    with open(os.path.join(ROOT, "imagenet_reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    # Keras's layer names of each base without top: `frostnet tune --app`'s default fine-tuning
    # layers are checked against them.
    with gzip.open(os.path.join(ROOT, "layers_notop.json.gz"), "wt") as f:
        json.dump(layers, f, sort_keys=True)


if __name__ == "__main__":
    main()
