#!/usr/bin/env node
// Builds llama.cpp's llama-bench and llama-quantize from the pinned source our addon uses, with
// the same ggml CPU code (scripts/ggml-cpu.cmake, which CMakeLists.txt includes too), so the
// benchmark compares the two programs rather than two compilers' settings.
//
//   node scripts/build-llama-peer.mjs [--backend cpu|cuda] [--cpu portable|x86-64-v2|native]
//        [--cuda-arch native|90|87...] [--build-dir DIR] [--jobs N] [-D KEY=VALUE ...] [--force]
//
// Defaults: --cpu $HOVLE_CPU or portable (what `npm install` builds), --build-dir build-peer
// (build-peer-cuda with --backend cuda), --cuda-arch $HOVLE_CUDA_ARCHITECTURES or native.
// -D adds a cache entry to both the configure step and the stamp (say -D GGML_CUDA_FA=OFF to
// match scripts/gpu-check.sh). A stamp in the build folder makes a rerun instant while the
// source, flags and this script are unchanged. Prints one JSON line on stdout: the binaries,
// the commit and the ggml flags the build ended up with; progress goes to stderr.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cpuInclude = join(root, 'scripts', 'ggml-cpu.cmake');
const TARGETS = ['llama-bench', 'llama-quantize'];
// The settings that decide which CPU kernels run; compared with our addon's build when there is one.
const CPU_KEYS = [
  'GGML_NATIVE', 'GGML_SSE42', 'GGML_AVX', 'GGML_AVX2', 'GGML_AVX_VNNI', 'GGML_BMI2', 'GGML_FMA', 'GGML_F16C',
  'GGML_AVX512', 'GGML_AVX512_VBMI', 'GGML_AVX512_VNNI', 'GGML_AVX512_BF16', 'GGML_AMX_TILE', 'GGML_AMX_INT8',
  'GGML_AMX_BF16', 'GGML_LLAMAFILE', 'GGML_OPENMP', 'GGML_CPU_REPACK', 'GGML_CPU_KLEIDIAI', 'GGML_BACKEND_DL',
  'BUILD_SHARED_LIBS', 'CMAKE_BUILD_TYPE',
];

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    cpu: { type: 'string' },
    'cuda-arch': { type: 'string' },
    'build-dir': { type: 'string' },
    jobs: { type: 'string' },
    define: { type: 'string', short: 'D', multiple: true, default: [] },
    force: { type: 'boolean', default: false },
  },
  strict: true,
});

function log(msg) {
  process.stderr.write(`[build-llama-peer] ${msg}\n`);
}

function fail(msg) {
  log(`error: ${msg}`);
  process.exit(1);
}

