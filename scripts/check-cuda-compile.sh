#!/usr/bin/env bash
# Compile check for the CUDA backend (not part of default CI: ~15-25 minutes on 2 cores).
# Configures the same CMakeLists.txt with HOVLE_CUDA=ON for sm_87 (Jetson Orin) and compiles
# ggml-cuda's device and host code with nvcc. Where cuBLAS is not installed (this project's
# development machines), scripts/cuda/ supplies its declarations and placeholder CMake targets,
# so everything compiles but nothing links: the product of this script is a verdict, not a binary.
#
#   bash scripts/check-cuda-compile.sh [--arch 87] [--no-fa] [--build-dir build-cuda-check]
set -euo pipefail
cd "$(dirname "$0")/.."
arch=87
build_dir=build-cuda-check
fa=ON
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --no-fa) fa=OFF; shift ;;  # skip flash-attention kernels: about 40% less compile time
    *) echo "check-cuda-compile.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
nvcc_bin="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
[ -x "$nvcc_bin" ] || { echo "nvcc not found (set CUDACXX)" >&2; exit 1; }
cuda_root="$(cd "$(dirname "$nvcc_bin")/.." && pwd)"

node scripts/fetch-llama.mjs
extra=()
if [ ! -e "$cuda_root/include/cublas_v2.h" ]; then
  stub="$PWD/$build_dir/cublas-stub"
  mkdir -p "$stub"
  cp scripts/cuda/cublas-decls.h "$stub/cublas_v2.h"
  extra+=("-DCMAKE_CUDA_FLAGS=-I$stub" "-DCMAKE_CXX_FLAGS=-I$stub"
          "-DCMAKE_PROJECT_INCLUDE=$PWD/scripts/cuda/missing-targets.cmake" "-DGGML_CUDA_NO_VMM=ON")
  echo "[cuda-check] no cuBLAS in $cuda_root: compiling against scripts/cuda/cublas-decls.h (compile only)"
fi

start=$(date +%s)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DHOVLE_CUDA=ON -DHOVLE_CUDA_ARCHITECTURES="$arch" -DGGML_CUDA_FA="$fa" \
  -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" "${extra[@]}"
cmake --build "$build_dir" --target ggml-cuda --parallel "$(nproc)"
echo "[cuda-check] ggml-cuda compiled for sm_$arch in $(( $(date +%s) - start )) s: $(du -h "$build_dir"/ggml/src/ggml-cuda/libggml-cuda.a | cut -f1)"
