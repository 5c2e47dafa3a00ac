// Streams tensors from any row source (checkpoint, GGUF, random generator) through the native
// converter into a GGUF file, chunk by chunk: memory stays bounded by the chunk size whatever
// the model size. Shared by `hovle convert`, `hovle quantize` and the synthetic-model script.
import { availableParallelism } from 'node:os';

import { HovleError } from '../errors.js';
import type { GgufValue } from '../gguf/format.js';
import { rowBytes, type GgmlTypeInfo } from '../gguf/ggml-types.js';
import { GgufWriter } from '../gguf/writer.js';
import { loadAddon } from '../native/load.js';

export interface RowSource {
  /** ggml type of the bytes read() returns. */
  type: GgmlTypeInfo;
  rows: number;
  cols: number;
  /** Rows [r0, r0 + n) as raw bytes of `type`, in a buffer of its own. */
  read(r0: number, n: number): Promise<Uint8Array>;
  /** Releases files the source holds; called once after the last read. */
  close?(): Promise<void>;
}

export interface PlannedTensor {
  name: string;
  /** ggml order, ne0 first. */
  dims: number[];
  type: GgmlTypeInfo;
  source: RowSource;
}

export interface WriteProgress {
  tensor: string;
  tensorIndex: number;
  tensorCount: number;
  bytesWritten: number;
  bytesTotal: number;
}

export interface WriteOptions {
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (p: WriteProgress) => void;
  /** Source bytes converted per native call (default 32 MiB). */
  chunkBytes?: number;
}

export interface WriteResult {
  path: string;
  bytes: number;
  tensors: number;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new HovleError('ABORTED', 'conversion aborted', { cause: signal.reason });
}

export async function writeModel(
  path: string,
  metadata: ReadonlyArray<readonly [string, GgufValue]>,
  tensors: readonly PlannedTensor[],
  options: WriteOptions = {},
): Promise<WriteResult> {
  const { signal, onProgress } = options;
  const threads = Math.max(1, options.threads ?? availableParallelism());
  const chunkBytes = Math.max(1, options.chunkBytes ?? 32 * 1024 * 1024);
  const { addon } = loadAddon();
  checkAborted(signal);

  for (const t of tensors) {
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    if (t.source.rows !== rows || t.source.cols !== t.dims[0]) {
      throw new HovleError('INTERNAL', `${t.name}: source is ${t.source.rows}x${t.source.cols}, tensor ${t.dims.join('x')}`);
    }
    rowBytes(t.type, t.source.cols); // throws if the row does not fill whole blocks
  }

  const writer = await GgufWriter.create(path, metadata, tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type })));
  try {
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const src = t.source;
      const srcRow = rowBytes(src.type, src.cols);
      const step = Math.max(1, Math.floor(chunkBytes / srcRow));
      for (let r0 = 0; r0 < src.rows; r0 += step) {
        checkAborted(signal);
        const n = Math.min(step, src.rows - r0);
        const raw = await src.read(r0, n);
        let out: Uint8Array;
        if (src.type.name === 'f32' && t.type.name === 'f32') {
          checkFinite(t.name, raw);
          out = raw;
        } else {
          const r = await addon.convertRows(raw, src.type.id, t.type.id, n, src.cols, threads);
          if (r.nonFinite > 0) {
            throw new HovleError('CHECKPOINT_INVALID', `tensor ${t.name} has ${r.nonFinite} NaN or infinite values in rows ${r0}..${r0 + n - 1}`);
          }
          out = r.data;
        }
        await writer.write(out);
        onProgress?.({ tensor: t.name, tensorIndex: i, tensorCount: tensors.length, bytesWritten: writer.bytesWritten, bytesTotal: writer.totalBytes });
      }
      await src.close?.();
    }
    checkAborted(signal);
    await writer.finish();
  } catch (err) {
    await writer.abort();
    await Promise.all(tensors.map((t) => t.source.close?.().catch(() => undefined)));
    throw err;
  }
  return { path, bytes: writer.totalBytes, tensors: tensors.length };
}

function checkFinite(name: string, raw: Uint8Array): void {
  const f = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  for (let i = 0; i < f.length; i++) {
    if (!Number.isFinite(f[i]!)) throw new HovleError('CHECKPOINT_INVALID', `tensor ${name} has NaN or infinite values`);
  }
}
