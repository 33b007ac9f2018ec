#!/usr/bin/python3
"""How good are pseudo-labels where the true labels exist but were not used for training?

Usage: bench/pseudo_label_precision.py MASK_DIR LIST CLASSES_CSV [--json OUT]
  MASK_DIR     masks written by `segnet pseudo-label` (STEM.png, void where unconfident)
  LIST         `IMAGE LABEL` lines (absolute paths) of the same images, with their true labels
  CLASSES_CSV  id,name,... of the dataset; class ids >= the class count are void in both
Prints per class, over pixels with a true label: the share of its pixels that got a confident
pseudo-label of any class (confident), the share pseudo-labelled as it (recall), and the share of pixels
pseudo-labelled as it that truly are it (precision).
"""
import argparse
import csv
import json
import pathlib

import numpy as np
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("masks", type=pathlib.Path)
parser.add_argument("list", type=pathlib.Path)
parser.add_argument("classes", type=pathlib.Path)
parser.add_argument("--json", type=pathlib.Path)
args = parser.parse_args()

with open(args.classes) as f:
    names = [row[1] for row in csv.reader(f) if row and row[0].strip().isdigit()]
k = len(names)
# confusion[true, pseudo] over pixels with a true label; column k counts unconfident (void) pseudo-labels.
confusion = np.zeros((k, k + 1), np.int64)
for line in open(args.list):
    if not line.strip():
        continue
    image, label = line.split()[:2]
    mask_file = args.masks / (pathlib.Path(image).stem + ".png")
    if not mask_file.exists():
        raise SystemExit(f"{mask_file}: missing (pseudo-label every image of {args.list})")
    truth = np.asarray(Image.open(label)).astype(np.int64)
    pseudo = np.asarray(Image.open(mask_file)).astype(np.int64)
    if truth.shape != pseudo.shape:
        raise SystemExit(f"{mask_file}: {pseudo.shape} pixels, but its label {label} has {truth.shape}")
    keep = truth < k
    pseudo = np.where(pseudo < k, pseudo, k)
    confusion += np.bincount(truth[keep] * (k + 1) + pseudo[keep], minlength=k * (k + 1)).reshape(k, k + 1)

confident = confusion[:, :k]
rows = []
for c, name in enumerate(names):
    labelled_as = confident[:, c].sum()
    rows.append({"class": name,
                 "confident": confident[c].sum() / max(confusion[c].sum(), 1),
                 "recall": confident[c, c] / max(confusion[c].sum(), 1),
                 "precision": confident[c, c] / labelled_as if labelled_as else None})  # None: never predicted
share = confident.sum() / max(confusion.sum(), 1)
accuracy = np.trace(confident) / max(confident.sum(), 1)
print(f"confident share {share:.3f}, accuracy of confident pixels {accuracy:.3f}")
print("| class | confident | recall | precision |\n| --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['class']} | {r['confident']:.3f} | {r['recall']:.3f} | {'-' if r['precision'] is None else format(r['precision'], '.3f')} |")
if args.json:
    args.json.write_text(json.dumps({"confident_share": share, "accuracy": accuracy, "classes": rows}, indent=2) + "\n")
