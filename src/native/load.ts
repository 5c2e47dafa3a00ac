// Finds, checks and loads hovle.node. Every way this can fail ends in a HovleError that names
// the command which fixes it; nothing here lets a wrong binary reach dlopen when it can be told
// beforehand (a missing CPU feature would otherwise kill the process with SIGILL).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

import { HovleError } from '../errors.js';
import { packageRoot } from '../paths.js';
import type { BuildInfo, NativeAddon } from './addon.js';

export const REBUILD_HINT =
  'Run `npm rebuild hovle` in your project (in a clone of hovle itself: `npm run build:native`).';

export interface ExpectedBuild {
  version: string;
  nativeApi: number;
}

export interface OpenOptions {
  expected?: ExpectedBuild;
  /** CPU flags of this machine (lower case), or null when they cannot be read. */
  cpuFlags?: Set<string> | null;
}

/** Where the loader looks: HOVLE_ADDON_PATH, else build/Release/hovle.node in the package. */
export function defaultAddonPath(): string {
  const override = process.env.HOVLE_ADDON_PATH;
  return override ? resolve(override) : join(packageRoot, 'build', 'Release', 'hovle.node');
}

export function expectedBuild(): ExpectedBuild {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as {
    version: string;
    hovle: { nativeApi: number };
  };
  return { version: pkg.version, nativeApi: pkg.hovle.nativeApi };
}

/** x86 `flags` / arm `Features` from /proc/cpuinfo; null where there is no such file. */
export function readCpuFlags(): Set<string> | null {
  if (process.platform !== 'linux') return null;
  let text: string;
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
  return line ? new Set(line.split(':')[1]!.trim().toLowerCase().split(/\s+/)) : null;
}

function mismatch(path: string, what: string): HovleError {
  return new HovleError('ADDON_MISMATCH', `The hovle addon at ${path} ${what}. ${REBUILD_HINT}`);
}

function checkBuild(info: BuildInfo, expected: ExpectedBuild, path: string): void {
  if (info.nativeApi !== expected.nativeApi || info.version !== expected.version) {
    throw mismatch(
      path,
      `was built for hovle ${info.version} (native API ${info.nativeApi}), but this is hovle ` +
        `${expected.version} (native API ${expected.nativeApi})`,
    );
  }
}

/** Loads the addon at `path` after checking build-info.json beside it. Not cached. */
export function openAddon(path: string, options: OpenOptions = {}): NativeAddon {
  const expected = options.expected ?? expectedBuild();
  if (!existsSync(path)) {
    const how = process.env.HOVLE_ADDON_PATH ? ' (from HOVLE_ADDON_PATH)' : '';
    throw new HovleError('ADDON_NOT_BUILT', `No hovle addon at ${path}${how}. ${REBUILD_HINT}`);
  }
  const infoPath = join(path, '..', 'build-info.json');
  let info: BuildInfo;
  try {
    info = JSON.parse(readFileSync(infoPath, 'utf8')) as BuildInfo;
  } catch (err) {
    throw new HovleError('ADDON_MISMATCH', `Cannot read ${infoPath} beside the addon. ${REBUILD_HINT}`, {
      cause: err,
    });
  }
  checkBuild(info, expected, path);

  const flags = options.cpuFlags === undefined ? readCpuFlags() : options.cpuFlags;
  if (flags) {
    const missing = info.cpuRequires.filter((f) => !flags.has(f));
    if (missing.length > 0) {
      throw new HovleError(
        'CPU_UNSUPPORTED',
        `This CPU lacks ${missing.join(', ')}, which the hovle addon was compiled for (HOVLE_CPU=${info.cpu}). ` +
          'Rebuild for this machine: `HOVLE_CPU=native npm rebuild hovle` (or HOVLE_CPU=x86-64-v2 for a build ' +
          'that runs on any x86-64 CPU with SSE4.2).',
      );
    }
  }

  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    throw new HovleError(
      'ADDON_LOAD_FAILED',
      `The hovle addon at ${path} failed to load: ${(err as Error).message}. ` +
        (info.backends.includes('vulkan') ? 'Vulkan builds need the Vulkan loader (libvulkan1). ' : '') +
        REBUILD_HINT,
      { cause: err },
    );
  }
  let compiled: BuildInfo;
  try {
    compiled = JSON.parse(addon.buildInfo) as BuildInfo;
  } catch (err) {
    throw mismatch(path, 'does not report its build information');
  }
  checkBuild(compiled, expected, path);
  if (JSON.stringify(compiled) !== JSON.stringify(info)) {
    throw mismatch(path, `does not match the build-info.json beside it`);
  }
  addon.registerErrorClass(HovleError);
  return addon;
}

let cached: { addon: NativeAddon; info: BuildInfo; path: string } | undefined;

/** The process-wide addon, loaded on first use. */
export function loadAddon(): { addon: NativeAddon; info: BuildInfo; path: string } {
  if (!cached) {
    const path = defaultAddonPath();
    const addon = openAddon(path);
    cached = { addon, info: JSON.parse(addon.buildInfo) as BuildInfo, path };
  }
  return cached;
}
