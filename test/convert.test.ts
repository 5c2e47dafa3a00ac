// Converter tests against the tiny HoVLE checkpoints in test/fixtures (copies of the shared
// fixtures' hf/ folders; see test/fixtures/README.md).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { readHfConfig } from '../src/convert/hf-config.js';
import { quantizeGguf } from '../src/convert/quantize.js';
import { FILE_TYPES } from '../src/convert/type-policy.js';
import { ggmlType } from '../src/gguf/ggml-types.js';
import { readGguf, type GgufFile } from '../src/gguf/reader.js';
import { readRange } from '../src/io/read-range.js';
import { hparamsFromMetadata } from '../src/model/metadata.js';
import { concreteTensors, META_KEYS, TOKENIZER_KEYS } from '../src/model/schema.js';
import { loadAddon } from '../src/native/load.js';
import { readSt } from './helpers/safetensors.js';
import { tempDir, TINY, TINY_BF16, TINY_POST } from './helpers/tmp.js';

const out = tempDir('convert');

async function tensorData(file: GgufFile, name: string): Promise<Uint8Array> {
  const t = file.tensors.find((x) => x.name === name)!;
  const fh = await open(file.path, 'r');
  try {
    return await readRange(fh, t.offset, t.size, file.path, 'GGUF_INVALID');
  } finally {
    await fh.close();
  }
}

async function toF32(file: GgufFile, name: string): Promise<Float32Array> {
  const t = file.tensors.find((x) => x.name === name)!;
  const data = await tensorData(file, name);
  const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const r = await loadAddon().addon.convertRows(data, t.type.id, ggmlType('f32').id, rows, t.dims[0]!, 1);
  return new Float32Array(r.data.buffer, r.data.byteOffset, r.data.length / 4);
}

function bf16ToF32(data: Buffer): Float32Array {
  const u16 = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
  const u32 = new Uint32Array(u16.length);
  for (let i = 0; i < u16.length; i++) u32[i] = u16[i]! << 16;
  return new Float32Array(u32.buffer);
}

/** Expected GGUF content of each tensor, computed from the checkpoint independently of the converter. */
function expectedTensors(dir: string, h: Awaited<ReturnType<typeof readHfConfig>>): Map<string, Float32Array> {
  const st = readSt(join(dir, 'model.safetensors'));
  const asF32 = (name: string) => {
    const e = st.get(name)!;
    return e.dtype === 'BF16' ? bf16ToF32(e.data) : new Float32Array(e.data.buffer.slice(e.data.byteOffset, e.data.byteOffset + e.data.length));
  };
  const result = new Map<string, Float32Array>();
  for (const t of concreteTensors(h)) {
    const full = asF32(t.hf);
    if (!t.def.split) {
      result.set(t.gguf, full);
      continue;
    }
    // wqkv per KV head: [q x g, k, v], head_dim rows each.
    const s = h[t.def.segment!];
    const hd = s.embeddingLength / s.headCount;
    const g = s.headCount / s.headCountKv;
    const H = s.embeddingLength;
    const parts: number[] = [];
    for (let kv = 0; kv < s.headCountKv; kv++) {
      const base = kv * (g + 2);
      const blocks = t.def.split === 'q' ? Array.from({ length: g }, (_, j) => base + j) : [base + g + (t.def.split === 'v' ? 1 : 0)];
      for (const b of blocks) parts.push(...full.subarray(b * hd * H, (b + 1) * hd * H));
    }
    result.set(t.gguf, Float32Array.from(parts));
  }
  return result;
}

