"""Keras 3 (TensorFlow backend, CPU) side of the frostnet benchmark harness.

Usage: python bench/peers/keras_bench.py WORKLOAD --warmup W --reps R --threads 2
Prints exactly one JSON line on stdout (see bench/README.md).

Training steps default to a hand-written `tf.function` step (GradientTape +
Keras Adam, jit_compile=False): the leanest honest way to run one Keras step.
`--train-step train_on_batch` uses model.compile(jit_compile=False) +
model.train_on_batch instead. Inference defaults to model.predict_on_batch(x)
(Keras' own compiled predict function; it measured faster here than our own
tf.function around model(x, training=False), which `--infer tf_function` selects).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def extra_args(p):
    p.add_argument("--train-step", choices=["tf_function", "train_on_batch"], default="tf_function")
    p.add_argument("--infer", choices=["tf_function", "predict_on_batch"], default="predict_on_batch")
    p.add_argument("--xla", action="store_true", help="jit_compile=True (off by default)")


args = C.parse_args("keras", extra_args)
C.pin_thread_env(args.threads)
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must happen before TF creates its thread pools (i.e. before any op runs).
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
from keras import layers  # noqa: E402

keras.utils.set_random_seed(C.SEED)
rng = np.random.default_rng(C.SEED)
VERSION = f"keras {keras.__version__} / tensorflow {tf.__version__}"


def const(a):
    return tf.constant(a)


def train_step_fn(model, x, y, loss_fn):
    """Returns (step, mode)."""
    if args.train_step == "train_on_batch":
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss_fn, jit_compile=args.xla)

        def step():
            model.train_on_batch(x, y)  # returns Python/numpy scalars: synchronous

        return step, "train_on_batch"

    opt = keras.optimizers.Adam(1e-3)
    tvars = model.trainable_variables
    opt.build(tvars)

    @tf.function(jit_compile=args.xla)
    def tstep(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            loss = loss_fn(y, pred)
        grads = tape.gradient(loss, tvars)
        opt.apply_gradients(zip(grads, tvars))
        return loss

    def step():
        tstep(x, y).numpy()

    return step, "tf.function(GradientTape+Adam)" + (" xla" if args.xla else "")


def infer_fn(model, x):
    if args.infer == "predict_on_batch":
        def step():
            model.predict_on_batch(x)

        return step, "predict_on_batch"

    @tf.function(jit_compile=args.xla)
    def f(x):
        return model(x, training=False)

    def step():
        f(x).numpy()

    return step, "tf.function(model(x, training=False))" + (" xla" if args.xla else "")


def build(workload):
    if workload == "sgemm":
        n = C.SGEMM_N
        a = const(rng.standard_normal((n, n), dtype=np.float32))
        b = const(rng.standard_normal((n, n), dtype=np.float32))

        def step():
            # Eager CPU op: returns once the product is computed.
            tf.linalg.matmul(a, b)

        return step, {"n": n, "mode": "eager tf.linalg.matmul"}

    if workload == "mlp_train":
        model = keras.Sequential([
            keras.Input((256,)),
            layers.Dense(500, activation="relu"),
            layers.Dense(500, activation="relu"),
            layers.Dense(1),
        ])
        x = const(rng.standard_normal((256, 256), dtype=np.float32))
        y = const(rng.standard_normal((256, 1), dtype=np.float32))
        step, mode = train_step_fn(model, x, y, keras.losses.MeanSquaredError())
        return step, {"batch": 256, "mode": mode}

    if workload == "cnn_train":
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dense(10),
        ])
        x = const(rng.standard_normal((64, 28, 28, 1), dtype=np.float32))
        y = const(rng.integers(0, 10, (64,)).astype(np.int32))
        step, mode = train_step_fn(
            model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return step, {"batch": 64, "layout": "nhwc", "mode": mode}

    if workload == "inception_infer":
        model = keras.applications.InceptionV3(weights=None)  # with top (1000-way softmax)
        x = const(rng.standard_normal((1, 299, 299, 3), dtype=np.float32))
        step, mode = infer_fn(model, x)
        return step, {"batch": 1, "layout": "nhwc", "mode": mode}

    if workload in ("inception_frozen", "inception_finetune"):
        frozen = workload == "inception_frozen"
        base = keras.applications.InceptionV3(
            weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3))
        # Keras 3: a BatchNormalization layer with trainable=False runs in
        # inference mode (moving stats) even when called with training=True.
        base.trainable = not frozen
        inp = keras.Input((299, 299, 3))
        out = layers.Dense(200)(base(inp))
        model = keras.Model(inp, out)
        x = const(rng.standard_normal((8, 299, 299, 3), dtype=np.float32))
        y = const(rng.integers(0, 200, (8,)).astype(np.int32))
        step, mode = train_step_fn(
            model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ntrain = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        return step, {"batch": 8, "layout": "nhwc", "mode": mode, "trainable_params": ntrain}

    if workload == "image_pipeline":
        # Keras's own folder pipeline (tf.data: parallel decode_image + tf.image.resize,
        # prefetch), unshuffled like the other runners; one rep = one epoch.
        ds = keras.utils.image_dataset_from_directory(
            C.IMAGES_DIR, image_size=(C.PIPELINE_SIDE, C.PIPELINE_SIDE),
            batch_size=C.PIPELINE_BATCH, shuffle=False, verbose=False)
        n = len(ds.file_paths)

        def step():
            seen = 0
            for x, _ in ds:
                seen += int(x.shape[0])
            assert seen == n, (seen, n)

        return step, {"n": n, "batch": C.PIPELINE_BATCH,
                      "mode": "image_dataset_from_directory (tf.data), 1 epoch"}
    if workload == "transfer_fit":
        # The standard Keras recipe: frozen base, new Dense head, model.fit for 5 epochs over
        # the same 64 samples (shuffled each epoch) at batch 16.
        base = keras.applications.InceptionV3(
            weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3))
        base.trainable = False
        inp = keras.Input((299, 299, 3))
        out = layers.Dense(C.TRANSFER_CLASSES)(base(inp))
        model = keras.Model(inp, out)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=args.xla)
        n = C.TRANSFER_SAMPLES
        x = rng.standard_normal((n, 299, 299, 3), dtype=np.float32)
        y = rng.integers(0, C.TRANSFER_CLASSES, (n,)).astype(np.int32)

        def step():
            model.fit(x, y, batch_size=C.TRANSFER_BATCH, epochs=C.TRANSFER_EPOCHS, shuffle=True,
                      verbose=0)

        ntrain = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        return step, {"batch": C.TRANSFER_BATCH, "samples": n, "epochs": C.TRANSFER_EPOCHS,
                      "layout": "nhwc", "mode": "model.fit" + (" xla" if args.xla else ""),
                      "trainable_params": ntrain}

    raise SystemExit(f"unknown workload {workload}")


step, extra = build(args.workload)
times = C.time_reps(step, args.warmup, args.reps)
try:  # whether TF's oneDNN kernels are on (TF_ENABLE_ONEDNN_OPTS; TF's default is off on AVX2 CPUs)
    from tensorflow.python.util import _pywrap_util_port

    extra["tf_onednn"] = bool(_pywrap_util_port.IsMklEnabled())
except Exception:  # private API; informational only
    pass
C.emit("keras", args.workload, times, VERSION, args.threads, **extra)
