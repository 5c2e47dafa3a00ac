import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { readHfConfig } from '../src/convert/hf-config.js';
import { hovle2bHParams, writeSyntheticCheckpoint, writeSyntheticModel } from '../src/convert/synthetic.js';
import { readGguf } from '../src/gguf/reader.js';
import { hparamsFromMetadata } from '../src/model/metadata.js';
import { concreteTensors } from '../src/model/schema.js';
import { tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('synthetic');

describe('synthetic models (run here at the tiny shapes; the 2.6B ones by scripts/make-synthetic-model.mjs)', () => {
  it('the 2.6B hyperparameters give the published parameter count', () => {
    const h = hovle2bHParams();
    const params = concreteTensors(h).reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
    // 2,606,327,808 in the checkpoint, minus the unused LLM token table (92553 x 2048) and class token (2048).
    expect(params).toBe(2_606_327_808 - 92553 * 2048 - 2048);
  });

  it('a synthetic HF checkpoint converts, and its config reads back as the same hyperparameters', async () => {
    const h = { ...(await readHfConfig(TINY)), name: 'synthetic-tiny' };
    const ckpt = join(dir, 'ckpt');
    const r = await writeSyntheticCheckpoint(ckpt, { tokenizerDir: TINY, hparams: h, shardBytes: 300_000 });
    expect(r.shards).toBeGreaterThan(1);
    expect({ ...(await readHfConfig(ckpt)), name: 'synthetic-tiny' }).toEqual(h);
    const out = await convertCheckpoint(ckpt, join(dir, 'ckpt.gguf'), { type: 'q4_0' });
    expect(out.tensors).toBe(concreteTensors(h).length);
  });

  it('writes a GGUF directly, deterministic for a seed', async () => {
    const h = { ...(await readHfConfig(TINY)), name: 'synthetic-tiny' };
    const a = await writeSyntheticModel(join(dir, 'a.gguf'), { type: 'f16', tokenizerDir: TINY, hparams: h, seed: 7 });
    const b = await writeSyntheticModel(join(dir, 'b.gguf'), { type: 'f16', tokenizerDir: TINY, hparams: h, seed: 7 });
    const fa = await readGguf(a.path);
    expect(hparamsFromMetadata(fa.metadata).embedding.blockCount).toBe(2);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(a.path).equals(readFileSync(b.path))).toBe(true);
  });
});
