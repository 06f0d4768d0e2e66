"""Keras 3 summaries at narrow terminal widths, for `tests/summary_width.rs`.

Keras renders `model.summary()` with rich, whose console takes its width from the terminal (or the
COLUMNS variable); a table wider than the console is shrunk. This script prints the same two
models at several widths, each in a fresh process so rich reads COLUMNS anew.

    python3 tools/make_summary_width_reference.py

writes crates/frostnet/tests/fixtures/summary_width/{sequential,functional}_{W}[_trainable].txt
and the two models as {sequential,functional}.keras
"""
import os
import subprocess
import sys

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "summary_width")
WIDTHS = [40, 60, 80, 100, 120, 200]

CHILD = r'''
import io, sys
import keras
kind, trainable = sys.argv[1], sys.argv[2] == "1"
keras.backend.clear_session()
if kind == "sequential":
    m = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(4, 3, name="conv2d_with_a_rather_long_name"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
else:
    i = keras.Input((8,))
    a = keras.layers.Dense(4)(i)
    b = keras.layers.Dense(4, trainable=False)(i)
    m = keras.Model(i, keras.layers.Add()([a, b]))
if len(sys.argv) > 3:
    m.save(sys.argv[3])
    sys.exit(0)
buf = io.StringIO()
m.summary(show_trainable=trainable, print_fn=lambda s, line_break=False: buf.write(s))
sys.stdout.write(buf.getvalue())
'''


def main():
    os.makedirs(OUT, exist_ok=True)
    for kind in ["sequential", "functional"]:
        for trainable in [False, True]:
            for w in WIDTHS:
                env = dict(os.environ, COLUMNS=str(w), KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
                text = subprocess.run(
                    [sys.executable, "-c", CHILD, kind, "1" if trainable else "0"],
                    env=env, check=True, capture_output=True, text=True,
                ).stdout
                name = f"{kind}_{w}{'_trainable' if trainable else ''}.txt"
                with open(os.path.join(OUT, name), "w") as f:
                    f.write(text)
                print(name, len(text.splitlines()[1]))
        # The model itself, for the CLI's test (`COLUMNS=60 frostnet summary FILE`).
        subprocess.run([sys.executable, "-c", CHILD, kind, "0", os.path.join(OUT, f"{kind}.keras")],
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=True)


if __name__ == "__main__":
    main()
