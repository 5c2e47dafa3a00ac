import { describe, expect, it } from 'vitest';

import { HovleError, runReferenceGraph } from '../src/index.js';
import { maxAbsDiff, OUT, referenceGraph, TOKENS } from './helpers/reference-graph.js';

describe('reference graph on the CPU backend', () => {
  it('matches an independent float64 implementation with f32 weights', async () => {
    for (const seed of [1, 7, 123456789]) {
      const { output, shape } = await runReferenceGraph('CPU', 'f32', seed);
      expect(shape).toEqual([TOKENS, OUT]);
      expect(maxAbsDiff(output, referenceGraph(seed))).toBeLessThan(1e-6); // measured ~1.2e-7
    }
  });

  it('applies the weight type: reduced-precision weights stay close to f32 but are not f32', async () => {
    const exact = referenceGraph(3);
    // Measured max |diff| over seeds 1-5: f16 3.3e-4, q8_0 6.9e-3 (the CPU backend also rounds
    // activations to 8 bits for quantized matmuls), q4_0 9.4e-2. Upper bounds leave 2-3x room.
    const bounds = { f16: [1e-6, 1e-3], q8_0: [1e-4, 2e-2], q4_0: [1e-2, 2.5e-1] } as const;
    for (const [type, [lo, hi]] of Object.entries(bounds)) {
      const { output } = await runReferenceGraph('CPU', type as 'f16' | 'q8_0' | 'q4_0', 3);
      const d = maxAbsDiff(output, exact);
      expect(d, type).toBeGreaterThan(lo);
      expect(d, type).toBeLessThan(hi);
    }
  });

  it('is deterministic per seed and depends on it', async () => {
    const a = await runReferenceGraph('CPU', 'q8_0', 42);
    const b = await runReferenceGraph('CPU', 'q8_0', 42);
    const c = await runReferenceGraph('CPU', 'q8_0', 43);
    expect(Array.from(a.output)).toEqual(Array.from(b.output));
    expect(maxAbsDiff(a.output, c.output)).toBeGreaterThan(1e-3);
  });

  it('refuses bad arguments with typed errors and stays usable', async () => {
    await expect(runReferenceGraph('NoSuchDevice', 'f32', 1)).rejects.toMatchObject({
      name: 'HovleError',
      code: 'DEVICE_NOT_FOUND',
    });
    await expect(runReferenceGraph('CPU', 'q2_k' as never, 1)).rejects.toBeInstanceOf(HovleError);
    await expect(runReferenceGraph('CPU', 'f32', -1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(runReferenceGraph('', 'f32', 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const { output } = await runReferenceGraph('CPU', 'f32', 1);
    expect(output.length).toBe(TOKENS * OUT);
  });

  it('native validation also rejects what the JS layer would (defence in depth)', async () => {
    const { loadAddon } = await import('../src/native/load.js');
    const { addon } = loadAddon();
    expect(() => addon.runReferenceGraph('CPU', 'bogus' as never, 1)).toThrow(HovleError);
    expect(() => addon.runReferenceGraph('CPU', 'f32', 1.5)).toThrow(/seed/);
  });
});