// Child output goes to stderr: stdout carries only the JSON result.
function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 2, 2], ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${argv.join(' ')} exited with ${r.status ?? r.signal}`);
  return r;
}

function capture(cmd, argv, cwd) {
  const r = spawnSync(cmd, argv, { cwd, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function readCache(file) {
  const out = {};
  if (!existsSync(file)) return out;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Za-z0-9_.-]+):[A-Z]+=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

const backend = args.backend.toLowerCase();
if (backend !== 'cpu' && backend !== 'cuda') fail(`--backend must be cpu or cuda, not '${args.backend}'`);
const cpu = args.cpu ?? process.env.HOVLE_CPU ?? 'portable';
if (!['portable', 'x86-64-v2', 'native'].includes(cpu)) fail(`--cpu must be portable, x86-64-v2 or native, not '${cpu}'`);
const buildDir = resolve(root, args['build-dir'] ?? (backend === 'cuda' ? 'build-peer-cuda' : 'build-peer'));
const llamaDir = process.env.HOVLE_LLAMA_DIR ? resolve(process.env.HOVLE_LLAMA_DIR) : join(root, 'deps', 'llama.cpp');
const jobs = args.jobs ?? String(availableParallelism());

for (const tool of ['cmake', 'ninja']) {
  if (capture(tool, ['--version']) === undefined) fail(`${tool} not found on PATH`);
}
const haveCcache = capture('ccache', ['--version']) !== undefined;
if (!haveCcache) log('ccache not found: building without a compiler cache');

if (!existsSync(join(llamaDir, 'CMakeLists.txt'))) {
  log(`no llama.cpp in ${llamaDir}; fetching it`);
  // The whole tree: a slim one (ggml only) cannot build llama-bench.
  run(process.execPath, [join(root, 'scripts', 'fetch-llama.mjs')], { cwd: root, env: { ...process.env, HOVLE_LLAMA_SLIM: '0' } });
}
const commit = capture('git', ['rev-parse', 'HEAD'], llamaDir);
if (!commit) fail(`${llamaDir} is not a git checkout (run node scripts/fetch-llama.mjs)`);
// fetch-llama's stamp covers the pin and our patches, which the commit alone does not.
const fetchStampFile = join(llamaDir, '.hovle-stamp');
const fetchStamp = existsSync(fetchStampFile) ? readFileSync(fetchStampFile, 'utf8').trim() : 'none';

const defines = {
  CMAKE_BUILD_TYPE: 'Release',
  // Mirrors CMakeLists.txt's global setting, which ggml's objects in our addon are compiled with.
  CMAKE_POSITION_INDEPENDENT_CODE: 'ON',
  BUILD_SHARED_LIBS: 'OFF',
  GGML_BACKEND_DL: 'OFF',
  HOVLE_CPU: cpu,
  CMAKE_PROJECT_INCLUDE: cpuInclude,
  GGML_CUDA: backend === 'cuda' ? 'ON' : 'OFF',
  GGML_VULKAN: 'OFF',
  GGML_METAL: 'OFF',
  GGML_BLAS: 'OFF',
  GGML_RPC: 'OFF',
  LLAMA_BUILD_TESTS: 'OFF',
  LLAMA_BUILD_EXAMPLES: 'OFF',
  LLAMA_BUILD_SERVER: 'OFF',
  LLAMA_BUILD_APP: 'OFF',
  // This pin has dropped LLAMA_CURL (setting it only prints a deprecation warning); the HTTPS
  // client that replaced it is turned off here instead: benchmarks read local files.
  LLAMA_OPENSSL: 'OFF',
};
if (haveCcache) {
  defines.CMAKE_C_COMPILER_LAUNCHER = 'ccache';
  defines.CMAKE_CXX_COMPILER_LAUNCHER = 'ccache';
  // ggml would add its own launcher rule otherwise; one is enough.
  defines.GGML_CCACHE = 'OFF';
}
if (backend === 'cuda') {
  defines.CMAKE_CUDA_ARCHITECTURES = args['cuda-arch'] ?? process.env.HOVLE_CUDA_ARCHITECTURES ?? 'native';
  const nvcc = process.env.CUDACXX || capture('sh', ['-c', 'command -v nvcc']) || '/usr/local/cuda/bin/nvcc';
  if (!existsSync(nvcc)) fail(`nvcc not found (looked at ${nvcc}); set CUDACXX`);
  defines.CMAKE_CUDA_COMPILER = nvcc;
  if (haveCcache) defines.CMAKE_CUDA_COMPILER_LAUNCHER = 'ccache';
}
for (const d of args.define) {
  const eq = d.indexOf('=');
  if (eq <= 0) fail(`-D wants KEY=VALUE, got '${d}'`);
  defines[d.slice(0, eq)] = d.slice(eq + 1);
}

const stampKey = createHash('sha256')
  .update(JSON.stringify({ commit, fetchStamp, defines, targets: TARGETS }))
  .update(readFileSync(cpuInclude))
  .update(readFileSync(fileURLToPath(import.meta.url)))
  .digest('hex');
const stampFile = join(buildDir, 'hovle-peer-stamp.json');
const bins = Object.fromEntries(TARGETS.map((t) => [t, join(buildDir, 'bin', t)]));

function report(stamp, fresh) {
  const ours = readCache(join(root, 'build', 'cmake', 'CMakeCache.txt'));
  const diffs = Object.keys(ours).length === 0 ? undefined
    : CPU_KEYS.filter((k) => (ours[k] ?? '') !== (stamp.flags[k] ?? '')).map((k) => `${k}: addon ${ours[k] ?? '(unset)'}, peer ${stamp.flags[k] ?? '(unset)'}`);
  if (diffs === undefined) log('no build/cmake/CMakeCache.txt to compare the CPU flags with');
  else if (diffs.length > 0) log(`warning: ggml settings differ from the addon's build/:\n  ${diffs.join('\n  ')}`);
  else if (diffs.length === 0) log("ggml CPU settings match the addon's build/");
  log(`${fresh ? 'built' : 'up to date'}: ${Object.values(bins).join(', ')}`);
  process.stdout.write(JSON.stringify({ ...bins, buildDir, backend, commit, flags: stamp.flags, buildSeconds: stamp.buildSeconds }) + '\n');
}

if (!args.force && existsSync(stampFile) && Object.values(bins).every((b) => existsSync(b))) {
  const stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
  if (stamp.key === stampKey) {
    report(stamp, false);
    process.exit(0);
  }
}

if (args.force) rmSync(buildDir, { recursive: true, force: true });
// A folder configured by another generator cannot be reused with Ninja.
const oldCache = readCache(join(buildDir, 'CMakeCache.txt'));
if (oldCache.CMAKE_GENERATOR && oldCache.CMAKE_GENERATOR !== 'Ninja') rmSync(buildDir, { recursive: true, force: true });
mkdirSync(buildDir, { recursive: true });
rmSync(stampFile, { force: true });

// Objects from another checkout of the same tree hit the same cache entries.
const env = { ...process.env, CCACHE_BASEDIR: root, CCACHE_NOHASHDIR: 'true' };
const started = Date.now();
log(`configuring llama.cpp ${commit.slice(0, 8)} (${backend}, HOVLE_CPU=${cpu}) in ${buildDir}`);
run('cmake', ['-S', llamaDir, '-B', buildDir, '-G', 'Ninja', '-Wno-dev', '--log-level=WARNING',
  ...Object.entries(defines).map(([k, v]) => `-D${k}=${v}`)], { env });
log(`building ${TARGETS.join(', ')} with ${jobs} jobs`);
run('cmake', ['--build', buildDir, '--target', ...TARGETS, '--parallel', jobs], { env });
for (const b of Object.values(bins)) if (!existsSync(b)) fail(`the build finished but ${b} is missing`);

const cache = readCache(join(buildDir, 'CMakeCache.txt'));
const flags = Object.fromEntries(CPU_KEYS.filter((k) => k in cache).map((k) => [k, cache[k]]));
if (backend === 'cuda') for (const k of ['GGML_CUDA', 'CMAKE_CUDA_ARCHITECTURES', 'GGML_CUDA_FA', 'GGML_CUDA_GRAPHS']) flags[k] = cache[k];
const stamp = { key: stampKey, commit, fetchStamp, defines, flags, buildSeconds: Math.round((Date.now() - started) / 100) / 10 };
writeFileSync(stampFile, JSON.stringify(stamp, null, 2) + '\n');
report(stamp, true);
