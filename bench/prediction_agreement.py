#!/usr/bin/python3
"""Share of pixels on which two folders of predicted class-id PNGs (same names) agree, and where they
differ: the share of the differing pixels that lie on DIR_A's class boundaries (within one pixel of a
pixel of another class, the 3x3 neighbourhood), where a network that moves a boundary slightly
disagrees, against pixels away from any boundary, where it changed its mind.

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


a_dir, b_dir = map(pathlib.Path, sys.argv[1:3])
names = sorted(p.name for p in a_dir.glob("*.png") if not p.stem.endswith(("_color", "_overlay", "_uncertainty")))
if not names:
    sys.exit(f"{a_dir}: no class-id PNGs")
same = total = band_pixels = differ_in_band = 0
worst = (1.0, "")
for name in names:
    a = np.asarray(Image.open(a_dir / name))
    b = np.asarray(Image.open(b_dir / name))
    if a.shape != b.shape:
        sys.exit(f"{b_dir / name}: size {b.shape} differs from {a.shape}")
    agree = (a == b).mean()
    worst = min(worst, (agree, name))
    same += int((a == b).sum())
    total += a.size
    band = boundary_band(a)
    band_pixels += int(band.sum())
    differ_in_band += int(((a != b) & band).sum())
differ = total - same
print(f"{len(names)} images, {total} pixels: {100.0 * same / total:.3f}% agree; "
      f"lowest image {worst[1]} at {100.0 * worst[0]:.2f}%; "
      f"{100.0 * differ_in_band / max(differ, 1):.1f}% of the differences on {a_dir.name}'s class boundaries "
      f"({100.0 * band_pixels / total:.1f}% of the pixels), "
      f"{100.0 * (1 - (differ - differ_in_band) / (total - band_pixels)):.3f}% agree away from them")
