// Hand-built PNG chunks for the image tests and the fuzz seeds (scripts/fuzz/seeds.ts): files
// with exactly the structure a case needs, valid or not, which no encoder would write.
import { crc32 } from 'node:zlib';

/** One chunk: length, type, data, and the CRC of type + data. */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}
