// The forward pass on the Vulkan device (lavapipe in CI) against the goldens and the CPU.
// Runs only through `npm run test:vulkan`.
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../../src/convert/convert.js';
import { HovleModel } from '../../src/runtime/model.js';
import { goldenCases, goldenF32, goldenI32, type Variant } from '../helpers/golden.js';
import { FIXTURES, tempDir, TINY, TINY_POST } from '../helpers/tmp.js';

const dir = tempDir('vulkan-forward');
const models: HovleModel[] = [];
afterAll(() => models.forEach((m) => m.dispose()));

// Measured on lavapipe (see the issue note): Vulkan vs golden <= the F32 tolerances for these cases.
const TOL = 3e-3;

for (const [variant, hf] of [['hovle-tiny', TINY], ['hovle-tiny-post', TINY_POST]] as Array<[Variant, string]>) {
  describe(`${variant} on Vulkan`, () => {
    for (const name of ['fjord_max1_en', 'gradient_max6_en', 'text_only_en']) {
      it(`${name}: logits match the golden and the CPU; greedy continuation matches`, async () => {
        const path = join(dir, `${variant}.gguf`);
        let vk = models.find((m) => m.path === path && m.device.startsWith('Vulkan'));
        if (!vk) {
          await convertCheckpoint(hf, path, { type: 'f32' });
          vk = await HovleModel.load(path, { backend: 'vulkan' });
          models.push(vk);
        }
        expect(vk.device).toMatch(/^Vulkan/);
        const c = goldenCases(variant).find((x) => x.name === name)!;
        const ids = goldenI32(variant, c, 'input_ids');
        const images = c.image ? [await vk.preprocessImage(join(FIXTURES, 'images', basename(c.image)), { maxTiles: c.maxTiles! })] : [];
        const ctx = await vk.createContext({ contextSize: ids.length + 20, embeddingContextSize: (c.hdSeqLen ?? ids.length) + 20, kvType: 'f32' });
        const r = await ctx.evaluate(ids, images, { logits: c.files.logits!.rows! });
        const g = goldenF32(variant, c, 'logits');
        let d = 0;
        for (let i = 0; i < g.length; i++) d = Math.max(d, Math.abs(g[i]! - r.logits[i]!));
        expect(d).toBeLessThan(TOL);
        let logits = r.logits.subarray(r.logits.length - vk.hparams.vocabSize);
        const out: number[] = [];
        for (let i = 0; i < c.greedy!.ids.length; i++) {
          let best = 0;
          for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
          out.push(best);
          if (best === c.greedy!.eos_id) break;
          logits = (await ctx.evaluate([best], [], { logits: 'last' })).logits;
        }
        expect(out).toEqual(c.greedy!.ids);
        ctx.dispose();
      });
    }
  });
}
