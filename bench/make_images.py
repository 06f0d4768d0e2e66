"""Generate the `image_pipeline` workload's photos once (run by bench/setup in bench/.venv).

2,000 JPEG files (quality 90) of mixed sizes around 500x375 (landscape and portrait, 300-620
pixels a side) in 4 class folders under bench/.data/image_pipeline/ (or the folder given as the
first argument). Each image is photo-like rather than white noise, so JPEG sizes and decode
costs resemble photographs: a smooth random background (low-resolution noise upsampled bicubic),
a few filled shapes, and mild per-pixel noise. Fixed seed; an existing complete folder is kept.
"""

import os
import sys

import numpy as np
from PIL import Image, ImageDraw

N, CLASSES, SEED = 2000, 4, 15
here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, ".data", "image_pipeline")


def existing():
    total = 0
    for c in range(CLASSES):
        d = os.path.join(out, f"class_{c}")
        if os.path.isdir(d):
            total += sum(1 for f in os.listdir(d) if f.endswith(".jpg"))
    return total


if existing() == N:
    print(f"{out}: {N} images already there")
    sys.exit(0)

rng = np.random.default_rng(SEED)
for c in range(CLASSES):
    os.makedirs(os.path.join(out, f"class_{c}"), exist_ok=True)
for i in range(N):
    w, h = int(rng.integers(440, 621)), int(rng.integers(300, 451))
    if i % 5 == 4:  # one in five is portrait
        w, h = h, w
    low = rng.uniform(0, 255, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype("uint8")
    img = Image.fromarray(low).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
    a = np.asarray(img, dtype=np.int16) + rng.normal(0, 6, (h, w, 3)).astype(np.int16)
    img = Image.fromarray(np.clip(a, 0, 255).astype("uint8"))
    img.save(os.path.join(out, f"class_{i % CLASSES}", f"img_{i:04d}.jpg"), quality=90)
print(f"{out}: wrote {N} images")
