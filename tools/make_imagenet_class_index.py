#!/usr/bin/env python3
"""Builds the ImageNet class index frostnet bundles (`decode_predictions`, `frostnet predict`),
byte for byte Keras's `imagenet_class_index.json`, from data published on PyPI.

Keras downloads its file from storage.googleapis.com; this rebuilds it from timm's wheel, which
ships the 1000 ImageNet-1k WordNet ids in class order (`timm/data/_info/imagenet_synsets.txt`) and
each synset's WordNet lemmas (`imagenet_synset_to_lemma.txt`). Keras's name of a class is the
synset's first lemma with spaces as underscores (`great white shark, white shark, ...` ->
`great_white_shark`), and its file is Python's `json.dumps` of `{"0": [wnid, name], ...}`.
The script fails unless the bytes hash to the MD5 Keras publishes for its file
(the `file_hash` of `decode_predictions` in `keras/src/applications/imagenet_utils.py`).

Usage (from the repository root):
    python3 tools/make_imagenet_class_index.py [TIMM_WHEEL]
Without a wheel it runs `pip download timm==1.0.31 --no-deps` into a temporary folder.
"""

import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

KERAS_MD5 = "c2c37ea517e94d9795004a39431a14cb"
TIMM = "timm==1.0.31"
OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "frostnet", "src", "applications",
    "imagenet_class_index.json",
)


def timm_wheel(tmp):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", TIMM, "--no-deps", "-q", "-d", tmp],
        check=True,
    )
    return glob.glob(os.path.join(tmp, "timm-*.whl"))[0]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        wheel = sys.argv[1] if len(sys.argv) > 1 else timm_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            synsets = z.read("timm/data/_info/imagenet_synsets.txt").decode().split()
            lemmas = dict(
                line.split("\t", 1)
                for line in z.read("timm/data/_info/imagenet_synset_to_lemma.txt")
                .decode()
                .splitlines()
            )
    assert len(synsets) == 1000 and len(set(synsets)) == 1000, len(synsets)
    index = {
        str(i): [wnid, lemmas[wnid].split(", ")[0].replace(" ", "_")]
        for i, wnid in enumerate(synsets)
    }
    data = json.dumps(index).encode()
    md5 = hashlib.md5(data).hexdigest()
    if md5 != KERAS_MD5:
        sys.exit(f"MD5 {md5} differs from Keras's {KERAS_MD5}; not written")
    with open(OUT, "wb") as f:
        f.write(data)
    print(f"wrote {OUT}: {len(data)} bytes, MD5 {md5} (Keras's)")


if __name__ == "__main__":
    main()
