import { open, type FileHandle } from 'node:fs/promises';

import type { HovleErrorCode } from '../errors.js';
import type { GgmlTypeInfo } from '../gguf/ggml-types.js';
import { readRange } from '../io/read-range.js';
import type { RowSource } from './model-writer.js';

/**
 * Rows of a tensor stored contiguously in a file (safetensors or GGUF data), optionally through
 * a row map (output row -> stored row) for tensors cut out of a fused one. Consecutive stored
 * rows are read in one go.
 */
export function fileRows(opts: {
  path: string;
  offset: number;
  type: GgmlTypeInfo;
  rowBytes: number;
  rows: number;
  cols: number;
  rowMap?: (row: number) => number;
  errorCode: HovleErrorCode;
}): RowSource {
  let fh: FileHandle | undefined;
  const handle = async () => (fh ??= await open(opts.path, 'r'));
  return {
    type: opts.type,
    rows: opts.rows,
    cols: opts.cols,
    async read(r0, n) {
      const f = await handle();
      if (!opts.rowMap) return readRange(f, opts.offset + r0 * opts.rowBytes, n * opts.rowBytes, opts.path, opts.errorCode);
      const out = new Uint8Array(n * opts.rowBytes);
      let i = 0;
      while (i < n) {
        const start = opts.rowMap(r0 + i);
        let run = 1;
        while (i + run < n && opts.rowMap(r0 + i + run) === start + run) run++;
        const part = await readRange(f, opts.offset + start * opts.rowBytes, run * opts.rowBytes, opts.path, opts.errorCode);
        out.set(part, i * opts.rowBytes);
        i += run;
      }
      return out;
    },
    async close() {
      const f = fh;
      fh = undefined;
      await f?.close();
    },
  };
}
