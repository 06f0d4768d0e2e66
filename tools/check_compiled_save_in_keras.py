"""Keras 3 loads frostnet's compiled `.keras` files compiled and resumes training (issue #14, point 6).

1. `FROSTNET_COMPILED_OUT=/tmp/compiled cargo test -p frostnet --test compiled_save -- --ignored
   write_compiled_models_for_keras` writes NAME.keras (a small model trained two steps by frostnet
   with Adam, AdamW, SGD with Nesterov momentum, centered RMSprop with momentum, Adam on an
   ExponentialDecay schedule), x.npy and y.npy.
2. `python3 tools/check_compiled_save_in_keras.py /tmp/compiled` loads each with
   `keras.saving.load_model` (compile=True), checks that it comes back compiled with the optimizer
   frostnet saved (class, iterations = 2, every optimizer variable restored: Keras warns and skips
   them when the count differs, which this script turns into an error), then runs
   `evaluate(x, y, batch_size=4)` and one `train_on_batch(x[:4], y[:4])`, and stores Keras's
   numbers in crates/frostnet/tests/fixtures/compiled_save/NAME_keras.npz: evaluate_loss,
   evaluate_mae, step_loss, after_i (model.get_weights() after the step).
"""

import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "compiled_save"
)
EXPECT = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "schedule": "Adam",
}


def main(d):
    os.makedirs(OUT, exist_ok=True)
    x, y = np.load(os.path.join(d, "x.npy")), np.load(os.path.join(d, "y.npy"))
    for name, cls in EXPECT.items():
        path = os.path.join(d, name + ".keras")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Skipping variable loading for optimizer" fails
            m = keras.saving.load_model(path)
        opt = m.optimizer
        assert type(opt).__name__ == cls, (name, type(opt).__name__)
        assert int(opt.iterations.numpy()) == 2, (name, opt.iterations)
        saved = len(opt.variables)
        assert saved > 2, (name, saved)
        loss, mae = m.evaluate(x, y, batch_size=4, verbose=0)
        step = m.train_on_batch(x[:4], y[:4])
        step = step[0] if isinstance(step, list) else step
        arrays = {
            "evaluate_loss": np.array([loss], dtype="float32"),
            "evaluate_mae": np.array([mae], dtype="float32"),
            "step_loss": np.array([step], dtype="float32"),
        }
        for i, w in enumerate(m.get_weights()):
            arrays[f"after_{i}"] = np.asarray(w, dtype="float32")
        np.savez(os.path.join(OUT, name + "_keras.npz"), **arrays)
        print(name, cls, "optimizer variables", saved, "evaluate", loss, mae, "step", step)


if __name__ == "__main__":
    main(sys.argv[1])