describe('convert: exactness', () => {
  it('F32 checkpoint -> f32 GGUF: every tensor round-trips bit-exactly, q/k/v de-interleaved', async () => {
    const path = join(out, 'tiny-f32.gguf');
    const r = await convertCheckpoint(TINY, path, { type: 'f32' });
    const file = await readGguf(path);
    const expected = expectedTensors(TINY, r.hparams);
    expect(file.tensors.map((t) => t.name)).toEqual([...expected.keys()]);
    for (const [name, values] of expected) {
      const got = new Float32Array((await tensorData(file, name)).buffer);
      expect(Buffer.from(got.buffer).equals(Buffer.from(values.buffer)), name).toBe(true);
    }
  });

  it('BF16 checkpoint: f32 output is the exact upcast, bf16 output keeps the bytes', async () => {
    const h = await readHfConfig(TINY_BF16);
    const f32 = await readGguf((await convertCheckpoint(TINY_BF16, join(out, 'bf16-f32.gguf'), { type: 'f32' })).path);
    const bf = await readGguf((await convertCheckpoint(TINY_BF16, join(out, 'bf16-bf16.gguf'), { type: 'bf16' })).path);
    const expected = expectedTensors(TINY_BF16, h);
    for (const [name, values] of expected) {
      expect(Buffer.from((await tensorData(f32, name)).buffer).equals(Buffer.from(values.buffer)), name).toBe(true);
      const t = bf.tensors.find((x) => x.name === name)!;
      if (t.type.name === 'bf16') {
        const back = await toF32(bf, name);
        expect(Buffer.from(back.buffer, back.byteOffset, back.byteLength).equals(Buffer.from(values.buffer)), name).toBe(true);
      }
    }
  });

  it('f16 and q8_0 stay within their rounding error of the source', async () => {
    const h = await readHfConfig(TINY);
    const expected = expectedTensors(TINY, h);
    for (const type of ['f16', 'q8_0'] as const) {
      const file = await readGguf((await convertCheckpoint(TINY, join(out, `tiny-${type}-err.gguf`), { type })).path);
      let checked = 0;
      for (const [name, want] of expected) {
        const t = file.tensors.find((x) => x.name === name)!;
        const got = await toF32(file, name);
        for (let b = 0; b < want.length; b += 32) {
          let amax = 0;
          for (let i = b; i < b + 32 && i < want.length; i++) amax = Math.max(amax, Math.abs(want[i]!));
          for (let i = b; i < b + 32 && i < want.length; i++) {
            const w = want[i]!;
            // q8_0: half a step of amax/127, plus that step's own f16 rounding (up to amax * 2^-11).
            const bound = t.type.name === 'q8_0' ? amax / 254 + amax * 2 ** -10 + 1e-7
              : t.type.name === 'f16' ? Math.abs(w) * 2 ** -11 + 6e-8 : 0;
            if (Math.abs(got[i]! - w) > bound) {
              throw new Error(`${type} ${name}[${i}] (${t.type.name}): ${got[i]} vs ${w}, bound ${bound}`);
            }
          }
        }
        if (t.type.name !== 'f32') checked++;
      }
      expect(checked).toBeGreaterThan(20);
    }
  });
});

describe('convert: every type, read back by ggml', () => {
  for (const [label, dir] of [['F32', TINY], ['BF16', TINY_BF16]] as const) {
    it(`${label} fixture converts at every type and ggml's gguf parser agrees with ours`, async () => {
      const { addon } = loadAddon();
      for (const type of FILE_TYPES) {
        const path = join(out, `${label}-${type}.gguf`);
        const r = await convertCheckpoint(dir, path, { type });
        const ours = await readGguf(path);
        const ggml = await addon.ggufInspect(path);
        expect(ggml.version).toBe(3);
        expect(ggml.dataOffset).toBe(ours.dataOffset);
        expect(ggml.keys.map((k) => k.key)).toEqual([...ours.metadata.keys()]);
        expect(ggml.tensors.map((t) => t.name)).toEqual(ours.tensors.map((t) => t.name));
        for (const [i, t] of ours.tensors.entries()) {
          const g = ggml.tensors[i]!;
          expect(g.type, t.name).toBe(t.type.id);
          expect(g.ne.slice(0, t.dims.length), t.name).toEqual(t.dims);
          expect(ggml.dataOffset + g.offset, t.name).toBe(t.offset);
          expect(g.size, t.name).toBe(t.size);
          expect(t.type.name).toBe(r.tensorTypes[t.name]);
        }
        expect(ours.fileSize).toBe(r.bytes);
      }
    });
  }
});

/** f32-typed keys are stored as float32: round the config's doubles the same way. */
function asStoredInGguf(h: Awaited<ReturnType<typeof readHfConfig>>) {
  const copy = structuredClone(h) as unknown as Record<string, Record<string, unknown>>;
  for (const def of META_KEYS) {
    if (!def.path || (def.kind !== 'f32' && def.kind !== 'arr_f32')) continue;
    const [a, b] = def.path as [string, string?];
    const holder = b === undefined ? (copy as unknown as Record<string, unknown>) : copy[a]!;
    const field = b ?? a;
    const v = holder[field];
    holder[field] = Array.isArray(v) ? v.map((x: number) => Math.fround(x)) : Math.fround(v as number);
  }
  return copy;
}

