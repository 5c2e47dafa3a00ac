import type { FileHandle } from 'node:fs/promises';

import { HovleError, type HovleErrorCode } from '../errors.js';

/**
 * Reads exactly `length` bytes at `offset` into a fresh Uint8Array (its own ArrayBuffer, so
 * naturally aligned for the native converters). A short file is an error with `code`.
 */
export async function readRange(
  fh: FileHandle,
  offset: number,
  length: number,
  path: string,
  code: HovleErrorCode,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(out, done, length - done, offset + done));
    } catch (err) {
      throw new HovleError('IO_ERROR', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (bytesRead === 0) throw new HovleError(code, `${path}: unexpected end of file at byte ${offset + done}`);
    done += bytesRead;
  }
  return out;
}
