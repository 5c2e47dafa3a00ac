import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { defaultAddonPath, expectedBuild, openAddon, REBUILD_HINT } from '../src/native/load.js';

const realAddon = defaultAddonPath();
const realInfo = JSON.parse(readFileSync(join(realAddon, '..', 'build-info.json'), 'utf8'));
const dirs: string[] = [];

function fakeBuild(info: object, addonBytes?: Buffer | 'copy'): string {
  const dir = mkdtempSync(join(tmpdir(), 'hovle-loader-'));
  dirs.push(dir);
  const path = join(dir, 'hovle.node');
  if (addonBytes === 'copy') copyFileSync(realAddon, path);
  else writeFileSync(path, addonBytes ?? Buffer.from('not an ELF file'));
  writeFileSync(join(dir, 'build-info.json'), JSON.stringify(info));
  return path;
}

afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('addon loader', () => {
  it('names the fixing command when no addon is built', () => {
    expect(() => openAddon('/nonexistent/hovle.node')).toThrowError(
      expect.objectContaining({ code: 'ADDON_NOT_BUILT', message: expect.stringContaining('npm rebuild hovle') }),
    );
  });

  it('refuses an addon built for another version before loading it', () => {
    const path = fakeBuild({ ...realInfo, version: '0.0.0-other' });
    expect(() => openAddon(path)).toThrowError(
      expect.objectContaining({ code: 'ADDON_MISMATCH', message: expect.stringContaining(REBUILD_HINT) }),
    );
    const api = fakeBuild({ ...realInfo, nativeApi: expectedBuild().nativeApi + 1 });
    expect(() => openAddon(api)).toThrowError(expect.objectContaining({ code: 'ADDON_MISMATCH' }));
  });

  it('refuses an addon without readable build information', () => {
    const path = fakeBuild({});
    writeFileSync(join(path, '..', 'build-info.json'), '{ truncated');
    expect(() => openAddon(path)).toThrowError(expect.objectContaining({ code: 'ADDON_MISMATCH' }));
  });

  it('refuses to load code this CPU cannot run, naming the rebuild', () => {
    const path = fakeBuild({ ...realInfo, cpuRequires: ['avx2', 'avx512f'] });
    expect(() => openAddon(path, { cpuFlags: new Set(['sse4_2', 'avx2']) })).toThrowError(
      expect.objectContaining({ code: 'CPU_UNSUPPORTED', message: expect.stringMatching(/avx512f.*HOVLE_CPU=native/s) }),
    );
  });

  it('turns a dlopen failure into ADDON_LOAD_FAILED and keeps the process alive', () => {
    const path = fakeBuild(realInfo, Buffer.alloc(4096, 0x7f));
    expect(() => openAddon(path, { cpuFlags: null })).toThrowError(
      expect.objectContaining({ code: 'ADDON_LOAD_FAILED', message: expect.stringContaining('npm rebuild hovle') }),
    );
  });

  it('detects a build-info.json that does not belong to the binary beside it', () => {
    const path = fakeBuild({ ...realInfo, cpu: realInfo.cpu === 'native' ? 'portable' : 'native' }, 'copy');
    expect(() => openAddon(path, { cpuFlags: null })).toThrowError(
      expect.objectContaining({ code: 'ADDON_MISMATCH', message: expect.stringContaining('does not match') }),
    );
  });
});
