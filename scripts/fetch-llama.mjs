#!/usr/bin/env node
// Obtains the pinned llama.cpp source (for ggml) without committing any of it:
//   1. `npm pack` the pinned node-llama-cpp tarball into a per-user cache,
//   2. verify the tarball against the sha512 integrity pinned in scripts/llama-pin.json,
//   3. extract only llama/gitRelease.bundle and clone it into deps/llama.cpp at the pinned commit,
//   4. apply the documented patches in scripts/patches/,
//   5. installed as a dependency (under node_modules/, or HOVLE_LLAMA_SLIM=1), keep only what the
//      addon builds from: ggml/, vendor/ and the licence (31 MB instead of 207 with git history,
//      docs and vocabulary files; the benchmark's llama-bench build needs the whole tree).
// A stamp file makes re-runs a no-op while pin, patches and slimness are unchanged.
// Needs git (to read the bundle), tar and npm.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, createReadStream } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pinFile = join(root, 'scripts', 'llama-pin.json');
const pin = JSON.parse(readFileSync(pinFile, 'utf8'));
const destDir = process.env.HOVLE_LLAMA_DIR ? resolve(process.env.HOVLE_LLAMA_DIR) : join(root, 'deps', 'llama.cpp');
const cacheDir = process.env.HOVLE_CACHE_DIR
  ? resolve(process.env.HOVLE_CACHE_DIR)
  : join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'hovle');
const tarballName = `${pin.npmPackage}-${pin.npmVersion}.tgz`;
const tarball = join(cacheDir, tarballName);
const slim = process.env.HOVLE_LLAMA_SLIM ? process.env.HOVLE_LLAMA_SLIM === '1' : root.split(sep).includes('node_modules');
const KEEP_SLIM = ['ggml', 'vendor', 'LICENSE', 'licenses', '.hovle-stamp'];

function log(msg) {
  process.stderr.write(`[fetch-llama] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...opts }).toString().trim();
  } catch (err) {
    if (err.code === 'ENOENT') {
      throw new Error(`${cmd} is not installed, and building hovle needs it to unpack llama.cpp's source (install ${cmd}, e.g. apt-get install -y ${cmd})`);
    }
    throw err;
  }
}

async function sriOf(file) {
  const [algo] = pin.integrity.split('-', 1);
  const hash = createHash(algo);
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return `${algo}-${hash.digest('base64')}`;
}

function stampContent() {
  const h = createHash('sha256');
  h.update(JSON.stringify(pin));
  h.update(slim ? 'slim' : 'full');
  for (const p of pin.patches) h.update(readFileSync(join(root, 'scripts', 'patches', p)));
  return h.digest('hex');
}

async function ensureTarball() {
  if (existsSync(tarball)) {
    if ((await sriOf(tarball)) === pin.integrity) return;
    log(`cached ${tarballName} fails its integrity check; downloading again`);
    rmSync(tarball);
  }
  mkdirSync(cacheDir, { recursive: true });
  const staging = join(cacheDir, `.pack-${process.pid}`);
  mkdirSync(staging, { recursive: true });
  log(`downloading ${pin.npmPackage}@${pin.npmVersion} from the npm registry`);
  try {
    run('npm', ['pack', `${pin.npmPackage}@${pin.npmVersion}`, '--pack-destination', staging, '--silent'], {
      cwd: staging,
    });
    const got = join(staging, tarballName);
    const sri = await sriOf(got);
    if (sri !== pin.integrity) {
      throw new Error(`integrity mismatch for ${tarballName}: expected ${pin.integrity}, got ${sri}`);
    }
    renameSync(got, tarball);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

async function main() {
  const stamp = join(destDir, '.hovle-stamp');
  const want = stampContent();
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) {
    log(`llama.cpp ${pin.commit.slice(0, 7)} already in ${destDir}`);
    return;
  }
  await ensureTarball();

  const work = join(tmpdir(), `hovle-llama-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const tmpDest = `${destDir}.partial`;
  try {
    run('tar', ['-xzf', tarball, '-C', work, pin.bundlePath]);
    rmSync(tmpDest, { recursive: true, force: true });
    mkdirSync(dirname(destDir), { recursive: true });
    log(`cloning ${pin.bundlePath} at ${pin.commit.slice(0, 7)}`);
    run('git', ['-c', 'advice.detachedHead=false', 'clone', '--quiet', '--no-checkout', join(work, pin.bundlePath), tmpDest]);
    run('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', pin.commit], { cwd: tmpDest });
    const head = run('git', ['rev-parse', 'HEAD'], { cwd: tmpDest });
    if (head !== pin.commit) throw new Error(`bundle checked out ${head}, expected ${pin.commit}`);
    for (const p of pin.patches) {
      log(`applying patches/${p}`);
      run('git', ['apply', '--whitespace=nowarn', join(root, 'scripts', 'patches', p)], { cwd: tmpDest });
    }
    writeFileSync(join(tmpDest, '.hovle-stamp'), want);
    if (slim) {
      for (const entry of readdirSync(tmpDest)) if (!KEEP_SLIM.includes(entry)) rmSync(join(tmpDest, entry), { recursive: true, force: true });
    }
    rmSync(destDir, { recursive: true, force: true });
    renameSync(tmpDest, destDir);
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(tmpDest, { recursive: true, force: true });
  }
  log(`llama.cpp ${pin.commit.slice(0, 7)} ready in ${destDir}${slim ? ' (ggml and vendor only)' : ''}`);
}

main().catch((err) => {
  process.stderr.write(`[fetch-llama] error: ${err.message}\n`);
  process.exit(1);
});
