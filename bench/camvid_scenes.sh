#!/usr/bin/env bash
# Issue-17 protocol: does pseudo-label training help on a scene the model has never seen?
# CamVid's train.txt + val.txt are three sequences (file prefixes 0001TP: 62 frames, 0006R0: 101,
# 0016E5: 305). For each held-out sequence H:
#   scored.txt     H's frames with labels: only ever scored, never trained on;
#   labelled.txt   every 8th frame of the other sequences (in name order, so spread over time);
#   unlabelled_A   the other sequences' remaining frames, images only (setting A);
#   unlabelled_B   the same plus H's frames without labels (setting B: footage of where the model
#                  will run, as a user would have it);
#   unlabelled_T   H's frames alone, without labels (setting B when that footage is all the user has
#                  unlabelled, or all they choose to learn from);
#   in_scene.txt   the val.txt frames that are not labelled: the scene the model trained in.
# Arms, per seed: supervised (labelled.txt only) and pseudo-A / pseudo-B / pseudo-T (labelled + unlabelled).
# An epoch is one pass over labelled.txt in every arm, so all arms take the same optimizer steps.
# Figures are of the last epoch's checkpoint (last.pt), never a best epoch picked on the scored scene.
# Prints and writes OUT/summary.md: mean and spread (min..max) over the seeds per H x arm, with
# in-scene mIoU and wall time; OUT/H/ARM-sSEED/ holds each run, its eval JSONs (per-class IoU) and,
# for pseudo arms, pseudo_precision.md/.json: the final model's pseudo-labels on its unlabelled pool
# (at the run's threshold and class share) scored against the true labels training never saw, per class.
#
# Usage: bench/camvid_scenes.sh [CAMVID_DIR] [OUT_DIR] [EPOCHS] [SIZE] [SEEDS] [HELDOUT]
#   EPOCHS and SIZE default to 80 and 180x240, the protocol the README reports;
#   SEEDS and HELDOUT are space-separated lists (defaults "1 2 3" and "0006R0 0001TP").
#   Extra flags for the pseudo arms (what is being tried) come from $PSEUDO_FLAGS, for every arm
#   from $TRAIN_FLAGS; runs that already finished (last.pt and eval JSON present) are kept.
#   $ARMS picks arms (default "supervised pseudo-A pseudo-B") and $THREADS the threads per run (default
#   all cores), so that arms can run side by side in separate invocations on the same OUT_DIR.
#   SUMMARY_ONLY=1 trains nothing: it summarises the finished runs of those seeds and arms as they are
#   (n says how many each row has), e.g. while other runs are still going.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${1:-../shared/camvid}")
out=$(realpath -m "${2:-runs/scenes}")
epochs=${3:-80}
size=${4:-180x240}
seeds=${5:-1 2 3}
heldout=${6:-0006R0 0001TP}
threads=${THREADS:-$(nproc)}
arms=${ARMS:-supervised pseudo-A pseudo-B}
[[ -x build/segnet ]] || { echo "build/segnet is missing: build first (scripts/build.sh)" >&2; exit 1; }
for list in train.txt val.txt; do
  [[ -f "$data/$list" ]] || { echo "$data/$list: missing (expected CamVid as SegNet's authors distribute it)" >&2; exit 1; }
done
mkdir -p "$out"
absolute() { sed "s|^|$data/|; s| | $data/|"; }
frame() { awk '{ n = split($1, p, "/"); print p[n] }'; }

make_splits() {  # $1 = held-out prefix, $2 = its folder
  local h=$1 dir=$2 all
  all=$(cat "$data/train.txt" "$data/val.txt" | sort -u -t' ' -k1,1)
  grep -q "/$h" <<< "$all" || { echo "no frames with prefix $h in $data/train.txt or val.txt" >&2; exit 1; }
  grep "/$h" <<< "$all" | absolute > "$dir/scored.txt"
  grep -v "/$h" <<< "$all" | sort -t/ -k2 | awk 'NR % 8 == 1' | absolute > "$dir/labelled.txt"
  grep -v "/$h" <<< "$all" | sort -t/ -k2 | awk 'NR % 8 != 1 { print $1 }' | absolute > "$dir/unlabelled_A.txt"
  cut -d' ' -f1 "$dir/scored.txt" > "$dir/unlabelled_T.txt"
  cat "$dir/unlabelled_A.txt" "$dir/unlabelled_T.txt" > "$dir/unlabelled_B.txt"
  # The unlabelled pools with their true labels, to score the pseudo-labels (never read by training).
  grep -v "/$h" <<< "$all" | sort -t/ -k2 | awk 'NR % 8 != 1' | absolute > "$dir/truth_A.txt"
  cat "$dir/truth_A.txt" "$dir/scored.txt" > "$dir/truth_B.txt"
  cp "$dir/scored.txt" "$dir/truth_T.txt"
  grep -v -F -f <(frame < "$dir/labelled.txt") <(absolute < "$data/val.txt") > "$dir/in_scene.txt" || true
  echo "$h: scored $(wc -l < "$dir/scored.txt"), labelled $(wc -l < "$dir/labelled.txt"), unlabelled" \
       "A $(wc -l < "$dir/unlabelled_A.txt") / B $(wc -l < "$dir/unlabelled_B.txt") / T $(wc -l < "$dir/unlabelled_T.txt"), in-scene $(wc -l < "$dir/in_scene.txt")"
}

