// Broken checkpoints built from test/fixtures/hovle-tiny: each must fail with a CHECKPOINT_INVALID
// error that names the problem, before any output file appears.
import { existsSync, readdirSync, readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { readSt, writeSt, type StEntry } from './helpers/safetensors.js';
import { tempDir, TINY } from './helpers/tmp.js';

const out = tempDir('convert-errors-out');

function brokenCopy(name: string, edit: (dir: string) => void): string {
  const dir = tempDir(`broken-${name}`, TINY);
  edit(dir);
  return dir;
}

function editTensors(dir: string, edit: (t: Map<string, StEntry>) => void): void {
  const file = join(dir, 'model.safetensors');
  const tensors = readSt(file);
  edit(tensors);
  writeSt(file, tensors);
}

function editConfig(dir: string, edit: (c: Record<string, Record<string, unknown>>) => void): void {
  const file = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8'));
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

/** Splits model.safetensors into two shards with an index, as Hugging Face writes large models. */
function shard(dir: string): void {
  const all = readSt(join(dir, 'model.safetensors'));
  const names = [...all.keys()];
  const halves = [names.slice(0, 20), names.slice(20)];
  const weightMap: Record<string, string> = {};
  halves.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSt(join(dir, file), new Map(part.map((n) => [n, all.get(n)!])));
    for (const n of part) weightMap[n] = file;
  });
  unlinkSync(join(dir, 'model.safetensors'));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

async function expectFailure(dir: string, pattern: RegExp, code = 'CHECKPOINT_INVALID'): Promise<void> {
  const path = join(out, `${Math.random().toString(36).slice(2)}.gguf`);
  await expect(convertCheckpoint(dir, path, { type: 'q8_0' })).rejects.toMatchObject({ name: 'HovleError', code, message: expect.stringMatching(pattern) });
  expect(existsSync(path)).toBe(false);
}

describe('sharded checkpoints', () => {
  it('convert to the same file as the single-file checkpoint', async () => {
    const dir = brokenCopy('sharded', shard);
    const a = join(out, 'single.gguf');
    const b = join(out, 'sharded.gguf');
    await convertCheckpoint(TINY, a, { type: 'q4_k_m', name: 'x' });
    await convertCheckpoint(dir, b, { type: 'q4_k_m', name: 'x' });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  });

  it('a missing shard is named', async () => {
    const dir = brokenCopy('missing-shard', (d) => {
      shard(d);
      unlinkSync(join(d, 'model-00002-of-00002.safetensors'));
    });
    await expectFailure(dir, /shard model-00002-of-00002\.safetensors, which is missing/);
  });
});

describe('bad checkpoints', () => {
  it('a misshaped tensor is named with both shapes', async () => {
    const dir = brokenCopy('misshaped', (d) =>
      editTensors(d, (t) => {
        t.get('language_model.model.layers.1.feed_forward.w2.weight')!.shape = [160, 64];
      }),
    );
    await expectFailure(dir, /language_model\.model\.layers\.1\.feed_forward\.w2\.weight has shape \[160, 64\].*\[64, 160\]/);
  });

  it('a missing tensor is named', async () => {
    const dir = brokenCopy('missing-tensor', (d) => editTensors(d, (t) => void t.delete('embedding_model.encoder.1.ffn_norm.weight')));
    await expectFailure(dir, /embedding_model\.encoder\.1\.ffn_norm\.weight is missing.*blk\.1\.ffn_norm\.weight/);
  });

  it('a truncated safetensors file is reported as truncated', async () => {
    const dir = brokenCopy('truncated', (d) => truncateSync(join(d, 'model.safetensors'), 1_000_000));
    await expectFailure(dir, /ends at byte \d+ but the file has 1000000 bytes \(truncated\?\)/);
    const dir2 = brokenCopy('truncated-header', (d) => truncateSync(join(d, 'model.safetensors'), 100));
    await expectFailure(dir2, /header length \d+ does not fit/);
  });

  it('an unknown dtype is named', async () => {
    const dir = brokenCopy('dtype', (d) =>
      editTensors(d, (t) => {
        const e = t.get('language_model.model.norm.weight')!;
        t.set('language_model.model.norm.weight', { dtype: 'F64', shape: [32], data: e.data });
      }),
    );
    await expectFailure(dir, /language_model\.model\.norm\.weight has dtype "F64"/);
  });

  it('a config without a needed field names the field', async () => {
    const dir = brokenCopy('no-theta', (d) => editConfig(d, (c) => void delete c.llm_config!.rope_theta));
    await expectFailure(dir, /config\.json: llm_config\.rope_theta is missing/);
    const dir2 = brokenCopy('no-eps', (d) => editConfig(d, (c) => void delete c.embedding_config!.rms_norm_eps));
    await expectFailure(dir2, /embedding_config\.rms_norm_eps is missing/);
    const dir3 = brokenCopy('bad-loc', (d) => editConfig(d, (c) => void (c.embedding_config!.pixel_shuffle_loc = 'middle')));
    await expectFailure(dir3, /pixel_shuffle_loc must be "pre" or "post"/);
  });

  it('JSON files that parse to something other than an object are refused, naming the file', async () => {
    const nullConfig = brokenCopy('null-config', (d) => writeFileSync(join(d, 'config.json'), 'null'));
    await expectFailure(nullConfig, /config\.json is not a JSON object/);
    const nullTokenizer = brokenCopy('null-tokenizer-config', (d) => writeFileSync(join(d, 'tokenizer_config.json'), 'null'));
    await expectFailure(nullTokenizer, /tokenizer_config\.json is not a JSON object/);
    const nullHeader = brokenCopy('null-header', (d) => {
      const h = Buffer.from('null');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      writeFileSync(join(d, 'model.safetensors'), Buffer.concat([len, h]));
    });
    await expectFailure(nullHeader, /header is not a JSON object/);
    const badIndex = brokenCopy('index-number', (d) => {
      shard(d);
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 5 } }));
    });
    await expectFailure(badIndex, /weight_map maps a to 5/);
  });

  it('a chat template the runtime does not run is refused at conversion, system message or not', async () => {
    const dir = brokenCopy('vicuna', (d) => editConfig(d, (c) => void ((c as Record<string, unknown>).template = 'vicuna_v1.1')));
    await expectFailure(dir, /template 'vicuna_v1\.1' is not a chat template hovle runs/);
    const path = join(out, 'vicuna.gguf');
    await expect(convertCheckpoint(dir, path, { type: 'f32', systemMessage: 'Be brief.' })).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID' });
  });

  it('the image size and downsample ratio may be given at the top level only', async () => {
    const dir = brokenCopy('top-level-image', (d) => editConfig(d, (c) => {
      const top = c as Record<string, unknown>;
      top.force_image_size = c.embedding_config!.image_size;
      top.downsample_ratio = c.embedding_config!.downsample_ratio;
      delete c.embedding_config!.image_size;
      delete c.embedding_config!.downsample_ratio;
    }));
    await expect(convertCheckpoint(dir, join(out, 'top-level.gguf'), { type: 'f32' })).resolves.toMatchObject({ tensors: expect.any(Number) });
  });

  it('weights with NaN are refused, naming the tensor', async () => {
    const dir = brokenCopy('nan', (d) =>
      editTensors(d, (t) => {
        const e = t.get('language_model.output.weight')!;
        const data = Buffer.from(e.data);
        data.writeFloatLE(Number.NaN, 40);
        t.set('language_model.output.weight', { ...e, data });
      }),
    );
    await expectFailure(dir, /tensor output\.weight has 1 NaN or infinite values/);
  });

  it('tensors a HoVLE model does not have are refused', async () => {
    const dir = brokenCopy('extra', (d) =>
      editTensors(d, (t) => void t.set('vision_model.extra.weight', { dtype: 'F32', shape: [2], data: Buffer.alloc(8) })),
    );
    await expectFailure(dir, /tensors that a HoVLE model does not have: vision_model\.extra\.weight/);
  });

  it('a missing tokenizer is named', async () => {
    const dir = brokenCopy('no-tokenizer', (d) => unlinkSync(join(d, 'tokenizer.model')));
    await expectFailure(dir, /tokenizer\.model is missing/);
  });
});

describe('interrupting a conversion', () => {
  it('an abort mid-write leaves neither the output nor a partial file', async () => {
    const path = join(out, 'aborted.gguf');
    const controller = new AbortController();
    let calls = 0;
    await expect(
      convertCheckpoint(TINY, path, {
        type: 'f16',
        signal: controller.signal,
        chunkBytes: 4096,
        onProgress: () => {
          if (++calls === 5) controller.abort();
        },
      }),
    ).rejects.toMatchObject({ code: 'ABORTED' });
    expect(calls).toBe(5);
    expect(readdirSync(out).filter((f) => f.startsWith('aborted'))).toEqual([]);
  });
});
