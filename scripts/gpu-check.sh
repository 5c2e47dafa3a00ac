#!/usr/bin/env bash
# Runs on a lent GPU machine (the device tool's README), from what scripts/gpu-prebuild.sh built
# here, carried along with the working tree:   carry: build-gpu-pack  dist
# That machine has no network, no node and no compiler toolchain for us, and minutes of time, so
# nothing is built there: the pack is unpacked (with python3's lzma: xz may be missing there)
# into build-gpu/. In order, each step's output kept in $OUT (or ./gpu-out):
#   1. the addon loads with every symbol bound (LD_BIND_NOW) against the machine's libcudart/libcublas
#   2. `hovle info --check`: hovle's reference graph on CUDA0 against the CPU (f32, f16, q8_0, q4_0)
#   3. scripts/check-backend.mjs --backend cuda: the tiny fixtures' golden logits and greedy tokens
#   4. bench/run.mjs --backend cuda: the full-size synthetic model vs llama-bench (CUDA, -ngl 99)
# Models are generated at the start, in the background, while 1-3 run.
# --mode decode instead: where a decode step's time goes on the GPU, ours (bench/decode-probe.mjs)
# and llama-bench's, with and without CUDA graphs and with one CPU thread, plus ggml's scheduler
# and CUDA-graph debug log of a few steps, whole answers greedy against sampled
# (bench/sampling-probe.mjs); and the golden check with TF32 off (NVIDIA_TF32_OVERRIDE=0).
# --mode run --run 'CMD': the same setup (unpacked binaries, libraries, node on PATH, our model
# of the first --types as $MODEL, no peer), then CMD: for one-off measurements.
#
#   bash scripts/gpu-check.sh [--types q4_0,q8_0] [--rounds 1] [--reps 3] [--pairs 2] [--deadline 520]
# --deadline: seconds from the start by which the bench is stopped (the device tool's call limit
# is 600); BENCHMARKS-cuda.md is written after each type, so a stopped run keeps what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
types=q4_0,q8_0 rounds=1 reps=3 pairs=2 deadline=520 mode=check run_cmd=
while [ $# -gt 0 ]; do
  case "$1" in
    --types) types="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --deadline) deadline="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --run) run_cmd="$2"; shift 2 ;;
    *) echo "gpu-check.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
exec > >(tee -a "$out/gpu-check.log") 2>&1
t0=$(date +%s)
say() { echo "[gpu-check +$(( $(date +%s) - t0 ))s] $*"; }
bin="$PWD/build-gpu"
pack="$PWD/build-gpu-pack"
if [ -d "$pack" ]; then
  python3 - "$pack" "$bin" <<'PY' || { say "cannot unpack $pack"; exit 1; }
import lzma, os, shutil, sys, tarfile
pack, bin = sys.argv[1:3]
os.makedirs(bin, exist_ok=True)
for name in os.listdir(pack):
    src = os.path.join(pack, name)
    if name == 'node.tar.xz':
        with tarfile.open(src) as t:
            t.extractall('/tmp/hovle-node')
        continue
    dst = os.path.join(bin, name[:-3] if name.endswith('.xz') else name)
    with (lzma.open(src) if name.endswith('.xz') else open(src, 'rb')) as f, open(dst, 'wb') as g:
        shutil.copyfileobj(f, g)
    os.chmod(dst, 0o755)
