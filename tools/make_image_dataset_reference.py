"""Makes the image-folder fixtures for `crates/frostnet/tests/image_dataset.rs` with real Keras.

Usage: python3 tools/make_image_dataset_reference.py   (Keras 3 + TensorFlow, run from the repo root)

1. Draws a tiny folder `crates/frostnet/tests/fixtures/image_folder/` (deterministic: numpy seed 0):
   classes `Dog` (capital: sorts first, as Python's `sorted` does), `bird` (with a nested sub-folder),
   `cat`, plus things Keras ignores (a hidden folder, a `.txt`, a loose file in the root); PNG images
   of various sizes and modes (RGB, RGBA, grayscale, palette), an upper-case `.PNG`, one BMP, one
   GIF and one JPEG.
2. Runs `keras.utils.image_dataset_from_directory` with several option sets and records, per case,
   `class_names`, `file_paths` (relative), labels and the first batch (`.npy`) in
   `image_dataset_reference.json` / `image_dataset_<case>_x.npy`.
3. Records Keras's `preprocess_input` for the four applications on one small array.

The images are checked in, so the script only needs re-running when the cases change.
"""

import json
import os
import shutil

import numpy as np
from PIL import Image

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "frostnet", "tests", "fixtures")
FOLDER = os.path.join(ROOT, "image_folder")


def draw(rng, h, w, mode):
    """Smooth-ish content (gradients + noise) so resizing differences show."""
    yy, xx = np.mgrid[0:h, 0:w]
    chans = []
    for c in range(4):
        base = (xx * rng.uniform(-20, 20) + yy * rng.uniform(-20, 20) + rng.uniform(0, 255)) % 256
        chans.append(np.clip(base + rng.normal(0, 30, (h, w)), 0, 255))
    arr = np.stack(chans, -1).astype(np.uint8)
    if mode == "RGB":
        return Image.fromarray(arr[..., :3], "RGB")
    if mode == "RGBA":
        return Image.fromarray(arr, "RGBA")
    if mode == "L":
        return Image.fromarray(arr[..., 0], "L")
    if mode == "P":
        return Image.fromarray(arr[..., :3], "RGB").quantize(colors=16)
    raise ValueError(mode)


