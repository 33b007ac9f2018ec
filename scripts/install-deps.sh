#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever segnet needs that is missing.
set -euo pipefail
packages=(cmake g++ ninja-build pkg-config libtorch-dev libopencv-dev libopenblas0-pthread
          libcli11-dev nlohmann-json3-dev libgtest-dev libtcmalloc-minimal4 libonnx-dev
          libpng-dev libgloo-dev python3-torch python3-torchvision libplplot-dev plplot-driver-cairo)
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
