#!/usr/bin/env bash
# Issue-13 measurement: the same training on this machine's cores as 1 process x N threads and as
# N processes x 1 thread (c10d over Gloo on the loopback address), with the all-reduce overlapped with
# the backward pass and after it. Same global batch in every arm (--batch 4 alone, --batch 4/N each).
# Validation is cut to 4 images so that epochs time training. Arms alternate over ROUNDS; each run
# trains EPOCHS epochs and the last epoch's images/s and all-reduce wait share are reported (the first
# epoch also decodes and caches the images).
# Usage: bench/distributed_scaling.sh [CAMVID_DIR] [OUT_DIR] [SIZE] [PRECISION] [EPOCHS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${1:-../shared/camvid}")
out=$(realpath -m "${2:-runs/distributed_scaling}")
size=${3:-180x240}
precision=${4:-bf16}
epochs=${5:-2}
rounds=${6:-1}
n=$(nproc)
mkdir -p "$out/data"
sed "s|^|$data/|; s| | $data/|" "$data/train.txt" > "$out/data/train.txt"
head -n 4 "$data/val.txt" | sed "s|^|$data/|; s| | $data/|" > "$out/data/val.txt"
cp "$data/classes.csv" "$out/data/"
common=(--data "$out/data" --model segnet-basic --size "$size" --epochs "$epochs" --optimizer adam
        --precision "$precision" --seed 1)
last() { tail -n 1 "$1/metrics.csv" | awk -F, '{ printf "%s img/s, all-reduce wait %.1f%%", $7, 100 * $10 }'; }
spread() {  # name, extra flags: N processes of 1 thread
  local name=$1; shift
  rm -rf "$out/$name"
  local port=$((29500 + RANDOM % 1000)) pids=()
  for ((r = 0; r < n; r++)); do
    OMP_NUM_THREADS=1 build/segnet train "${common[@]}" --batch $((4 / n)) --threads 1 --world-size "$n" --rank "$r" \
      --master "127.0.0.1:$port" --out "$out/$name" "$@" > "$out/$name.rank$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
for ((round = 1; round <= rounds; round++)); do
  rm -rf "$out/alone"
  build/segnet train "${common[@]}" --batch 4 --threads "$n" --out "$out/alone" > "$out/alone.log" 2>&1
  echo "round $round: 1 process x $n threads: $(last "$out/alone")"
  spread overlapped
  echo "round $round: $n processes x 1 thread, all-reduce during backward: $(last "$out/overlapped")"
  spread after --no-overlap
  echo "round $round: $n processes x 1 thread, all-reduce after backward: $(last "$out/after")"
done
