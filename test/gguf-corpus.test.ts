// Hostile GGUF files against HovleModel.load: the tiny fixture model (q8_0) truncated at every
// section boundary, with bytes flipped at seeded random places, and with every count, length,
// dimension, type, offset and hyperparameter made wrong in place. Each must be refused with a
// typed HovleError (GGUF_INVALID, or IO_ERROR when unreadable), never crash or hang the
// process; damage the format cannot detect (a flipped weight byte) must load and evaluate.
// Afterwards the good model still loads and evaluates.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { HovleError } from '../src/errors.js';
import type { GgufValue } from '../src/gguf/format.js';
import { readGguf } from '../src/gguf/reader.js';
import { encodeHeader } from '../src/gguf/writer.js';
import { HovleModel } from '../src/runtime/model.js';
import { Session } from '../src/session/session.js';
import { ggufLayout, type GgufLayout } from './helpers/gguf-layout.js';
import { FIXTURES, tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('gguf-corpus');
let good: Buffer;
let L: GgufLayout;
let sizes: Map<string, number>;

beforeAll(async () => {
  const path = join(dir, 'good.gguf');
  await convertCheckpoint(TINY, path, { type: 'q8_0' });
  good = readFileSync(path);
  L = ggufLayout(good);
  sizes = new Map((await readGguf(path)).tensors.map((t) => [t.name, t.size]));
});

let serial = 0;
/** Loads `bytes` as a model file: the model (evaluated once, then disposed) or the error. */
async function attempt(bytes: Buffer): Promise<{ loaded: boolean; error?: unknown }> {
  const path = join(dir, `case-${serial++}.gguf`);
  writeFileSync(path, bytes);
  try {
    const m = await HovleModel.load(path);
    try {
      const ctx = await m.createContext({ contextSize: 16, threads: 1 }); // one thread: no spinning on a busy machine
      // Damage that loads must still evaluate: non-finite logits are acceptable, a crash is not.
      await ctx.evaluate([1, 2, 3], [], { logits: 'last' }).catch((e: unknown) => expect(e).toBeInstanceOf(HovleError));
      ctx.dispose();
    } finally {
      m.dispose();
    }
    return { loaded: true };
  } catch (error) {
    return { loaded: false, error };
  } finally {
    unlinkSync(path);
  }
}

function expectTyped(what: string, error: unknown, pattern?: RegExp): void {
  expect(error, what).toBeInstanceOf(HovleError);
  const e = error as HovleError;
  expect(['GGUF_INVALID', 'IO_ERROR'], `${what}: ${e.code} ${e.message}`).toContain(e.code);
  if (pattern) expect(e.message, what).toMatch(pattern);
}

async function expectRefused(what: string, bytes: Buffer, pattern?: RegExp): Promise<void> {
  const r = await attempt(bytes);
  expect(r.loaded, `${what} loaded`).toBe(false);
  expectTyped(what, r.error, pattern);
}

/** A copy of the good file with `edit` applied (which may return a different buffer). */
function variant(edit: (b: Buffer) => Buffer | void): Buffer {
  const b = Buffer.from(good);
  return edit(b) ?? b;
}

const u32At = (at: number, v: number) => variant((b) => void b.writeUInt32LE(v >>> 0, at));
const u64At = (at: number, v: bigint) => variant((b) => void b.writeBigUInt64LE(BigInt.asUintN(64, v), at));
const f32At = (at: number, v: number) => variant((b) => void b.writeFloatLE(v, at));
const U64_MAX = (1n << 64n) - 1n;

/** The good model's tensors under a new header of `meta` (each entry once), laid out at `alignment`. */
function laidOut(file: Awaited<ReturnType<typeof readGguf>>, meta: Array<[string, GgufValue]>, alignment: number) {
  const specs = file.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type }));
  const { header, offsets } = encodeHeader(meta, specs, alignment);
  const bytes = Buffer.alloc(header.length + offsets.at(-1)! + file.tensors.at(-1)!.size);
  header.copy(bytes);
  file.tensors.forEach((t, i) => good.copy(bytes, header.length + offsets[i]!, t.offset, t.offset + t.size));
  return { bytes, headerLength: header.length };
}

