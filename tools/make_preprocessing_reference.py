"""Keras-made fixtures for frostnet's image preprocessing layers (issue #15, point 3).

Run with Keras 3.15.1 (TF backend): `python3 tools/make_preprocessing_reference.py`. It writes,
under crates/frostnet/tests/fixtures/preprocessing/:

  preprocessing.npz    x, x_small (inputs) and, per case, Keras's output:
      * inference outputs of the deterministic layers (Resizing with each option, CenterCrop
        cropping and upsizing) and of RandomCrop at inference (Keras 3 returns the input);
      * training-mode outputs of the random layers with their random factor pinned to one
        value (factor bounds equal, e.g. a rotation of exactly 90 or 36 degrees), for every
        fill_mode x interpolation: the random draw is then `minval + u * 0 = minval`, so these
        are Keras's exact geometric transforms, independent of its random stream.
  model.keras          a Sequential holding every preprocessing layer (and an adapted
                       Normalization), as Keras saves it
  model.npz            x and pred = model.predict(x) (inference: the random layers pass through)

`python3 tools/make_preprocessing_reference.py --check FILE.keras NPZ` instead loads a .keras
frostnet wrote, predicts on NPZ's x and compares with NPZ's pred (exit 1 if off by > 1e-5).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras import layers

OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures", "preprocessing"
)

FILLS = ["reflect", "wrap", "constant", "nearest"]
INTERPS = ["bilinear", "nearest"]


def check(path, npz):
    a = np.load(npz)
    m = keras.saving.load_model(path)
    pred = m.predict(a["x"], verbose=0)
    err = float(np.abs(pred - a["pred"]).max())
    print(path, "max abs error", err)
    sys.exit(0 if err <= 1e-5 else 1)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(15)
    x = rng.uniform(0, 1, (2, 10, 12, 3)).astype("float32")
    x_small = rng.uniform(0, 1, (2, 5, 6, 3)).astype("float32")
    out = {"x": x, "x_small": x_small}

    def infer(name, layer, inp=x):
        out[name] = keras.ops.convert_to_numpy(layer(inp, training=False))

    def train(name, layer, inp=x):
        out[name] = keras.ops.convert_to_numpy(layer(inp, training=True))

    infer("resize_bilinear", layers.Resizing(7, 9))
    infer("resize_nearest", layers.Resizing(7, 9, interpolation="nearest"))
    infer("resize_up", layers.Resizing(13, 17))
    infer("resize_crop", layers.Resizing(7, 5, crop_to_aspect_ratio=True))
    infer("resize_crop_wide", layers.Resizing(4, 11, crop_to_aspect_ratio=True))
    infer("resize_pad", layers.Resizing(6, 4, pad_to_aspect_ratio=True, fill_value=0.5))
    infer("resize_pad_wide", layers.Resizing(4, 10, pad_to_aspect_ratio=True, fill_value=0.25))
    infer("center_crop", layers.CenterCrop(6, 7))
    infer("center_crop_up", layers.CenterCrop(12, 8))
    infer("random_crop_infer", layers.RandomCrop(4, 5))

    for fill in FILLS:
        for interp in INTERPS:
            k = f"{fill}_{interp}"
            opts = dict(fill_mode=fill, interpolation=interp, fill_value=0.3)
            train(f"rot90_{k}", layers.RandomRotation((0.25, 0.25), **opts))
            train(f"rot36_{k}", layers.RandomRotation((0.1, 0.1), **opts))
            train(f"rotm54_{k}", layers.RandomRotation((-0.15, -0.15), **opts))
            train(f"zoom_{k}", layers.RandomZoom((-0.3, -0.3), (0.2, 0.2), **opts))
            train(f"zoomout_{k}", layers.RandomZoom((0.5, 0.5), **opts))
            train(f"translate_{k}", layers.RandomTranslation((0.3, 0.3), (-0.25, -0.25), **opts))
    train("contrast", layers.RandomContrast((-0.3, 0.3), value_range=(0, 1)))
    train("brightness_up", layers.RandomBrightness((0.1, 0.1), value_range=(0, 1)))
    train("brightness_down", layers.RandomBrightness((-0.4, -0.4), value_range=(0, 1)))
    train("random_crop_small", layers.RandomCrop(8, 9), x_small)
    train("random_crop_tall", layers.RandomCrop(10, 5))
    np.savez(os.path.join(OUT, "preprocessing.npz"), **out)

    norm = layers.Normalization(name="norm")
    norm.adapt(layers.CenterCrop(8, 9)(layers.Resizing(9, 11, crop_to_aspect_ratio=True)(x)))
    model = keras.Sequential(
        [
            keras.Input((10, 12, 3)),
            layers.RandomFlip("horizontal", seed=1),
            layers.RandomRotation(0.1, seed=2),
            layers.RandomZoom(0.1, 0.2, fill_mode="nearest"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=0.5),
            layers.RandomContrast(0.2, value_range=(0, 1)),
            layers.RandomBrightness(0.1, value_range=(0, 1)),
            layers.Resizing(9, 11, crop_to_aspect_ratio=True),
            layers.CenterCrop(8, 9),
            norm,
            layers.RandomCrop(6, 7, seed=3),
        ],
        name="preprocessing",
    )
    pred = model.predict(x, verbose=0)
    model.save(os.path.join(OUT, "model.keras"))
    np.savez(os.path.join(OUT, "model.npz"), x=x, pred=pred)
    print("wrote", len(out), "arrays; model output", pred.shape)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        main()
