// Hostile images against decodeImage / preprocessImage: JPEG and PNG truncated at every segment
// and chunk boundary and across the compressed data, seeded byte flips, decompression bombs,
// 1 x 100000 strips, raw frames of the wrong length, stride or format, GIF and BMP edge cases.
// Each must give a result or a typed HovleError (IMAGE_INVALID, IMAGE_TOO_LARGE,
// INVALID_ARGUMENT), never crash; the same limits must give the same answer for every input
// form. test/image.test.ts holds the basic cases (one truncation each, the header-only bomb).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { HovleError } from '../src/errors.js';
import { decodeImage, preprocessImage, type RawFrame } from '../src/image/preprocess.js';
import { loadAddon } from '../src/native/load.js';
import { FIXTURES } from './helpers/tmp.js';
import { bmp24, grayPng } from './helpers/image-files.js';

const IMAGES = join(FIXTURES, 'images');
const jpg = readFileSync(join(IMAGES, 'fjord.jpg'));
const png = readFileSync(join(IMAGES, 'gradient.png'));
const libjpeg = loadAddon().info.jpegDecoder === 'libjpeg-turbo';
const IMAGE_CODES = ['IMAGE_INVALID', 'IMAGE_TOO_LARGE'];

type Outcome = { ok: true; width: number; height: number; data: Buffer } | { ok: false; error: unknown };
async function decode(buffer: Buffer, options: Parameters<typeof decodeImage>[1] = {}): Promise<Outcome> {
  try {
    return { ok: true, ...(await decodeImage({ buffer }, options)) };
  } catch (error) {
    return { ok: false, error };
  }
}

function expectCode(what: string, error: unknown, codes: string[], pattern?: RegExp): void {
  expect(error, what).toBeInstanceOf(HovleError);
  const e = error as HovleError;
  expect(codes, `${what}: ${e.code} ${e.message}`).toContain(e.code);
  if (pattern) expect(e.message, what).toMatch(pattern);
}

/** A decoded image is whole: positive size, 3 bytes per pixel. */
function expectWhole(what: string, r: Outcome & { ok: true }): void {
  expect(r.width > 0 && r.height > 0, what).toBe(true);
  expect(r.data.length, what).toBe(r.width * r.height * 3);
}

