// Golden cases copied from the shared fixtures by scripts/fixtures/copy-goldens.mjs
// (test/fixtures/<variant>/golden/cases.json lists them, with provenance).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { FIXTURES } from './tmp.js';

export type Variant = 'hovle-tiny' | 'hovle-tiny-bf16' | 'hovle-tiny-post';

export interface GoldenCase {
  name: string;
  /** images/<file> relative to the variant folder in the shared fixtures; null for text-only. */
  image: string | null;
  maxTiles: number | null;
  preprocess: { tile_grid_cols_rows: [number, number]; num_tiles: number; target_ratios_order: Array<[number, number]> } | null;
  seqLen: number;
  hdSeqLen: number | null;
  files: Record<string, { file: string; shape: number[]; rows?: number[] }>;
  greedy: { ids: number[]; steps: Array<{ token: number; margin: number }>; eos_id: number; min_margin: number } | null;
}

export function goldenCases(variant: Variant): GoldenCase[] {
  return JSON.parse(readFileSync(join(FIXTURES, variant, 'golden', 'cases.json'), 'utf8')).cases;
}

function bytes(variant: Variant, file: string): Buffer {
  const raw = readFileSync(join(FIXTURES, variant, 'golden', file));
  return file.endsWith('.gz') ? gunzipSync(raw) : raw;
}

export function goldenF32(variant: Variant, c: GoldenCase, key: string): Float32Array {
  const b = bytes(variant, c.files[key]!.file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

export function goldenI32(variant: Variant, c: GoldenCase, key: string): Int32Array {
  const b = bytes(variant, c.files[key]!.file);
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function argmax(a: Float32Array, offset = 0, n = a.length - offset): number {
  let best = offset;
  for (let i = offset + 1; i < offset + n; i++) if (a[i]! > a[best]!) best = i;
  return best - offset;
}
