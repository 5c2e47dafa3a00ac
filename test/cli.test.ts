import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { tempDir } from './helpers/tmp.js';

// Runs the built CLI (dist/), as users and scripts do; `npm test` builds dist first.
const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function hovle(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('hovle CLI', () => {
  it('info --json lists the CPU backend and device', () => {
    const r = hovle(['info', '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.build.backends).toContain('cpu');
    expect(info.devices.some((d: { backend: string }) => d.backend === 'CPU')).toBe(true);
  });

  it('info prints a human table', () => {
    const r = hovle(['info']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^device\s+backend\s+type\s+free\s+total\s+description$/m);
    expect(r.stdout).toMatch(/^CPU\s+CPU\s+cpu\s/m);
    expect(r.stdout).toContain('CPU features:');
  });

  it('has --help for the tool and each command, and --version', () => {
    expect(hovle(['--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('info') });
    expect(hovle(['info', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--json') });
    expect(hovle(['--version']).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('exits 2 on usage errors', () => {
    expect(hovle([]).code).toBe(2);
    expect(hovle(['frobnicate']).code).toBe(2);
    const r = hovle(['info', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--bogus');
  });

  it('exits 1 with the fixing command when the addon is missing', () => {
    const r = hovle(['info'], { HOVLE_ADDON_PATH: '/nonexistent/hovle.node' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ADDON_NOT_BUILT');
    expect(r.stderr).toContain('npm rebuild hovle');
  });
});

describe('hovle convert / quantize', () => {
  const fixture = fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url));
  const dir = tempDir('cli');

  it('convert --json reports the file and per-tensor types; quantize re-types it', () => {
    const f16 = join(dir, 'm.gguf');
    const r = hovle(['convert', fixture, '-o', f16, '--type', 'f16', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ path: f16, type: 'f16', tensors: 46 });
    expect(j.tensorTypes['output_norm.weight']).toBe('f32');
    const q = hovle(['quantize', f16, join(dir, 'q.gguf'), 'q8_0', '--json']);
    expect(q.code, q.stderr).toBe(0);
    expect(JSON.parse(q.stdout).tensorTypes['blk.0.attn_q.weight']).toBe('q8_0');
  });

  it('usage errors exit 2, checkpoint errors exit 1 with the reason', () => {
    expect(hovle(['convert', fixture]).code).toBe(2);
    expect(hovle(['convert', fixture, '-o', join(dir, 'x.gguf'), '--type', 'q3_k']).code).toBe(2);
    expect(hovle(['quantize', 'a.gguf', 'b.gguf']).code).toBe(2);
    const r = hovle(['convert', dir, '-o', join(dir, 'x.gguf')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/config\.json.*CHECKPOINT_INVALID/s);
    expect(hovle(['convert', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('q4_k_m') });
    expect(hovle(['quantize', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--allow-requantize') });
  });
});

describe('CommonJS consumers', () => {
  it('can require() the package and call it', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const script = `
      const hovle = require(${JSON.stringify(root)});
      hovle.systemInfo().then((i) => {
        const ok = i.devices.some((d) => d.backend === 'CPU') && new hovle.HovleError('INTERNAL', 'x') instanceof Error;
        process.stdout.write(ok ? 'ok' : 'bad');
      });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok');
  });
});
