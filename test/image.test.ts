// The image pipeline against the reference preprocessing (golden pixel tensors and per-tile
// statistics from the shared fixtures, copied to test/fixtures) and against bad input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { candidateGrids, decodeImage, preprocessImage, type RawFrame } from '../src/image/preprocess.js';
import { loadAddon } from '../src/native/load.js';
import { goldenCases, goldenF32 } from './helpers/golden.js';
import { bmp24 } from './helpers/image-files.js';
import { FIXTURES } from './helpers/tmp.js';

const IMAGES = join(FIXTURES, 'images');
const img = (name: string) => join(IMAGES, name);
const cases = goldenCases('hovle-tiny');
const jpegExact = loadAddon().info.jpegDecoder === 'libjpeg-turbo';

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe('golden pixel tensors', () => {
  const fjord = cases.find((c) => c.name === 'fjord_max1_en')!;
  const gradient = cases.find((c) => c.name === 'gradient_max6_en')!;

  it('PNG inputs match bit for bit (gradient: 2x1 grid + thumbnail; the reference decode of fjord)', async () => {
    const g = await preprocessImage(img('gradient.png'), { maxTiles: 6 });
    expect(g.grid).toEqual([2, 1]);
    expect(g.tiles).toBe(3);
    expect(maxDiff(g.data, goldenF32('hovle-tiny', gradient, 'pixel_values'))).toBe(0);
    const f = await preprocessImage(img('fjord.decoded.png'), { maxTiles: 1 });
    expect(maxDiff(f.data, goldenF32('hovle-tiny', fjord, 'pixel_values'))).toBe(0);
  });

  it('JPEG input matches: exactly with libjpeg-turbo, else within the recorded stb_image tolerance', async () => {
    const f = await preprocessImage(img('fjord.jpg'), { maxTiles: 1 });
    // pixel_decoder_tolerance.json: stb_image vs PIL on fjord.jpg, pixel_values max |diff| 0.0523.
    expect(maxDiff(f.data, goldenF32('hovle-tiny', fjord, 'pixel_values'))).toBeLessThanOrEqual(jpegExact ? 0 : 0.053);
  });

  for (const c of cases.filter((x) => x.image)) {
    it(`${c.name}: grid, tile count and per-tile channel statistics`, async () => {
      const r = await preprocessImage(img(c.image!.split('/').pop()!), { maxTiles: c.maxTiles! });
      expect(r.grid).toEqual(c.preprocess!.tile_grid_cols_rows);
      expect(r.tiles).toBe(c.preprocess!.num_tiles);
      const stats = (c as unknown as { pixelStats: Array<Record<'mean' | 'std' | 'min' | 'max', number[]>> }).pixelStats;
      const S = 448 * 448;
      const tol = jpegExact || !c.image!.endsWith('.jpg') ? 1e-5 : 5e-3;
      for (let t = 0; t < r.tiles; t++) {
        for (let ch = 0; ch < 3; ch++) {
          const v = r.data.subarray((t * 3 + ch) * S, (t * 3 + ch + 1) * S);
          let sum = 0, min = Infinity, max = -Infinity;
          for (const x of v) {
            sum += x;
            min = Math.min(min, x);
            max = Math.max(max, x);
          }
          const mean = sum / S;
          let sq = 0;
          for (const x of v) sq += (x - mean) ** 2;
          const std = Math.sqrt(sq / (S - 1));
          expect(mean, `tile ${t} ch ${ch} mean`).toBeCloseTo(stats[t]!.mean[ch]!, jpegExact ? 5 : 2);
          expect(Math.abs(std - stats[t]!.std[ch]!), `tile ${t} ch ${ch} std`).toBeLessThan(tol);
          expect(Math.abs(min - stats[t]!.min[ch]!), `tile ${t} ch ${ch} min`).toBeLessThan(tol * 10);
          expect(Math.abs(max - stats[t]!.max[ch]!), `tile ${t} ch ${ch} max`).toBeLessThan(tol * 10);
        }
      }
    });
  }
});

