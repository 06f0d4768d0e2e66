"""Ground truth for frostnet's pooling, padding, ReLU, depthwise/separable convolution and merging
layers: real Keras 3 outputs on fixed inputs and weights, written to
crates/frostnet/tests/fixtures/conv_family_keras3.npz (read by tests/gradients_conv_family.rs).

Run with a Python that has keras 3 (TensorFlow backend), e.g.
`bench/.venv/bin/python tools/keras_conv_family_reference.py`. Not run by the tests.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures",
                   "conv_family_keras3.npz")

rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, size=(2, 7, 6, 3)).astype("float32")
out = {"x": x}

POOLS = {
    "p2_valid": dict(pool_size=2),
    "p2_same": dict(pool_size=2, padding="same"),
    "p3s2_valid": dict(pool_size=3, strides=2),
    "p3s2_same": dict(pool_size=3, strides=2, padding="same"),
    "p3s1_same": dict(pool_size=3, strides=1, padding="same"),
    "p23s21_same": dict(pool_size=(2, 3), strides=(2, 1), padding="same"),
}
for key, kw in POOLS.items():
    out[f"max_{key}"] = np.asarray(layers.MaxPooling2D(**kw)(x))
    out[f"avg_{key}"] = np.asarray(layers.AveragePooling2D(**kw)(x))
out["gap"] = np.asarray(layers.GlobalAveragePooling2D()(x))
out["gmp"] = np.asarray(layers.GlobalMaxPooling2D()(x))
out["zero_padding_0121"] = np.asarray(layers.ZeroPadding2D(((0, 1), (2, 1)))(x))

r = np.linspace(-3, 3, 25, dtype="float32").reshape(1, 25)
out["relu_input"] = r
RELUS = {
    "default": dict(),
    "max1": dict(max_value=1.0),
    "slope": dict(negative_slope=0.2),
    "threshold": dict(threshold=0.5),
    "all": dict(max_value=2.0, negative_slope=0.3, threshold=0.5),
}
for key, kw in RELUS.items():
    out[f"relu_{key}"] = np.asarray(layers.ReLU(**kw)(r))

for key, kw in {
    "dw_s1_same_dm2": dict(kernel_size=3, padding="same", depth_multiplier=2),
    "dw_s2_valid": dict(kernel_size=3, strides=2),
    "dw_k23_same": dict(kernel_size=(2, 3), padding="same"),  # TF: equal strides only
}.items():
    layer = layers.DepthwiseConv2D(**kw, bias_initializer="random_uniform")
    y = layer(x)
    for w in layer.weights:
        out[f"{key}_{w.name}"] = np.asarray(w)
    out[key] = np.asarray(y)

for key, kw in {
    "sep_s1_same_dm2": dict(filters=4, kernel_size=3, padding="same", depth_multiplier=2),
    "sep_s2_valid": dict(filters=5, kernel_size=3, strides=2),
}.items():
    layer = layers.SeparableConv2D(**kw, bias_initializer="random_uniform")
    y = layer(x)
    for w in layer.weights:
        out[f"{key}_{w.name}"] = np.asarray(w)
    out[key] = np.asarray(y)

a = rng.uniform(-1, 1, size=(2, 7, 6, 2)).astype("float32")
out["cat_b"] = a
out["concatenate"] = np.asarray(layers.Concatenate()([x, a]))
out["concatenate_axis1"] = np.asarray(layers.Concatenate(axis=1)([x, x[:, :2]]))

np.savez(OUT, **out)
print("wrote", OUT, sorted(out))
