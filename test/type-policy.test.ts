import { describe, expect, it } from 'vitest';

import { hovle2bHParams } from '../src/convert/synthetic.js';
import { tensorType, type FileType } from '../src/convert/type-policy.js';
import { totalBlocks } from '../src/model/hparams.js';
import { concreteTensors } from '../src/model/schema.js';

// The policy on the real 2.6B shapes (hidden 2048, FFN 8192, 8 + 24 layers).
const h = hovle2bHParams();
const nBlocks = totalBlocks(h);
function typesFor(ft: FileType): Map<string, string> {
  return new Map(
    concreteTensors(h).map((t) => [
      t.gguf,
      tensorType(ft, { role: t.def.role, nDims: t.dims.length, cols: t.dims[0]!, nBlocks, ...(t.block !== undefined ? { block: t.block } : {}) }),
    ]),
  );
}

describe('tensor type policy', () => {
  it('keeps norms and biases f32 and the vision embeddings f16 in every quantized mix', () => {
    for (const ft of ['f16', 'bf16', 'q8_0', 'q4_0', 'q4_k_m', 'q5_k_m', 'q6_k'] as const) {
      const t = typesFor(ft);
      expect(t.get('blk.3.attn_norm.weight')).toBe('f32');
      expect(t.get('output_norm.weight')).toBe('f32');
      expect(t.get('v.proj.fc1.bias')).toBe('f32');
      expect(t.get('v.patch_embd.weight')).toBe('f16');
      expect(t.get('v.position_embd.weight')).toBe('f16');
    }
    expect(typesFor('f32').get('v.patch_embd.weight')).toBe('f32');
  });

  it('gives the output head q6_K in 4/5/6-bit mixes and keeps q8_0 for q8_0', () => {
    expect(typesFor('q4_0').get('output.weight')).toBe('q6_K');
    expect(typesFor('q4_k_m').get('output.weight')).toBe('q6_K');
    expect(typesFor('q8_0').get('output.weight')).toBe('q8_0');
    expect(typesFor('f16').get('output.weight')).toBe('f16');
  });

  it('q4_k_m: attn_v and ffn_down get q6_K in the use_more_bits layers only', () => {
    const t = typesFor('q4_k_m');
    // n = 32: more bits for i < 4, i >= 28, and (i - 4) % 3 == 2 between.
    const more = (i: number) => i < 4 || i >= 28 || (i - 4) % 3 === 2;
    for (let i = 0; i < nBlocks; i++) {
      expect(t.get(`blk.${i}.attn_v.weight`), `blk.${i}`).toBe(more(i) ? 'q6_K' : 'q4_K');
      expect(t.get(`blk.${i}.ffn_down.weight`), `blk.${i}`).toBe(more(i) ? 'q6_K' : 'q4_K');
      expect(t.get(`blk.${i}.attn_q.weight`)).toBe('q4_K');
      expect(t.get(`blk.${i}.ffn_gate.weight`)).toBe('q4_K');
    }
    expect(t.get('token_embd.weight')).toBe('q4_K');
    expect(typesFor('q5_k_m').get('blk.0.attn_v.weight')).toBe('q6_K');
    expect(typesFor('q5_k_m').get('blk.5.attn_v.weight')).toBe('q5_K');
  });

  it('falls back when a row does not fill whole blocks', () => {
    const q = (ft: FileType, cols: number) => tensorType(ft, { role: 'ffn_down', nDims: 2, cols, nBlocks: 4, block: 1 });
    expect(q('q4_k_m', 160)).toBe('q5_0');
    expect(q('q5_k_m', 160)).toBe('q5_1');
    expect(q('q6_k', 160)).toBe('q8_0');
    expect(q('q4_0', 48)).toBe('f16');
    expect(q('q4_k_m', 48)).toBe('f16');
    expect(q('q4_k_m', 512)).toBe('q4_K');
  });
});
