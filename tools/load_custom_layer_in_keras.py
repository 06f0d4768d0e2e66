#!/usr/bin/env python3
"""Loads the .keras file written by `cargo run --example custom_layer [dir]` in real Keras 3,
with the same custom class registered on the Keras side, and checks what it holds.

Usage: python3 tools/load_custom_layer_in_keras.py [dir]   (default: $TMPDIR/frostnet_custom_layer)

The class below is the Python twin of the example's `Scale` (same registered name, same weights in
the same order); it is what a Keras user writes to read frostnet's file, and it documents the
Python side of `frostnet::layers::custom::register_layer`.
"""
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402


@keras.saving.register_keras_serializable(package="frostnet_examples")
class Scale(keras.layers.Layer):
    """y = x * scale; a running mean of the input, updated in training calls of a trainable layer."""

    def __init__(self, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones")
        self.input_mean = self.add_weight(
            name="input_mean", shape=(), initializer="zeros", trainable=False
        )

    def call(self, x, training=None):
        if training and self.trainable:
            m = self.momentum
            self.input_mean.assign(m * self.input_mean + (1 - m) * keras.ops.mean(x))
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "frostnet_custom_layer")
    model = keras.saving.load_model(os.path.join(d, "custom_layer.keras"))
    layer = model.get_layer("scale")
    scale, mean = (float(w.numpy()) for w in layer.weights)
    x = (2 * np.arange(64, dtype="float32") / 64).reshape(64, 1)
    err = float(np.max(np.abs(model.predict(x, verbose=0) - 3 * x)))
    print(f"Keras {keras.__version__} loaded {type(layer).__name__} '{layer.name}': "
          f"scale {scale:.6f}, input_mean {mean:.6f}, trainable {layer.trainable}, "
          f"trainable weights {[w.name for w in layer.trainable_weights]}, "
          f"non-trainable {[w.name for w in layer.non_trainable_weights]}; "
          f"max |predict(x) - 3x| = {err:.2e}")
    want_mean = 63 / 64 * (1 - 0.9**100)
    ok = (isinstance(layer, Scale) and abs(scale - 3) < 1e-4 and abs(mean - want_mean) < 1e-5
          and not layer.trainable and err < 1e-4)
    if not ok:
        sys.exit("mismatch")


if __name__ == "__main__":
    main()
