#!/usr/bin/python3
"""Share of pixels on which two folders of predicted class-id PNGs (same names) agree.

Usage: bench/prediction_agreement.py DIR_A DIR_B  (class-id images as written by segnet predict)
"""
import pathlib
import sys

import numpy as np
from PIL import Image

a_dir, b_dir = map(pathlib.Path, sys.argv[1:3])
names = sorted(p.name for p in a_dir.glob("*.png") if not p.stem.endswith(("_color", "_overlay", "_uncertainty")))
if not names:
    sys.exit(f"{a_dir}: no class-id PNGs")
same = total = 0
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
print(f"{len(names)} images, {total} pixels: {100.0 * same / total:.3f}% agree; "
      f"lowest image {worst[1]} at {100.0 * worst[0]:.2f}%")
