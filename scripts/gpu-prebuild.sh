#!/usr/bin/env bash
# Builds, on this project's development machine (nvcc, no GPU, no cuBLAS), everything a lent GPU
# machine needs for the CUDA benchmark, so none of its scarce time goes to compiling:
#   build-gpu/hovle.node       the addon with CUDA for the given architecture
#   build-gpu/llama-bench      llama.cpp's benchmark, CUDA, the same pinned source and ggml options
#   build-gpu/llama-quantize   to quantize the peer GGUF there
#   build-gpu/membw-cuda, time, peer.json   bandwidth probe, GNU time, the peer's build record
# and build-gpu-pack/, the same compressed with this machine's node binary (the GPU machine's
# image has none): what travels (carry: build-gpu-pack dist), under the 64 MiB a call may take.
# Both CUDA builds share ggml-cuda's compile through ccache (same flags, same tree depth), so the
# second one mostly links. ggml-cuda is 40 MB of code per binary, too much to carry twice: the
# addon is built exporting ggml's symbols (HOVLE_EXPORT_GGML) and llama-bench and llama-quantize
# are linked again against it, so llama.cpp's side runs the same ggml objects its own build
# compiled (ccache proves the commands identical), from hovle.node instead of its own archive. Where the toolkit lacks cuBLAS, both compile against
# scripts/cuda/cublas-decls.h and link a stub libcublas.so.13 (scripts/cuda/cublas-stub.cmake):
# the binaries then load the GPU machine's real libcublas.so.13. Both use GGML_CUDA_NO_VMM
# (this machine has no libcuda to link either), the same on both sides of the comparison.
# scripts/gpu-check.sh runs on the GPU machine with build-gpu and dist carried.
#
#   bash scripts/gpu-prebuild.sh [--arch 90-real]      (~30-50 min on 2 cores the first time)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=90-real
[ "${1:-}" = "--arch" ] && arch="$2"
out="$PWD/build-gpu"
work="$PWD/build-gpu-work"
nvcc_bin="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
[ -x "$nvcc_bin" ] || { echo "nvcc not found (set CUDACXX)" >&2; exit 1; }
cuda_root="$(cd "$(dirname "$nvcc_bin")/.." && pwd)"
mkdir -p "$out" "$work"
node scripts/fetch-llama.mjs
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true

common=(-DGGML_CUDA_NO_VMM=ON)
if [ ! -e "$cuda_root/include/cublas_v2.h" ]; then
  mkdir -p "$work/cublas-include"
  cp scripts/cuda/cublas-decls.h "$work/cublas-include/cublas_v2.h"
  common+=("-DCMAKE_CUDA_FLAGS=-I$work/cublas-include" "-DCMAKE_CXX_FLAGS=-I$work/cublas-include"
           "-DCMAKE_PROJECT_ggml_INCLUDE=$PWD/scripts/cuda/cublas-stub.cmake")
  echo "[gpu-prebuild] no cuBLAS in $cuda_root: linking against a stub libcublas.so.13"
fi

start=$(date +%s)
# The addon: same tree depth as the peer's folder below, so ccache sees identical commands.
cmake -S . -B "$work/addon" -G Ninja -Wno-dev --log-level=WARNING -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DHOVLE_CUDA=ON -DHOVLE_CUDA_ARCHITECTURES="$arch" \
  -DHOVLE_OUTPUT_DIR="$out" -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" \
  -DHOVLE_EXPORT_GGML=ON -DHOVLE_JPEG=stb "${common[@]}"
cmake --build "$work/addon" --target hovle --parallel "$(nproc)"
echo "[gpu-prebuild] addon built in $(( $(date +%s) - start )) s"

peer_defs=()
for d in "${common[@]}"; do peer_defs+=(-D "${d#-D}"); done
node scripts/build-llama-peer.mjs --backend cuda --cuda-arch "$arch" --build-dir "$work/peer" "${peer_defs[@]}" > "$out/peer.json"
# Linked again without ggml's archives, against hovle.node beside them. The addon takes the
# address of one N-API function, which only node defines: a stand-in lets the loader resolve it
# (nothing in llama.cpp calls the addon's N-API code).
printf '#include <stdlib.h>\nvoid napi_create_type_error(void) { abort(); }\n' > "$work/napi-stub.c"
cc -O2 -c "$work/napi-stub.c" -o "$work/napi-stub.o"
origin='-Wl,-rpath,$ORIGIN'
for t in llama-bench llama-quantize; do
  cmd=$(cd "$work/peer" && ninja -t commands "$t" | tail -1)
  cmd=${cmd#: && }
  cmd=${cmd% && :}
  cmd=$(sed -E -e 's# ggml/src/(ggml-cuda/)?libggml(-base|-cpu|-cuda)?\.a##g' -e "s#-o bin/$t #-o $out/$t #" <<<"$cmd")
  (cd "$work/peer" && eval "$cmd $work/napi-stub.o -Wl,--export-dynamic-symbol=napi_create_type_error -Wl,--allow-shlib-undefined -L$out -l:hovle.node '$origin'")
done
echo "[gpu-prebuild] peer built and linked against hovle.node; $(( $(date +%s) - start )) s in all"
# The GPU's read bandwidth for the decode bound (bench/run.mjs --backend cuda), and GNU time for
# peak RSS, which that machine's image lacks.
"$nvcc_bin" -O3 -arch="sm_${arch%%-*}" bench/membw.cu -o "$out/membw-cuda"
cp /usr/bin/time "$out/time"

node_bin="$(readlink -f "$(command -v node)")"
if [ ! -e "$out/node.tar.xz" ] || [ "$node_bin" -nt "$out/node.tar.xz" ]; then
  tar -C "$(dirname "$node_bin")" -cJf "$out/node.tar.xz" "$(basename "$node_bin")"
fi
# What travels: compressed, with node and libgomp (in case that machine's image lacks it).
pack="$PWD/build-gpu-pack"
rm -rf "$pack" && mkdir -p "$pack"
for f in hovle.node llama-bench llama-quantize membw-cuda; do
  strip --strip-unneeded -o "$pack/$f" "$out/$f"
  xz -T0 -6 "$pack/$f"
done
cp "$out/node.tar.xz" "$out/time" "$out/peer.json" "$out/build-info.json" "$pack/"
# The commit these were built from, for the GPU machine's BENCHMARKS-cuda.md header: its copy of
# .git need not say (bench/run.mjs reads HOVLE_BENCH_COMMIT).
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- native src CMakeLists.txt scripts || echo ' (with uncommitted changes)')" > "$pack/hovle-commit"
cp "$(cc -print-file-name=libgomp.so.1)" "$pack/"
for f in hovle.node llama-bench llama-quantize; do
  echo "  $f needs: $(ldd "$out/$f" | awk '/=>/ {print $1}' | tr '\n' ' ')"
done
du -sh "$pack"/* "$pack"