describe('truncated at every section boundary', () => {
  it('header, each metadata entry, each tensor-table entry, the padding, the data', async () => {
    const cuts = new Set<number>([0, 1, 3, 4, 7, 8, 15, 16, 23, 24]);
    for (const kv of L.kvs) for (const at of [kv.start, kv.start + 8, kv.typeAt, kv.valueAt, kv.valueAt + 1, (kv.valueAt + kv.end) >> 1, kv.end - 1]) cuts.add(at);
    for (const t of L.tensors) for (const at of [t.start, t.start + 8, t.nDimsAt, ...t.dimsAt, t.typeAt, t.offsetAt, t.end - 1]) cuts.add(at);
    for (let at = L.infoEnd; at <= L.dataStart; at++) cuts.add(at);
    for (const t of L.tensors) {
      const at = L.dataStart + t.offset;
      for (const c of [at, at + 1, at + (sizes.get(t.name)! >> 1), at + sizes.get(t.name)! - 1]) cuts.add(c);
    }
    cuts.delete(good.length);
    for (const cut of [...cuts].filter((c) => c < good.length).sort((a, b) => a - b)) {
      await expectRefused(`cut at ${cut}`, good.subarray(0, cut), /ends early|truncated|past the end|exceeds the limit/);
    }
    expect(cuts.size).toBeGreaterThan(500);
  });
});

describe('the header', () => {
  it('not a GGUF: empty, magic only, zeroed magic, unknown versions', async () => {
    await expectRefused('empty', Buffer.alloc(0), /ends early/);
    await expectRefused('magic only', good.subarray(0, 4), /ends early/);
    await expectRefused('zeroed magic', u32At(0, 0), /bad magic/);
    for (const v of [0, 1, 4, 0x30000000, 0xffffffff]) await expectRefused(`version ${v}`, u32At(4, v), /unsupported GGUF version/);
  });

  it('tensor and metadata counts: huge, off by one, zero', async () => {
    const nT = L.tensors.length;
    const nKv = L.kvs.length;
    for (const n of [U64_MAX, 1n << 63n, 1n << 40n, (1n << 20n) + 1n]) await expectRefused(`n_tensors ${n}`, u64At(8, n), /tensor count \d+ exceeds/);
    for (const n of [U64_MAX, 1n << 63n, 1n << 40n, (1n << 20n) + 1n]) await expectRefused(`n_kv ${n}`, u64At(16, n), /metadata count \d+ exceeds/);
    for (const n of [0, nT - 1, nT + 1]) await expectRefused(`n_tensors ${n}`, u64At(8, BigInt(n)));
    for (const n of [0, nKv - 1, nKv + 1]) await expectRefused(`n_kv ${n}`, u64At(16, BigInt(n)));
  });
});

