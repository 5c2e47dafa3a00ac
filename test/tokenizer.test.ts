// The tokenizer against the reference's ids: the 20 texts of tokenizer_cases.json and every
// golden prompt (copied from the shared fixtures to test/fixtures/tokenizer-cases.json and
// test/fixtures/hovle-tiny/golden/*.prompt.txt).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { readTokenizer } from '../src/convert/tokenizer-meta.js';
import { readGguf } from '../src/gguf/reader.js';
import { Tokenizer } from '../src/runtime/tokenizer.js';
import { goldenCases, goldenI32 } from './helpers/golden.js';
import { FIXTURES, tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('tokenizer');
let tok: Tokenizer;

beforeAll(async () => {
  const path = join(dir, 'tiny.gguf');
  await convertCheckpoint(TINY, path, { type: 'q8_0' });
  tok = Tokenizer.fromMetadata((await readGguf(path)).metadata);
});

const cases = JSON.parse(readFileSync(join(FIXTURES, 'tokenizer-cases.json'), 'utf8')).cases as Array<{ text: string; ids: number[] }>;

// USER_DEFINED pieces that are not added tokens are taken whole, never merged, as sentencepiece
// takes them: test/fixtures/tokenizer-user-defined, written with sentencepiece's own encodes by
// scripts/fixtures/make-user-defined-tokenizer.py. (The HoVLE fixtures' user-defined pieces are
// all added tokens, which are split off before sentencepiece runs.)
describe('user-defined pieces, as sentencepiece encodes them', () => {
  const ud = join(FIXTURES, 'tokenizer-user-defined');
  const expected = JSON.parse(readFileSync(join(ud, 'expected.json'), 'utf8')) as { vocabSize: number; cases: Array<{ text: string; ids: number[] }> };
  it('every case', async () => {
    const { metadata } = await readTokenizer(ud, expected.vocabSize, '<|im_end|>');
    const t = Tokenizer.fromMetadata(new Map(metadata));
    for (const c of expected.cases) expect(Array.from(t.encode(c.text)), c.text).toEqual(c.ids);
    expect(t.decode(expected.cases[1]!.ids.slice(1))).toBe(expected.cases[1]!.text);
  });
});

describe('encoding matches the HF slow InternLM2 tokenizer', () => {
  for (const c of cases) {
    it(JSON.stringify(c.text).slice(0, 60), () => {
      expect(Array.from(tok.encode(c.text))).toEqual(c.ids);
    });
  }

  it('every golden prompt (image placeholders expanded) gives the golden input ids', () => {
    for (const c of goldenCases('hovle-tiny')) {
      const prompt = readFileSync(join(FIXTURES, 'hovle-tiny', 'golden', `${c.name}.prompt.txt`), 'utf8');
      expect(Array.from(tok.encode(prompt)), c.name).toEqual(Array.from(goldenI32('hovle-tiny', c, 'input_ids')));
    }
  });
});

describe('decoding', () => {
  it('round-trips every test text, multi-byte characters included', () => {
    // SentencePiece itself turns a literal U+2581 into a space (spaces are escaped as U+2581).
    for (const c of cases) {
      expect(tok.decode(tok.encode(c.text, { addBos: false }), { special: true })).toBe(c.text.replaceAll('\u2581', ' '));
    }
  });

  it('never emits half a character while streaming byte-fallback tokens', () => {
    const text = '图中有什么？ 😀 ü';
    const ids = tok.encode(text, { addBos: false });
    const d = tok.decoder();
    const parts = Array.from(ids, (id) => d.push(id));
    parts.push(d.flush());
    expect(parts.join('')).toBe(text);
    for (const p of parts) expect(p).not.toMatch(/\uFFFD/);
    expect(parts.filter((p) => p === '').length).toBeGreaterThan(0); // some tokens were held back
  });

  it('skips control tokens unless asked', () => {
    const ids = tok.encode('<|im_start|>user\nhi<|im_end|>', { addBos: false });
    expect(tok.decode(ids)).toBe('user\nhi');
    expect(tok.decode(ids, { special: true })).toBe('<|im_start|>user\nhi<|im_end|>');
  });
});