describe('convert: metadata', () => {
  let file: GgufFile;
  beforeAll(async () => {
    file = await readGguf((await convertCheckpoint(TINY, join(out, 'meta.gguf'), { type: 'q8_0' })).path);
  });

  it('holds every documented key with its declared type', () => {
    for (const def of [...META_KEYS, ...TOKENIZER_KEYS]) {
      const v = file.metadata.get(def.key);
      if (!v && def.optional) continue;
      expect(v, def.key).toBeDefined();
      expect(v!.type, def.key).toBe(def.kind);
    }
  });

  it('reads back into the same hyperparameters config.json gives', async () => {
    expect(hparamsFromMetadata(file.metadata)).toEqual(asStoredInGguf(await readHfConfig(TINY)));
    const post = await readGguf((await convertCheckpoint(TINY_POST, join(out, 'post.gguf'), { type: 'f16' })).path);
    const hp = hparamsFromMetadata(post.metadata);
    expect(hp.vision.pixelShuffleLoc).toBe('post');
    expect(hp.embedding.rmsEps).toBeCloseTo(1e-6, 12);
    expect(hp.llm.rmsEps).toBeCloseTo(1e-5, 12);
    expect(hp.embedding.ropeFreqBase).toBe(1e4);
    expect(hp.llm.ropeFreqBase).toBe(1e6);
  });

  it('carries the tokenizer in the standard keys (ids as the fixtures README lists them)', () => {
    const m = file.metadata;
    const tokens = m.get('tokenizer.ggml.tokens')!.value as string[];
    const types = Array.from(m.get('tokenizer.ggml.token_type')!.value as Int32Array);
    expect(tokens.length).toBe(1009);
    expect(tokens.slice(994, 1009)).toEqual(['<|plugin|>', '<|interpreter|>', '<|action_end|>', '<|action_start|>', '<|im_end|>', '<|im_start|>',
      '<img>', '</img>', '<IMG_CONTEXT>', '<quad>', '</quad>', '<ref>', '</ref>', '<box>', '</box>']);
    expect(tokens[3]).toBe('<0x00>');
    expect(types[3]).toBe(6);
    expect(types[0]).toBe(2);
    expect(types[1002]).toBe(3);
    expect(m.get('tokenizer.ggml.model')!.value).toBe('llama');
    expect(m.get('tokenizer.ggml.bos_token_id')!.value).toBe(1);
    expect(m.get('tokenizer.ggml.eos_token_id')!.value).toBe(2);
    expect(m.get('tokenizer.ggml.eot_token_id')!.value).toBe(998);
    expect(m.get('tokenizer.ggml.add_space_prefix')!.value).toBe(false);
    expect(m.get('tokenizer.ggml.add_bos_token')!.value).toBe(true);
    expect(Array.from(m.get('hovle.tokenizer.added_tokens')!.value as Int32Array)).toEqual([0, 1, 2, ...Array.from({ length: 15 }, (_, i) => 994 + i)]);
    expect(m.get('hovle.chat.system_message')!.value).toMatch(/InternVL/);
    expect(m.get('general.file_type')!.value).toBe(7);
    expect(m.get('general.name')!.value).toBe('hovle-tiny');
  });
});

describe('quantize', () => {
  it('f32 GGUF -> q8_0 equals converting straight to q8_0, byte for byte', async () => {
    const f32 = join(out, 'q-src.gguf');
    await convertCheckpoint(TINY, f32, { type: 'f32' });
    const direct = join(out, 'q-direct.gguf');
    await convertCheckpoint(TINY, direct, { type: 'q8_0' });
    const via = join(out, 'q-via.gguf');
    await quantizeGguf(f32, via, 'q8_0');
    expect(readFileSync(via).equals(readFileSync(direct))).toBe(true);
  });

  it('refuses to re-quantize unless allowed', async () => {
    const q8 = join(out, 'q8.gguf');
    await convertCheckpoint(TINY, q8, { type: 'q8_0' });
    await expect(quantizeGguf(q8, join(out, 'q4.gguf'), 'q4_0')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--allow-requantize') });
    expect(existsSync(join(out, 'q4.gguf'))).toBe(false);
    const r = await quantizeGguf(q8, join(out, 'q4.gguf'), 'q4_0', { allowRequantize: true });
    expect(Object.values(r.tensorTypes)).toContain('q4_0');
  });

  it('refuses a file that is not a HoVLE GGUF', async () => {
    await expect(quantizeGguf(join(TINY, 'config.json'), join(out, 'x.gguf'), 'q8_0')).rejects.toMatchObject({ code: 'GGUF_INVALID' });
  });
});

it('leaves no partial files behind', () => {
  expect(readdirSync(out).filter((f) => f.includes('.partial'))).toEqual([]);
});