finished() { [[ -f "$1/last.pt" && -f "$1/in_scene.json" ]]; }  # $1 = run folder

run_arm() {  # $1 = folder of splits, $2 = arm, $3 = seed
  local dir=$1 arm=$2 seed=$3 run="$1/$2-s$3" extra=()
  finished "$run" && return 0
  case $arm in
    pseudo-A) extra=(--unlabeled "$dir/unlabelled_A.txt" ${PSEUDO_FLAGS:-}) ;;
    pseudo-B) extra=(--unlabeled "$dir/unlabelled_B.txt" ${PSEUDO_FLAGS:-}) ;;
    pseudo-T) extra=(--unlabeled "$dir/unlabelled_T.txt" ${PSEUDO_FLAGS:-}) ;;
  esac
  rm -rf "$run"
  echo "$(date -u +%H:%M:%S) $run" >&2
  build/segnet train --data "$data" --train-list "$dir/labelled.txt" --val-list "$dir/scored.txt" \
    --model segnet-basic --size "$size" --epochs "$epochs" --precision bf16 --seed "$seed" --threads "$threads" \
    ${TRAIN_FLAGS:-} "${extra[@]}" --out "$run" > "$run.log" 2>&1 || { echo "training failed: see $run.log" >&2; exit 1; }
  build/segnet eval --checkpoint "$run/last.pt" --data "$data" --list "$dir/scored.txt" --json "$run/scored.json" \
    --threads "$threads" > /dev/null
  build/segnet eval --checkpoint "$run/last.pt" --data "$data" --list "$dir/in_scene.txt" --json "$run/in_scene.json" \
    --threads "$threads" > /dev/null
  if [[ $arm == pseudo-* ]]; then  # the final model's pseudo-labels on its unlabelled pool, scored per class
    local setting=${arm#pseudo-} tau share
    read -r tau share < <(/usr/bin/env python3 -c 'import json, sys; o = json.load(open(sys.argv[1]))["options"]
print(o["pseudo.threshold"], o.get("pseudo.class_share", 0))' "$run/config.json")
    build/segnet pseudo-label --checkpoint "$run/last.pt" --out "$run/pseudo_labels" --threshold "$tau" \
      --class-share "$share" --threads "$threads" \
      $(cut -d' ' -f1 "$dir/unlabelled_$setting.txt") > /dev/null
    bench/pseudo_label_precision.py "$run/pseudo_labels" "$dir/truth_$setting.txt" "$data/classes.csv" \
      --json "$run/pseudo_precision.json" > "$run/pseudo_precision.md"
    rm -rf "$run/pseudo_labels"
  fi
}

miou() { /usr/bin/env python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["miou"])' "$1"; }
minutes() { awk -F, 'NR > 1 { s += $6 } END { printf "%.1f", s / 60 }' "$1/metrics.csv"; }
stats() {  # numbers on stdin -> "mean (min..max, n=N)", each printed with format $1
  tr ' ' '\n' | awk -v f="$1" 'NF { v[++n] = $1; s += $1; if (n == 1 || $1 < lo) lo = $1; if (n == 1 || $1 > hi) hi = $1 }
                                 END { printf f " (" f ".." f ", n=%d)", s / n, lo, hi, n }'
}

{
  echo "| held out | arm | held-out mIoU, mean (min..max) | in-scene mIoU, mean (min..max) | minutes per run |"
  echo "| --- | --- | --- | --- | --- |"
} > "$out/summary.md"
for h in $heldout; do
  dir="$out/$h"
  mkdir -p "$dir"
  make_splits "$h" "$dir"
  if [[ -z ${SUMMARY_ONLY:-} ]]; then
    for seed in $seeds; do
      for arm in $arms; do run_arm "$dir" "$arm" "$seed"; done
    done
  fi
  for arm in $arms; do
    scored="" in_scene="" time=""
    for seed in $seeds; do
      finished "$dir/$arm-s$seed" || continue
      scored+=" $(miou "$dir/$arm-s$seed/scored.json")"
      in_scene+=" $(miou "$dir/$arm-s$seed/in_scene.json")"
      time+=" $(minutes "$dir/$arm-s$seed")"
    done
    [[ -n $scored ]] || continue
    echo "| $h | $arm | $(stats %.4f <<< "$scored") | $(stats %.4f <<< "$in_scene") | $(stats %.1f <<< "$time") |" >> "$out/summary.md"
  done
done
cat "$out/summary.md"
