// The "pre" and "post" tiny fixture checkpoints (test/fixtures/*/hf) converted to F32 GGUFs and
// loaded once per test file, disposed after it.
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

import { convertCheckpoint } from '../../src/convert/convert.js';
import { HovleModel } from '../../src/runtime/model.js';
import type { Variant } from './golden.js';
import { tempDir, TINY, TINY_POST } from './tmp.js';

/** Filled by the file's beforeAll: `models['hovle-tiny']`, `models['hovle-tiny-post']`. */
export function tinyF32Models(prefix: string): Partial<Record<Variant, HovleModel>> {
  const dir = tempDir(prefix);
  const models: Partial<Record<Variant, HovleModel>> = {};
  beforeAll(async () => {
    for (const [v, hf] of [['hovle-tiny', TINY], ['hovle-tiny-post', TINY_POST]] as const) {
      const path = join(dir, `${v}.gguf`);
      await convertCheckpoint(hf, path, { type: 'f32' });
      models[v] = await HovleModel.load(path);
    }
  });
  afterAll(() => Object.values(models).forEach((m) => m!.dispose()));
  return models;
}
