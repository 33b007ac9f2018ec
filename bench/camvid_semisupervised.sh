#!/usr/bin/env bash
# Issue-4 experiment: label 1/8 of CamVid's train list (every 8th line: 46 images, written to
# OUT/labelled.txt), use the other 321 as unlabelled images, and train the same model at the same
# size for the same number of optimizer steps with and without pseudo-labels. Prints both val mIoUs:
# of the last epoch, the best epoch, and the mean of the last 10 epochs (single epochs swing by a
# couple of points). The two arms run side by side, each on half of the cores.
# Usage: bench/camvid_semisupervised.sh [CAMVID_DIR] [OUT_DIR] [EPOCHS] [SIZE] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${1:-../shared/camvid}")
out=$(realpath -m "${2:-runs/semisupervised}")
epochs=${3:-150}
size=${4:-120x160}
seed=${5:-1}
mkdir -p "$out"
awk 'NR % 8 == 1' "$data/train.txt" | sed "s|^|$data/|; s| | $data/|" > "$out/labelled.txt"
awk 'NR % 8 != 1' "$data/train.txt" | sed "s|^|$data/|; s| | $data/|" > "$out/unlabelled.txt"
echo "labelled: $(wc -l < "$out/labelled.txt") images ($out/labelled.txt); unlabelled: $(wc -l < "$out/unlabelled.txt")"
common=(--data "$data" --train-list "$out/labelled.txt" --model segnet-basic --size "$size" --epochs "$epochs"
        --batch 4 --optimizer adam --precision bf16 --seed "$seed" --threads $((($(nproc) + 1) / 2)))
rm -rf "$out/supervised" "$out/pseudo"
build/segnet train "${common[@]}" --out "$out/supervised" > "$out/supervised.log" 2>&1 &
supervised=$!
trap 'kill "$supervised" 2>/dev/null || true' EXIT
build/segnet train "${common[@]}" --out "$out/pseudo" --unlabeled "$out/unlabelled.txt" \
  --pseudo-weight 1.0 --pseudo-threshold 0.9 --pseudo-rampup $((epochs / 3))
wait $supervised || { echo "supervised run failed: see $out/supervised.log" >&2; exit 1; }
best() { awk -F, 'NR > 1 && $5 > m { m = $5 } END { printf "%.4f", m }' "$1/metrics.csv"; }
last() { tail -n 1 "$1/metrics.csv" | cut -d, -f5; }
last10() { tail -n +2 "$1/metrics.csv" | tail -n 10 | awk -F, '{ s += $5 } END { printf "%.4f", s / NR }'; }
echo "| run (seed $seed) | last val mIoU | best val mIoU | mean of last 10 epochs |" | tee "$out/summary.md"
echo "| --- | --- | --- | --- |" | tee -a "$out/summary.md"
for run in supervised pseudo; do
  echo "| $run | $(last "$out/$run") | $(best "$out/$run") | $(last10 "$out/$run") |" | tee -a "$out/summary.md"
done
