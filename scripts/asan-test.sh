#!/usr/bin/env bash
# Runs the vitest suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of the
# addon (ggml included), built into build-asan/ (HOVLE_SANITIZE=address,undefined).
#
#   bash scripts/asan-test.sh                       # the whole suite (slow: hours on 2 cores)
#   bash scripts/asan-test.sh test/forward.test.ts test/image.test.ts ...   # some files
#   bash scripts/asan-test.sh --build-only
#
# Node is not built with ASan, so the ASan runtime is preloaded (LD_PRELOAD) into node and the
# test workers. Leak detection is off: V8 and Node keep allocations until exit by design. Any
# ASan report, or UBSan finding (halt_on_error), aborts the worker and fails its test file.
# Not part of `npm test`: the instrumented ggml is several times slower.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${HOVLE_ASAN_BUILD_DIR:-$root/build-asan}"
build_only=0
if [[ ${1:-} == --build-only ]]; then build_only=1; shift; fi

cd "$root"
node scripts/build-native.mjs --build-dir "$build" --sanitize address,undefined
[[ $build_only -eq 1 ]] && exit 0

# The runtime the addon was linked against (gcc's; clang names it differently).
libasan="$(ldd "$build/Release/hovle.node" | awk '/libasan/ {print $3}')"
if [[ -z $libasan ]]; then libasan="$(gcc -print-file-name=libasan.so)"; fi
if [[ ! -f $libasan ]]; then echo "asan-test: cannot find libasan.so" >&2; exit 1; fi

export HOVLE_ADDON_PATH="$build/Release/hovle.node"
export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
# allow_user_segv_handler: V8 installs its own SIGSEGV handler (WebAssembly trap handling).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allow_user_segv_handler=1:abort_on_error=1:print_summary=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# One file at a time (the instrumented build is memory-hungry), generous timeouts.
exec npx vitest run --no-file-parallelism --testTimeout=1800000 --hookTimeout=1800000 "$@"