def make_folder():
    shutil.rmtree(FOLDER, ignore_errors=True)
    rng = np.random.default_rng(0)
    files = [
        ("Dog/d0.png", 20, 13, "RGB"),
        ("Dog/d1.png", 7, 5, "RGB"),
        ("Dog/D2.PNG", 16, 16, "RGBA"),
        ("Dog/d3.bmp", 11, 17, "RGB"),
        ("bird/b0.png", 33, 21, "L"),
        ("bird/b1.png", 9, 30, "P"),
        ("bird/nest/b2.png", 12, 12, "RGB"),
        ("bird/nest/b3.gif", 14, 10, "P"),
        ("bird/b_4.png", 25, 19, "RGBA"),
        ("cat/c0.png", 18, 24, "RGB"),
        ("cat/c1.png", 6, 6, "RGB"),
        ("cat/c2.jpg", 40, 30, "RGB"),
        ("cat/c10.png", 15, 22, "RGB"),
        (".hidden/h0.png", 8, 8, "RGB"),
    ]
    for rel, h, w, mode in files:
        path = os.path.join(FOLDER, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img = draw(rng, h, w, mode)
        if rel.endswith(".jpg"):
            img.save(path, quality=90)
        elif rel.endswith(".gif"):
            img.save(path)
        elif rel.endswith(".bmp"):
            img.save(path)
        else:
            img.save(path, format="PNG")
    with open(os.path.join(FOLDER, "cat", "notes.txt"), "w") as f:
        f.write("not an image\n")
    draw(rng, 8, 8, "RGB").save(os.path.join(FOLDER, "loose.png"))


CASES = {
    # name: keyword arguments (directory and verbose added)
    "default": dict(image_size=(16, 16), shuffle=False),
    "gray_nearest_cat": dict(
        image_size=(12, 20),
        color_mode="grayscale",
        interpolation="nearest",
        label_mode="categorical",
        # TensorFlow refuses 1-channel BMP and GIF decoding: only PNG/JPEG classes here.
        class_names=["cat"],
        shuffle=False,
    ),
    # TensorFlow decodes no 4-channel JPEG or GIF: the class with PNG and BMP only.
    "rgba_crop": dict(
        image_size=(10, 14),
        color_mode="rgba",
        crop_to_aspect_ratio=True,
        class_names=["Dog"],
        shuffle=False,
    ),
    "crop_binary": dict(
        image_size=(14, 10),
        crop_to_aspect_ratio=True,
        label_mode="binary",
        class_names=["cat", "Dog"],
        shuffle=False,
    ),
    "nolabels_batch5": dict(image_size=(8, 8), label_mode=None, batch_size=5, shuffle=False),
    "split_unshuffled_training": dict(
        image_size=(8, 8), shuffle=False, validation_split=0.3, subset="training"
    ),
    "split_unshuffled_validation": dict(
        image_size=(8, 8), shuffle=False, validation_split=0.3, subset="validation"
    ),
}
# Shuffled splits: only the order of the file list (numpy's RandomState shuffle) and the split are
# compared; tf.data's per-epoch shuffle buffer is not reproduced.
SHUFFLED = {
    "seed1337_both": dict(seed=1337, validation_split=0.25, subset="both"),
    "seed7_training": dict(seed=7, validation_split=0.4, subset="training"),
    "seed0_noval": dict(seed=0),
}


def rel(paths):
    return [os.path.relpath(p, FOLDER).replace(os.sep, "/") for p in paths]


def run_cases():
    ref = {"cases": {}, "shuffled": {}}
    for name, kw in CASES.items():
        ds = keras.utils.image_dataset_from_directory(FOLDER, verbose=False, **kw)
        first = next(iter(ds))
        if kw.get("label_mode", "int") is None:
            x, y = first, None
        else:
            x, y = first
        np.save(os.path.join(ROOT, f"image_dataset_{name}_x.npy"), x.numpy().astype(np.float32))
        ref["cases"][name] = {
            "options": kw,
            "class_names": ds.class_names,
            "file_paths": rel(ds.file_paths),
            "first_batch_shape": list(x.shape),
            "first_batch_labels": None if y is None else y.numpy().astype(float).tolist(),
            "batches": int(ds.cardinality().numpy()),
        }
    for name, kw in SHUFFLED.items():
        out = keras.utils.image_dataset_from_directory(
            FOLDER, verbose=False, image_size=(8, 8), **kw
        )
        dss = out if isinstance(out, (list, tuple)) else [out]
        entry = {"options": kw, "subsets": []}
        for ds in dss:
            entry["subsets"].append({"class_names": ds.class_names, "file_paths": rel(ds.file_paths)})
        ref["shuffled"][name] = entry
    return ref


def preprocess_reference(ref):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    np.save(os.path.join(ROOT, "preprocess_input_x.npy"), x)
    apps = keras.applications
    for name, fn in [
        ("inception_v3", apps.inception_v3.preprocess_input),
        ("mobilenet_v2", apps.mobilenet_v2.preprocess_input),
        ("resnet50", apps.resnet50.preprocess_input),
        ("vgg16", apps.vgg16.preprocess_input),
    ]:
        np.save(os.path.join(ROOT, f"preprocess_input_{name}.npy"), np.asarray(fn(x.copy())))
    ref["preprocess_input"] = ["inception_v3", "mobilenet_v2", "resnet50", "vgg16"]


def main():
    make_folder()
    ref = run_cases()
    preprocess_reference(ref)
    ref["keras_version"] = keras.__version__
    with open(os.path.join(ROOT, "image_dataset_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
