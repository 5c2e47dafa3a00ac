import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { systemInfo } from '../src/index.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const pin = JSON.parse(readFileSync(new URL('../scripts/llama-pin.json', import.meta.url), 'utf8'));

describe('systemInfo', () => {
  it('reports the pinned ggml, the build and a CPU device with memory', async () => {
    const info = await systemInfo();
    expect(info.hovleVersion).toBe(pkg.version);
    expect(info.ggml.commit).toBe(pin.commit);
    expect(info.ggml.buildCommit.startsWith(pin.commit.slice(0, 7))).toBe(true);
    expect(info.ggml.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(info.build.backends).toContain('cpu');
    expect(info.registeredBackends).toContain('CPU');
    const cpu = info.devices.find((d) => d.backend === 'CPU');
    expect(cpu).toBeDefined();
    expect(cpu!.type).toBe('cpu');
    expect(cpu!.memoryTotalBytes).toBeGreaterThan(0);
    expect(cpu!.memoryFreeBytes).toBeGreaterThan(0);
    expect(cpu!.memoryFreeBytes).toBeLessThanOrEqual(cpu!.memoryTotalBytes);
    // The portable x86-64 build compiles AVX2 kernels; ggml reports what it uses.
    if (info.build.cpu === 'portable' && process.arch === 'x64') {
      expect(info.cpuFeatures.AVX2).toBe('1');
    }
  });

});