/** Either decodes to a whole image or fails with an image error. */
async function expectSafe(what: string, buffer: Buffer, options: Parameters<typeof decodeImage>[1] = {}): Promise<Outcome> {
  const r = await decode(buffer, options);
  if (r.ok) expectWhole(what, r);
  else expectCode(what, r.error, IMAGE_CODES);
  return r;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

// ---------------------------------------------------------------- format helpers
/** JPEG marker segments up to SOS: [offset of the 0xFF, marker, end]. */
function jpegSegments(b: Buffer): Array<{ at: number; marker: number; end: number }> {
  const out = [{ at: 0, marker: 0xd8, end: 2 }];
  let p = 2;
  while (p + 4 <= b.length && b[p] === 0xff) {
    const marker = b[p + 1]!;
    const end = p + 2 + b.readUInt16BE(p + 2);
    out.push({ at: p, marker, end });
    if (marker === 0xda) break;
    p = end;
  }
  return out;
}

function pngChunks(b: Buffer): Array<{ at: number; type: string; dataAt: number; end: number }> {
  const out = [];
  for (let p = 8; p + 8 <= b.length;) {
    const len = b.readUInt32BE(p);
    out.push({ at: p, type: b.toString('latin1', p + 4, p + 8), dataAt: p + 8, end: p + 12 + len });
    p += 12 + len;
  }
  return out;
}

// The classic 1x1 GIF89a: a red pixel from a two-colour palette.
const gif = Buffer.from('47494638396101000100800000ff00000000002c00000000010001000002024401003b', 'hex');

// ---------------------------------------------------------------- truncation
describe('truncated JPEG and PNG', () => {
  it('JPEG cut at every marker segment and at 64 places in the scan: refused as truncated', async () => {
    const segs = jpegSegments(jpg);
    const sos = segs.at(-1)!;
    expect(sos.marker).toBe(0xda);
    const cuts = new Set<number>([1, 2, 3]);
    for (const s of segs) for (const c of [s.at, s.at + 1, s.at + 2, s.at + 3, (s.at + s.end) >> 1, s.end - 1, s.end]) cuts.add(c);
    for (let i = 0; i < 64; i++) cuts.add(sos.end + Math.floor(((jpg.length - 2 - sos.end) * i) / 64));
    for (const cut of [...cuts].sort((a, b) => a - b)) {
      const r = await decode(jpg.subarray(0, cut));
      if (libjpeg) {
        expect(r.ok, `cut at ${cut}`).toBe(false);
        expectCode(`cut at ${cut}`, (r as { error: unknown }).error, ['IMAGE_INVALID'], /truncated|JPEG|not a decodable|empty/);
      } else if (r.ok) {
        expectWhole(`cut at ${cut}`, r); // stb_image pads a truncated scan, as libjpeg does before our check
      } else {
        expectCode(`cut at ${cut}`, r.error, ['IMAGE_INVALID']);
      }
    }
    // Only the end-of-image marker missing: the scan is complete.
    for (const cut of [jpg.length - 2, jpg.length - 1]) await expectSafe(`cut at ${cut}`, jpg.subarray(0, cut));
  });

  it('PNG cut at every chunk boundary and at 48 places in the compressed data: refused until the data is complete', async () => {
    const chunks = pngChunks(png);
    const idats = chunks.filter((c) => c.type === 'IDAT');
    const dataEnd = idats.at(-1)!.end - 4; // the last IDAT's data, before its CRC
    const cuts = new Set<number>([1, 4, 7, 8]);
    for (const c of chunks) for (const at of [c.at, c.at + 4, c.dataAt, (c.dataAt + c.end) >> 1, c.end - 4, c.end - 1]) cuts.add(at);
    for (let i = 0; i < 48; i++) cuts.add(idats[0]!.dataAt + Math.floor(((dataEnd - idats[0]!.dataAt) * i) / 48));
    for (const cut of [...cuts].filter((c) => c < png.length).sort((a, b) => a - b)) {
      const r = await decode(png.subarray(0, cut));
      if (cut < dataEnd - 4) {
        expect(r.ok, `cut at ${cut}`).toBe(false);
        expectCode(`cut at ${cut}`, (r as { error: unknown }).error, ['IMAGE_INVALID']);
      } else if (!r.ok) {
        expectCode(`cut at ${cut}`, r.error, ['IMAGE_INVALID']);
      }
    }
  });

  it('GIF and BMP cut at every byte of the header and the pixel data', async () => {
    for (let cut = 1; cut < gif.length; cut++) await expectSafe(`GIF cut at ${cut}`, gif.subarray(0, cut));
    // stb_image would pad a short BMP with zeros; like PIL, the pipeline refuses it.
    const bmp = bmp24(5, 4, (x, y, c) => x * 40 + y * 7 + c);
    for (let cut = 1; cut < bmp.length; cut++) {
      const r = await decode(bmp.subarray(0, cut));
      expect(r.ok, `BMP cut at ${cut}`).toBe(false);
      expectCode(`BMP cut at ${cut}`, (r as { error: unknown }).error, ['IMAGE_INVALID']);
    }
  });
});

// ---------------------------------------------------------------- corruption
describe('corrupt bytes at seeded random places', () => {
  it('JPEG, PNG, GIF and BMP with single bytes flipped: an image or a typed error', async () => {
    const bmp = bmp24(9, 7, (x, y, c) => (x * 29 + y * 13 + c * 80) & 255);
    const inputs: Array<[string, Buffer, number]> = [['JPEG', jpg, 150], ['PNG', png, 150], ['GIF', gif, 60], ['BMP', bmp, 60]];
    const rand = seeded(0xc0ffee);
    let refused = 0;
    for (const [kind, base, n] of inputs) {
      for (let i = 0; i < n; i++) {
        // Half of the flips in the first 600 bytes, where the headers and tables are.
        const pos = Math.floor(rand() * (i % 2 ? base.length : Math.min(base.length, 600)));
        const b = Buffer.from(base);
        b[pos]! ^= 1 + Math.floor(rand() * 255);
        const r = await expectSafe(`${kind} flip at ${pos}`, b);
        if (!r.ok) refused++;
      }
    }
    expect(refused).toBeGreaterThan(20);
  });

  it('a JPEG with its scan data replaced by noise', async () => {
    const sos = jpegSegments(jpg).at(-1)!;
    const rand = seeded(7);
    const b = Buffer.from(jpg);
    for (let i = sos.end; i < b.length - 2; i++) b[i] = Math.floor(rand() * 256);
    await expectSafe('noise scan', b);
  });
});

// ---------------------------------------------------------------- bombs
describe('decompression bombs and huge headers', () => {
  it('a PNG claiming 100000 x 100000 with a real (small) zlib stream is refused before inflating', async () => {
    const bomb = grayPng(100000, 100000, () => 0, 8);
    expect(bomb.length).toBeLessThan(4096);
    // Refused from the header: nothing near the 10 GB the pixels would take is allocated.
    const rss = process.memoryUsage().rss;
    for (const opts of [{}, { maxPixels: 2 ** 40 }]) {
      const r = await decode(bomb, opts);
      expectCode('100000^2 PNG', (r as { error: unknown }).error, ['IMAGE_TOO_LARGE']);
    }
    await expect(preprocessImage({ buffer: bomb })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
  });

  it('JPEG, GIF and BMP headers claiming the largest sizes their formats allow', async () => {
    const sof = jpegSegments(jpg).find((s) => s.marker >= 0xc0 && s.marker <= 0xc2)!;
    const big = Buffer.from(jpg);
    big.writeUInt16BE(65500, sof.at + 5);
    big.writeUInt16BE(65500, sof.at + 7);
    await expect(decodeImage({ buffer: big })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE', message: expect.stringMatching(/65500x65500/) });
    await expect(preprocessImage({ buffer: big })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    const empty = Buffer.from(jpg);
    empty.writeUInt16BE(0, sof.at + 7);
    await expect(decodeImage({ buffer: empty })).rejects.toMatchObject({ code: 'IMAGE_INVALID' });

    const g = Buffer.from(gif);
    g.writeUInt16LE(65535, 6);
    g.writeUInt16LE(65535, 8);
    await expect(decodeImage({ buffer: g })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    const g0 = Buffer.from(gif);
    g0.writeUInt16LE(0, 6);
    await expect(decodeImage({ buffer: g0 })).rejects.toMatchObject({ code: 'IMAGE_INVALID' });

    for (const [w, h] of [[0x7fffffff, 0x7fffffff], [100, -0x80000000], [-0x80000000, 1], [65536, 65536]]) {
      const b = bmp24(2, 2, () => 0);
      b.writeInt32LE(w!, 18);
      b.writeInt32LE(h!, 22);
      await expect(decodeImage({ buffer: b }), `BMP ${w}x${h}`).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    }
  });

  it('the pixel limit is the same for PNG, BMP and raw frames, at the boundary', async () => {
    const w = 500, h = 400; // 200000 pixels
    const sample = (x: number, y: number) => (x ^ y) & 255;
    const pngBytes = grayPng(w, h, sample);
    const bmpBytes = bmp24(w, h, (x, y) => sample(x, h - 1 - y));
    const gray = new Uint8Array(w * h).map((_, i) => sample(i % w, Math.floor(i / w)));
    const inputs = [{ buffer: pngBytes }, { buffer: bmpBytes }, { raw: { data: gray, width: w, height: h, format: 'gray' as const } }];
    const results = [];
    for (const input of inputs) {
      await expect(preprocessImage(input, { maxPixels: w * h - 1 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
      results.push(await preprocessImage(input, { maxPixels: w * h, maxTiles: 4 }));
    }
    for (const r of results.slice(1)) expect(Buffer.from(r.data.buffer).equals(Buffer.from(results[0]!.data.buffer))).toBe(true);
  });

  it('maxPixels must be finite: Infinity would disable the bomb check', async () => {
    await expect(decodeImage({ buffer: png }, { maxPixels: Infinity })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(preprocessImage({ buffer: png }, { maxPixels: Infinity })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(preprocessImage({ buffer: png }, { maxPixels: NaN })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

// ---------------------------------------------------------------- extreme shapes
describe('1 x 100000 and 100000 x 1', () => {
  const n = 100000;
  const sample = (i: number) => (i * 7) & 255;
  for (const [w, h] of [[1, n], [n, 1]] as const) {
    it(`${w} x ${h}: PNG and raw give the same 12 tiles + thumbnail; a lower maxPixels refuses both`, async () => {
      const raw = { data: new Uint8Array(n).map((_, i) => sample(i)), width: w, height: h, format: 'gray' as const };
      const pngBytes = grayPng(w, h, (x, y) => sample(x + y));
      const a = await preprocessImage({ buffer: pngBytes });
      const b = await preprocessImage({ raw });
      expect(a.grid).toEqual(w === 1 ? [1, 12] : [12, 1]);
      expect(a.tiles).toBe(13);
      expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true); // toEqual is slow on 10M floats
      for (const input of [{ buffer: pngBytes }, { raw }]) {
        await expect(preprocessImage(input, { maxPixels: n - 1 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
      }
    });
  }

  it('a side over 2^20 pixels is IMAGE_TOO_LARGE for PNG and raw frames alike', async () => {
    const side = 2 ** 20 + 1;
    const pngBytes = grayPng(1, side, () => 0, 1);
    await expect(preprocessImage({ buffer: pngBytes })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(preprocessImage({ raw: { data: new Uint8Array(side), width: 1, height: side, format: 'gray' } })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(preprocessImage({ raw: { data: new Uint8Array(side), width: side, height: 1, format: 'gray' } })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
  });
});

// ---------------------------------------------------------------- raw frames
describe('raw frames of the wrong length, stride or format', () => {
  const px = new Uint8Array(4 * 6 * 4).map((_, i) => (i * 37) & 255);
  const frame = (o: Partial<RawFrame>): RawFrame => ({ data: px, width: 4, height: 6, format: 'rgba', ...o });
  const bad: Array<[string, Partial<RawFrame>, RegExp]> = [
    ['one byte short', { data: px.subarray(1) }, /needs 96/],
    ['stride below width x channels', { stride: 15 }, /stride 15 is less than/],
    ['stride not an integer', { stride: 16.5 }, /stride/],
    ['stride zero', { stride: 0 }, /stride/],
    ['stride past the data', { stride: 64 }, /needs/],
    ['stride beyond int32', { height: 1, stride: 2 ** 40 }, /stride/],
    ['width not an integer', { width: 3.5 }, /width/],
    ['width NaN', { width: NaN }, /width/],
    ['width Infinity', { width: Infinity }, /width/],
    ['height negative', { height: -6 }, /height/],
    ['format with channels the data lacks', { format: 'rgba', width: 8 }, /needs/],
    ['format not a string', { format: 3 as never }, /format/],
    ['data a Float32Array', { data: new Float32Array(96) as never }, /raw\.data/],
    ['data an Array', { data: Array.from(px) as never }, /raw\.data/],
    ['data a Uint8ClampedArray', { data: new Uint8ClampedArray(px) as never }, /raw\.data/],
    ['data missing', { data: undefined as never }, /raw\.data/],
  ];
  for (const [what, o, msg] of bad) {
    it(what, async () => {
      await expect(preprocessImage({ raw: frame(o) }, { maxTiles: 1 })).rejects.toMatchObject({ name: 'HovleError', code: 'INVALID_ARGUMENT', message: expect.stringMatching(msg) });
    });
  }

  it('a frame inside a larger buffer (byteOffset), longer data and a padded last row are all fine', async () => {
    const ref = await preprocessImage({ raw: frame({}) }, { maxTiles: 1 });
    const big = new Uint8Array(px.length + 100);
    big.set(px, 50);
    const views = [big.subarray(50, 50 + px.length), big.subarray(50)];
    const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    for (const data of views) expect(same((await preprocessImage({ raw: frame({ data }) }, { maxTiles: 1 })).data, ref.data)).toBe(true);
    // Stride 20 (4 bytes of padding per row); the last row needs only width x channels bytes.
    const padded = new Uint8Array(20 * 5 + 16);
    for (let y = 0; y < 6; y++) padded.set(px.subarray(y * 16, y * 16 + 16), y * 20);
    expect(same((await preprocessImage({ raw: frame({ data: padded, stride: 20 }) }, { maxTiles: 1 })).data, ref.data)).toBe(true);
  });
});

// ---------------------------------------------------------------- GIF and BMP
describe('GIF and BMP edge cases', () => {
  it('GIF: header and trailer only, an animation (first frame), a zero-height frame', async () => {
    await expect(decodeImage({ buffer: Buffer.concat([gif.subarray(0, 19), Buffer.from([0x3b])]) })).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
    const anim = Buffer.concat([gif.subarray(0, gif.length - 1), gif.subarray(19, gif.length)]);
    const px = await decodeImage({ buffer: anim });
    expect([px.width, px.height, ...px.data]).toEqual([1, 1, 255, 0, 0]);
    const zeroFrame = Buffer.from(gif);
    zeroFrame.writeUInt16LE(0, 19 + 7); // image descriptor height
    await expectSafe('zero-height frame', zeroFrame);
  });

  it('BMP: top-down equals bottom-up; RLE, odd bit depths and a pixel offset past the end are refused', async () => {
    const sample = (x: number, y: number, c: number) => (x * 50 + y * 20 + c * 90) & 255;
    const up = await decodeImage({ buffer: bmp24(6, 5, (x, y, c) => sample(x, 4 - y, c)) });
    const down = await decodeImage({ buffer: bmp24(6, -5, sample) });
    expect(down.data.equals(up.data)).toBe(true);
    const rle = bmp24(6, 5, sample);
    rle.writeUInt32LE(1, 30); // BI_RLE8 at 24 bits
    await expect(decodeImage({ buffer: rle })).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
    for (const bpp of [0, 7, 33, 0xffff]) {
      const b = bmp24(6, 5, sample);
      b.writeUInt16LE(bpp, 28);
      await expect(decodeImage({ buffer: b }), `bpp ${bpp}`).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
    }
    const far = bmp24(6, 5, sample);
    far.writeUInt32LE(0xfffffff0, 10);
    await expect(decodeImage({ buffer: far })).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
  });
});

describe('the checked-in regression corpus (test/fixtures/corpus)', () => {
  const corpus = join(FIXTURES, 'corpus');
  const files = readdirSync(corpus).filter((f) => f.startsWith('image-'));
  it.skipIf(files.length === 0)('each file decodes or is refused with a typed error', async () => {
    for (const f of files) {
      const bytes = readFileSync(join(corpus, f));
      await expectSafe(f, bytes);
      await preprocessImage({ buffer: bytes }).catch((e: unknown) => expectCode(f, e, IMAGE_CODES));
    }
  });
});

describe('afterwards', () => {
  it('the pipeline still works', async () => {
    expect((await preprocessImage({ buffer: jpg }, { maxTiles: 2 })).tiles).toBeGreaterThan(0);
  });
});
