"""Output agreement for frostnet's EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt builders
with real Keras 3, without checking in weight files: every weight is set from a formula that
frostnet's test (`tests/applications2.rs`) evaluates the same way, layer by layer in
`model.layers` order, so only the input and Keras's outputs are stored (under
crates/frostnet/tests/fixtures/applications/outputs/).

The formula, for the k-th weight array (counting every array of every layer, in order) and its
j-th element (flat, C order): an integer hash (exact in any language) mapped to s in [-1, 1),
then computed in double precision and stored as float32:
  h = (j * 2654435761 + (k + 1) * 2246822519) mod 2^32
  h = h xor (h >> 15);  h = (h * 2246822507) mod 2^32;  h = h xor (h >> 13)
  s = 2 * h / 2^32 - 1
  kernels (rank >= 2):                s * sqrt(6 / fan_in), fan_in the product of all but the
                                      last axis, or of the first two for a rank-4 kernel whose
                                      last axis is 1 (depthwise, one output per input channel)
  bias, beta, moving_mean, mean:      0.1 * s
  moving_variance, variance:          1 + 0.25 * s * s
  count (Normalization's int64):      left at 0
  any other vector (gamma, LayerScale's gamma): 1 + 0.1 * s

Run with the system python3: `python3 tools/make_applications2_outputs.py`.
"""

import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402

A = keras.applications
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures",
                   "applications", "outputs")
SIDE = 48

CASES = {
    "efficientnet_b0": (A.EfficientNetB0, {"input_shape": (SIDE, SIDE, 3),
                                         "classifier_activation": None}),
    # The feature map too: EfficientNet's logits depend little on the image with these weights.
    "efficientnet_b0_features": (A.EfficientNetB0, {"include_top": False,
                                                  "input_shape": (SIDE, SIDE, 3)}),
    "efficientnet_v2_b0_notop": (A.EfficientNetV2B0, {"include_top": False, "pooling": "avg",
                                                      "input_shape": (SIDE, SIDE, 3)}),
    "mobilenet_v3_small": (A.MobileNetV3Small, {"classifier_activation": None}),
    "mobilenet_v3_large_minimalistic_notop": (A.MobileNetV3Large, {
        "minimalistic": True, "include_top": False, "pooling": "avg"}),
    "convnext_tiny_notop": (A.ConvNeXtTiny, {"include_top": False, "pooling": "avg",
                                             "input_shape": (SIDE, SIDE, 3)}),
}


def value(name, shape, k):
    n = int(np.prod(shape)) if shape else 1
    m = np.uint64(0xFFFFFFFF)
    h = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761)
         + np.uint64((k + 1) * 2246822519)) & m
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(2246822507)) & m
    h ^= h >> np.uint64(13)
    s = 2.0 * h.astype(np.float64) / 2.0**32 - 1.0
    base = name.split("/")[-1].split(":")[0]
    if len(shape) >= 2:
        fan_in = shape[0] * shape[1] if len(shape) == 4 and shape[3] == 1 else int(np.prod(shape[:-1]))
        v = s * math.sqrt(6.0 / fan_in)
    elif base in ("bias", "beta", "moving_mean", "mean"):
        v = 0.1 * s
    elif base in ("moving_variance", "variance"):
        v = 1.0 + 0.25 * s * s
    else:
        v = 1.0 + 0.1 * s
    return v.reshape(shape).astype(np.float32)


def set_formula_weights(model):
    k = 0
    for layer in model.layers:
        for w in layer.weights:
            if w.name.split("/")[-1] == "count":
                k += 1
                continue
            w.assign(value(w.name, tuple(w.shape), k))
            k += 1
        # Normalization computes its broadcast mean and variance from its variables when built
        # and when loaded; assigned variables take effect through `finalize_state`.
        if isinstance(layer, keras.layers.Normalization) and layer.weights:
            layer.finalize_state()


def efficientnet_blocks():
    """EfficientNetB0's stem and first blocks (Keras's own `block` function), small enough to check
    in as a `.keras` file: Rescaling, Normalization (int64 `count`), swish, squeeze-and-excitation
    with a broadcasting `multiply`, and drop-connect `Dropout(noise_shape=(None, 1, 1, 1))`."""
    from keras import layers
    from keras.src.applications import efficientnet as E
    from keras.src.applications import imagenet_utils

    inp = keras.Input((SIDE, SIDE, 3))
    x = layers.Rescaling(1.0 / 255.0)(inp)
    x = layers.Normalization(axis=3)(x)
    x = layers.ZeroPadding2D(imagenet_utils.correct_pad(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(axis=3, name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)
    x = E.block(x, "swish", 0.0, name="block1a_", filters_in=16, filters_out=16,
                kernel_size=3, strides=1, expand_ratio=1, se_ratio=0.25)
    x = E.block(x, "swish", 0.1, name="block2a_", filters_in=16, filters_out=24,
                kernel_size=3, strides=2, expand_ratio=6, se_ratio=0.25)
    x = E.block(x, "swish", 0.2, name="block2b_", filters_in=24, filters_out=24,
                kernel_size=5, strides=1, expand_ratio=6, se_ratio=0.25)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(5, name="predictions")(x)
    return keras.Model(inp, x, name="efficientnet_blocks")


def main(names):
    os.makedirs(OUT, exist_ok=True)
    # Deterministic pixels in 0..255, the range the models' own preprocessing expects: a
    # high-frequency pattern and a smooth colour gradient, so the two outputs differ.
    x = np.zeros((2, SIDE, SIDE, 3), np.float32)
    x[0] = ((np.arange(SIDE * SIDE * 3) * 37) % 251).reshape(SIDE, SIDE, 3)
    h, w, c = np.meshgrid(np.arange(SIDE), np.arange(SIDE), np.arange(3), indexing="ij")
    x[1] = (h * 5 + w * 3 + c * 60) % 256
    np.save(os.path.join(OUT, "input.npy"), x)
    keras.backend.clear_session()
    model = efficientnet_blocks()
    set_formula_weights(model)
    path = os.path.join(OUT, "efficientnet_blocks.keras")
    model.save(path)
    # What Keras computes from the file (as loaded, with Normalization's state finalized).
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    np.save(os.path.join(OUT, "efficientnet_blocks.npy"), loaded.predict(x, verbose=0))
    for name in names or CASES:
        ctor, kwargs = CASES[name]
        keras.backend.clear_session()
        model = ctor(weights=None, **kwargs)
        set_formula_weights(model)
        y = model.predict(x, verbose=0)
        np.save(os.path.join(OUT, f"{name}.npy"), y.astype(np.float32))
        print(name, y.shape, float(np.abs(y).max()), float(np.abs(y[0] - y[1]).max()),
              file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