describe('metadata', () => {
  it('string lengths past the end, past any limit, or overflowing', async () => {
    const first = L.kvs[0]!;
    for (const n of [U64_MAX, 1n << 63n, (1n << 26n) + 1n, BigInt(good.length)]) {
      await expectRefused(`key length ${n}`, u64At(first.start, n), /length \d+ exceeds/);
      await expectRefused(`general.name length ${n}`, u64At(L.kv('general.name').valueAt, n), /length \d+ exceeds/);
      await expectRefused(`tensor name length ${n}`, u64At(L.tensors[5]!.start, n), /length \d+ exceeds/);
      await expectRefused(`first token length ${n}`, u64At(L.kv('tokenizer.ggml.tokens').valueAt, n), /length \d+ exceeds/);
    }
    await expectRefused('empty key', u64At(first.start, 0n));
  });

  it('array counts huge, overflowing the element size, or off by one; bad element types', async () => {
    for (const key of ['tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'hovle.vision.image_mean']) {
      const kv = L.kv(key);
      const n = Number(good.readBigUInt64LE(kv.countAt!));
      for (const c of [U64_MAX, 1n << 62n, 1n << 61n, (1n << 28n) + 1n, BigInt(n + 1), BigInt(n - 1), 0n]) {
        await expectRefused(`${key} count ${c}`, u64At(kv.countAt!, c));
      }
      for (const t of [9, 13, 0xffffffff, 4, 8, 12]) {
        if (t === good.readUInt32LE(kv.elemTypeAt!)) continue;
        await expectRefused(`${key} element type ${t}`, u32At(kv.elemTypeAt!, t));
      }
    }
  });

  it('value types unknown, wrong or turned into arrays; bools other than 0 and 1', async () => {
    const vocab = L.kv('hovle.vocab_size');
    for (const t of [13, 0xffffffff, 9, 8]) await expectRefused(`vocab_size type ${t}`, u32At(vocab.typeAt, t));
    await expectRefused('vocab_size as i32', u32At(vocab.typeAt, 5), /hovle\.vocab_size is i32, expected u32/);
    await expectRefused('vocab_size as f32', u32At(vocab.typeAt, 6), /expected u32/);
    await expectRefused('bool value 2', variant((b) => void (b[L.kv('hovle.vision.use_thumbnail').valueAt] = 2)), /bool value 2/);
  });

  it('duplicate keys and tensors, wrong architecture, unknown tokenizer', async () => {
    const renameKey = (from: string, to: string) => variant((b) => void b.write(to, L.kv(from).start + 8, 'latin1'));
    await expectRefused('duplicate key', renameKey('hovle.vision.min_tiles', 'hovle.vision.max_tiles'), /duplicate metadata key/);
    await expectRefused('duplicate tensor', variant((b) => void b.write('blk.0.attn_q.weight', L.tensor('blk.0.attn_k.weight').start + 8, 'latin1')), /duplicate tensor/);
    await expectRefused('unknown tensor', variant((b) => void b.write('blk.0.attn_x.weight', L.tensor('blk.0.attn_q.weight').start + 8, 'latin1')), /attn_q\.weight is missing/);
    await expectRefused('architecture', variant((b) => void b.write('hovlf', L.kv('general.architecture').valueAt + 8, 'latin1')), /general\.architecture/);
    await expectRefused('tokenizer model', variant((b) => void b.write('llamb', L.kv('tokenizer.ggml.model').valueAt + 8, 'latin1')), /not SentencePiece/);
    await expectRefused('pixel shuffle location', variant((b) => void b.write('prx', L.kv('hovle.vision.pixel_shuffle_loc').valueAt + 8, 'latin1')), /pixel_shuffle_loc/);
    await expectRefused('RoPE scaling type', variant((b) => void b.write('nope', L.kv('hovle.rope.scaling.type').valueAt + 8, 'latin1')), /RoPE scaling type/);
    await expectRefused('invalid UTF-8', variant((b) => void (b[L.kv('general.name').valueAt + 8] = 0xff)), /UTF-8/);
  });
});

describe('the tensor table', () => {
  it('dimension counts and dimensions: zero, huge, overflowing, wrong for the hyperparameters', async () => {
    const t = L.tensor('token_embd.weight');
    for (const n of [0, 3, 5, 0xffffffff]) await expectRefused(`n_dims ${n}`, u32At(t.nDimsAt, n));
    for (const d of [0n, 1n << 53n, 1n << 63n, U64_MAX, 32n, 96n]) await expectRefused(`ne0 ${d}`, u64At(t.dimsAt[0]!, d));
    await expectRefused('ne0 x ne1 overflows', variant((b) => {
      b.writeBigUInt64LE(1n << 32n, t.dimsAt[0]!);
      b.writeBigUInt64LE(1n << 32n, t.dimsAt[1]!);
    }), /cannot fit|exceeds/);
    await expectRefused('ne1 too small', u64At(t.dimsAt[1]!, 1000n), /hyperparameters call for/);
  });

  it('types: unknown, removed, not fitting the row, not allowed for the role', async () => {
    const q = L.tensor('blk.0.attn_q.weight');
    for (const id of [4, 5, 43, 200, 0xffffffff]) await expectRefused(`type ${id}`, u32At(q.typeAt, id), /unknown ggml type/);
    await expectRefused('q4_K on 64 columns', u32At(q.typeAt, 12), /not a multiple of q4_K blocks/);
    await expectRefused('q8_1 (bigger): overlaps the next tensor', u32At(q.typeAt, 9), /overlap/);
    const norm = L.tensor('blk.1.ffn_norm.weight');
    await expectRefused('f32 norm as i32', u32At(norm.typeAt, 26), /ffn_norm\.weight must be f32 or f16, not i32/);
    await expectRefused('f32 norm as q8_0 (smaller, a gap ggml refuses)', u32At(norm.typeAt, 8), /must be f32 or f16|could not parse/);
    await expectRefused('f16 position table as bf16', u32At(L.tensor('v.position_embd.weight').typeAt, 30), /must be f32 or f16, not bf16/);
  });

  it('offsets misaligned, past the end, overflowing, overlapping, out of order', async () => {
    const t = L.tensor('blk.0.attn_v.weight');
    await expectRefused('misaligned', u64At(t.offsetAt, BigInt(t.offset + 1)), /not aligned/);
    for (const o of [BigInt(good.length), 1n << 60n, U64_MAX]) await expectRefused(`offset ${o}`, u64At(t.offsetAt, o), /past the end|exceeds|truncated/);
    await expectRefused('last tensor runs past the end', u64At(L.tensors.at(-1)!.offsetAt, BigInt(L.tensors.at(-1)!.offset + 32)), /truncated/);
    await expectRefused('overlapping', u64At(t.offsetAt, BigInt(L.tensor('blk.0.attn_k.weight').offset)), /overlap/);
    // attn_k and attn_v have the same size: swapped, nothing overlaps, but ggml wants file order.
    await expectRefused('out of order', variant((b) => {
      b.writeBigUInt64LE(BigInt(t.offset), L.tensor('blk.0.attn_k.weight').offsetAt);
      b.writeBigUInt64LE(BigInt(L.tensor('blk.0.attn_k.weight').offset), t.offsetAt);
    }), /could not parse/);
  });
});

describe('general.alignment', () => {
  /** The good model laid out again with `alignment` (general.alignment set), the data copied over. */
  async function realigned(alignment: number): Promise<Buffer> {
    const file = await readGguf(join(dir, 'good.gguf'));
    for (let pad = 0; ; pad++) {
      const meta: Array<[string, GgufValue]> = [...file.metadata, ['general.alignment', { type: 'u32', value: alignment }], ['hovle.test.pad', { type: 'string', value: 'x'.repeat(pad) }]];
      const { bytes, headerLength } = laidOut(file, meta, alignment);
      if (headerLength % 32 !== 0) return bytes; // the data section must start off ggml's 32-byte alignment
    }
  }

  it('a legal alignment below ggml\'s 32 bytes (8, 1) loads, copied rather than mapped (mapping aborted in ggml), and evaluates', async () => {
    for (const a of [8, 1]) {
      const r = await attempt(await realigned(a));
      expect(r.loaded, `alignment ${a}: ${String(r.error)}`).toBe(true);
    }
  });

  it('zero, not a power of two, or not a u32 is refused', async () => {
    // general.file_type (a u32) renamed in place: the names have the same length.
    const key = 'general.file_type';
    const renamed = (value: (b: Buffer, at: number) => void) => variant((b) => {
      b.write('general.alignment', L.kv(key).start + 8, 'latin1');
      value(b, L.kv(key).valueAt);
    });
    await expectRefused('alignment 0', renamed((b, at) => b.writeUInt32LE(0, at)), /general\.alignment must be a power-of-two u32/);
    await expectRefused('alignment 3', renamed((b, at) => b.writeUInt32LE(3, at)), /general\.alignment must be a power-of-two u32/);
    await expectRefused('alignment as i32', renamed((b, at) => { b.writeUInt32LE(5, at - 4); b.writeInt32LE(32, at); }), /general\.alignment must be a power-of-two u32/);
  });
});

describe('image tokens (hovle.image.*_token)', () => {
  /** The good model with metadata entries replaced, laid out again. */
  async function withMetadata(edits: Array<[string, GgufValue]>): Promise<Buffer> {
    const file = await readGguf(join(dir, 'good.gguf'));
    return laidOut(file, [...new Map([...file.metadata, ...edits])], 32).bytes;
  }
  const str = (value: string): GgufValue => ({ type: 'string', value });

  it('a token the vocabulary lacks, or a value that is not a string, is refused by key', async () => {
    await expectRefused('end token', await withMetadata([['hovle.image.end_token', str('</imq>')]]), /hovle\.image\.end_token "<\/imq>" is not in the vocabulary/);
    await expectRefused('start token as u32', await withMetadata([['hovle.image.start_token', { type: 'u32', value: 7 }]]), /hovle\.image\.start_token must be a string/);
  });

  it('the session builds image prompts from the file\'s tokens, not from constants', async () => {
    // Start and end swapped: the prompt must carry them swapped.
    const path = join(dir, 'swapped-image-tokens.gguf');
    writeFileSync(path, await withMetadata([['hovle.image.start_token', str('</img>')], ['hovle.image.end_token', str('<img>')]]));
    const m = await HovleModel.load(path);
    try {
      expect(m.vocab.tokens[m.vocab.imageStartId]).toBe('</img>');
      expect(m.vocab.tokens[m.vocab.imageEndId]).toBe('<img>');
      const s = await Session.create(m, { contextSize: 512, threads: 1 });
      const seen: string[] = [];
      const encode = m.tokenizer.encodeAsync.bind(m.tokenizer);
      m.tokenizer.encodeAsync = (text, o) => (seen.push(text), encode(text, o));
      await s.ask({ text: 'What is this?', images: [join(FIXTURES, 'images', 'fjord.jpg')] }, { maxTokens: 1, maxTiles: 1 });
      s.dispose();
      expect(seen.at(-1)).toMatch(/<\/img>(<IMG_CONTEXT>)+<img>/);
      expect(seen.at(-1)).not.toMatch(/<img><IMG_CONTEXT>/);
    } finally {
      m.dispose();
      unlinkSync(path);
    }
  });
});

describe('hyperparameters', () => {
  const u32Cases: Array<[string, number[]]> = [
    ['hovle.embedding.attention.head_count', [0, 3, 128, 0xffffffff]],
    ['hovle.embedding.attention.head_count_kv', [0, 3, 8]],
    ['hovle.attention.head_count', [64, 5]],
    ['hovle.embedding.block_count', [0, 1, 3, 1025, 0xffffffff]],
    ['hovle.block_count', [0, 1000, 0xffffffff]],
    ['hovle.embedding.embedding_length', [0, 65, 128, 0xffffffff]],
    ['hovle.feed_forward_length', [0, 161, 0xffffffff]],
    ['hovle.vocab_size', [0, 1008, 1010, 0xffffffff]],
    ['hovle.vision.image_size', [0, 449, 896, 0xffffffff]],
    ['hovle.vision.patch_size', [0, 13, 448, 0xffffffff]],
    ['hovle.vision.num_channels', [0, 1, 4]],
    ['hovle.context_length', [0, 0xffffffff]],
    ['hovle.vision.min_tiles', [0, 13]],
    ['hovle.vision.max_tiles', [0, 257, 0xffffffff]],
    ['tokenizer.ggml.bos_token_id', [1009, 0xffffffff]],
    ['tokenizer.ggml.eot_token_id', [1009]],
    ['tokenizer.ggml.unknown_token_id', [5000]],
  ];
  for (const [key, values] of u32Cases) {
    it(`${key}: ${values.join(', ')}`, async () => {
      // Named by key, or by its consequence: a tensor or vocabulary that no longer fits.
      for (const v of values) await expectRefused(`${key} = ${v}`, u32At(L.kv(key).valueAt, v), /hovle\.|tokenizer\.|tensor|tokens/);
    });
  }
  const f32Cases: Array<[string, number[]]> = [
    ['hovle.vision.downsample_ratio', [0, -0.5, 0.25, 2, NaN, Infinity]],
    ['hovle.embedding.attention.layer_norm_rms_epsilon', [0, -1, NaN, Infinity]],
    ['hovle.rope.freq_base', [0, NaN, Infinity, -Infinity]],
    ['hovle.rope.scaling.factor', [0, NaN]],
  ];
  for (const [key, values] of f32Cases) {
    it(`${key}: ${values.join(', ')}`, async () => {
      for (const v of values) await expectRefused(`${key} = ${v}`, f32At(L.kv(key).valueAt, v), new RegExp(`${key.replace(/\./g, '\\.')}|tensor`));
    });
  }
  it('tile defaults that would make every image allocate gigabytes (4096-pixel tiles, 12 of them)', async () => {
    const b = variant((x) => {
      x.writeUInt32LE(4096, L.kv('hovle.vision.image_size').valueAt);
      x.writeUInt32LE(2048, L.kv('hovle.vision.patch_size').valueAt);
    });
    await expectRefused('4096-pixel tiles', b, /hovle\.vision\.max_tiles 12 tiles of 4096 pixels exceed/);
  });

  it('normalisation mean and std: NaN, zero, infinite', async () => {
    await expectRefused('mean NaN', f32At(L.kv('hovle.vision.image_mean').valueAt + 4, NaN), /image_mean/);
    await expectRefused('std 0', f32At(L.kv('hovle.vision.image_std').valueAt, 0), /image_std/);
    await expectRefused('std Inf', f32At(L.kv('hovle.vision.image_std').valueAt + 8, Infinity), /image_std/);
  });
});

describe('weights', () => {
  const at = (name: string, i: number, bytes: number) => L.dataStart + L.tensor(name).offset + i * bytes;
  it('NaN or Inf in a norm weight, a bias or the position table is refused by name', async () => {
    const cases: Array<[string, Buffer]> = [
      ['output_norm.weight', f32At(at('output_norm.weight', 0, 4), NaN)],
      ['blk.1.attn_norm.weight', f32At(at('blk.1.attn_norm.weight', 5, 4), Infinity)],
      ['blk.3.ffn_norm.weight', f32At(at('blk.3.ffn_norm.weight', 63, 4), NaN)],
      ['v.patch_embd.bias', f32At(at('v.patch_embd.bias', 0, 4), -Infinity)],
      ['v.proj.fc1.bias', f32At(at('v.proj.fc1.bias', 7, 4), NaN)],
      ['v.position_embd.weight', variant((b) => void b.writeUInt16LE(0x7e00, at('v.position_embd.weight', 1000, 2)))],
      ['v.position_embd.weight', variant((b) => void b.writeUInt16LE(0xfc00, at('v.position_embd.weight', 64 * 1025 - 1, 2)))],
    ];
    for (const [name, bytes] of cases) await expectRefused(name, bytes, new RegExp(`${name.replace(/\./g, '\\.')} contains NaN or infinite`));
  });

  it('NaN inside a quantized matrix is not scanned (documented): it loads and evaluates without crashing', async () => {
    // The f16 scale of the first q8_0 block of blk.2.ffn_up.
    const r = await attempt(variant((b) => void b.writeUInt16LE(0x7e00, at('blk.2.ffn_up.weight', 0, 1))));
    expect(r.loaded).toBe(true);
  });
});

describe('hostile vocabularies load safely', () => {
  // Offset of token i's u64 length inside tokenizer.ggml.tokens.
  const tokenAt = (i: number) => {
    let p = L.kv('tokenizer.ggml.tokens').valueAt;
    for (let j = 0; j < i; j++) p += 8 + Number(good.readBigUInt64LE(p));
    return p;
  };
  it('byte pieces that are not <0xXX> (e.g. <0x-1>, which once wrote before a table)', async () => {
    const tokens = readTokens();
    const types = L.kv('tokenizer.ggml.token_type');
    const byteIds = tokens.flatMap((t, i) => (good.readInt32LE(types.valueAt + 4 * i) === 6 && /^<0x..>$/.test(t) ? [i] : []));
    expect(byteIds.length).toBeGreaterThan(2);
    for (const piece of ['<0x-1>', '<0xZZ>', '<0x+F>', '<0x 1>']) {
      const bytes = variant((b) => void b.write(piece, tokenAt(byteIds[1]!) + 8, 'latin1'));
      const path = join(dir, 'vocab.gguf');
      writeFileSync(path, bytes);
      const m = await HovleModel.load(path);
      expect(Array.from(m.tokenizer.encode('\u00ff\u0001 héllo <|im_end|>'))).not.toContain(-1);
      m.dispose();
    }
  });

  it('NaN scores are refused; added-token ids outside the vocabulary are ignored', async () => {
    await expectRefused('NaN score', f32At(L.kv('tokenizer.ggml.scores').valueAt + 4 * 500, NaN), /scores holds NaN/);
    const added = L.kv('hovle.tokenizer.added_tokens');
    const r = await attempt(variant((b) => {
      b.writeInt32LE(-5, added.valueAt);
      b.writeInt32LE(0x7fffffff, added.valueAt + 4);
    }));
    expect(r.loaded).toBe(true);
  });

  function readTokens(): string[] {
    const n = Number(good.readBigUInt64LE(L.kv('tokenizer.ggml.tokens').countAt!));
    const out: string[] = [];
    let p = L.kv('tokenizer.ggml.tokens').valueAt;
    for (let i = 0; i < n; i++) {
      const len = Number(good.readBigUInt64LE(p));
      out.push(good.toString('utf8', p + 8, p + 8 + len));
      p += 8 + len;
    }
    return out;
  }
});

describe('flipped bytes at seeded random places', () => {
  it('300 single-byte flips (most in the header and tensor table): refused with a typed error, or load and evaluate', async () => {
    let state = 0x2545f491;
    const rand = () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 2 ** 32;
    };
    let refused = 0;
    let loaded = 0;
    for (let i = 0; i < 300; i++) {
      const pos = i < 240 ? Math.floor(rand() * L.dataStart) : L.dataStart + Math.floor(rand() * (good.length - L.dataStart));
      const x = 1 + Math.floor(rand() * 255);
      const r = await attempt(variant((b) => void (b[pos]! ^= x)));
      if (r.loaded) loaded++;
      else {
        expectTyped(`flip ${x} at ${pos}`, r.error);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(50);
    expect(loaded).toBeGreaterThan(30);
  });
});

describe('unreadable paths', () => {
  it('missing, a directory, a FIFO (would block open), a device', async () => {
    await expect(HovleModel.load(join(dir, 'missing.gguf'))).rejects.toMatchObject({ name: 'HovleError', code: 'IO_ERROR' });
    const sub = join(dir, 'a-directory.gguf');
    mkdirSync(sub);
    await expect(HovleModel.load(sub)).rejects.toMatchObject({ code: 'IO_ERROR', message: expect.stringMatching(/not a regular file/) });
    const fifo = join(dir, 'fifo.gguf');
    execFileSync('mkfifo', [fifo]);
    await expect(HovleModel.load(fifo)).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(HovleModel.load('/dev/zero')).rejects.toMatchObject({ code: 'IO_ERROR' });
  });
});

describe('the checked-in regression corpus (test/fixtures/corpus)', () => {
  const corpus = join(FIXTURES, 'corpus');
  const files = readdirSync(corpus).filter((f) => f.startsWith('gguf-'));
  it.skipIf(files.length === 0)('each file is refused with a typed error, or loads and evaluates', async () => {
    for (const f of files) {
      const r = await attempt(readFileSync(join(corpus, f)));
      if (!r.loaded) expectTyped(f, r.error);
    }
  });
});

describe('afterwards', () => {
  it('the good model loads and evaluates, with an image', async () => {
    const path = join(dir, 'good.gguf');
    const m = await HovleModel.load(path);
    const ctx = await m.createContext({ contextSize: 512, threads: 1 });
    const image = await m.preprocessImage(join(FIXTURES, 'images', 'gradient.png'), { maxTiles: 1 });
    const perTile = 256;
    const ids = [1, ...new Array(image.tiles * perTile).fill(m.vocab.imageContextId), 5, 6];
    const r = await ctx.evaluate(ids, [image], { logits: 'last' });
    expect(r.logits.length).toBe(m.hparams.vocabSize);
    expect(r.logits.every(Number.isFinite)).toBe(true);
    ctx.dispose();
    m.dispose();
  });
});
