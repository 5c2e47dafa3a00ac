// Reads Hugging Face safetensors checkpoints, single-file or sharded (model.safetensors.index.json),
// without loading them: headers are parsed and validated up front, tensor rows are read on demand.
import { existsSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { HovleError } from '../errors.js';
import { readRange } from '../io/read-range.js';

/** Source dtypes the converter reads, with the ggml type name of the same bytes. */
export const SAFETENSORS_DTYPES = { F32: { bytes: 4, ggml: 'f32' }, F16: { bytes: 2, ggml: 'f16' }, BF16: { bytes: 2, ggml: 'bf16' } } as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  file: string;
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  size: number;
}

const MAX_HEADER = 100 * 1024 * 1024;

function fail(msg: string): never {
  throw new HovleError('CHECKPOINT_INVALID', msg);
}

async function readHeader(file: string): Promise<SafetensorsTensor[]> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new HovleError('CHECKPOINT_INVALID', `cannot open ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { size } = await fh.stat();
    if (size < 8) fail(`${file}: ${size} bytes is too short for a safetensors file`);
    const lenBuf = await readRange(fh, 0, 8, file, 'CHECKPOINT_INVALID');
    const headerLen = Number(Buffer.from(lenBuf).readBigUInt64LE(0));
    if (headerLen > MAX_HEADER || headerLen > size - 8) {
      fail(`${file}: header length ${headerLen} does not fit in the ${size}-byte file (truncated or not safetensors)`);
    }
    const headerBytes = await readRange(fh, 8, headerLen, file, 'CHECKPOINT_INVALID');
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(headerBytes).toString('utf8')) as Record<string, unknown>;
    } catch {
      fail(`${file}: header is not valid JSON`);
    }
    if (!isPlainObject(header)) fail(`${file}: header is not a JSON object`);
    const dataStart = 8 + headerLen;
    const out: SafetensorsTensor[] = [];
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      if (!isPlainObject(entry)) fail(`${file}: tensor ${name}'s entry is not a JSON object`);
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e.dtype !== 'string' || !(e.dtype in SAFETENSORS_DTYPES)) {
        fail(`${file}: tensor ${name} has dtype ${JSON.stringify(e.dtype)}; the converter reads F32, F16 and BF16`);
      }
      const dtype = e.dtype as SafetensorsDtype;
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        fail(`${file}: tensor ${name} has an invalid shape ${JSON.stringify(e.shape)}`);
      }
      const shape = e.shape as number[];
      const offs = e.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[1] < offs[0]) {
        fail(`${file}: tensor ${name} has invalid data_offsets ${JSON.stringify(offs)}`);
      }
      const numel = shape.reduce((a, b) => a * b, 1);
      const expect = numel * SAFETENSORS_DTYPES[dtype].bytes;
      if (offs[1] - offs[0] !== expect) {
        fail(`${file}: tensor ${name} ${dtype}[${shape.join(', ')}] needs ${expect} bytes but data_offsets span ${offs[1] - offs[0]}`);
      }
      if (dataStart + offs[1] > size) {
        fail(`${file}: tensor ${name} ends at byte ${dataStart + offs[1]} but the file has ${size} bytes (truncated?)`);
      }
      out.push({ name, dtype, shape, file, offset: dataStart + offs[0], size: expect });
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** All tensors of the checkpoint in `dir`, by name. */
export async function openSafetensors(dir: string): Promise<Map<string, SafetensorsTensor>> {
  const index = join(dir, 'model.safetensors.index.json');
  let files: string[];
  let weightMap: Record<string, string> | undefined;
  if (existsSync(index)) {
    let parsed: { weight_map?: Record<string, string> };
    try {
      parsed = JSON.parse(await readFile(index, 'utf8')) as typeof parsed;
    } catch (err) {
      throw new HovleError('CHECKPOINT_INVALID', `cannot read ${index}: ${(err as Error).message}`, { cause: err });
    }
    if (!isPlainObject(parsed) || !isPlainObject(parsed.weight_map)) fail(`${index}: no weight_map object`);
    weightMap = parsed.weight_map;
    for (const [t, f] of Object.entries(weightMap)) {
      if (typeof f !== 'string') fail(`${index}: weight_map maps ${t} to ${JSON.stringify(f)}, not a shard file name`);
    }
    files = [...new Set(Object.values(weightMap))].sort();
    for (const f of files) {
      if (f.includes('/') || f.includes('\\') || f.startsWith('.')) fail(`${index}: shard name ${f} must be a plain file name`);
      if (!existsSync(join(dir, f))) fail(`${index} lists shard ${f}, which is missing from ${dir}`);
    }
  } else if (existsSync(join(dir, 'model.safetensors'))) {
    files = ['model.safetensors'];
  } else {
    fail(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
  }
  const all = new Map<string, SafetensorsTensor>();
  for (const f of files) {
    for (const t of await readHeader(join(dir, f))) {
      if (all.has(t.name)) fail(`tensor ${t.name} appears in both ${all.get(t.name)!.file} and ${t.file}`);
      if (weightMap && weightMap[t.name] !== f) fail(`tensor ${t.name} is in ${f} but the index maps it to ${weightMap[t.name]}`);
      all.set(t.name, t);
    }
  }
  if (weightMap) {
    for (const [name, f] of Object.entries(weightMap)) {
      if (!all.has(name)) fail(`the index maps ${name} to ${f}, but that shard has no such tensor`);
    }
  }
  return all;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
