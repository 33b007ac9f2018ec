#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever segnet needs that is missing.
set -euo pipefail
packages=(cmake g++ ninja-build pkg-config libtorch-dev libopencv-dev libopenblas0-pthread
          libdnnl-dev libcli11-dev nlohmann-json3-dev libgtest-dev libtcmalloc-minimal4 libonnx-dev
          libpng-dev libgloo-dev python3-torch python3-torchvision python3-scipy libplplot-dev plplot-driver-cairo)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# ONNX Runtime (npm's onnxruntime-node, pinned by package-lock.json) lets the export tests run our ONNX
# files in an engine no one here wrote. Where Node.js is absent, or the registry cannot be reached,
# those tests report themselves skipped.
check="$(dirname "$0")/../bench/onnx_runtime_check"
if command -v npm > /dev/null && [ ! -d "$check/node_modules/onnxruntime-node" ]; then
  timeout 600 npm ci --prefix "$check" --onnxruntime-node-install=skip --no-audit --no-fund \
    || echo "warning: npm could not install onnxruntime-node: the ONNX Runtime checks will be skipped" >&2
fi
