#!/usr/bin/env bash
# Installs a built segnet into a fresh temporary prefix, builds the examples (train_model,
# segment_image, segment_video) out of tree against that prefix alone, trains a small model with
# train_model on a dataset the installed program synthesizes, and runs the other two on it. Any step
# that fails or hangs fails the test with a line saying which step.
# Usage: install_test.sh CMAKE BUILD_DIR EXAMPLES_DIR CXX_COMPILER GENERATOR
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 CMAKE BUILD_DIR EXAMPLES_DIR CXX_COMPILER GENERATOR" >&2; exit 2; }
cmake=$1 build=$(cd "$2" && pwd) examples=$(cd "$3" && pwd) cxx=$4 generator=$5

tmp=$(mktemp -d "${TMPDIR:-/tmp}/segnet-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

fail() {
  echo "FAILED: $*" >&2
  exit 1
}
# step SECONDS WHAT COMMAND...: runs COMMAND (output also in $tmp/out.txt); fails the test, naming
# WHAT, when it exits non-zero or runs longer than SECONDS.
step() {
  local limit=$1 what=$2 rc=0 start=$SECONDS
  shift 2
  echo "== $what"
  timeout --kill-after=10 "$limit" "$@" </dev/null 2>&1 | tee "$tmp/out.txt" || rc=${PIPESTATUS[0]}
  ((rc != 124 && rc != 137)) || fail "$what: still running after ${limit} s, stopped"
  ((rc == 0)) || fail "$what: exit status $rc"
  echo "   ($((SECONDS - start)) s)"
}
# png_size FILE: "WIDTHxHEIGHT" from the PNG header, or nothing if FILE is not a PNG.
png_size() {
  [ "$(od -An -c -j1 -N3 "$1" 2>/dev/null | tr -d ' ')" = PNG ] || return 0
  local w h
  read -r w h < <(od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}')
  echo "${w}x${h}"
}
# expect_error WHAT TEXT COMMAND...: COMMAND must fail (not hang) with one line of output holding TEXT.
expect_error() {
  local what=$1 text=$2 rc=0
  shift 2
  timeout 60 "$@" </dev/null >"$tmp/out.txt" 2>&1 || rc=$?
  ((rc != 0 && rc != 124)) || fail "$what: exit status $rc"
  [ "$(wc -l <"$tmp/out.txt")" -eq 1 ] && grep -qF -- "$text" "$tmp/out.txt" ||
    { cat "$tmp/out.txt"; fail "$what: not one line holding '$text'"; }
}
expect_png() {  # expect_png FILE WIDTHxHEIGHT
  local size
  size=$(png_size "$1")
  [ -n "$size" ] || fail "$1: missing or not a PNG"
  [ "$size" = "$2" ] || fail "$1: $size, expected $2"
}

# 1. Install, and check that the package is what a user gets: headers, library, program, CMake files
#    that refer neither to the build tree nor to the sources.
step 120 "install into $prefix" "$cmake" --install "$build" --prefix "$prefix"
config=$(find "$prefix" -name segnetConfig.cmake -print -quit)
[ -n "$config" ] || fail "no segnetConfig.cmake under $prefix"
package=$(dirname "$config")
for f in "$prefix/include/segnet/segnet.h" "$prefix/bin/segnet" "$package/segnetConfigVersion.cmake" \
         "$package/segnetTargets.cmake"; do
  [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
source=$(dirname "$examples")
if grep -rqF -e "$build/" -e "$source/" "$package"; then
  fail "the installed package refers to the build or source tree: $(grep -rhoF -e "$build/" -e "$source/" "$package" | head -1)..."
fi

# 2. Build the examples as a user would: their own build folders, only the prefix to find segnet in.
examples_built=(train_model segment_image segment_video)
for example in "${examples_built[@]}"; do
  step 300 "configure $example against the prefix" "$cmake" -S "$examples/$example" -B "$tmp/build-$example" \
    -G "$generator" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  found=$(sed -n 's/^segnet_DIR:PATH=//p' "$tmp/build-$example/CMakeCache.txt")
  [ "$found" = "$package" ] || fail "$example found segnet in '$found', not in the prefix ($package)"
done
# One translation unit each: build them at once (one job each).
echo "== build the examples"
start=$SECONDS
pids=()
for example in "${examples_built[@]}"; do
  timeout --kill-after=10 600 "$cmake" --build "$tmp/build-$example" -j1 >"$tmp/build-$example.log" 2>&1 </dev/null &
  pids+=($!)
done
for i in "${!examples_built[@]}"; do
  example=${examples_built[$i]}
  rc=0
  wait "${pids[$i]}" || rc=$?
  if ((rc != 0)); then
    kill "${pids[@]}" 2>/dev/null || true
    cat "$tmp/build-$example.log"
    ((rc != 124 && rc != 137)) || fail "build $example against the prefix: still running after 600 s, stopped"
    fail "build $example against the prefix: exit status $rc"
  fi
done
echo "   ($((SECONDS - start)) s)"

# 3. train_model: a small model on a dataset of the installed program's (12 images: 10 train, 2 val);
#    run again with more epochs, it continues the run; mistakes are one line naming them.
data=$tmp/data run=$tmp/run out=$tmp/out
mkdir -p "$out"
step 120 "segnet synth" "$prefix/bin/segnet" synth --out "$data" --count 12 --size 48x64 --seed 1
train_model=$tmp/build-train_model/train_model
step 300 "train_model, 1 epoch" "$train_model" "$data" "$run" 1 48 64
grep -q "^epoch 1/1  loss" "$tmp/out.txt" || fail "train_model printed no line for epoch 1 of 1"
grep -q "^best.pt on 2 validation images: global accuracy [0-9.]*, mIoU [0-9.]*, boundary F1 [0-9.]*$" "$tmp/out.txt" ||
  fail "train_model did not score best.pt on the 2 validation images"
checkpoint=$run/last.pt
[ -f "$checkpoint" ] || fail "train_model wrote no $checkpoint"
step 300 "train_model, resumed to 2 epochs" "$train_model" "$data" "$run" 2 48 64
grep -q "^epoch 2/2  loss" "$tmp/out.txt" && ! grep -q "^epoch 1/" "$tmp/out.txt" ||
  fail "train_model run again with 2 epochs did not continue at epoch 2"
[ "$(wc -l <"$run/metrics.csv")" -eq 3 ] || fail "$run/metrics.csv: not a header and 2 epochs' rows"
expect_error "train_model with EPOCHS 'two'" "EPOCHS: 'two'" "$train_model" "$data" "$run" two 48 64
expect_error "train_model resuming at another size" "size is [32,64] here" "$train_model" "$data" "$run" 3 32 64
[ "$(wc -l <"$run/metrics.csv")" -eq 3 ] || fail "a refused train_model changed $run/metrics.csv"

# 4. segment_image: three PNGs at the image's size (64 wide, 48 high).
image=$(ls "$data"/val/*.png | head -1)
step 120 "segment_image" "$tmp/build-segment_image/segment_image" "$checkpoint" "$image" "$out/image"
for kind in ids color overlay; do expect_png "$out/image_$kind.png" 64x48; done

# 5. segment_video: the val images as an image sequence (synth numbers them on from the train
#    images, val_10.png, val_11.png, ...: copied here to 000.png, 001.png, ...) to .avi; that video
#    to .mp4 in bf16, and the .mp4 back to .avi: each must read back with all the frames.
mkdir -p "$tmp/frames"
n=0
for f in $(ls "$data/val" | sort -t_ -k2 -n); do
  cp "$data/val/$f" "$tmp/frames/$(printf %03d $n).png"
  n=$((n + 1))
done
segment_video=$tmp/build-segment_video/segment_video
step 120 "segment_video: image sequence to .avi" "$segment_video" "$checkpoint" "$tmp/frames/%03d.png" "$out/a.avi"
grep -q "^$n frames" "$tmp/out.txt" || fail "segment_video did not report $n frames"
step 120 "segment_video: .avi to .mp4, bf16" "$segment_video" "$checkpoint" "$out/a.avi" "$out/b.mp4" --bf16
grep -q "^$n frames" "$tmp/out.txt" || fail "$out/a.avi does not read back as $n frames"
step 120 "segment_video: .mp4 to .avi" "$segment_video" "$checkpoint" "$out/b.mp4" "$out/c.avi"
grep -q "^$n frames" "$tmp/out.txt" || fail "$out/b.mp4 does not read back as $n frames"
[ -s "$out/c.avi" ] || fail "segment_video wrote no $out/c.avi"

# 6. A missing input is a one-line error and a non-zero exit status.
expect_error "segment_video on a missing input" "no-such.avi" "$segment_video" "$checkpoint" "$tmp/no-such.avi" "$out/x.avi"

echo "passed"
