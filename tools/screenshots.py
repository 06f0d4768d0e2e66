#!/usr/bin/env python3
"""Open frostnet's pictures in a real headless browser and save screenshots of them.

The tests prove that the SVG parses, the PNG decodes and the HTML holds the plots' data; this
script proves that a browser actually draws them: it makes a model graph (`frostnet plot-model`)
and a tuner report (`frostnet tune` then `frostnet tune report`), opens each in headless Chromium,
saves a screenshot, and fails if a screenshot is blank (one colour) or the browser drew nothing.

    apt-get install chromium          # Debian's Chromium (/usr/bin/chromium)
    cargo build --release -p frostnet-cli
    python3 tools/screenshots.py [--frostnet target/release/frostnet] [--out docs/screenshots]

Needs only the standard library and Pillow (for the blank check). The screenshots in
docs/screenshots/ are what this script wrote; README.md shows them.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

# Flags that keep Chromium from reaching for Google's hosts on a machine without network, and
# from needing a sandbox when run as root in a container.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=3000",
]


def run(cmd, **kw):
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def screenshot(browser, url, out_png, width, height, profile_dir):
    run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
         f"--window-size={width},{height}", f"--screenshot={out_png}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not os.path.exists(out_png):
        sys.exit(f"{browser} wrote no screenshot for {url}")
    check_not_blank(out_png)


def svg_size(path):
    """The picture's own width and height (plot-model writes them in pixels), so the screenshot
    holds the whole graph and nothing else."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return (int(float(root.get("width").removesuffix("px"))) + 1,
            int(float(root.get("height").removesuffix("px"))) + 1)


def check_not_blank(png):
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 16)
    # getcolors returns None when there are more colours than maxcolors: certainly not blank.
    if colours is not None and len(colours) < 8:
        sys.exit(f"{png}: the browser drew an (almost) blank page ({len(colours)} colours)")
    print(f"{png}: {img.width}x{img.height}, "
          f"{'many' if colours is None else len(colours)} colours")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frostnet", default=os.path.join(root, "target/release/frostnet"))
    ap.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--out", default=os.path.join(root, "docs/screenshots"))
    ap.add_argument("--trials", type=int, default=40)
    args = ap.parse_args()
    for exe in (args.frostnet, args.browser):
        if not os.path.exists(exe):
            sys.exit(f"not found: {exe} (see this script's docstring)")
    os.makedirs(args.out, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        profile = os.path.join(tmp, "chromium-profile")
        # The model graph: a Keras-made model with a frozen nested base (BatchNormalization
        # state inside) and a trainable head, small enough to read in one screenshot.
        graph = os.path.join(tmp, "model.svg")
        nested = os.path.join(root, "crates/frostnet/tests/fixtures/cnn_nested.keras")
        run([args.frostnet, "plot-model", nested, "--show-shapes", "--show-layer-names",
             "--show-trainable", "--expand-nested", "--output", graph])
        width, height = svg_size(graph)
        screenshot(args.browser, "file://" + graph,
                   os.path.join(args.out, "model_graph.png"), width, height, profile)

        # The tuner report: a TPE search over the bundled digits MLP.
        store = "sqlite:" + os.path.join(tmp, "study.sqlite3")
        run([args.frostnet, "tune", "--store", store, "--study", "digits_mlp",
             "--algorithm", "tpe", "--trials", str(args.trials), "--epochs", "4"],
            stdout=subprocess.DEVNULL)
        report = os.path.join(tmp, "report.html")
        run([args.frostnet, "tune", "report", "--store", store, "--study", "digits_mlp",
             "--output", report])
        screenshot(args.browser, "file://" + report,
                   os.path.join(args.out, "tune_report.png"), 1280, 1500, profile)


if __name__ == "__main__":
    main()
