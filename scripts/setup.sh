#!/usr/bin/env bash
# Sets up a fresh clone on Debian/Ubuntu: system packages (when missing), then `npm ci`, which
# fetches the pinned llama.cpp, builds hovle.node (scripts/build-native.mjs) and compiles the
# TypeScript (prepare). Safe to re-run: downloads and builds are cached.
#
#   bash scripts/setup.sh            CPU build
#   bash scripts/setup.sh --vulkan   also install what the Vulkan build and its tests need
#                                    (headers, glslc, SPIR-V headers, Mesa's lavapipe device)
set -euo pipefail
cd "$(dirname "$0")/.."

want_vulkan=0
for arg in "$@"; do
  case "$arg" in
    --vulkan) want_vulkan=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# One list per purpose; binaries named here are checked before anything is installed.
packages=(cmake g++ make ninja-build ccache git libjpeg-dev)
if [ "$want_vulkan" = 1 ]; then
  packages+=(libvulkan-dev glslc spirv-headers mesa-vulkan-drivers)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup.sh: please install: ${missing[*]} (no apt-get on this system)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
