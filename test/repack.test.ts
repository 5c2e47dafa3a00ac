// Repacked CPU weights (ggml's interleaved Q4_0 layout on AVX2/NEON, as llama.cpp uses by
// default) must compute what the plain layout computes. The tiny fixture model converted to
// q4_0 has matmul weights whose row counts are multiples of 8, so every one of them is eligible.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { tokensPerTile } from '../src/model/hparams.js';
import { HovleModel } from '../src/runtime/model.js';
import { FIXTURES, tempDir, TINY, TINY_POST } from './helpers/tmp.js';

const dir = tempDir('repack');
const paths: Record<string, { q4: string; f32: string }> = {};

beforeAll(async () => {
  for (const [name, hf] of [['pre', TINY], ['post', TINY_POST]] as const) {
    paths[name] = { q4: join(dir, `${name}-q4_0.gguf`), f32: join(dir, `${name}-f32.gguf`) };
    await convertCheckpoint(hf, paths[name]!.q4, { type: 'q4_0' });
    await convertCheckpoint(hf, paths[name]!.f32, { type: 'f32' });
  }
});

const models: HovleModel[] = [];
afterAll(() => models.forEach((m) => m.dispose()));

async function logitsOf(path: string, repack: boolean) {
  const model = await HovleModel.load(path, { repack });
  models.push(model);
  const tok = (t: string, bos = false) => model.tokenizer.encode(t, { addBos: bos });
  const ctx = await model.createContext({ kvType: 'f32', contextSize: 4096 });
  // Short text: every matmul has a few rows (the vector kernels).
  const text = await ctx.evaluate(tok('The quick brown fox jumps over the lazy dog', true), [], { logits: 'all' });
  await ctx.rewind(0);
  // An image prompt: hundreds of rows (the blocked kernels), the front end's fc1/fc2 and, in
  // post mode, the HD sequence.
  const image = await model.preprocessImage(join(FIXTURES, 'images', 'fjord.jpg'), { maxTiles: 2 });
  const ids = [
    ...tok('Look:<img>', true),
    ...Array(image.tiles * tokensPerTile(model.hparams.vision)).fill(model.vocab.imageContextId),
    ...tok('</img> The quick brown fox jumps over the lazy dog'),
  ];
  const img = await ctx.evaluate(ids, [image], { logits: 'all' });
  ctx.dispose();
  return { info: model.info(), text: text.logits, image: img.logits };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

describe('repacked CPU weights', () => {
  for (const mode of ['pre', 'post']) {
    it(`${mode}: as accurate as the plain layout`, async () => {
      const plain = await logitsOf(paths[mode]!.q4, false);
      const packed = await logitsOf(paths[mode]!.q4, true);
      const ref = await logitsOf(paths[mode]!.f32, true);
      expect(plain.info.repackedBytes).toBe(0);
      expect(ref.info.repackedBytes).toBe(0); // f32 has no repacked layout
      // Every matmul weight of this model is eligible where the CPU has repack kernels (x86
      // with AVX2, Arm with dotprod); elsewhere nothing is repacked and the results are equal.
      if (process.arch === 'x64' || process.arch === 'arm64') expect(packed.info.repackedBytes).toBeGreaterThan(0);
      // Both layouts multiply the same q4_0 blocks by the same q8_0-quantized activations; the
      // blocked kernels accumulate in another order, and these random weights amplify that. So:
      // tight agreement on short text, and on the long prompt no further from the f32 model
      // than the plain layout is.
      expect(maxDiff(plain.text, packed.text)).toBeLessThanOrEqual(1e-3);
      const plainErr = maxDiff(plain.image, ref.image);
      const packedErr = maxDiff(packed.image, ref.image);
      expect(packedErr).toBeLessThanOrEqual(1.1 * plainErr);
      expect(maxDiff(plain.image, packed.image)).toBeLessThanOrEqual(0.25 * plainErr);
    });
  }
});
