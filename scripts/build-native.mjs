#!/usr/bin/env node
// Builds build/Release/hovle.node: fetches the pinned llama.cpp, then configures and builds
// CMakeLists.txt with cmake-js. Runs as the package's `install` script and from binding.gyp.
// Every compile rule lives in CMakeLists.txt; this script only maps flags/env to HOVLE_* options.
//
//   --backends cpu,vulkan,cuda,metal   (env HOVLE_BACKENDS)   cpu is always built
//   --cpu portable|x86-64-v2|native    (env HOVLE_CPU)
//   --cuda-arch 87                     (env HOVLE_CUDA_ARCHITECTURES)
//   --jpeg auto|libjpeg|stb            (env HOVLE_JPEG)
//   --build-dir build                  (env HOVLE_BUILD_DIR)  product: <dir>/Release/hovle.node
//   --sanitize address,undefined       (env HOVLE_SANITIZE)   instrumented build (scripts/asan-test.sh)
//   --force                            wipe the CMake build directory first
//   --debug                            Debug configuration
//   --from-node-gyp                    invoked by binding.gyp (node-gyp, electron-rebuild)
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const KNOWN_BACKENDS = ['cpu', 'vulkan', 'cuda', 'metal'];

const { values: args } = parseArgs({
  options: {
    backends: { type: 'string' },
    cpu: { type: 'string' },
    'cuda-arch': { type: 'string' },
    jpeg: { type: 'string' },
    'build-dir': { type: 'string' },
    sanitize: { type: 'string' },
    force: { type: 'boolean', default: false },
    debug: { type: 'boolean', default: false },
    'from-node-gyp': { type: 'boolean', default: false },
    arch: { type: 'string' },
    jobs: { type: 'string' },
  },
  strict: true,
});

function fail(msg) {
  process.stderr.write(`[build-native] error: ${msg}\n`);
  process.exit(1);
}

function run(cmd, argv, extraEnv = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, ...extraEnv } });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${argv.join(' ')} exited with ${r.status}`);
}

if (process.env.HOVLE_SKIP_BUILD === '1') {
  process.stderr.write('[build-native] HOVLE_SKIP_BUILD=1: not building the addon\n');
  process.exit(0);
}

const buildDir = resolve(root, args['build-dir'] ?? process.env.HOVLE_BUILD_DIR ?? 'build');
const cmakeDir = join(buildDir, 'cmake');
const outDir = join(buildDir, 'Release');

const defines = { HOVLE_OUTPUT_DIR: outDir };
const backendsArg = args.backends ?? process.env.HOVLE_BACKENDS;
if (backendsArg) {
  const wanted = backendsArg.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const b of wanted) {
    if (!KNOWN_BACKENDS.includes(b)) fail(`unknown backend '${b}' (known: ${KNOWN_BACKENDS.join(', ')})`);
  }
  for (const b of KNOWN_BACKENDS.slice(1)) defines[`HOVLE_${b.toUpperCase()}`] = wanted.includes(b) ? 'ON' : 'OFF';
}
const cpu = args.cpu ?? process.env.HOVLE_CPU;
if (cpu) defines.HOVLE_CPU = cpu;
const cudaArch = args['cuda-arch'] ?? process.env.HOVLE_CUDA_ARCHITECTURES;
if (cudaArch) defines.HOVLE_CUDA_ARCHITECTURES = cudaArch;
const jpeg = args.jpeg ?? process.env.HOVLE_JPEG;
if (jpeg) defines.HOVLE_JPEG = jpeg;
const sanitize = args.sanitize ?? process.env.HOVLE_SANITIZE;
if (sanitize !== undefined) defines.HOVLE_SANITIZE = sanitize;

if (args.force) rmSync(cmakeDir, { recursive: true, force: true });

run(process.execPath, [join(root, 'scripts', 'fetch-llama.mjs')]);

const cmakeJs = join(dirname(fileURLToPath(import.meta.resolve('cmake-js/package.json'))), 'bin', 'cmake-js');
const common = ['--directory', root, '--out', cmakeDir, '--log-level', 'warn'];
if (args.debug) common.push('--debug');
if (args.arch) common.push('--arch', args.arch);
const cmakeDefines = Object.entries(defines).map(([k, v]) => `--CD${k}=${v}`);

// Different checkouts of the same tree share ccache hits (CI clones into a fresh folder).
// ggml's CMake asks git for its commit: a slim checkout (fetch-llama.mjs, installed under
// node_modules) has no .git, and git must not answer from the enclosing project's repository.
const llamaDir = process.env.HOVLE_LLAMA_DIR ? resolve(process.env.HOVLE_LLAMA_DIR) : join(root, 'deps', 'llama.cpp');
const ceiling = [dirname(llamaDir), process.env.GIT_CEILING_DIRECTORIES].filter(Boolean).join(':');
const env = { CCACHE_BASEDIR: root, CCACHE_NOHASHDIR: 'true', GIT_CEILING_DIRECTORIES: ceiling };
const started = Date.now();
run(process.execPath, [cmakeJs, 'configure', ...common, ...cmakeDefines], env);
const jobs = args.jobs ?? String(availableParallelism());
run(process.execPath, [cmakeJs, 'build', ...common, ...cmakeDefines, '--parallel', jobs], env);

const product = join(outDir, 'hovle.node');
if (!existsSync(product)) fail(`the build finished but ${product} is missing`);
const mb = (statSync(product).size / 1e6).toFixed(1);
process.stderr.write(
  `[build-native] ${product} (${mb} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s` +
    (args['from-node-gyp'] ? ' (via node-gyp)' : '') + '\n',
);
