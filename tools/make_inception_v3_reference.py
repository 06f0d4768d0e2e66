"""Makes the ground truth for frostnet's InceptionV3 weight-loading check (not part of the tests).

Builds keras.applications.InceptionV3(weights=None) with a fixed seed, saves its weights as a
Keras 3 `.weights.h5` and as a legacy full-model `.h5`, and saves an input and Keras's prediction.
The files are ~90 MB each, so they go to a scratch directory, not the repository:

    bench/.venv/bin/python tools/make_inception_v3_reference.py /tmp/iv3
    FROSTNET_INCEPTION_V3_DIR=/tmp/iv3 cargo test -p frostnet --test inception_v3_weights -- --ignored
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import keras  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/iv3"
os.makedirs(out, exist_ok=True)
keras.utils.set_random_seed(7)
for top in (True, False):
    keras.backend.clear_session()
    kw = {} if top else {"include_top": False, "pooling": "avg"}
    model = keras.applications.InceptionV3(weights=None, **kw)
    # Non-default BN statistics, so a loader that skips them fails the check.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(np.random.uniform(-0.1, 0.1, mean.shape).astype("float32"))
            var.assign(np.random.uniform(0.5, 1.5, var.shape).astype("float32"))
    name = "top" if top else "notop"
    x = np.random.RandomState(1).uniform(-1, 1, (2, 299, 299, 3)).astype("float32")
    np.save(f"{out}/input.npy", x)
    np.save(f"{out}/{name}_output.npy", model.predict(x, verbose=0))
    model.save_weights(f"{out}/{name}.weights.h5")
    model.save(f"{out}/{name}_legacy.h5")
    print(name, model.count_params())