describe('candidate grids', () => {
  it("come in the reference's order (CPython set order, stably sorted by tile count)", () => {
    const board = cases.find((c) => c.name === 'board_max6_zh')!;
    const news = cases.find((c) => c.name === 'newspaper_max12_en')!;
    expect(candidateGrids(1, 6)).toEqual(board.preprocess!.target_ratios_order);
    expect(candidateGrids(1, 12).slice(0, news.preprocess!.target_ratios_order.length)).toEqual(news.preprocess!.target_ratios_order);
    // Printed by CPython 3.11 for max_num = 24 (the reference's own expression).
    const py24 = [[1, 1], [1, 2], [2, 1], [3, 1], [1, 3], [2, 2], [4, 1], [1, 4], [5, 1], [1, 5], [6, 1], [3, 2], [2, 3], [1, 6], [7, 1], [1, 7], [4, 2], [2, 4], [1, 8], [8, 1], [9, 1], [3, 3], [1, 9], [1, 10], [5, 2], [10, 1], [2, 5], [1, 11], [11, 1], [6, 2], [1, 12], [2, 6], [12, 1], [3, 4], [4, 3], [13, 1], [1, 13], [14, 1], [1, 14], [7, 2], [2, 7], [1, 15], [5, 3], [3, 5], [15, 1], [8, 2], [16, 1], [4, 4], [1, 16], [2, 8], [1, 17], [17, 1], [18, 1], [3, 6], [9, 2], [1, 18], [6, 3], [2, 9], [1, 19], [19, 1], [20, 1], [5, 4], [2, 10], [1, 20], [4, 5], [10, 2], [7, 3], [1, 21], [3, 7], [21, 1], [2, 11], [11, 2], [22, 1], [1, 22], [1, 23], [23, 1], [1, 24], [24, 1], [6, 4], [3, 8], [4, 6], [2, 12], [8, 3], [12, 2]];
    expect(candidateGrids(1, 24)).toEqual(py24);
  });
});

describe('input forms', () => {
  it('a path, { file }, { buffer } and a { raw } frame of the decoded pixels give the same tiles', async () => {
    const opts = { maxTiles: 6 };
    const a = await preprocessImage(img('gradient.png'), opts);
    const b = await preprocessImage({ file: img('gradient.png') }, opts);
    const c = await preprocessImage({ buffer: readFileSync(img('gradient.png')) }, opts);
    const rgb = await decodeImage(img('gradient.png'));
    const d = await preprocessImage({ raw: { data: rgb.data, width: rgb.width, height: rgb.height, format: 'rgb' } }, opts);
    for (const x of [b, c, d]) expect(maxDiff(a.data, x.data)).toBe(0);
  });

  it('rgba, bgr, bgra, gray and padded strides are converted, not re-encoded', async () => {
    const rgb = await decodeImage(img('fjord.jpg'));
    const { width: w, height: h } = rgb;
    const ref = await preprocessImage({ raw: { data: rgb.data, width: w, height: h, format: 'rgb' } }, { maxTiles: 1 });
    const build = (format: RawFrame['format'], ch: number, pad: number, f: (p: Buffer, o: Buffer) => void) => {
      const stride = w * ch + pad;
      const out = Buffer.alloc(stride * h, 0xee);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) f(rgb.data.subarray((y * w + x) * 3, (y * w + x) * 3 + 3), out.subarray(y * stride + x * ch, y * stride + x * ch + ch));
      return { data: out, width: w, height: h, format, stride };
    };
    const frames: RawFrame[] = [
      build('rgba', 4, 0, (p, o) => { p.copy(o); o[3] = 7; }),
      build('bgr', 3, 5, (p, o) => { o[0] = p[2]!; o[1] = p[1]!; o[2] = p[0]!; }),
      build('bgra', 4, 12, (p, o) => { o[0] = p[2]!; o[1] = p[1]!; o[2] = p[0]!; o[3] = 0; }),
    ];
    for (const raw of frames) expect(maxDiff(ref.data, (await preprocessImage({ raw }, { maxTiles: 1 })).data), raw.format).toBe(0);
    const gray = build('gray', 1, 3, (p, o) => { o[0] = p[1]!; });
    const g = await preprocessImage({ raw: gray }, { maxTiles: 1 });
    const S = 448 * 448;
    // Gray replicates into R, G and B before normalising with each channel's mean/std.
    expect((g.data[0]! * 0.229 + 0.485 - (g.data[S]! * 0.224 + 0.456))).toBeCloseTo(0, 5);
  });

  it('EXIF orientation is ignored by default and applied on request', async () => {
    // fjord.jpg with an APP1 Exif segment saying "rotate 90 clockwise" (orientation 6).
    const jpg = readFileSync(img('fjord.jpg'));
    const tiff = Buffer.from([0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    const payload = Buffer.concat([Buffer.from('Exif\0\0', 'binary'), tiff]);
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff]), payload]);
    const rotated = Buffer.concat([jpg.subarray(0, 2), app1, jpg.subarray(2)]);
    const plain = await decodeImage({ buffer: rotated });
    expect([plain.width, plain.height]).toEqual([550, 368]);
    const turned = await decodeImage({ buffer: rotated }, { exifOrientation: true });
    expect([turned.width, turned.height]).toEqual([368, 550]);
    // Output (x, y) comes from input (y, H-1-x): the top-left output pixel is the bottom-left input pixel.
    const at = (im: typeof plain, x: number, y: number) => Array.from(im.data.subarray((y * im.width + x) * 3, (y * im.width + x) * 3 + 3));
    expect(at(turned, 0, 0)).toEqual(at(plain, 0, 367));
    expect(at(turned, 367, 549)).toEqual(at(plain, 549, 0));
    const p = await preprocessImage({ buffer: rotated }, { exifOrientation: true, maxTiles: 6 });
    expect(p.width).toBe(368);
  });

  it('BMP and GIF (first frame) decode too', async () => {
    // A 24-bit BMP written here from the decoded gradient: same pixels, same tiles.
    const rgb = await decodeImage(img('gradient.png'));
    const { width: w, height: h } = rgb;
    // Stored bottom-up, BGR.
    const bmp = bmp24(w, h, (x, y, c) => rgb.data[((h - 1 - y) * w + x) * 3 + 2 - c]!);
    const a = await preprocessImage({ buffer: bmp }, { maxTiles: 6 });
    const b = await preprocessImage(img('gradient.png'), { maxTiles: 6 });
    expect(maxDiff(a.data, b.data)).toBe(0);
    // The classic 1x1 GIF89a: a red pixel from a two-colour palette.
    const gif = Buffer.from('474946383961010001008000 00ff0000000000 2c00000000010001000002024401003b'.replace(/ /g, ''), 'hex');
    const px = await decodeImage({ buffer: gif });
    expect([px.width, px.height, ...px.data]).toEqual([1, 1, 255, 0, 0]);
  });

  it('an extreme aspect ratio (1 x 20000) is tiled, not refused', async () => {
    const r = await preprocessImage({ raw: { data: new Uint8Array(20000).fill(128), width: 1, height: 20000, format: 'gray' } }, { maxTiles: 12 });
    expect(r.grid).toEqual([1, 12]);
    expect(r.tiles).toBe(13);
  });
});

