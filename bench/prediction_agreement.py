#!/usr/bin/python3
"""Share of pixels on which two folders of predicted class-id PNGs (same names) agree, and where they
differ: on DIR_A's class boundaries (pixels whose 3x3 neighbourhood holds another class), where a
slightly moved boundary shows, or away from them, where a whole region changed class.

Usage: bench/prediction_agreement.py DIR_A DIR_B  (class-id images as written by segnet predict)
"""
import pathlib
import sys

import numpy as np
from PIL import Image


def boundary_band(labels):
    """Pixels whose 3x3 neighbourhood holds more than one class."""
    padded = np.pad(labels, 1, mode="edge")
    h, w = labels.shape
    band = np.zeros(labels.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            band |= padded[dy:dy + h, dx:dx + w] != labels
    return band


if len(sys.argv) != 3:
    sys.exit(__doc__)
a_dir, b_dir = map(pathlib.Path, sys.argv[1:3])
names = sorted(p.name for p in a_dir.glob("*.png") if not p.stem.endswith(("_color", "_overlay", "_uncertainty")))
if not names:
    sys.exit(f"{a_dir}: no class-id PNGs")
same = total = band_pixels = differ_in_band = 0
worst = (1.0, "")
for name in names:
    if not (b_dir / name).is_file():
        sys.exit(f"{b_dir / name}: missing (it is in {a_dir})")
    a = np.asarray(Image.open(a_dir / name))
    b = np.asarray(Image.open(b_dir / name))
    if a.shape != b.shape:
        sys.exit(f"{b_dir / name}: size {b.shape} differs from {a.shape}")
    differs = a != b
    worst = min(worst, (1.0 - differs.mean(), name))
    same += int(a.size - differs.sum())
    total += a.size
    band = boundary_band(a)
    band_pixels += int(band.sum())
    differ_in_band += int((differs & band).sum())
differ = total - same
print(f"{len(names)} images, {total} pixels: {100.0 * same / total:.3f}% agree; "
      f"lowest image {worst[1]} at {100.0 * worst[0]:.2f}%; "
      f"{100.0 * differ_in_band / max(differ, 1):.1f}% of the differences on {a_dir.name}'s class boundaries "
      f"({100.0 * band_pixels / total:.1f}% of the pixels), "
      f"{100.0 * (1 - (differ - differ_in_band) / max(total - band_pixels, 1)):.3f}% agree away from them")
