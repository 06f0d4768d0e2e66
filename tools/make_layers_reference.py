"""Keras-made fixtures for frostnet's broadcasting merges, activations and newer layers.

Run with Keras 3 (TF backend): `python3 tools/make_layers_reference.py`. For each small model it
writes, under crates/frostnet/tests/fixtures/layers/:
  NAME.keras  the model as Keras saves it (config + weights)
  NAME.npz    x (input), y (target), pred (Keras's prediction on x), and after_i (the i-th of
              model.get_weights() after one SGD(0.1) step on the mean squared error of (x, y)),
              plus loss (Keras's loss of that step).
activations.npz also holds reference values of functions Keras cannot name in a config
(gelu with approximate=True) on a fixed grid.

`python3 tools/make_layers_reference.py --check DIR` instead loads the models frostnet re-saved
into DIR (`FROSTNET_LAYERS_OUT=DIR cargo test -p frostnet --test keras_layers -- --ignored
write_layers_roundtrip_files`) with Keras, predicts on each fixture input and compares with
frostnet's prediction; it exits non-zero if any differs by more than 1e-5.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras import layers, ops

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "layers")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(14)


def save(name, model, x, extra=None):
    keras.utils.set_random_seed(1)
    pred = model.predict(x, verbose=0)
    y = rng.uniform(-1, 1, size=pred.shape).astype("float32")
    model.save(os.path.join(OUT, name + ".keras"))
    arrays = {"x": x, "y": y, "pred": pred}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    loss = model.train_on_batch(x, y)
    arrays["loss"] = np.array([loss], dtype="float32")
    for i, w in enumerate(model.get_weights()):
        arrays[f"after_{i}"] = np.asarray(w).astype("float32")
    arrays.update(extra or {})
    np.savez(os.path.join(OUT, name + ".npz"), **arrays)
    print(name, pred.shape, len(model.get_weights()), "weights")


def merges():
    # One input; the branches have the shapes an EfficientNet SE block and other broadcasts make:
    # (4,4,3) with (1,1,3) and with (3,) (a lower rank aligns to the right, as in numpy).
    x = keras.Input((4, 4, 2), name="image")
    a = layers.Conv2D(3, 1, name="conv")(x)
    b = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(a)
    b = layers.Conv2D(3, 1, activation="sigmoid", name="excite")(b)
    c = layers.GlobalMaxPooling2D(name="gmax")(a)
    m = layers.Multiply(name="mul")([a, b])
    s = layers.Subtract(name="sub")([m, c])
    av = layers.Average(name="avg")([s, a, b])
    mx = layers.Maximum(name="max")([av, b, c])
    mn = layers.Minimum(name="min")([mx, a])
    ad = layers.Add(name="add")([mn, c, b])
    out = layers.Dense(2, name="head")(layers.Flatten(name="flat")(ad))
    model = keras.Model(x, out, name="merges")
    save("merges", model, rng.uniform(-1, 1, (3, 4, 4, 2)).astype("float32"))


ACTIVATIONS = [
    "relu", "sigmoid", "tanh", "softmax", "linear", "swish", "silu", "gelu", "elu", "selu",
    "softplus", "softsign", "hard_sigmoid", "hard_swish", "hard_silu", "leaky_relu", "relu6",
    "mish", "exponential",
]


def activations():
    x = keras.Input((5,), name="x")
    d = layers.Dense(6, name="trunk")(x)
    branches = [layers.Dense(3, activation=a, name=f"d_{a}")(d) for a in ACTIVATIONS]
    branches.append(layers.Activation("gelu", name="act_gelu")(d))
    branches.append(layers.Activation("mish", name="act_mish")(d))
    cat = layers.Concatenate(name="cat")(branches)
    out = layers.Dense(2, name="head")(cat)
    model = keras.Model(x, out, name="activations")
    grid = np.linspace(-4, 4, 33).astype("float32")
    extra = {
        "grid": grid,
        "gelu_tanh": np.asarray(ops.gelu(grid, approximate=True)),
        "gelu_exact": np.asarray(ops.gelu(grid, approximate=False)),
    }
    save("activations", model, rng.uniform(-2, 2, (4, 5)).astype("float32"), extra)


def activation_layers():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(8, name="d0"),
            layers.LeakyReLU(negative_slope=0.25, name="leaky"),
            layers.Dense(8, name="d1"),
            layers.PReLU(name="prelu"),
            layers.Dense(8, name="d2"),
            layers.ELU(alpha=0.7, name="elu"),
            layers.Identity(name="ident"),
            layers.Dense(4, name="d3"),
            layers.Softmax(name="softmax"),
        ],
        name="activation_layers",
    )
    prelu = model.get_layer("prelu")
    prelu.set_weights([rng.uniform(0.1, 0.5, (8,)).astype("float32")])
    save("activation_layers", model, rng.uniform(-2, 2, (4, 6)).astype("float32"))


def reshaping():
    x = rng.uniform(-1, 1, (3, 4, 5, 2)).astype("float32")
    norm = layers.Normalization(name="norm")
    adapt = rng.normal(0.5, 2.0, (16, 4, 5, 2)).astype("float32")
    norm.adapt(adapt)
    model = keras.Sequential(
        [
            keras.Input((4, 5, 2)),
            norm,
            layers.UpSampling2D((2, 1), name="up"),
            layers.Cropping2D(((1, 2), (0, 1)), name="crop"),
            layers.Conv2D(3, 2, name="conv"),
            layers.Permute((3, 1, 2), name="perm"),
            layers.Flatten(name="flat"),
            layers.Dense(4, name="dense"),
            layers.RepeatVector(3, name="rep"),
            layers.Flatten(name="flat2"),
            layers.Dense(2, name="head"),
        ],
        name="reshaping",
    )
    save("reshaping", model, x, {"adapt": adapt})


def embedding():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            layers.Embedding(10, 3, name="embed"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="embedding",
    )
    x = rng.integers(0, 10, (4, 5)).astype("float32")
    save("embedding", model, x)


def check(directory):
    worst = 0.0
    names = ["merges", "activations", "activation_layers", "reshaping", "embedding", "sequence"]
    names += ["pooling1d", "transpose", "conv1d", "group_norm"]
    for name in names + ["noise"]:
        model = keras.saving.load_model(os.path.join(directory, name + ".keras"))
        x = np.load(os.path.join(OUT, name + ".npz"))["x"]
        ours = np.load(os.path.join(directory, name + "_frostnet.npy"))
        diff = float(np.max(np.abs(model.predict(x, verbose=0) - ours)))
        worst = max(worst, diff)
        print(f"{name}: Keras loads frostnet's file; max abs difference {diff:.2e}")
    return worst <= 1e-5


def sequence():
    # Dense on a rank-3 input acts on the last axis, as in Keras.
    x = keras.Input((5, 4), name="seq")
    h = layers.Dense(6, name="proj")(x)
    h = layers.LayerNormalization(name="ln")(h)
    u = layers.UnitNormalization(name="unit")(h)
    a = layers.GlobalAveragePooling1D(name="gap1")(u)
    m = layers.GlobalMaxPooling1D(name="gmp1")(h)
    out = layers.Dense(2, name="head")(layers.Concatenate(name="cat")([a, m]))
    model = keras.Model(x, out, name="sequence")
    ln = model.get_layer("ln")
    ln.set_weights([rng.uniform(0.5, 1.5, (6,)).astype("float32"), rng.uniform(-0.5, 0.5, (6,)).astype("float32")])
    save("sequence", model, rng.uniform(-2, 2, (3, 5, 4)).astype("float32"))


def pooling1d():
    model = keras.Sequential(
        [
            keras.Input((7, 3)),
            layers.ZeroPadding1D((1, 2), name="pad"),
            layers.Dense(4, name="proj"),
            layers.MaxPooling1D(3, strides=2, padding="same", name="maxp"),
            layers.AveragePooling1D(2, padding="valid", name="avgp"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="pooling1d",
    )
    save("pooling1d", model, rng.uniform(-2, 2, (3, 7, 3)).astype("float32"))


def transpose():
    model = keras.Sequential(
        [
            keras.Input((3, 4, 2)),
            layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="gelu", name="up_same"),
            layers.Conv2DTranspose(2, (2, 3), strides=(1, 2), padding="valid", name="up_valid"),
            layers.Conv2DTranspose(2, 1, strides=3, padding="valid", name="up_sparse"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="transpose",
    )
    save("transpose", model, rng.uniform(-1, 1, (2, 3, 4, 2)).astype("float32"))


def conv1d():
    model = keras.Sequential(
        [
            keras.Input((9, 3)),
            layers.Conv1D(4, 3, strides=2, padding="same", activation="swish", name="c_same"),
            layers.Conv1D(2, 2, padding="valid", name="c_valid"),
            layers.Conv1D(3, 1, name="c_point"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="conv1d",
    )
    save("conv1d", model, rng.uniform(-1, 1, (2, 9, 3)).astype("float32"))


def group_norm():
    model = keras.Sequential(
        [
            keras.Input((3, 2, 6)),
            layers.Conv2D(6, 1, name="conv"),
            layers.GroupNormalization(groups=3, name="gn"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="head"),
        ],
        name="group_norm",
    )
    gn = model.get_layer("gn")
    gn.set_weights([rng.uniform(0.5, 1.5, (6,)).astype("float32"), rng.uniform(-0.5, 0.5, (6,)).astype("float32")])
    save("group_norm", model, rng.uniform(-1, 1, (2, 3, 2, 6)).astype("float32"))


def noise():
    # Training-only layers: Keras's predict (inference) passes through them. Their training
    # noise comes from Keras's own random stream, so there is no SGD-step reference.
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            layers.Conv2D(3, 1, name="conv"),
            layers.GaussianNoise(0.3, name="gnoise"),
            layers.SpatialDropout2D(0.4, name="sdrop"),
            layers.Flatten(name="flat"),
            layers.GaussianDropout(0.2, name="gdrop"),
            layers.Dense(2, name="head"),
        ],
        name="noise",
    )
    x = rng.uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    pred = model.predict(x, verbose=0)
    model.save(os.path.join(OUT, "noise.keras"))
    np.savez(os.path.join(OUT, "noise.npz"), x=x, pred=pred)
    print("noise", pred.shape)


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2]) else 1)
    keras.utils.set_random_seed(14)
    merges()
    activations()
    activation_layers()
    reshaping()
    embedding()
    sequence()
    noise()
    pooling1d()
    transpose()
    conv1d()
    group_norm()
