#!/usr/bin/env bash
# Fuzzes the addon's native input handling with libFuzzer + ASan + UBSan for a fixed budget:
#
#   bash scripts/fuzz.sh [--seconds N] [--target gguf|image|image-stb|all] [--jobs N] [--build-dir DIR]
#
#   gguf       GGUF bytes -> hovle::Model::Load (ggml's parser, hovle's tensor checks, mmap, repack)
#   image      encoded image -> hovle::DecodeImage (libjpeg-turbo for JPEG, stb_image otherwise) -> TileImage
#   image-stb  the same with stb_image decoding JPEG too (the HOVLE_JPEG=stb build)
#
# Installs clang when missing (apt-get), builds scripts/fuzz/ with the pinned ggml into
# build-fuzz/ (the first build compiles ggml with sanitizers: several minutes), writes seeds
# (scripts/fuzz/seeds.ts), runs each target for N seconds (default 300), then prints the
# executions and crashes per target. Crash inputs stay in build-fuzz/crashes-<target>/; a
# fixed one belongs in test/fixtures/corpus/ (see its README). Exit status 1 when any crashed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=300
target=all
jobs=1
build="$root/build-fuzz"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-dir) build="$(realpath -m "$2")"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$target" in
  all) targets=(gguf image image-stb) ;;
  gguf|image|image-stb) targets=("$target") ;;
  *) echo "fuzz.sh: --target must be gguf, image, image-stb or all" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- toolchain
if ! command -v clang++ >/dev/null || ! clang++ -fsanitize=fuzzer -x c++ -o /dev/null - <<<'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' 2>/dev/null; then
  echo "[fuzz] installing clang (libFuzzer)"
  if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq clang >/dev/null
fi
node "$root/scripts/fetch-llama.mjs"

# ---------------------------------------------------------------- seeds + spec
mkdir -p "$build"
if [[ ! -x "$root/node_modules/.bin/esbuild" ]]; then echo "[fuzz] run npm ci first (esbuild)" >&2; exit 1; fi
"$root/node_modules/.bin/esbuild" "$root/scripts/fuzz/seeds.ts" --bundle --platform=node --format=esm --log-level=warning \
  --outfile="$build/seeds.mjs" --banner:js="import{createRequire as __cr}from'module';const require=__cr(import.meta.url);"
# The bundle sits one level below the repository, so the package root (and build/) resolve as usual.
HOVLE_ADDON_PATH="${HOVLE_ADDON_PATH:-$root/build/Release/hovle.node}" node "$build/seeds.mjs" "$build" "$root"
if command -v cjpeg >/dev/null; then
  # JPEG seeds in the encodings libjpeg reads: baseline, progressive, grayscale, restart
  # intervals, arithmetic coding, 4:4:4 and 4:2:0 sampling, optimised Huffman tables.
  ppm="$build/seed.ppm"
  node -e "const w=24,h=17,b=Buffer.alloc(w*h*3);for(let i=0;i<b.length;i++)b[i]=(i*7+(i/w|0)*13)&255;process.stdout.write(Buffer.concat([Buffer.from('P6\n'+w+' '+h+'\n255\n'),b]))" > "$ppm"
  cjpeg -quality 80 "$ppm" > "$build/seeds-image/baseline.jpg"
  cjpeg -progressive "$ppm" > "$build/seeds-image/progressive.jpg"
  cjpeg -grayscale "$ppm" > "$build/seeds-image/gray.jpg"
  cjpeg -restart 1 "$ppm" > "$build/seeds-image/restart.jpg"
  cjpeg -arithmetic "$ppm" > "$build/seeds-image/arithmetic.jpg" 2>/dev/null || true
  cjpeg -sample 1x1 -optimize "$ppm" > "$build/seeds-image/444.jpg"
  cjpeg -sample 2x2 -quality 30 "$ppm" > "$build/seeds-image/420.jpg"
  rm -f "$ppm"
fi

# ---------------------------------------------------------------- build
napi="$(cd "$root" && node -p "[require('node-addon-api').include_dir, require('node-api-headers').include_dir].map((d) => require('path').resolve(d)).join(' ')")"
cmake -S "$root/scripts/fuzz" -B "$build/cmake" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DHOVLE_FUZZ_SPEC="$build/spec.inc" -DHOVLE_NAPI_INCLUDES="$napi" >/dev/null
bins=()
for t in "${targets[@]}"; do bins+=("${t/-/_}_fuzz"); done
cmake --build "$build/cmake" --target "${bins[@]}" -- -j"$(nproc)"

# ---------------------------------------------------------------- run
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
summary=()
for t in "${targets[@]}"; do
  bin="$build/cmake/${t/-/_}_fuzz"
  seeds="$build/seeds-gguf"; [[ $t == image* ]] && seeds="$build/seeds-image"
  corpus="$build/corpus-$t"; crashes="$build/crashes-$t"; log="$build/fuzz-$t.log"
  mkdir -p "$corpus" "$crashes"
  # Regression inputs checked in for this target run first (they must not crash any more).
  regress=()
  for f in "$root"/test/fixtures/corpus/"${t%%-*}"-*; do [[ -f $f ]] && regress+=("$f"); done
  if [[ ${#regress[@]} -gt 0 ]]; then "$bin" "${regress[@]}" >/dev/null 2>&1 || { echo "[fuzz] $t: a checked-in regression input crashes" >&2; status=1; }; fi
  echo "[fuzz] $t: ${seconds}s, $jobs job(s); log $log"
  max_len=65536; [[ $t == gguf ]] && max_len=262144
  rc=0
  if [[ $jobs -gt 1 ]]; then
    # Parallel jobs also write fuzz-<n>.log in the working directory; their output reaches $log too.
    (cd "$build" && "$bin" "$corpus" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -max_len=$max_len -artifact_prefix="$crashes/" -print_final_stats=1 -jobs="$jobs" -workers="$jobs" >"$log" 2>&1) || rc=$?
  else
    "$bin" "$corpus" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=$max_len \
      -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  fi
  execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}')
  found=$(find "$crashes" -type f | wc -l)
  summary+=("$t: $execs executions, $found crash(es), corpus $(find "$corpus" -type f | wc -l) inputs, exit $rc")
  if [[ $found -gt 0 || $rc -ne 0 ]]; then status=1; fi
done
printf '[fuzz] %s\n' "${summary[@]}"
exit $status
