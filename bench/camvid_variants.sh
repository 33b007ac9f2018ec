#!/usr/bin/env bash
# Issue-4 comparison on CamVid at a reduced size: the default segnet-basic against each --decoder and
# a --dilation, same schedule. Prints val mIoU (best and last) and training images/s of each.
# Usage: bench/camvid_variants.sh [CAMVID_DIR] [OUT_DIR] [EPOCHS] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${1:-../shared/camvid}")
out=$(realpath -m "${2:-runs/variants}")
epochs=${3:-6}
size=${4:-120x160}
mkdir -p "$out"
declare -A variants=([default]="" [transposed]="--decoder transposed" [bilinear]="--decoder bilinear"
                     [dilated]="--dilation 1,1,2,4")
echo "| variant | best val mIoU | last val mIoU | train images/s |" | tee "$out/summary.md"
echo "| --- | --- | --- | --- |" | tee -a "$out/summary.md"
for name in default transposed bilinear dilated; do
  rm -rf "$out/$name"
  # shellcheck disable=SC2086
  build/segnet train --data "$data" --model segnet-basic --size "$size" --epochs "$epochs" --batch 4 \
    --optimizer adam --precision bf16 --seed 1 ${variants[$name]} --out "$out/$name" 2> "$out/$name.log"
  awk -F, -v n="$name" 'NR > 1 { if ($5 > m) m = $5; last = $5; ips += $7; k++ }
    END { printf "| %s | %.4f | %.4f | %.2f |\n", n, m, last, ips / k }' "$out/$name/metrics.csv" | tee -a "$out/summary.md"
done
