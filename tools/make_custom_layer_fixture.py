#!/usr/bin/env python3
"""Writes crates/frostnet/tests/fixtures/custom_layer/: a Keras 3 model containing a custom layer
class registered with `@keras.saving.register_keras_serializable(package="frostnet_tests")`, for
the test that frostnet loads it (with the same class registered on the Rust side) and predicts as
Keras does.

The layer is `Gated`: y = x * sigmoid(x @ kernel + bias) with a non-trainable running mean of the
gate created *before* the trainable weights, so Keras's weight order (trainable first) is tested.
Outputs: gated.keras, gated.npz (x, y = model.predict(x), and each weight by name).

Usage: python3 tools/make_custom_layer_fixture.py
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "custom_layer")


@keras.saving.register_keras_serializable(package="frostnet_tests")
class Gated(keras.layers.Layer):
    def __init__(self, momentum=0.5, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape):
        f = input_shape[-1]
        self.gate_mean = self.add_weight(name="gate_mean", shape=(f,), initializer="zeros", trainable=False)
        self.kernel = self.add_weight(name="kernel", shape=(f, f), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(f,), initializer="random_uniform")

    def call(self, x, training=None):
        g = keras.ops.sigmoid(keras.ops.matmul(x, self.kernel) + self.bias)
        if training and self.trainable:
            m = self.momentum
            self.gate_mean.assign(m * self.gate_mean + (1 - m) * keras.ops.mean(g, axis=0))
        return x * g

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


def main():
    keras.utils.set_random_seed(7)
    os.makedirs(OUT, exist_ok=True)
    inp = keras.Input((3,))
    h = Gated(name="gated")(inp)
    out = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inp, out, name="gated_model")
    x = np.random.default_rng(0).uniform(-2, 2, (5, 3)).astype("float32")
    # One training call so the running mean is not zero.
    model(x, training=True)
    model.save(os.path.join(OUT, "gated.keras"))
    y = model.predict(x, verbose=0)
    layer = model.get_layer("gated")
    np.savez(os.path.join(OUT, "gated.npz"), x=x, y=y,
             **{w.name: w.numpy() for w in layer.weights})
    print("weights in Keras order:", [w.name for w in layer.weights])


if __name__ == "__main__":
    main()
