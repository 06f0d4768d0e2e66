"""Keras-made fixtures for the Keras layer options frostnet used to refuse (issue #14 follow-up):
Conv2D and Conv1D `groups`, Conv1D `padding="causal"` and `dilation_rate`, Conv2DTranspose
`output_padding`, Embedding `mask_zero=True`.

Run with Keras 3 (TF backend): `python3 tools/make_layer_options_reference.py`. For each small
model it writes, under crates/frostnet/tests/fixtures/layer_options/:
  NAME.keras  the model as Keras saves it (config + weights)
  NAME.npz    x (input), y (target), pred (Keras's prediction on x), after_i (the i-th of
              model.get_weights() after one SGD(0.1) step on the mean squared error of (x, y)),
              loss (Keras's loss of that step).

`python3 tools/make_layer_options_reference.py --check DIR` loads the models frostnet re-saved
into DIR (`FROSTNET_LAYER_OPTIONS_OUT=DIR cargo test -p frostnet --test layer_options --
--ignored write_round_trip_files`) with Keras, checks that each layer's option reads back as
Keras wrote it, predicts on each fixture input and compares with frostnet's prediction; it exits
non-zero if any differs by more than 1e-5.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras import layers

OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "layer_options"
)
rng = np.random.default_rng(1414)


def save(name, model, x, y=None):
    keras.utils.set_random_seed(1)
    pred = model.predict(x, verbose=0)
    if y is None:
        y = rng.uniform(-1, 1, size=pred.shape).astype("float32")
    model.save(os.path.join(OUT, name + ".keras"))
    arrays = {"x": x, "y": y, "pred": pred}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    loss = model.train_on_batch(x, y)
    arrays["loss"] = np.array([loss], dtype="float32")
    for i, w in enumerate(model.get_weights()):
        arrays[f"after_{i}"] = np.asarray(w).astype("float32")
    np.savez(os.path.join(OUT, name + ".npz"), **arrays)
    print(name, pred.shape, len(model.get_weights()), "weights, loss", loss)


def conv_groups():
    # groups=2 (same), groups=3 strided (valid), groups=3 pointwise widening, and the
    # depthwise case (groups = channels = filters).
    model = keras.Sequential(
        [
            keras.Input((5, 6, 4)),
            layers.Conv2D(6, 3, groups=2, padding="same", activation="tanh", name="g2"),
            layers.Conv2D(3, (2, 3), strides=(2, 1), groups=3, name="g3"),
            layers.Conv2D(6, 1, groups=3, name="g3_point"),
            layers.Conv2D(6, 2, groups=6, padding="same", name="g_depthwise"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="conv_groups",
    )
    save("conv_groups", model, rng.uniform(-1, 1, (2, 5, 6, 4)).astype("float32"))


def conv1d_options():
    model = keras.Sequential(
        [
            keras.Input((10, 4)),
            layers.Conv1D(6, 3, padding="causal", dilation_rate=2, groups=2, activation="tanh",
                          name="causal_dilated_g2"),
            layers.Conv1D(4, 2, padding="causal", name="causal"),
            layers.Conv1D(4, 3, padding="same", dilation_rate=2, name="same_dilated"),
            layers.Conv1D(2, 2, padding="valid", dilation_rate=3, groups=2, name="valid_dilated_g2"),
            layers.Conv1D(2, 3, strides=2, padding="causal", name="causal_strided"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="conv1d_options",
    )
    save("conv1d_options", model, rng.uniform(-1, 1, (3, 10, 4)).astype("float32"))


def transpose_options():
    model = keras.Sequential(
        [
            keras.Input((3, 4, 2)),
            layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1,
                                   activation="tanh", name="same_op1"),
            layers.Conv2DTranspose(2, (2, 3), strides=(3, 2), padding="valid",
                                   output_padding=(2, 0), name="valid_op"),
            layers.Conv2DTranspose(2, 4, strides=2, padding="same", output_padding=(1, 1),
                                   name="same_even_op"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="transpose_options",
    )
    save("transpose_options", model, rng.uniform(-1, 1, (2, 3, 4, 2)).astype("float32"))


def tokens(batch, steps, vocab):
    """Token ids with 0 (padding) at the ends of sequences and in the middle of one."""
    x = rng.integers(1, vocab, (batch, steps)).astype("float32")
    for b in range(batch):
        x[b, steps - b:] = 0  # sample b has b padded steps at the end
    x[0, 2] = 0
    return x


def mask_pool():
    # Embedding(mask_zero) -> layers passing the mask on -> masked GlobalAveragePooling1D.
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Embedding(10, 4, mask_zero=True, name="embed"),
            layers.Dense(5, activation="tanh", name="proj"),
            layers.LayerNormalization(name="ln"),
            layers.Activation("relu", name="act"),
            layers.GlobalAveragePooling1D(name="gap"),
            layers.Dense(2, name="head"),
        ],
        name="mask_pool",
    )
    save("mask_pool", model, tokens(4, 6, 10))


def mask_output():
    # The mask reaches the output through Add (OR of masks) and Concatenate (AND): the loss and
    # the metrics count the unmasked steps only.
    x = keras.Input((6,), name="ids")
    e = layers.Embedding(12, 4, mask_zero=True, name="embed")(x)
    a = layers.Dense(3, activation="tanh", name="a")(e)
    b = layers.Dense(3, name="b")(e)
    s = layers.Add(name="add")([a, b])
    c = layers.Concatenate(name="cat")([s, a])
    out = layers.Dense(2, name="head")(c)
    model = keras.Model(x, out, name="mask_output")
    xs = tokens(4, 6, 12)
    y = rng.uniform(-1, 1, (4, 6, 2)).astype("float32")
    m = keras.Model(x, out, name="probe")
    m.compile(loss="mse", metrics=["mae"])
    ev = m.evaluate(xs, y, verbose=0)
    pred = model.predict(xs, verbose=0)
    unmasked = float(np.mean((pred - y) ** 2))
    print("mask_output: evaluate", ev, "unmasked mse", unmasked)
    save("mask_output", model, xs, y)
    arrays = dict(np.load(os.path.join(OUT, "mask_output.npz")))
    arrays["eval"] = np.array(ev, dtype="float32")
    arrays["mask"] = (xs != 0).astype("float32")
    np.savez(os.path.join(OUT, "mask_output.npz"), **arrays)


def mask_dropped():
    # Conv1D and Flatten do not support masking: Keras drops the mask (with a warning), so the
    # pooling after the convolution and the loss see every step.
    x = keras.Input((6,), name="ids")
    e = layers.Embedding(10, 4, mask_zero=True, name="embed")(x)
    c = layers.Conv1D(3, 2, padding="causal", name="conv")(e)
    p = layers.GlobalAveragePooling1D(name="gap")(c)
    f = layers.Flatten(name="flat")(layers.Dense(2, name="d")(e))
    out = layers.Dense(2, name="head")(layers.Concatenate(name="cat")([p, f]))
    model = keras.Model(x, out, name="mask_dropped")
    save("mask_dropped", model, tokens(3, 6, 10))


def mask_combine():
    # How merges combine masks (no training): Add ORs two masks, Average with an unmasked input
    # has none, Concatenate counts an unmasked input as all true and ORs.
    from keras.src import backend

    i1 = keras.Input((5,), name="ids1")
    i2 = keras.Input((5,), name="ids2")
    f = keras.Input((5, 3), name="feats")
    e1 = layers.Embedding(8, 3, mask_zero=True, name="e1")(i1)
    e2 = layers.Embedding(8, 3, mask_zero=True, name="e2")(i2)
    add = layers.Add(name="add")([e1, e2])
    avg = layers.Average(name="avg")([e1, f])
    cat = layers.Concatenate(name="cat")([e1, f])
    cat2 = layers.Concatenate(name="cat2")([e1, e2])
    model = keras.Model([i1, i2, f], [add, avg, cat, cat2], name="mask_combine")
    x1 = tokens(3, 5, 8)
    x2 = np.flip(tokens(3, 5, 8), axis=1).copy()
    feats = rng.uniform(-1, 1, (3, 5, 3)).astype("float32")
    outs = model([x1, x2, feats])
    arrays = {"ids1": x1, "ids2": x2, "feats": feats}
    for name, o in zip(["add", "avg", "cat", "cat2"], outs):
        arrays[name] = np.asarray(o)
        m = backend.get_keras_mask(o)
        if m is not None:
            arrays[name + "_mask"] = np.asarray(m).astype("float32")
    model.save(os.path.join(OUT, "mask_combine.keras"))
    np.savez(os.path.join(OUT, "mask_combine.npz"), **arrays)
    print("mask_combine masks:", sorted(k for k in arrays if k.endswith("_mask")))


MODELS = ["conv_groups", "conv1d_options", "transpose_options", "mask_pool", "mask_output",
          "mask_dropped"]

# Options each re-saved layer must carry when Keras reads frostnet's file back.
EXPECTED = {
    "conv_groups": {"g2": {"groups": 2}, "g3": {"groups": 3}, "g_depthwise": {"groups": 6}},
    "conv1d_options": {
        "causal_dilated_g2": {"padding": "causal", "dilation_rate": (2,), "groups": 2},
        "same_dilated": {"padding": "same", "dilation_rate": (2,)},
        "valid_dilated_g2": {"padding": "valid", "dilation_rate": (3,), "groups": 2},
    },
    "transpose_options": {
        "same_op1": {"output_padding": (1, 1)},
        "valid_op": {"output_padding": (2, 0)},
        "same_even_op": {"output_padding": (1, 1)},
    },
    "mask_pool": {"embed": {"mask_zero": True}},
    "mask_output": {"embed": {"mask_zero": True}},
}


def check(directory):
    ok = True
    for name in MODELS:
        model = keras.saving.load_model(os.path.join(directory, name + ".keras"))
        for layer, opts in EXPECTED.get(name, {}).items():
            got = model.get_layer(layer).get_config()
            for k, v in opts.items():
                g = tuple(got[k]) if isinstance(got[k], (list, tuple)) else got[k]
                if g != v:
                    print(f"{name}/{layer}: {k} = {got[k]}, expected {v}")
                    ok = False
        arrays = np.load(os.path.join(OUT, name + ".npz"))
        ours = np.load(os.path.join(directory, name + "_frostnet.npy"))
        diff = float(np.max(np.abs(model.predict(arrays["x"], verbose=0) - ours)))
        ok &= diff <= 1e-5
        print(f"{name}: Keras loads frostnet's file; max abs difference {diff:.2e}")
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2]) else 1)
    os.makedirs(OUT, exist_ok=True)
    for build in [conv_groups, conv1d_options, transpose_options, mask_pool, mask_output,
                  mask_dropped, mask_combine]:
        keras.utils.set_random_seed(14)  # fresh weights repeat from run to run
        build()
