// Runs only through `npm run test:vulkan` (scripts/test-vulkan.mjs), against the Vulkan build
// with Mesa's lavapipe made visible. It fails, rather than skips, when no Vulkan device shows up.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { checkDevice, REFERENCE_WEIGHT_TYPES, runReferenceGraph, systemInfo } from '../../src/index.js';
import { maxAbsDiff, referenceGraph } from '../helpers/reference-graph.js';

// max |Vulkan - CPU| measured on lavapipe (Mesa 22.3.6, LLVM 15), seed 1: f32 1.8e-7, f16 2.1e-4,
// q8_0 3.7e-3, q4_0 3.7e-3 (outputs ~1). The quantized cases differ mostly because the two
// backends round the activations differently before the integer dot products.
const TOLERANCE: Record<string, number> = { f32: 1e-5, f16: 1e-3, q8_0: 1.5e-2, q4_0: 1.5e-2 };

async function vulkanDevices() {
  const info = await systemInfo();
  return { info, devices: info.devices.filter((d) => d.backend === 'Vulkan') };
}

describe('Vulkan backend', () => {
  it('is compiled in and finds a device', async () => {
    const { info, devices } = await vulkanDevices();
    expect(info.build.backends).toContain('vulkan');
    expect(info.registeredBackends).toContain('Vulkan');
    expect(devices.length).toBeGreaterThan(0);
    for (const d of devices) {
      expect(d.name).toMatch(/^Vulkan\d+$/);
      expect(d.description.length).toBeGreaterThan(0);
      expect(d.memoryTotalBytes).toBeGreaterThan(0);
    }
  });

  it('computes the reference graph like the CPU for every weight type', async () => {
    const { devices } = await vulkanDevices();
    for (const d of devices) {
      for (const seed of [1, 2, 3]) {
        for (const c of await checkDevice(d.name, REFERENCE_WEIGHT_TYPES, seed)) {
          expect(c.maxAbsDiff, `${d.name} ${c.weightType} seed ${seed}`).toBeLessThan(TOLERANCE[c.weightType]!);
        }
      }
    }
  });

  it('computes the f32 graph like an independent float64 implementation', async () => {
    const { devices } = await vulkanDevices();
    for (const d of devices) {
      const { output } = await runReferenceGraph(d.name, 'f32', 5);
      expect(maxAbsDiff(output, referenceGraph(5))).toBeLessThan(TOLERANCE.f32!);
    }
  });

  it('`hovle info --check` compares every Vulkan device with the CPU and passes', () => {
    const cli = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
    const r = spawnSync(process.execPath, [cli, 'info', '--check', '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.checks.length).toBeGreaterThanOrEqual(4);
    expect(out.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
  });
});
