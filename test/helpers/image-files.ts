// Hand-built image files for the image and server tests and the fuzz seeds (scripts/fuzz/seeds.ts):
// exactly the structure a case needs, valid or not, which no encoder would write.
import { crc32, deflateSync } from 'node:zlib';

/** One chunk: length, type, data, and the CRC of type + data. */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit grayscale PNG of width x height whose IDAT holds the first `idatRows` rows (filter 0), from `sample`. */
export function grayPng(width: number, height: number, sample: (x: number, y: number) => number, idatRows = height): Buffer {
  const raw = Buffer.alloc((width + 1) * idatRows);
  for (let y = 0; y < idatRows; y++) for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = sample(x, y);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grayscale
  return Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(raw, { level: 9 })), pngChunk('IEND', Buffer.alloc(0))]);
}

/**
 * An uncompressed 24-bit BMP; `sample(x, y, c)` gives byte c (B, G, R) of pixel x in stored row y.
 * A positive height stores rows bottom-up (as BMPs do), a negative one top-down.
 */
export function bmp24(width: number, height: number, sample: (x: number, y: number, c: number) => number): Buffer {
  const rowBytes = Math.ceil((width * 3) / 4) * 4;
  const b = Buffer.alloc(54 + rowBytes * Math.abs(height));
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width, 18);
  b.writeInt32LE(height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  b.writeUInt32LE(rowBytes * Math.abs(height), 34);
  for (let y = 0; y < Math.abs(height); y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) b[54 + y * rowBytes + x * 3 + c] = sample(x, y, c);
  return b;
}
