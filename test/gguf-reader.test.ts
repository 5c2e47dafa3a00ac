// The GGUF reader used by `hovle quantize` must turn every malformed file into GGUF_INVALID.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { readGguf } from '../src/gguf/reader.js';
import { tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('gguf-reader');
let good: Buffer;
let dataOffset: number;
let lastTensorEnd: number;

beforeAll(async () => {
  const path = join(dir, 'good.gguf');
  await convertCheckpoint(TINY, path, { type: 'q8_0' });
  good = readFileSync(path);
  const file = await readGguf(path);
  dataOffset = file.dataOffset;
  lastTensorEnd = Math.max(...file.tensors.map((t) => t.offset + t.size));
});

async function expectInvalid(bytes: Buffer, pattern: RegExp): Promise<void> {
  const path = join(dir, `bad-${Math.random().toString(36).slice(2)}.gguf`);
  writeFileSync(path, bytes);
  await expect(readGguf(path)).rejects.toMatchObject({ code: 'GGUF_INVALID', message: expect.stringMatching(pattern) });
}

describe('readGguf on damaged files', () => {
  it('refuses a zeroed magic (what an interrupted conversion leaves)', async () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(0, 0);
    await expectInvalid(b, /bad magic/);
  });

  it('refuses every truncation inside the header and the tensor data', async () => {
    for (const cut of [3, 8, 16, 24, 100, 5000, dataOffset - 1, dataOffset + 10, lastTensorEnd - 1]) {
      await expectInvalid(good.subarray(0, cut), /ends early|truncated|short read|unexpected end/);
    }
  });

  it('refuses absurd counts without allocating for them', async () => {
    const b = Buffer.from(good);
    b.writeBigUInt64LE(1n << 40n, 8); // tensor count
    await expectInvalid(b, /tensor count \d+ exceeds/);
    const c = Buffer.from(good);
    c.writeBigUInt64LE(0xffffffffffffffffn, 16); // metadata count
    await expectInvalid(c, /metadata count \d+ exceeds/);
  });

  it('refuses an unknown version', async () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(99, 4);
    await expectInvalid(b, /unsupported GGUF version 99/);
  });
});
