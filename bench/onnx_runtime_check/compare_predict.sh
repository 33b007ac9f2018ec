#!/bin/bash
# Exports a checkpoint to ONNX, segments images with `segnet predict --precision fp32` and with ONNX
# Runtime (compare_images.mjs), and prints their agreement as one JSON line (per image in
# OUT/comparison.jsonl). Images must have the checkpoint's training size.
#   bench/onnx_runtime_check/compare_predict.sh --checkpoint CK --out DIR [--batch B] [--threads T] IMAGES|FOLDERS...
# Needs node and `npm install onnxruntime-node --onnxruntime-node-install=skip` in this folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
segnet=${SEGNET:-$here/../../build/segnet}
batch=1 threads=$(nproc) checkpoint= out= inputs=()
while (($#)); do
  case $1 in
    --checkpoint) checkpoint=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -*) echo "compare_predict.sh: unknown option $1" >&2; exit 2 ;;
    *) inputs+=("$1"); shift ;;
  esac
done
[[ -n $checkpoint && -n $out && ${#inputs[@]} -gt 0 ]] || { sed -n '5p' "$0" >&2; exit 2; }
[[ -x $segnet ]] || { echo "compare_predict.sh: $segnet not built (or set SEGNET)" >&2; exit 1; }
[[ -d $here/node_modules/onnxruntime-node ]] ||
  { echo "compare_predict.sh: run 'npm install onnxruntime-node --onnxruntime-node-install=skip' in $here" >&2; exit 1; }
images=()
for input in "${inputs[@]}"; do
  if [[ -d $input ]]; then mapfile -t -O "${#images[@]}" images < <(find "$input" -maxdepth 1 -name '*.png' | sort)
  else images+=("$input"); fi
done
mkdir -p "$out"
"$segnet" export --checkpoint "$checkpoint" --out "$out/model.onnx" --output logits >&2
"$segnet" predict --checkpoint "$checkpoint" --out "$out/predict" --precision fp32 --batch "$batch" --threads "$threads" \
  --probabilities "${images[@]}" >&2
node "$here/compare_images.mjs" "$out/model.onnx" "$out/predict" "$batch" "$threads" "${images[@]}" > "$out/comparison.jsonl"
tail -n 1 "$out/comparison.jsonl"
