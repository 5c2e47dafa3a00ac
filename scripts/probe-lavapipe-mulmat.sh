#!/usr/bin/env bash
# Probes which MUL_MAT cases of ggml's own op tests (tests/test-backend-ops.cpp from the pinned
# llama.cpp) run correctly on the Vulkan device, each case in a fresh process and then all of
# them in one process. Motivation: on Mesa 22.3 lavapipe, permuted MUL_MAT cases corrupt the heap
# when several run in one process. Needs the Vulkan build (npm run build:vulkan).
#
#   bash scripts/probe-lavapipe-mulmat.sh ['<params regex>']   (default: permuted f32/f16 cases)
set -uo pipefail
cd "$(dirname "$0")/.."
regex="${1:-type_a=(f32|f16),type_b=f32,m=16,.*per=\[0,(2,1,3|1,3,2|3,2,1)\]}"
lib=build-vulkan/cmake/ggml/src
bin=build-vulkan/test-backend-ops
[ -f "$lib/ggml-vulkan/libggml-vulkan.a" ] || { echo "run npm run build:vulkan first" >&2; exit 1; }
if [ ! -x "$bin" ] || [ "$bin" -ot "$lib/ggml-vulkan/libggml-vulkan.a" ]; then
  echo "[probe] compiling test-backend-ops against the Vulkan build (~40 s)" >&2
  g++ -O2 -std=c++17 -fopenmp deps/llama.cpp/tests/test-backend-ops.cpp -I deps/llama.cpp/ggml/include -o "$bin" \
    "$lib/libggml.a" "$lib/ggml-vulkan/libggml-vulkan.a" "$lib/libggml-cpu.a" "$lib/libggml-base.a" -lvulkan -lpthread
fi
export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

mapfile -t cases < <("$bin" support -o MUL_MAT -b Vulkan0 -p "$regex" 2>/dev/null \
  | grep -o 'MUL_MAT([^)]*)' | sort -u)
echo "[probe] ${#cases[@]} cases match '$regex'" >&2
ok=0; bad=0
for c in "${cases[@]}"; do
  out=$(timeout 120 "$bin" test -o "$c" -b Vulkan0 2>&1); rc=$?
  if [ $rc -eq 0 ] && grep -q 'OK' <<<"$out"; then verdict=ok; ok=$((ok+1)); else verdict="FAIL(rc=$rc)"; bad=$((bad+1)); fi
  printf '%-10s alone  %s\n' "$verdict" "$c"
done
echo "[probe] alone: $ok ok, $bad failed"
out=$(timeout 1200 "$bin" test -o MUL_MAT -b Vulkan0 -p "$regex" 2>&1); rc=$?
passed=$(grep -c 'OK' <<<"$out")
echo "[probe] together in one process: exit $rc after $passed passing cases; last line: $(tail -1 <<<"$out" | cut -c1-160)"