describe('decodes as PIL does where stb_image alone would not', () => {
  // test/fixtures/images/decode: made by scripts/fixtures/make-decode-cases.py, each beside
  // PIL 9.4.0's decode of it (the reference's decoder), saved as PNG.
  const dir = join(FIXTURES, 'images', 'decode');
  const decodeCases: Array<[string, string]> = [
    ['gif-transparent.gif', 'transparent pixels take their palette colour (stb: black)'],
    ['gif-subframe.gif', 'the screen outside a smaller first image is palette index 0 (stb: the background colour)'],
    ['gray16.png', '16-bit grey is clamped to 255 (stb: the high byte)'],
    ['cmyk.jpg', "CMYK goes through PIL's own formula (libjpeg-turbo builds; stb: up to a level off)"],
    ['bmp555.bmp', '16-bit 5-5-5 levels scale as v * 255 / 31, truncated (stb: bit repetition, a level off)'],
    ['bmp565.bmp', '16-bit 5-6-5 bitfields likewise, green as v * 255 / 63'],
  ];
  for (const [name, why] of decodeCases) {
    it.runIf(jpegExact || !name.endsWith('.jpg'))(`${name}: ${why}`, async () => {
      const [ours, pil] = await Promise.all([decodeImage(join(dir, name)), decodeImage(join(dir, `${name}.pil.png`))]);
      expect([ours.width, ours.height]).toEqual([pil.width, pil.height]);
      expect(Buffer.compare(ours.data, pil.data)).toBe(0);
    });
  }

  it('a GIF cut inside its first image is refused as PIL refuses it; one missing only its terminator decodes', async () => {
    const gif = readFileSync(join(dir, 'gif-transparent.gif'));
    for (const cut of [131, 200]) {
      await expect(decodeImage({ buffer: gif.subarray(0, cut) })).rejects.toMatchObject({ code: 'IMAGE_INVALID', message: expect.stringMatching(/GIF.*cut short/) });
    }
    expect((await decodeImage({ buffer: gif.subarray(0, gif.length - 2) })).data).toEqual((await decodeImage({ buffer: gif })).data);
  });

  it.runIf(jpegExact)('a truncated CMYK JPEG is refused, as PIL refuses it', async () => {
    const jpg = readFileSync(join(dir, 'cmyk.jpg'));
    await expect(decodeImage({ buffer: jpg.subarray(0, jpg.length >> 1) })).rejects.toMatchObject({ code: 'IMAGE_INVALID', message: expect.stringMatching(/truncated/) });
  });

  it('a PNG whose chunks end without IEND decodes (PIL reads it)', async () => {
    const png = readFileSync(img('gradient.png'));
    expect(png.subarray(-8, -4).toString()).toBe('IEND');
    expect((await decodeImage({ buffer: png.subarray(0, -12) })).data).toEqual((await decodeImage({ buffer: png })).data);
  });
});