PY
fi
[ -e "$bin/hovle.node" ] || { say "no $bin/hovle.node: run scripts/gpu-prebuild.sh here first"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
[ -x /tmp/hovle-node/node ] && ! command -v node >/dev/null && export PATH="/tmp/hovle-node:$PATH"
say "node $(node --version)"
# The binaries were linked against libcudart.so.13 and (a stub of) libcublas.so.13 by soname.
libdirs=$(ldconfig -p | awk '/libcublas\.so\.13|libcudart\.so\.13/ {print $NF}' | xargs -r -n1 dirname | sort -u | tr '\n' ':')
if [ -z "$libdirs" ]; then
  libdirs=$(find /usr/local /opt /usr/lib -xdev \( -name 'libcublas.so.13' -o -name 'libcudart.so.13' \) -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
fi
# libgomp.so.1 travels too, last on the path: used only where the image has none.
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$bin"
export HOVLE_ADDON_PATH="$bin/hovle.node" HOVLE_GNU_TIME="$bin/time"
say "libraries from ${libdirs:-nowhere}"

models=/tmp/hovle-models
mkdir -p "$models"
IFS=, read -r -a tlist <<<"$types"
if [ "$mode" = run ]; then
  export MODEL="$models/hovle-2b-${tlist[0]}.gguf" OUT="$out"
  node scripts/make-synthetic-model.mjs gguf -o "$MODEL" --type "${tlist[0]}" > "$out/make-${tlist[0]}.log" 2>&1
  say "running: $run_cmd"
  bash -c "$run_cmd"
  say "done"
  exit 0
fi
for t in "${tlist[@]}"; do
  node scripts/make-synthetic-model.mjs gguf -o "$models/hovle-2b-$t.gguf" --type "$t" > "$out/make-$t.log" 2>&1 &
done
node scripts/make-internlm2-peer.mjs "$models" --types "$types" --quantize "$bin/llama-quantize" > "$out/make-peer.log" 2>&1 &
gen_pids=$(jobs -p)

if [ "$mode" = decode ]; then
  t="${tlist[0]}"
  say "golden check with TF32 off"
  NVIDIA_TF32_OVERRIDE=0 timeout 150 node scripts/check-backend.mjs --backend cuda > "$out/check-backend-notf32.txt" 2>/dev/null
  tail -1 "$out/check-backend-notf32.txt"
  for p in $gen_pids; do wait "$p"; done
  m="$models/hovle-2b-$t.gguf" peer_m="$models/internlm2-hovle-peer-$t.gguf"
  probe() { timeout 60 node bench/decode-probe.mjs "$m" --backend cuda --steps 64 "$@" | tee -a "$out/decode-probe.txt"; }
  probe
  GGML_CUDA_DISABLE_GRAPHS=1 probe
  probe --threads 1
  probe --depth 1024
  timeout 90 node bench/sampling-probe.mjs "$m" --backend cuda --tokens 64 --reps 2 2>/dev/null | tee -a "$out/sampling-probe.txt"
  HOVLE_LOG=debug GGML_SCHED_DEBUG=2 timeout 60 node bench/decode-probe.mjs "$m" --backend cuda --steps 3 > "$out/decode-debug.log" 2>&1
  grep -c "" "$out/decode-debug.log"; grep -i "cuda graph\|warmup" "$out/decode-debug.log" | sort | uniq -c | head
  lb() { timeout 60 "$bin/llama-bench" -m "$peer_m" -p 0 -n 64 -ngl 99 -fa 1 -o csv "$@" 2>/dev/null | tail -1 | tee -a "$out/llama-bench.txt"; }
  lb
  GGML_CUDA_DISABLE_GRAPHS=1 lb
  lb -t 1
  lb -d 1024
  say "done"
  exit 0
fi

say "1. load check"
LD_BIND_NOW=1 node -e "const a=require(process.env.HOVLE_ADDON_PATH); console.log(Object.keys(a).length + ' exports')" || say "FAILED: the addon does not load"
ldd "$bin/hovle.node" | grep -E 'cublas|cudart|not found'
say "2. hovle info --check"
timeout 120 node dist/cli/main.js info --check | tee "$out/info-check.txt"
say "3. check-backend (golden data on CUDA)"
timeout 150 node scripts/check-backend.mjs --backend cuda > "$out/check-backend.txt" 2>/dev/null; echo "exit $?" >> "$out/check-backend.txt"
tail -3 "$out/check-backend.txt"

say "waiting for the models"
for p in $gen_pids; do wait "$p" || say "a model writer failed (see $out/make-*.log)"; done
ls -la "$models"
for t in "${tlist[@]}"; do
  [ -e "$models/hovle-2b-$t.gguf" ] && [ -e "$models/internlm2-hovle-peer-$t.gguf" ] || { say "models for $t missing: no bench"; exit 1; }
done
left=$(( deadline - ($(date +%s) - t0) ))
say "4. bench (${left} s left)"
[ "$left" -gt 30 ] || exit 1
[ -e "$pack/hovle-commit" ] && export HOVLE_BENCH_COMMIT="$(cat "$pack/hovle-commit")"
timeout "$left" node bench/run.mjs --backend cuda --peer-bin "$bin" --models "$models" --types "$types" \
  --rounds "$rounds" --reps "$reps" --pairs "$pairs" --out "$out/BENCHMARKS-cuda.md"
say "done"
