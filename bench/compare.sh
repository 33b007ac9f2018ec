#!/usr/bin/env bash
# Runs build/segnet and the PyTorch reference (bench/reference.py) on the same shapes, one process at a
# time, and prints a markdown table plus the segnet/PyTorch throughput ratios. See bench/README.md.
set -uo pipefail

usage() {
  cat <<EOF
usage: bench/compare.sh [--size HxW] [--threads N] [--iters N] [--out DIR] [--bin PATH] [--quick]
  --size HxW   input size (default 360x480; 64x96 with --quick)
  --threads N  intra-op threads for both implementations (default: nproc = $(nproc))
  --iters N    timed iterations (default: each implementation's own; 1 with --quick)
  --out DIR    where the JSON, logs and table.md go (default bench/results/<date>[-quick])
  --bin PATH   the C++ binary (default build/segnet)
  --quick      smoke test: small size, 1 iteration (also: QUICK=1 in the environment)
EOF
}

cd "$(dirname "$0")/.." || exit 1
PY=/usr/bin/python3  # Debian's python3-torch is importable only from Debian's interpreter
BIN=build/segnet size="" threads=$(nproc) iters="" out="" quick=${QUICK:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 1 ;;
  esac
done
[ "$quick" = 0 ] && quick=""
if [ -n "$quick" ]; then size=${size:-64x96} iters=${iters:-1}; else size=${size:-360x480}; fi
out=${out:-bench/results/$(date +%Y-%m-%d)${quick:+-quick}}

if [ ! -x "$BIN" ]; then
  echo "error: the segnet binary '$BIN' is missing; build it first (e.g. cmake --build build)" >&2
  exit 1
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "error: $PY cannot import torch; install Debian's python3-torch (apt-get install python3-torch)" >&2
  exit 1
fi
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "warning: load average is $load; other processes on the cores make the timings meaningless" >&2
fi
mkdir -p "$out" || exit 1
manifest=$out/manifest.tsv
: >"$manifest"
common=(--size "$size" --threads "$threads" ${iters:+--iters "$iters"})

failed=0
for model in segnet segnet-basic; do
  for mode in infer train; do
    if [ "$mode" = infer ]; then batch=1; else batch=4; fi
    # implementation label | precision | command (the JSON path is appended)
    impls="pytorch:fp32 pytorch-cl:bf16 segnet:fp32 segnet:bf16"
    [ "$mode" = infer ] && impls+=" segnet:int8"  # int8 is for inference only
    for impl in $impls; do
      label=${impl%%:*} precision=${impl#*:}
      name=${label}-${precision}_${model}_${mode}_b${batch}
      json=$out/$name.json
      case "$label" in
        pytorch) cmd=("$PY" bench/reference.py) ;;
        pytorch-cl) cmd=("$PY" bench/reference.py --channels-last) ;;
        segnet) cmd=("$BIN" bench) ;;
      esac
      cmd+=(--model "$model" --mode "$mode" --batch "$batch" --precision "$precision" "${common[@]}" --json "$json")
      rm -f "$json"
      echo ">> ${cmd[*]}"
      if "${cmd[@]}" >"$out/$name.log" 2>&1 && [ -s "$json" ]; then
        status=ok
        tail -n 1 "$out/$name.log"
      else
        status=failed failed=$((failed + 1))
        echo "   FAILED (log: $out/$name.log):"; tail -n 5 "$out/$name.log" | sed 's/^/   | /'
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$precision" "$mode" "$model" "$batch" "$json" "$status" >>"$manifest"
    done
  done
done

header="# segnet vs PyTorch: $size, $threads threads${iters:+, $iters iters}
$(date -u '+%Y-%m-%d %H:%M UTC'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores;\
 torch $("$PY" -c 'import torch; print(torch.__version__)'); commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"

"$PY" - "$manifest" "$header" <<'EOF' | tee "$out/table.md"
import json, sys

names = {"pytorch": "pytorch eager", "pytorch-cl": "pytorch eager, channels-last", "segnet": "segnet (C++)"}
rows = []
for line in open(sys.argv[1]):
    label, precision, mode, model, batch, path, status = line.rstrip("\n").split("\t")
    r = json.load(open(path)) if status == "ok" else {}
    rows.append(dict(label=label, precision=precision, mode=mode, model=model, batch=batch, r=r))

def num(r, key, fmt):
    return format(r[key], fmt) if isinstance(r.get(key), (int, float)) else "FAILED" if not r else "?"

print(sys.argv[2] + "\n")
print("| implementation | precision | mode | model | batch | images/s | ms/image | GFLOP/s | peak MB |")
print("|---|---|---|---|---:|---:|---:|---:|---:|")
for x in rows:
    r = x["r"]
    print(f"| {names[x['label']]} | {x['precision']} | {x['mode']} | {x['model']} | {x['batch']} | "
          f"{num(r, 'images_per_s', '.3f')} | {num(r, 'ms_per_image', '.1f')} | {num(r, 'gflops', '.1f')} | "
          f"{num(r, 'peak_rss_mb', '.0f')} |")

def speed(model, mode, label, precision):
    for x in rows:
        if (x["model"], x["mode"], x["label"], x["precision"]) == (model, mode, label, precision):
            return x["r"].get("images_per_s")

def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"

print("\nThroughput ratios (segnet images/s divided by PyTorch images/s; >1 means segnet is faster):\n")
print("| model | mode | segnet precision | vs pytorch fp32 | vs pytorch bf16 channels-last |")
print("|---|---|---|---:|---:|")
for model, mode in dict.fromkeys((x["model"], x["mode"]) for x in rows):
    ref32, refcl = speed(model, mode, "pytorch", "fp32"), speed(model, mode, "pytorch-cl", "bf16")
    for precision in ("fp32", "bf16", "int8"):
        s = speed(model, mode, "segnet", precision)
        if s is not None:
            print(f"| {model} | {mode} | {precision} | {ratio(s, ref32)} | {ratio(s, refcl)} |")

print("\nsegnet int8 inference vs segnet bf16 (images/s ratio):\n")
print("| model | int8 / bf16 |")
print("|---|---:|")
for model in dict.fromkeys(x["model"] for x in rows):
    print(f"| {model} | {ratio(speed(model, 'infer', 'segnet', 'int8'), speed(model, 'infer', 'segnet', 'bf16'))} |")
EOF

echo
echo "results in $out (table.md, one JSON and log per case)"
if [ "$failed" -gt 0 ]; then
  echo "$failed case(s) failed" >&2
  exit 2
fi
