"""Keras-made fixtures for shared layers (one layer called several times) and nested base models.

Run with Keras 3 (TF backend) and tf-keras installed: `python3 tools/make_shared_layers_reference.py`.
Writes under crates/frostnet/tests/fixtures/shared_layers/, for each model NAME:
  NAME.keras                 the model as Keras 3 saves it
  NAME.h5                    the same model (same weights) saved by tf-keras (legacy layout,
                             inbound nodes as [["layer", node_index, tensor_index, {}]])
  NAME_summary_keras3.txt    Keras 3's model.summary() at a wide terminal (canonical widths)
  NAME_summary_keras3_80.txt the same at 80 columns (stdout not a terminal), for reference
  NAME_summary_tfkeras.txt   tf-keras's model.summary() of the same graph (the classic table)
  NAME.npz                   siamese_dense: xa, xb and pred (Keras's prediction); the others: x, y, pred (Keras's prediction on x), loss and
                             after_i (model.get_weights()[i] after one SGD(0.1) step on the mean
                             squared error of (x, y), BatchNormalization moving statistics included)
  facts.json                 per model: weight counts, layer names, and Keras's node indices

`python3 tools/make_shared_layers_reference.py --check DIR` instead loads the `.keras` files frostnet
wrote into DIR (`FROSTNET_SHARED_OUT=DIR cargo test -p frostnet --test shared_layers -- --ignored
write_files_for_keras`) with Keras 3: each must load, its summary must equal the fixture summary,
and, where DIR holds NAME_x.npy / NAME_pred.npy, Keras's prediction must match frostnet's within
1e-5. Exits non-zero on any difference.
"""

import io
import json
import os
import sys
from contextlib import redirect_stdout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras import layers

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures",
                   "shared_layers")


def summary_text(model, columns=200, **kw):
    # Keras 3 sizes its table from the console width (rich reads COLUMNS when stdout is not a
    # terminal): 200 gives Keras's canonical widths, as a wide terminal does.
    os.environ["COLUMNS"] = str(columns)
    buf = io.StringIO()
    with redirect_stdout(buf):
        model.summary(**kw)
    return buf.getvalue()


# Each builder takes a layers module and a Model/Input factory, so the same graph is built by Keras 3
# and by tf-keras (for the classic summary and the legacy .h5 layout).
def siamese_dense(L, Input, Model):
    # Two inputs through one Dense (Keras's Siamese network), merged by a Subtract.
    a = Input((5,), name="left")
    b = Input((5,), name="right")
    shared = L.Dense(4, activation="tanh", name="shared_dense")
    ea = shared(a)
    eb = shared(b)
    d = L.Subtract(name="diff")([ea, eb])
    out = L.Dense(1, name="head")(d)
    return Model([a, b], out, name="siamese_dense")


def siamese_conv(L, Input, Model):
    # One input seen through two 1x1 "views"; a shared Conv2D, BatchNormalization and pooling
    # run on both; a broadcasting Subtract of (4,4,3) and (1,1,3) and a Concatenate merge them.
    x = Input((6, 6, 2), name="image")
    v1 = L.Conv2D(2, 1, name="view_a")(x)
    v2 = L.Conv2D(2, 1, name="view_b")(x)
    conv = L.Conv2D(3, 3, name="shared_conv")
    bn = L.BatchNormalization(name="shared_bn")
    pool = L.GlobalAveragePooling2D(keepdims=True, name="shared_pool")
    c1 = bn(conv(v1))
    c2 = bn(conv(v2))
    p2 = pool(c2)
    s = L.Subtract(name="sub")([c1, p2])
    p1 = pool(s)
    cat = L.Concatenate(name="cat")([p1, p2])
    out = L.Dense(2, name="head")(L.Flatten(name="flat")(cat))
    return Model(x, out, name="siamese_conv")


def chain(L, Input, Model):
    # One Dense applied to its own output (a weight-tied stack), and a model output taken from the
    # second call.
    x = Input((4,), name="x")
    tied = L.Dense(4, activation="tanh", name="tied")
    h = tied(x)
    h = L.Dense(4, name="mid")(h)
    h = tied(h)
    return Model(x, h, name="chain")


def nested_base(L, Input, Model, frozen=True):
    # Keras's transfer-learning recipe: base.trainable = False; x = base(inputs, training=False).
    inp = Input((6, 6, 2), name="base_input")
    y = L.Conv2D(3, 3, name="base_conv")(inp)
    y = L.BatchNormalization(name="base_bn")(y)
    y = L.GlobalAveragePooling2D(name="base_pool")(y)
    base = Model(inp, y, name="base")
    if frozen:
        base.trainable = False
    x = Input((6, 6, 2), name="image")
    h = base(x, training=False)
    out = L.Dense(2, name="head")(h)
    return Model(x, out, name="nested_base")


