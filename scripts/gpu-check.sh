#!/usr/bin/env bash
# For a lent GPU machine (see the device tool's README): builds hovle.node with CUDA for the GPU
# that is there and runs the reference-graph comparison (CUDA device vs CPU) with `hovle info
# --check`. That machine has no network, so it needs what `npm ci` and fetch-llama made here,
# carried along with the working tree:
#   carry: deps/llama.cpp/ggml  node_modules/node-addon-api  node_modules/node-api-headers  dist
# It drives CMake directly (no cmake-js, no npm) with the same CMakeLists.txt options.
#
#   bash scripts/gpu-check.sh [--arch native|90|87...]     prints the table; exit 3 on a mismatch
set -euo pipefail
cd "$(dirname "$0")/.."
arch=native
[ "${1:-}" = "--arch" ] && arch="$2"
build_dir=build-cuda
nvcc_bin="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

start=$(date +%s)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
  -DHOVLE_CUDA=ON -DHOVLE_CUDA_ARCHITECTURES="$arch" -DGGML_CUDA_FA=OFF \
  -DHOVLE_LLAMA_DIR="$PWD/deps/llama.cpp" -DHOVLE_OUTPUT_DIR="$PWD/$build_dir/Release" \
  -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" > "$build_dir.configure.log"
cmake --build "$build_dir" --target hovle --parallel "$(nproc)" > "$build_dir.build.log" 2>&1 \
  || { tail -40 "$build_dir.build.log"; exit 1; }
echo "[gpu-check] built in $(( $(date +%s) - start )) s: $(du -h "$build_dir/Release/hovle.node" | cut -f1)"
HOVLE_ADDON_PATH="$PWD/$build_dir/Release/hovle.node" node dist/cli/main.js info --check
