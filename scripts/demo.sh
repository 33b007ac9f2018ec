#!/usr/bin/env bash
# The main job on the built-in default: installs what is missing, builds, synthesizes a labelled
# dataset, trains segnet-basic on it for a couple of minutes, evaluates it and writes overlays.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
out=${1:-demo}
rm -rf "$out"
build/segnet synth --out "$out/data" --count 150 --size 72x96 --seed 1
build/segnet train --data "$out/data" --model segnet-basic --size 72x96 --epochs 6 --batch 8 \
  --optimizer adam --out "$out/run"
build/segnet eval --checkpoint "$out/run/best.pt" --data "$out/data" --list val.txt --json "$out/eval.json"
build/segnet predict --checkpoint "$out/run/best.pt" --out "$out/predictions" \
  "$out"/data/val/val_120.png "$out"/data/val/val_121.png "$out"/data/val/val_122.png
echo "metrics: $out/eval.json  per-epoch log: $out/run/metrics.csv  overlays: $out/predictions/"