def siamese_nested(L, Input, Model):
    # A whole model shared by two branches (a trainable base called twice).
    inp = Input((6, 6, 2), name="tower_input")
    y = L.Conv2D(3, 3, name="tower_conv")(inp)
    y = L.BatchNormalization(name="tower_bn")(y)
    y = L.GlobalAveragePooling2D(name="tower_pool")(y)
    tower = Model(inp, y, name="tower")
    x = Input((6, 6, 2), name="image")
    v1 = L.Conv2D(2, 1, name="view_a")(x)
    v2 = L.Conv2D(2, 1, name="view_b")(x)
    t1 = tower(v1)
    t2 = tower(v2)
    d = L.Subtract(name="diff")([t1, t2])
    out = L.Dense(2, name="head")(d)
    return Model(x, out, name="siamese_nested")


CASES = {
    "siamese_dense": siamese_dense,
    "siamese_conv": siamese_conv,
    "chain": chain,
    "nested_base": nested_base,
    "siamese_nested": siamese_nested,
}

INPUT_SHAPES = {"siamese_conv": (4, 6, 6, 2), "chain": (3, 4), "nested_base": (4, 6, 6, 2),
                "siamese_nested": (4, 6, 6, 2)}


def node_indices(model):
    """Per layer, the (layer, node index, tensor index) of each input of each of its calls."""
    out = {}
    cfg = model.get_config()
    for entry in cfg["layers"]:
        calls = []
        for node in entry["inbound_nodes"]:
            hist = []

            def walk(v):
                if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
                    hist.append(v["config"]["keras_history"])
                elif isinstance(v, (list, tuple)):
                    for i in v:
                        walk(i)
                elif isinstance(v, dict):
                    for i in v.values():
                        walk(i)
            walk(node["args"])
            calls.append({"inputs": hist, "kwargs": node.get("kwargs", {})})
        out[entry["name"]] = calls
    return out


def make():
    import tf_keras

    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(12)
    facts = {"keras_version": keras.__version__, "models": {}}
    for name, build in CASES.items():
        keras.utils.set_random_seed(3)
        model = build(layers, keras.Input, keras.Model)
        # Random BN statistics, so inference-mode BN is not the identity.
        for w in model.weights:
            if "moving_mean" in w.path:
                w.assign(rng.uniform(-0.5, 0.5, w.shape).astype("float32"))
            if "moving_variance" in w.path:
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        with open(os.path.join(OUT, f"{name}_summary_keras3.txt"), "w") as f:
            f.write(summary_text(model))
        with open(os.path.join(OUT, f"{name}_summary_keras3_80.txt"), "w") as f:
            f.write(summary_text(model, columns=80))
        model.save(os.path.join(OUT, f"{name}.keras"))
        tk = build(tf_keras.layers, tf_keras.Input, tf_keras.Model)
        tk.set_weights(model.get_weights())
        with open(os.path.join(OUT, f"{name}_summary_tfkeras.txt"), "w") as f:
            f.write(summary_text(tk))
        tk.save(os.path.join(OUT, f"{name}.h5"))
        facts["models"][name] = {
            "total": int(sum(np.prod(w.shape) for w in model.weights)),
            "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "non_trainable": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
            "n_weights": len(model.weights),
            "layers": [layer.name for layer in model.layers],
            "node_indices": node_indices(model),
        }
        if name in INPUT_SHAPES:
            x = rng.uniform(-1, 1, INPUT_SHAPES[name]).astype("float32")
            pred = model.predict(x, verbose=0)
            assert np.allclose(pred, tk.predict(x, verbose=0), atol=1e-5), name
            y = rng.uniform(-1, 1, pred.shape).astype("float32")
            arrays = {"x": x, "y": y, "pred": pred}
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            arrays["loss"] = np.array([model.train_on_batch(x, y)], dtype="float32")
            for i, w in enumerate(model.get_weights()):
                arrays[f"after_{i}"] = np.asarray(w).astype("float32")
            np.savez(os.path.join(OUT, f"{name}.npz"), **arrays)
        if name == "siamese_dense":
            xa = rng.uniform(-1, 1, (3, 5)).astype("float32")
            xb = rng.uniform(-1, 1, (3, 5)).astype("float32")
            np.savez(os.path.join(OUT, f"{name}.npz"), xa=xa, xb=xb,
                     pred=model.predict([xa, xb], verbose=0))
        print(name, facts["models"][name]["total"], "params")
    with open(os.path.join(OUT, "facts.json"), "w") as f:
        json.dump(facts, f, indent=1, sort_keys=True)


def check(directory):
    bad = 0
    for name in CASES:
        path = os.path.join(directory, f"{name}.keras")
        if not os.path.exists(path):
            print(f"{name}: not written by frostnet")
            bad += 1
            continue
        model = keras.models.load_model(path)
        want = open(os.path.join(OUT, f"{name}_summary_keras3.txt")).read()
        got = summary_text(model)
        if got != want:
            print(f"{name}: Keras's summary of frostnet's file differs:\n{got}")
            bad += 1
        xp = os.path.join(directory, f"{name}_x.npy")
        if os.path.exists(xp):
            pred = model.predict(np.load(xp), verbose=0)
            err = float(np.abs(pred - np.load(os.path.join(directory, f"{name}_pred.npy"))).max())
            print(f"{name}: loads, summary {'equal' if got == want else 'DIFFERS'}, "
                  f"max |Keras - frostnet| = {err:.2e}")
            if err > 1e-5:
                bad += 1
        else:
            print(f"{name}: loads, summary {'equal' if got == want else 'DIFFERS'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        make()