describe('bad input gives typed errors and leaves the process healthy', () => {
  const jpg = readFileSync(img('fjord.jpg'));
  const png = readFileSync(img('gradient.png'));
  const bad: Array<[string, Parameters<typeof preprocessImage>[0], Parameters<typeof preprocessImage>[1], string, RegExp]> = [
    ['truncated JPEG', { buffer: jpg.subarray(0, 20000) }, {}, 'IMAGE_INVALID', /truncated/],
    ['truncated PNG', { buffer: png.subarray(0, 4000) }, {}, 'IMAGE_INVALID', /corrupt|truncated/],
    ['JPEG header only', { buffer: jpg.subarray(0, 400) }, {}, 'IMAGE_INVALID', /JPEG|truncated/],
    ['random bytes', { buffer: Buffer.from('definitely not an image, just text') }, {}, 'IMAGE_INVALID', /not a decodable/],
    ['empty buffer', { buffer: Buffer.alloc(0) }, {}, 'IMAGE_INVALID', /empty/],
    ['over maxPixels', img('fjord.jpg'), { maxPixels: 100_000 }, 'IMAGE_TOO_LARGE', /550x368/],
    ['raw buffer too short', { raw: { data: new Uint8Array(100), width: 10, height: 10, format: 'rgb' } }, {}, 'INVALID_ARGUMENT', /needs 300/],
    ['raw zero width', { raw: { data: new Uint8Array(100), width: 0, height: 10, format: 'gray' } }, {}, 'INVALID_ARGUMENT', /width/],
    ['raw unknown format', { raw: { data: new Uint8Array(100), width: 10, height: 10, format: 'yuv' as never } }, {}, 'INVALID_ARGUMENT', /format/],
    ['raw frame over maxPixels', { raw: { data: new Uint8Array(300), width: 10, height: 10, format: 'rgb' } }, { maxPixels: 50 }, 'IMAGE_TOO_LARGE', /maxPixels/],
    ['missing file', '/nonexistent/x.jpg', {}, 'IO_ERROR', /nonexistent/],
    ['not an input', 42 as never, {}, 'INVALID_ARGUMENT', /image input/],
    ['maxTiles 0', img('gradient.png'), { maxTiles: 0 }, 'INVALID_ARGUMENT', /maxTiles/],
    ['a directory', FIXTURES, {}, 'IO_ERROR', /directory/],
    ['file over maxBytes', img('fjord.jpg'), { maxBytes: 1000 }, 'IMAGE_TOO_LARGE', /maxBytes 1000/],
    ['maxBytes NaN (would turn the check off)', img('fjord.jpg'), { maxBytes: NaN }, 'INVALID_ARGUMENT', /maxBytes/],
    ['fractional maxBytes below the file (whole bytes count)', img('fjord.jpg'), { maxBytes: 1000.5 }, 'IMAGE_TOO_LARGE', /maxBytes 1000/],
    ['std of 0 (divides every pixel by it)', img('fjord.jpg'), { std: [0, 0, 0] }, 'INVALID_ARGUMENT', /std/],
  ];
  for (const [what, input, opts, code, msg] of bad) {
    it(what, async () => {
      await expect(preprocessImage(input, opts)).rejects.toMatchObject({ name: 'HovleError', code, message: expect.stringMatching(msg) });
    });
  }

  it.runIf(process.platform === 'linux')('a file without a size (a device, a FIFO) is refused once maxBytes have been read', async () => {
    // stat() says 0 bytes for /dev/zero: only counting what is read stops it.
    await expect(preprocessImage('/dev/zero', { maxBytes: 1 << 20 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE', message: expect.stringMatching(/more than maxBytes/) });
  });

  it('a PNG header claiming 100000 x 100000 pixels is refused before decoding', async () => {
    const bomb = Buffer.from(png);
    bomb.writeUInt32BE(100000, 16);
    bomb.writeUInt32BE(100000, 20);
    await expect(preprocessImage({ buffer: bomb })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
  });

  it('still works afterwards', async () => {
    expect((await preprocessImage(img('gradient.png'))).tiles).toBeGreaterThan(0);
  });
});
