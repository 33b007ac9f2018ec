#!/usr/bin/python3
"""Copies of images with every colour value moved one grey level up or down at random (clipped to 0..255):
the least an 8-bit image can change, and less than a camera's own noise. Predictions on the copies,
compared with bench/prediction_agreement.py, show how many pixels a network changes under that change
alone: the yardstick for the differences that a lower precision makes.

Usage: bench/perturb_images.py SRC_DIR DST_DIR [SEED]  (the PNGs of SRC_DIR, written under the same names)
"""
import os
import pathlib
import sys

import numpy as np
from PIL import Image

if len(sys.argv) not in (3, 4):
    sys.exit(__doc__)
src, dst = map(pathlib.Path, sys.argv[1:3])
try:
    seed = int(sys.argv[3]) if len(sys.argv) == 4 else 1
except ValueError:
    sys.exit(f"SEED: {sys.argv[3]!r} is not an integer")
paths = sorted(src.glob("*.png"))
if not paths:
    sys.exit(f"{src}: no PNG images")
if dst.resolve() == src.resolve():
    sys.exit(f"{dst}: must not be the source folder")
dst.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(seed)
for path in paths:
    try:
        image = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
    except OSError as e:
        sys.exit(f"{path}: not a readable image ({e})")
    step = rng.choice(np.array([-1, 1], dtype=np.int16), size=image.shape)
    # Written beside its final name, then renamed, so an interrupted run leaves no half-written PNG.
    partial = dst / (path.stem + ".partial.png")
    Image.fromarray(np.clip(image + step, 0, 255).astype(np.uint8)).save(partial)
    os.replace(partial, dst / path.name)
print(f"wrote {len(paths)} images to {dst} (seed {seed})")
